#!/usr/bin/env bash
# A short fuzzing run of every harness of test/fuzz (libFuzzer, ASan+UBSan):
# builds them with clang, replays the committed corpus (seeds and the
# regression inputs of bugs found so far) and fuzzes FUZZ_SHORT_TIME seconds
# (5) each.  Prints TAP: one line for the build, one per harness; a crash, a
# leak, a sanitizer report or an invariant of a harness failing is "not ok"
# with the report.  The long run is bench/fuzz_long.sh.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ=$ROOT/test/fuzz
SECS=${FUZZ_SHORT_TIME:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
n=1
if ! command -v clang >/dev/null; then
	echo "not ok 1 - clang is installed (scripts/lib.sh ensure_packages installs it)"
	exit 1
fi
if out=$(make -s -C "$FUZZ" -j2 2>&1); then
	echo "ok 1 - the harnesses build"
else
	echo "not ok 1 - the harnesses build"
	echo "$out" | tail -20 | sed 's/^/#   /'
	exit 1
fi
for h in $(sed -n 's/^HARNESSES *= *//p' "$FUZZ/Makefile"); do
	n=$((n + 1))
	mkdir -p "$WORK/$h/new"
	dict=()
	[ -f "$FUZZ/dict/$h.dict" ] && dict=(-dict="$FUZZ/dict/$h.dict")
	# new inputs go to a scratch folder: the committed corpus stays as it is
	"$FUZZ/bin/fuzz_$h" -max_total_time="$SECS" -max_len=2048 -timeout=10 -print_final_stats=1 \
		"${dict[@]}" -artifact_prefix="$WORK/$h/" "$WORK/$h/new" "$FUZZ/corpus/$h" >"$WORK/$h/log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$h/log" | tail -1)
	artifacts=$(find "$WORK/$h" -maxdepth 1 -type f ! -name log | wc -l)
	if [ "$rc" -eq 0 ] && [ "$artifacts" -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$WORK/$h/log"; then
		echo "ok $n - fuzz_$h: ${execs:-0} executions, no finding"
	else
		echo "not ok $n - fuzz_$h: a finding (exit $rc)"
		grep -E 'ERROR|runtime error|fuzz:|invariant|SUMMARY|#[0-9]+ 0x.* in (LLVMFuzzerTestOneInput|vn_|[a-z_]+ /)|Test unit written' "$WORK/$h/log" |
			grep -v 'in fuzzer::' | head -30 | sed 's/^/#   /'
	fi
done
