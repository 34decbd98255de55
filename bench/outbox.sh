#!/usr/bin/env bash
# bench/outbox: the outbox publisher against the floor, in one run on
# throwaway servers (PostgreSQL and RabbitMQ of its own):
#   (a) floor: bench/outbox_floor.c (built here) publishes the same messages
#       (same properties, headers and body size) straight to ventros.events
#       with publisher confirms, batches of BENCH_BATCH (1,000);
#   (b) ventros: BENCH_EVENTS events (50,000) committed in one transaction,
#       timed from the commit to the last confirmed publish recorded
#       (published_at), with ventros.outbox_batch_size = BENCH_BATCH;
#   (d) the maximum sustainable end-to-end rate: pgbench (BENCH_CLIENTS
#       sessions, 4) commits one event per transaction as fast as it can for
#       BENCH_SECONDS while the publisher publishes; events committed over the
#       time from the start to the last confirmed publish recorded.  This is
#       "the maximum rate" of the latency target: the rate the machine
#       sustains with producers, PostgreSQL, publisher, broker and consumer
#       all running (b is a publish-only rate, with the producers idle);
#   (c) latency: pgbench commits one event per transaction at half of (d)'s
#       rate for BENCH_SECONDS; a consumer measures commit-to-consumer time.
#       Also, as before (BENCH_OLD_LATENCY=0 skips it), at half of (b)'s
#       rate: on 2 cores that rate saturates the machine, so its latency
#       measures the queueing of a saturated machine.
# (a) and (b) alternate for BENCH_ROUNDS rounds (3); medians.  Both publish
# into one durable queue bound to ventros.events, which a consumer drains
# all along (as in production: a queue without readers grows on disk, and
# purging it keeps the broker busy for whoever publishes next).
# Also printed: CPU time per message of the floor client, the publisher
# worker and the broker (medians), which a busy machine hardly changes, and
# how many updates of ventros.outbox were HOT.
# No assertion: read the ratio.  Targets: b/a >= 0.7, p50 <= 5 ms, p99 <= 25 ms.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-outbox
PORT=${VENTROS_BENCH_PG_PORT:-54359}
AMQP_PORT=${VENTROS_BENCH_AMQP_PORT:-56750}
EVENTS=${BENCH_EVENTS:-50000}
BATCH=${BENCH_BATCH:-1000}
ROUNDS=${BENCH_ROUNDS:-3}
LAT_SECONDS=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-4}
HERE=$VENTROS_ROOT/bench

ensure_packages
build_install
rabbit_stop "$RUN" "$AMQP_PORT" || true
trap 'rabbit_stop "$RUN" "$AMQP_PORT"; pg_stop "$RUN"' EXIT
VENTROS_AMQP_PORT=$AMQP_PORT bench_pg "$RUN" "$PORT"
rabbit_start "$RUN" "$AMQP_PORT"
cc -O2 -Wall -Wextra -Werror -o "$RUN/outbox_floor" "$HERE/outbox_floor.c" -lrabbitmq
AMQP_URL="amqp://ventros:ventros@127.0.0.1:$AMQP_PORT/%2F"
psql -X -q -c "ALTER SYSTEM SET ventros.outbox_batch_size = $BATCH" -c "SELECT pg_reload_conf()" \
	-c "SELECT ventros.register_event_type('benchob.happened', 'benchob')" >/dev/null

# the durable queue both sides publish into
queue() {	# queue declare|purge|delete
	node --input-type=module -e "
		import amqp from 'amqplib';
		const c = await amqp.connect('$AMQP_URL'); const ch = await c.createChannel();
		await ch.assertExchange('ventros.events', 'topic', { durable: true });
		await ch.assertQueue('bench.outbox', { durable: true });
		await ch.bindQueue('bench.outbox', 'ventros.events', '#');
		if ('$1' === 'purge') await ch.purgeQueue('bench.outbox');
		if ('$1' === 'delete') await ch.deleteQueue('bench.outbox');
		await c.close();" 2>&1
}
(cd "$VENTROS_ROOT" && queue declare)
(cd "$VENTROS_ROOT" && exec node --input-type=module -e "
	import amqp from 'amqplib';
	const c = await amqp.connect('$AMQP_URL'); const ch = await c.createChannel();
	await ch.prefetch(5000);
	await ch.consume('bench.outbox', () => {}, { noAck: true });") &
drain=$!
trap 'kill $drain 2>/dev/null || true; rabbit_stop "$RUN" "$AMQP_PORT"; pg_stop "$RUN"' EXIT

# the events: 10,000 aggregates, about 630-byte envelopes like operations.md's floor
emit_sql() {	# tenant count
	cat <<SQL
BEGIN;
SET LOCAL ventros.tenant = '$1';
SELECT count(ventros.emit('benchob.happened', 'benchob',
                          ('00000000-0000-4000-8000-' || lpad((g % 10000)::text, 12, '0'))::uuid,
                          jsonb_build_object('n', g, 'pad', repeat('x', 200))))
  FROM generate_series(1, $2) g;
COMMIT;
SELECT extract(epoch FROM clock_timestamp());
SQL
}
# One psql session for all checks, a statement per check, each in its own
# transaction: one long-running statement (a DO loop) would hold back the
# xmin horizon, so the index entries of rows published meanwhile could not
# be pruned and every claim would walk all of them again; and a new psql per
# check (a process, a connection, a backend every 20 ms) costs the machine
# tens of percent of a core that the floor's side does not pay.
wait_published() {
	local ans
	coproc WAITER { psql -X -q -tA 2>&1; }
	while :; do
		echo "SELECT NOT EXISTS (SELECT 1 FROM ventros.outbox_queue WHERE NOT dead);" >&"${WAITER[1]}"
		read -r ans <&"${WAITER[0]}"
		[ "$ans" = t ] && break
		[ "$ans" = f ] || die "wait_published: $ans"
		read -r -t 0.02 -u "${WAITER[0]}" ans || true	# a 20 ms sleep without a process
	done
	eval "exec ${WAITER[1]}>&-"
	wait "$WAITER_PID" 2>/dev/null || true
}
emit_sql benchwarm 2000 | psql -X -q -tA >/dev/null
wait_published
psql -X -tA -c "SELECT ventros.envelope(o)::text FROM ventros.outbox o WHERE tenant_id = 'benchwarm' LIMIT 1" | tr -d '\n' >"$RUN/body.json"
log "message body: $(wc -c <"$RUN/body.json") bytes"

# CPU seconds a process has used so far (user + system), for the per-message
# costs printed at the end: unlike rates, they hardly depend on what else
# runs on the machine
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
rabbit_pid=$(cat "$RUN/rabbit/rabbit.pid")
worker_pid=$(psql -X -tA -c "SELECT worker_pid FROM ventros.outbox_status")
floor_cpu=() floor_broker_cpu=() ventros_cpu=() ventros_broker_cpu=()

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
floor_rates=()
ventros_rates=()
for round in $(seq "$ROUNDS"); do
	r0=$(cpu_s "$rabbit_pid")
	read -r _ _ rate cpu < <("$RUN/outbox_floor" 127.0.0.1 "$AMQP_PORT" ventros ventros "$EVENTS" "$BATCH" "$RUN/body.json")
	floor_rates+=("$rate")
	floor_cpu+=("$(echo "$cpu * 1000000 / $EVENTS" | bc -l)")
	floor_broker_cpu+=("$(echo "($(cpu_s "$rabbit_pid") - $r0) * 1000000 / $EVENTS" | bc -l)")
	t_commit=$(emit_sql "bench$round" "$EVENTS" | psql -X -q -tA | tail -1)
	r0=$(cpu_s "$rabbit_pid") w0=$(cpu_s "$worker_pid")
	wait_published
	ventros_cpu+=("$(echo "($(cpu_s "$worker_pid") - $w0) * 1000000 / $EVENTS" | bc -l)")
	ventros_broker_cpu+=("$(echo "($(cpu_s "$rabbit_pid") - $r0) * 1000000 / $EVENTS" | bc -l)")
	ventros_rates+=("$(psql -X -tA -c "SELECT round($EVENTS / (extract(epoch FROM max(published_at)) - $t_commit))
	                                    FROM ventros.outbox WHERE tenant_id = 'bench$round'")")
	psql -X -q -c "DELETE FROM ventros.outbox" -c "VACUUM ANALYZE ventros.outbox, ventros.outbox_queue"
	log "round $round of $ROUNDS: floor ${floor_rates[-1]} msg/s, ventros ${ventros_rates[-1]} events/s"
done
# (d) the maximum sustainable end-to-end rate: pgbench commits one event per
# transaction as fast as it can for LAT_SECONDS (BENCH_CLIENTS sessions)
# while the publisher publishes them; the rate is the events committed over
# the time from the first commit to the last confirmed publish recorded, so
# a publisher that falls behind lowers it.  Everything runs at once on the
# same cores, as in production: producers, PostgreSQL, the publisher, the
# broker and the queue's consumer.
cat >"$RUN/produce.sql" <<'SQL'
SELECT ventros.emit('benchob.happened', 'benchob', gen_random_uuid(),
                    jsonb_build_object('sent_us', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint, 'pad', repeat('x', 180)));
SQL
t_first=$(psql -X -tA -c "SELECT extract(epoch FROM clock_timestamp())")
PGOPTIONS="-c ventros.tenant=benchmax" "$PG_BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$LAT_SECONDS" -f "$RUN/produce.sql" >"$RUN/pgbench-max.txt" 2>&1
wait_published
read -r max_events max_commit_rate max_rate < <(psql -X -tA -F ' ' -c "
	SELECT count(*), round(count(*) / (extract(epoch FROM max(occurred_at)) - $t_first)),
	       round(count(*) / (extract(epoch FROM max(published_at)) - $t_first))
	  FROM ventros.outbox WHERE tenant_id = 'benchmax'")
log "end-to-end: $max_events events, committed at $max_commit_rate/s, committed and published at $max_rate/s"
psql -X -q -c "DELETE FROM ventros.outbox" -c "VACUUM ANALYZE ventros.outbox, ventros.outbox_queue"
kill $drain
(cd "$VENTROS_ROOT" && queue delete)
a=$(median "${floor_rates[@]}")
b=$(median "${ventros_rates[@]}")

# (c) commit-to-consumer latency, one event per transaction, at a given rate
latency() {	# rate -> "rate achieved got produced p50 p99 max"
	local rate=$1 expect=$(( $1 * LAT_SECONDS )) consumer produced got p50 p99 pmax t0
	rm -f "$RUN/consumer.ready"
	(cd "$VENTROS_ROOT" && node "$HERE/outbox_consumer.mjs" "$AMQP_URL" "$expect" "$RUN/consumer.ready" $(( (LAT_SECONDS + 30) * 1000 )) >"$RUN/latency.txt") &
	consumer=$!
	until [ -e "$RUN/consumer.ready" ]; do sleep 0.1; done
	t0=$(psql -X -tA -c "SELECT extract(epoch FROM clock_timestamp())")
	PGOPTIONS="-c ventros.tenant=benchlat" "$PG_BIN/pgbench" -n -c 4 -j 2 -R "$rate" -T "$LAT_SECONDS" -f "$RUN/produce.sql" >"$RUN/pgbench.txt" 2>&1
	produced=$(psql -X -tA -c "SELECT count(*) FROM ventros.outbox WHERE tenant_id = 'benchlat' AND occurred_at >= to_timestamp($t0)")
	wait "$consumer" || true
	read -r got p50 p99 pmax <"$RUN/latency.txt"
	echo "$rate $(( produced / LAT_SECONDS )) $got $produced $p50 $p99 $pmax"
}
# at half of (d), the rate the whole pipeline sustains (BENCH_LAT_RATE: another)
read -r rate achieved got produced p50 p99 pmax < <(latency "${BENCH_LAT_RATE:-$(( max_rate / 2 ))}")
# and, as before, at half of (b)'s publish-only rate (BENCH_OLD_LATENCY=0 skips it)
if [ "${BENCH_OLD_LATENCY:-1}" = 1 ]; then
	read -r orate oachieved ogot oproduced op50 op99 opmax < <(latency $(( ${b%.*} / 2 )))
fi

echo "bench/outbox: $EVENTS events per round, confirm batches of $BATCH, $ROUNDS rounds, medians; body $(wc -c <"$RUN/body.json") bytes"
printf 'outbox_publish  floor %8.0f msg/s  ventros %8.0f events/s  ratio b/a %.2f\n' "$a" "$b" "$(echo "$b / $a" | bc -l)"
printf 'outbox_cpu      per message, us: floor client %.1f + broker %.1f; ventros publisher %.1f + broker %.1f\n' \
	"$(median "${floor_cpu[@]}")" "$(median "${floor_broker_cpu[@]}")" "$(median "${ventros_cpu[@]}")" "$(median "${ventros_broker_cpu[@]}")"
printf 'outbox_e2e_max  %d events/s committed and published (%d clients committing at most %d/s)\n' "$max_rate" "$CLIENTS" "$max_commit_rate"
printf 'outbox_latency  at %d events/s offered, half of e2e max (%d achieved, %d received of %d)  p50 %s ms  p99 %s ms  max %s ms\n' \
	"$rate" "$achieved" "$got" "$produced" "$p50" "$p99" "$pmax"
if [ "${BENCH_OLD_LATENCY:-1}" = 1 ]; then
	printf 'outbox_latency  at %d events/s offered, half of (b) (%d achieved, %d received of %d)  p50 %s ms  p99 %s ms  max %s ms\n' \
		"$orate" "$oachieved" "$ogot" "$oproduced" "$op50" "$op99" "$opmax"
fi
printf 'outbox_hot      %s of %s updates of ventros.outbox were HOT (no index entry)\n' \
	$(psql -X -tA -F ' ' -c "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE relid = 'ventros.outbox'::regclass")
echo "targets: b/a >= 0.70; p50 <= 5 ms; p99 <= 25 ms (at half of the e2e max)"
