#!/usr/bin/env bash
# bench/fuzz_long.sh: the long fuzzing run of every harness of test/fuzz.
#
# Builds the harnesses, then runs them one at a time (nice -n 10: the
# machine is shared) for FUZZ_RUNS executions each (default 10^7), starting
# from the committed seed corpus plus what earlier long runs kept under
# test/fuzz/out/long/.  Prints one line per harness:
#   <harness> execs=<n> seconds=<s> findings=<n> [artifact ...]
# and exits non-zero when any harness found anything (a crash, a leak, a
# sanitizer report, a timeout or an out-of-memory; the artifacts are left in
# test/fuzz/out/long/<harness>/ to reproduce with bin/fuzz_<harness> <file>).
# FUZZ_ONLY="jwt ssrf" runs only those.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ=$ROOT/test/fuzz
RUNS=${FUZZ_RUNS:-10000000}
HARNESSES=${FUZZ_ONLY:-$(sed -n 's/^HARNESSES *= *//p' "$FUZZ/Makefile")}

make -s -C "$FUZZ" -j2 >/dev/null || { echo "fuzz_long: build failed" >&2; exit 1; }
total_findings=0
for h in $HARNESSES; do
	art=$FUZZ/out/long/$h
	mkdir -p "$art/corpus"
	dict=()
	[ -f "$FUZZ/dict/$h.dict" ] && dict=(-dict="$FUZZ/dict/$h.dict")
	touch "$art/.start"
	start=$(date +%s)
	nice -n 10 "$FUZZ/bin/fuzz_$h" -runs="$RUNS" -max_len=2048 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 "${dict[@]}" -artifact_prefix="$art/" \
		"$art/corpus" "$FUZZ/corpus/$h" >"$art/log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$art/log" | tail -1)
	found=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) -newer "$art/.start" 2>/dev/null)
	n=$(printf '%s' "$found" | grep -c . || true)
	if [ "$rc" -ne 0 ] && [ "$n" -eq 0 ]; then n=1; found="(exit $rc, see $art/log)"; fi
	total_findings=$((total_findings + n))
	echo "$h execs=${execs:-0} seconds=$secs findings=$n $(echo $found)"
done
[ "$total_findings" -eq 0 ]
