#!/usr/bin/env bash
# bench/stream: GET /events/stream with BENCH_SUBSCRIBERS (1,000) concurrent
# Server-Sent Events subscribers spread over two tenants, against its floor,
# in one run on throwaway servers (PostgreSQL, RabbitMQ and ventros-http of
# its own):
#   - producers: pgbench commits one custom event per transaction at
#     BENCH_RATE events/s (200) in all, half for each tenant, for
#     BENCH_SECONDS (10); each event's data carries its commit-time stamp;
#   - the stream: bench/stream_client.mjs holds the subscriptions and
#     measures, for every event every subscriber receives, stamp to receipt
#     (commit -> client), counts deliveries and duplicates;
#   - the floor, at the same time: bench/outbox_consumer.mjs on a queue of
#     its own measures stamp to receipt of the same events straight from
#     RabbitMQ (commit -> consumer: what the outbox itself takes).
# Prints events/s delivered, the p99 of both and their ratio, and whether
# every subscriber received every event of its tenant exactly once.
# No assertion: read the ratio.  Target: p99 <= 2 x the floor's.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-stream
PORT=${VENTROS_BENCH_PG_PORT:-54369}
AMQP_PORT=${VENTROS_BENCH_AMQP_PORT:-56770}
HTTP_PORT=${VENTROS_BENCH_HTTP_PORT:-3460}
SUBS=${BENCH_SUBSCRIBERS:-1000}
RATE=${BENCH_RATE:-200}
SECONDS_=${BENCH_SECONDS:-10}
HERE=$VENTROS_ROOT/bench
TENANTS=benchlat,benchlb

ensure_packages
build_install
ulimit -n 65536 2>/dev/null || ulimit -n 8192
rabbit_stop "$RUN" "$AMQP_PORT" || true
trap '[ -n "${HTTP_PID:-}" ] && kill "$HTTP_PID" 2>/dev/null; rabbit_stop "$RUN" "$AMQP_PORT"; pg_stop "$RUN"' EXIT
VENTROS_AMQP_PORT=$AMQP_PORT bench_pg "$RUN" "$PORT"
rabbit_start "$RUN" "$AMQP_PORT"
AMQP_URL="amqp://ventros:ventros@127.0.0.1:$AMQP_PORT/%2F"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/jwt_secret"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE ROLE bench_http LOGIN IN ROLE ventros_authenticator PASSWORD 'bench-http';
SELECT ventros.create_tenant('benchlat', 'Bench A'), ventros.create_tenant('benchlb', 'Bench B');
SQL
until [ "$(psql -X -tA -c "SELECT worker_connected FROM ventros.outbox_status")" = t ]; do sleep 0.1; done

VENTROS_HTTP_DB="host=$RUN/sock port=$PORT dbname=ventros user=bench_http password=bench-http" \
VENTROS_JWT_SECRET_FILE="$RUN/jwt_secret" VENTROS_HTTP_PORT="$HTTP_PORT" VENTROS_HTTP_AMQP_URL="$AMQP_URL" \
VENTROS_HTTP_MAX_CLIENTS=$((SUBS + 100)) VENTROS_HTTP_PER_IP_LIMIT=0 VENTROS_HTTP_RESERVE=0 VENTROS_HTTP_POOL=4 \
	"$VENTROS_ROOT/src/http/ventros-http" >"$RUN/http.log" 2>&1 &
HTTP_PID=$!
until curl -fsS "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1; do
	kill -0 "$HTTP_PID" || { tail "$RUN/http.log"; die "ventros-http did not start"; }
	sleep 0.1
done
until grep -q 'event stream: consuming' "$RUN/http.log"; do sleep 0.1; done

# the floor stops at 95 % of the events it expects (pgbench -R offers about the rate)
expect=$((RATE * SECONDS_ * 95 / 200))
rm -f "$RUN/subs.ready" "$RUN/floor.ready" "$RUN/done"
(cd "$VENTROS_ROOT" && exec node "$HERE/stream_client.mjs" "http://127.0.0.1:$HTTP_PORT" "$RUN/jwt_secret" "$SUBS" "$TENANTS" \
	"$RUN/subs.ready" "$RUN/done" >"$RUN/stream.txt") &
client=$!
(cd "$VENTROS_ROOT" && node "$HERE/outbox_consumer.mjs" "$AMQP_URL" "$expect" "$RUN/floor.ready" $(((SECONDS_ + 60) * 1000)) >"$RUN/floor.txt") &
floor=$!
until [ -e "$RUN/subs.ready" ] && [ -e "$RUN/floor.ready" ]; do
	kill -0 "$client" || die "the subscribers failed"
	sleep 0.1
done
log "$SUBS subscriptions open; producing $RATE events/s for $SECONDS_ s"

# one custom event per transaction, alternately for each tenant (a stream per client: no shared aggregate)
cat >"$RUN/produce.sql" <<'SQL'
BEGIN;
SELECT set_config('ventros.tenant', CASE WHEN :client_id % 2 = 0 THEN 'benchlat' ELSE 'benchlb' END, true);
SELECT ventros.emit_custom_event('bench_' || :client_id,
       jsonb_build_object('sent_us', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint, 'pad', repeat('x', 180)));
COMMIT;
SQL
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
f0=$(cpu_s "$HTTP_PID") c0=$(cpu_s "$client")
"$PG_BIN/pgbench" -n -c 4 -j 2 -R "$RATE" -T "$SECONDS_" -f "$RUN/produce.sql" >"$RUN/pgbench.txt" 2>&1
touch "$RUN/done"
sleep 2
f1=$(cpu_s "$HTTP_PID") c1=$(cpu_s "$client")
wait "$floor" || true
wait "$client"
read -r -a produced < <(psql -X -tA -F ' ' -c "SELECT count(*) FILTER (WHERE tenant_id = 'benchlat'), count(*) FILTER (WHERE tenant_id = 'benchlb')
                                             FROM ventros.outbox WHERE event_type LIKE 'custom.bench_%'")
read -r subs deliveries dups ended rate p50 p99 pmax range_a range_b <"$RUN/stream.txt"
read -r fgot fp50 fp99 fmax <"$RUN/floor.txt"
want=$(((produced[0] + produced[1]) * SUBS / 2))

echo "bench/stream: $subs subscribers over 2 tenants, $RATE events/s offered for $SECONDS_ s (${produced[0]} + ${produced[1]} events)"
printf 'stream_delivered  %d of %d deliveries expected, %d duplicates, %d cut; per subscriber %s (of %d), %s (of %d)\n' \
	"$deliveries" "$want" "$dups" "$ended" "$range_a" "${produced[0]}" "$range_b" "${produced[1]}"
printf 'stream_rate       %d events/s delivered to clients\n' "$rate"
printf 'stream_latency    commit->client  p50 %s ms  p99 %s ms  max %s ms\n' "$p50" "$p99" "$pmax"
printf 'outbox_latency    commit->consumer (floor, %d events)  p50 %s ms  p99 %s ms  max %s ms\n' "$fgot" "$fp50" "$fp99" "$fmax"
printf 'stream_ratio      p99 client / p99 floor %.2f  (target <= 2)\n' "$(echo "$p99 / $fp99" | bc -l)"
printf 'stream_cpu        seconds of CPU while producing: ventros-http %.1f, the subscribers'"'"' client %.1f\n' \
	"$(echo "$f1 - $f0" | bc -l)" "$(echo "$c1 - $c0" | bc -l)"
echo "uptime: $(uptime)"
