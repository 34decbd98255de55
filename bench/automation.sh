#!/usr/bin/env bash
# bench/automation: the automation executor (its background workers, as in
# production) against the floor, in one run on a throwaway server.  The
# events: contact.lead_qualified, one per transaction, each of its own
# aggregate (as many contacts would), written by ventros.emit.  Each rule
# triggers on it, has one condition that holds (score >= 5) and one action
# (notify_agents: an event written by the rule).  For 0, 10 and 100 rules of
# the tenant:
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
# Then, with 10 rules, the lag from commit to action (the event's last run
# finished minus the time it was written): pgbench at half the end-to-end
# sustainable rate for BENCH_SECONDS; p50 / p99.
# Medians of BENCH_ROUNDS (3) rounds.  No assertion: the machine may be
# shared and noisy; read the ratios.  Targets: ratio >= 1.0 at 10 rules,
# p99 <= 100 ms.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-automation
PORT=${VENTROS_BENCH_PG_PORT:-54359}
ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-2}
EVENTS=${BENCH_EVENTS:-2000}

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
set_rules() {
	q "SELECT count(*) FROM (SELECT ventros.delete_automation(id) FROM ventros.automations WHERE deleted_at IS NULL) x" >/dev/null
	[ "$1" -eq 0 ] || q "SELECT count(*) FROM generate_series(1, $1) i, LATERAL ventros.create_automation('Bench rule ' || i,
		'contact.lead_qualified', '[{\"type\": \"notify_agents\", \"params\": {\"message\": \"qualified\"}}]',
		'[{\"field\": \"score\", \"operator\": \"gte\", \"value\": 5}]', automation_type => 'event')" >/dev/null
}
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

declare -A writes execs ends
for rules in 0 10 100; do
	set_rules "$rules"
	n=$EVENTS
	[ "$rules" -le 10 ] || n=$((EVENTS * 10 / rules))
	for round in $(seq "$ROUNDS"); do
		t0=$(date +%s.%N)
		w=$(write_rate)
		drained
		t1=$(date +%s.%N)
		writes[$rules]="${writes[$rules]:-} $w"
		# end to end: the events written over the time until the last one ran
		ends[$rules]="${ends[$rules]:-} $(printf '%.1f' "$(echo "$w * $SECONDS_PER_RUN / ($t1 - $t0)" | bc -l)")"
		[ "$rules" -eq 0 ] || execs[$rules]="${execs[$rules]:-} $(executor_rate "$n")"
	done
done
floor=$(median ${writes[0]})
printf 'automation floor     write %9.1f events/s  (0 rules: nothing queued; clients %s, rounds:%s)\n' "$floor" "$CLIENTS" "${writes[0]}"
sustainable10=
for rules in 10 100; do
	w=$(median ${writes[$rules]})
	e=$(median ${execs[$rules]})
	x=$(median ${ends[$rules]})
	printf 'automation %3s rules write %9.1f events/s (%.3f of the floor)  executor %9.1f events/s  ratio executor/write %.3f  end to end %9.1f events/s  (rounds: write%s; executor%s; end to end%s)\n' \
		"$rules" "$w" "$(echo "$w / $floor" | bc -l)" "$e" "$(echo "$e / $w" | bc -l)" "$x" "${writes[$rules]}" "${execs[$rules]}" "${ends[$rules]}"
	[ "$rules" -ne 10 ] || sustainable10=$x
done

# Lag at half the sustainable rate, 10 rules.
set_rules 10
rate=$(printf '%.0f' "$(echo "$sustainable10 / 2" | bc -l)")
mark=$(q "SELECT coalesce(max(seq), 0) FROM ventros.outbox")
"$PGBENCH" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -R "$rate" -f "$RUN/emit.sql" >/dev/null 2>&1
drained
q "SELECT format('automation lag commit->action at %s events/s (10 rules): p50 %s ms  p99 %s ms  max %s ms  (%s events)',
                 $rate, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                 round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1), count(*))
   FROM (SELECT extract(epoch FROM max(r.finished_at) - o.occurred_at) * 1000 AS ms
         FROM ventros.outbox o JOIN ventros.automation_runs r ON r.tenant_id = o.tenant_id AND r.event_id = o.event_id
         WHERE o.seq > $mark AND o.event_type = 'contact.lead_qualified'
         GROUP BY o.event_id, o.occurred_at) x"
q "SELECT 'runs not executed: ' || count(*) FROM ventros.automation_runs WHERE outcome <> 'executed'"
