#!/usr/bin/env bash
# Static checks that keep the tree clean, as TAP: cppcheck over the C of the
# extension and the front (PostgreSQL's statement macros described in
# test/lint/postgres.cfg), the format of every C file (the committed
# .clang-format, docs/style-c.md), and every relative link of the
# documentation.
# The compilers' warnings are errors already (-Werror in the Makefile).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/test/lib/tap.sh"
cppcheck_src() {
	cppcheck --enable=warning,performance,portability --inline-suppr --quiet --error-exitcode=1 \
		--library="$ROOT/test/lint/postgres.cfg" -I "$ROOT/src" -I "$ROOT/src/http" \
		--suppress=missingIncludeSystem --suppress=missingInclude -j2 "$ROOT/src"
}
tap_ok "cppcheck finds nothing in src/" cppcheck_src
tap_ok "every C file is in the committed format (scripts/format --check)" "$ROOT/scripts/format" --check
tap_ok "every relative link of README.md and docs/ resolves" node "$ROOT/scripts/check-doc-links.mjs"
tap_done
