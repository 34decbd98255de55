# shellcheck shell=bash
# TAP for the shell tests of test/integration/ (scripts/test counts the
# "ok" and "not ok" lines).  Sourced, never run:
#   tap_ok "description" command...   passes when the command succeeds; its
#                                     output is shown when it fails
#   tap_is "description" want got     passes when got equals want
#   tap_done                          prints the plan
tap_n=0
tap_ok() {
	local d=$1 out
	shift
	tap_n=$((tap_n + 1))
	if out=$("$@" 2>&1); then
		echo "ok $tap_n - $d"
	else
		echo "not ok $tap_n - $d"
		printf '%s\n' "$out" | head -40 | sed 's/^/#   /'
	fi
}
tap_is() {
	tap_n=$((tap_n + 1))
	if [ "$2" = "$3" ]; then
		echo "ok $tap_n - $1"
	else
		echo "not ok $tap_n - $1"
		echo "#   got: $3"
		echo "#   want: $2"
	fi
}
tap_done() { echo "1..$tap_n"; }
