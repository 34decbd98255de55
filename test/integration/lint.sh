#!/usr/bin/env bash
# Static checks that keep the tree clean, as TAP: cppcheck over the C of the
# extension and the front (PostgreSQL's statement macros described in
# test/lint/postgres.cfg), and every relative link of the documentation.
# The compilers' warnings are errors already (-Werror in the Makefile).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
n=0
ok() {	# ok "description" command...
	local d=$1 out
	shift
	n=$((n + 1))
	if out=$("$@" 2>&1); then echo "ok $n - $d"; else echo "not ok $n - $d"; printf '%s\n' "$out" | head -40 | sed 's/^/#   /'; fi
}
cppcheck_src() {
	cppcheck --enable=warning,performance,portability --inline-suppr --quiet --error-exitcode=1 \
		--library="$ROOT/test/lint/postgres.cfg" -I "$ROOT/src" -I "$ROOT/src/http" \
		--suppress=missingIncludeSystem --suppress=missingInclude -j2 "$ROOT/src"
}
ok "cppcheck finds nothing in src/" cppcheck_src
ok "every relative link of README.md and docs/ resolves" node "$ROOT/scripts/check-doc-links.mjs"
echo "1..$n"
