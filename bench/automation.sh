#!/usr/bin/env bash
# bench/automation: the automation executor (its background workers, as in
# production) against the floor, in one run on a throwaway server.  The
# events: contact.lead_qualified, one per transaction, each of its own
# aggregate (as many contacts would), written by ventros.emit.  Every rule
# triggers on it and has one condition (score >= N) and one action
# (notify_agents: an event written by the rule).  Two sets of rules, as
# BENCH_MATCH says (default: both, "one" then "all"):
#   one        the rules mostly do not match: the first rule's condition holds
#              and it acts, the others' do not (each is a run skipped by its
#              condition, in the run log) -- a tenant whose rules each handle
#              some case of the event
#   all        every rule's condition holds and every rule acts (three events
#              and a run-log row per rule and event): the worst case
# For 0 (the floor, once), 10 and 100 rules of the tenant:
#   write      the rate at which the events are written: pgbench, BENCH_CLIENTS
#              (2) clients, BENCH_SECONDS (5) each; with 0 rules this is the
#              floor (nothing is queued), with rules it includes queueing
#   executor   the rate the executor sustains: BENCH_EVENTS (2,000; divided
#              by rules / 10 above 10 rules) events committed at once, timed
#              by the client from that commit until the queue is empty; events/s
#   ratio      executor / write: >= 1.0 means it keeps up with the writers
#   end to end the sustainable rate with writers and executor running together
#              on the same cores: the events of the write run over the time
#              from its start until the executor ran the last of them
# Then, with 10 rules of each set, the lag from commit to action (the event's
# last run finished minus the time it was written): pgbench at half the
# end-to-end sustainable rate for BENCH_SECONDS; p50 / p99.
# Last, one line per set with the two targets from this same run: the
# ratio executor/write at 10 rules (and executor/floor beside it) and the
# p99 at half the sustainable rate.
# BENCH_RULES ("10 100") chooses the rule counts (the lag needs 10).
# BENCH_CPU=1: only the CPU time per event, which the load of a shared
# machine disturbs far less than rates: in a database no executor serves
# (ventros_cpu, not in ventros.databases), with 10 rules of each set, one
# session writes BENCH_EVENTS events one per transaction (the writer's CPU
# per event, queueing included), then one session drains them calling
# ventros.run_automations(100) as the worker does (the executor's CPU per
# event); each from its own /proc/self/schedstat.
# Medians of BENCH_ROUNDS (3) rounds; the load average is printed beside the
# figures.  No assertion: the machine may be shared and noisy; read the
# ratios.  Targets: ratio >= 1.0 at 10 rules, p99 <= 100 ms.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-automation
PORT=${VENTROS_BENCH_PG_PORT:-54359}
ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-2}
EVENTS=${BENCH_EVENTS:-2000}
MATCH=${BENCH_MATCH:-one all}
RULES=${BENCH_RULES:-10 100}

ensure_packages
build_install
trap 'pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
psql -X -q -v ON_ERROR_STOP=1 -c "SELECT ventros.create_tenant('bench', 'Bench')" >/dev/null
export PGOPTIONS='-c ventros.tenant=bench'
PGBENCH=$PG_BIN/pgbench
EMIT="SELECT ventros.emit('contact.lead_qualified', 'contact', gen_random_uuid(), '{\"score\": 8}');"
printf '%s\n' "$EMIT" >"$RUN/emit.sql"

q() { psql -X -tA -v ON_ERROR_STOP=1 -c "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# set_rules N MODE: N rules on the event; MODE one: only the first one's
# condition holds; all: every one's does
set_rules() {
	local hold=5
	[ "${2:-all}" = all ] || hold=100
	q "SELECT count(*) FROM (SELECT ventros.delete_automation(id) FROM ventros.automations WHERE deleted_at IS NULL) x" >/dev/null
	[ "$1" -eq 0 ] || q "SELECT count(*) FROM generate_series(1, $1) i, LATERAL ventros.create_automation('Bench rule ' || i,
		'contact.lead_qualified', '[{\"type\": \"notify_agents\", \"params\": {\"message\": \"qualified\"}}]',
		jsonb_build_array(jsonb_build_object('field', 'score', 'operator', 'gte', 'value', CASE WHEN i = 1 THEN 5 ELSE $hold END)),
		automation_type => 'event')" >/dev/null
}
load() { cut -d' ' -f1-3 /proc/loadavg; }
drained() {
	until [ "$(q "SELECT count(*) FROM ventros.automation_queue")" = 0 ]; do sleep 0.1; done
}
write_rate() {
	"$PGBENCH" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$RUN/emit.sql" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
# executor_rate N: N events committed at once; N / (queue drained - commit),
# by the client's clock (polled every 20 ms).
executor_rate() {
	local n=$1 t0 t1
	# (the arguments depend on i: a function of constants would run once)
	psql -X -q -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM generate_series(1, $n) i,
	    LATERAL ventros.emit('contact.lead_qualified', 'contact', gen_random_uuid(), jsonb_build_object('score', 8, 'i', i))" >/dev/null
	t0=$(date +%s.%N)
	until [ "$(q "SELECT count(*) FROM ventros.automation_queue")" = 0 ]; do sleep 0.02; done
	t1=$(date +%s.%N)
	printf '%.1f' "$(echo "$n / ($t1 - $t0)" | bc -l)"
}

# cpu MODE: the writer's and the executor's CPU per event, 10 rules of MODE,
# in database ventros_cpu (no executor serves it)
cpu() {
	local mode=$1 batches=$((EVENTS / 100 + 2))
	(
		export PGDATABASE=ventros_cpu
		set_rules 10 "$mode"
		q "SELECT count(*) FROM ventros.outbox" >/dev/null
		{
			echo "SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS t0 \\gset"
			for _ in $(seq "$EVENTS"); do echo "SELECT ventros.emit('contact.lead_qualified', 'contact', gen_random_uuid(), '{\"score\": 8}');"; done
			echo "SELECT round((split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :t0) / 1000.0 / $EVENTS, 1) AS writer \\gset"
			echo "\\echo :writer"
		} >"$RUN/cpu_write.sql"
		{
			echo "SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint AS t0 \\gset"
			for _ in $(seq "$batches"); do echo "SELECT ventros.run_automations(100);"; done
			echo "SELECT round((split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - :t0) / 1000.0 / $EVENTS, 1) AS executor \\gset"
			echo "\\echo :executor"
		} >"$RUN/cpu_drain.sql"
		w=$(psql -X -q -tA -v ON_ERROR_STOP=1 -f "$RUN/cpu_write.sql" | tail -1)
		e=$(psql -X -q -tA -v ON_ERROR_STOP=1 -f "$RUN/cpu_drain.sql" | tail -1)
		left=$(q "SELECT count(*) FROM ventros.automation_queue")
		printf 'automation cpu  10 rules (%s) writer %7.1f us/event  executor %7.1f us/event  executor/writer %.2f  (%s events, %s left queued; load %s)\n' \
			"$mode" "$w" "$e" "$(echo "$e / $w" | bc -l)" "$EVENTS" "$left" "$(load)"
	)
}
if [ "${BENCH_CPU:-0}" = 1 ]; then
	psql -X -q -d ventros -c "CREATE DATABASE ventros_cpu"
	PGDATABASE=ventros_cpu psql -X -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION ventros CASCADE" \
		-c "SELECT ventros.create_tenant('bench', 'Bench')" >/dev/null
	for mode in $MATCH; do cpu "$mode"; done
	exit 0
fi

declare -A writes execs ends loads lags ratios
# run_set MODE RULES: the rounds of one set of rules
run_set() {
	local mode=$1 rules=$2 n=$EVENTS key="$1 $2" t0 t1 w
	set_rules "$rules" "$mode"
	[ "$rules" -le 10 ] || n=$((EVENTS * 10 / rules))
	for round in $(seq "$ROUNDS"); do
		t0=$(date +%s.%N)
		w=$(write_rate)
		drained
		t1=$(date +%s.%N)
		writes[$key]="${writes[$key]:-} $w"
		# end to end: the events written over the time until the last one ran
		ends[$key]="${ends[$key]:-} $(printf '%.1f' "$(echo "$w * $SECONDS_PER_RUN / ($t1 - $t0)" | bc -l)")"
		[ "$rules" -eq 0 ] || execs[$key]="${execs[$key]:-} $(executor_rate "$n")"
	done
	loads[$key]=$(load)
}
# lag MODE RATE: commit -> action at RATE events/s with 10 rules of the set
lag() {
	local mode=$1 rate=$2 mark
	set_rules 10 "$mode"
	mark=$(q "SELECT coalesce(max(seq), 0) FROM ventros.outbox")
	since=$(q "SELECT clock_timestamp()")
	"$PGBENCH" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -R "$rate" -f "$RUN/emit.sql" >/dev/null 2>&1
	drained
	# fresh statistics: with those of before the run, the join below may be
	# planned as a nested loop over every run of the earlier sets
	q "ANALYZE ventros.outbox, ventros.automation_rule_runs, ventros.automation_event_runs" >/dev/null
	local row
	row=$(q "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ' ||
	                round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ' || round(max(ms)::numeric, 1) || ' ' || count(*)
	   FROM (SELECT extract(epoch FROM max(r.finished_at) - o.occurred_at) * 1000 AS ms
	         FROM ventros.outbox o JOIN ventros.automation_runs r ON r.tenant_id = o.tenant_id AND r.event_id = o.event_id
	         WHERE o.seq > $mark AND r.started_at >= '$since' AND o.event_type = 'contact.lead_qualified'
	         GROUP BY o.event_id, o.occurred_at) x")
	read -r p50 p99 pmax pcount <<<"$row"
	printf 'automation lag commit->action at %s events/s (10 rules, %s): p50 %s ms  p99 %s ms  max %s ms  (%s events; load %s)\n' \
		"$rate" "$mode" "$p50" "$p99" "$pmax" "$pcount" "$(load)"
	lags[$mode]="p99 $p99 ms at $rate events/s (half the end-to-end rate)"
}

run_set all 0
floor=$(median ${writes[all 0]})
printf 'automation floor     write %9.1f events/s  (0 rules: nothing queued; clients %s, rounds:%s; load %s)\n' \
	"$floor" "$CLIENTS" "${writes[all 0]}" "${loads[all 0]}"
for mode in $MATCH; do
	for rules in $RULES; do
		run_set "$mode" "$rules"
		key="$mode $rules"
		w=$(median ${writes[$key]})
		e=$(median ${execs[$key]})
		x=$(median ${ends[$key]})
		printf 'automation %3s rules (%s) write %9.1f events/s (%.3f of the floor)  executor %9.1f events/s  ratio executor/write %.3f  end to end %9.1f events/s  (rounds: write%s; executor%s; end to end%s; load %s)\n' \
			"$rules" "$mode" "$w" "$(echo "$w / $floor" | bc -l)" "$e" "$(echo "$e / $w" | bc -l)" "$x" \
			"${writes[$key]}" "${execs[$key]}" "${ends[$key]}" "${loads[$key]}"
		[ "$rules" -ne 10 ] || { sustainable10=$x; ratios[$mode]=$(printf 'executor/write %.3f, executor/floor %.3f' "$(echo "$e / $w" | bc -l)" "$(echo "$e / $floor" | bc -l)"); }
	done
	# lag at half the sustainable rate, 10 rules
	[ -z "${sustainable10:-}" ] || lag "$mode" "$(printf '%.0f' "$(echo "$sustainable10 / 2" | bc -l)")"
	unset sustainable10
done
# the targets, side by side, from this run: ratio >= 1.0 at 10 rules, p99 <= 100 ms
for mode in $MATCH; do
	[ -z "${ratios[$mode]:-}" ] || printf 'automation targets 10 rules (%s): %s (target >= 1.0); %s (target <= 100 ms)  (load %s)\n' \
		"$mode" "${ratios[$mode]}" "${lags[$mode]:-no lag measured}" "$(load)"
done
q "SELECT 'runs not executed: ' || count(*) FILTER (WHERE outcome NOT IN ('executed', 'skipped')) || ', skipped: ' || count(*) FILTER (WHERE outcome = 'skipped')
   FROM ventros.automation_runs"
