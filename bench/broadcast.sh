#!/usr/bin/env bash
# bench/broadcast: a broadcast to $CONTACTS contacts (default 100,000) on a
# WAHA channel, against the floor, on a throwaway server.
#   ventros  ventros.execute_broadcast (one execution per contact of the list,
#            opted-out ones skipped) then ventros.send_broadcast_batch, $BATCH
#            sends per transaction as the tick sends a rate limit's worth
#            (one transaction for all would update the channel's and the
#            report's counter rows $CONTACTS times in one transaction: a
#            version chain that grows with every send); each batch is one
#            set (send_broadcast_executions -> journey_sends ->
#            send_messages: consent, sessions, messages, counters, events and
#            the provider requests (http_requests, message.send), one
#            statement per table for the batch);
#   floor    a plain INSERT ... SELECT of the same rows (the executions, the
#            messages and the provider requests Ventros wrote, read back)
#            into copies of those tables (same columns, CHECKs and indexes;
#            no triggers, RLS or foreign keys), in the same run.
# Prints both times and the ratio (target <= 3), and the CPU time of each
# side's backend (user + system, from its /proc/self/stat as it ends), which
# a loaded machine disturbs far less than wall time.  The contacts and the list
# are generated with triggers off (setup, not timed).  BENCH_PROFILE=1 also
# prints the functions with the most self time.  No assertion: the
# machine may be shared and noisy; read the ratio.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-broadcast
PORT=${VENTROS_BENCH_PG_PORT:-54369}
CONTACTS=${CONTACTS:-100000}
BATCH=${BATCH:-1000}

build_install
trap 'pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
# The last statement of a timed session: its backend's CPU seconds so far (user + system).
HZ=$(getconf CLK_TCK)
CPU_SQL="SELECT 'cpu ' || round((split_part(f, ' ', 14)::numeric + split_part(f, ' ', 15)::numeric) / $HZ, 2) FROM pg_read_file('/proc/self/stat') f;"

P >/dev/null <<SQL
SELECT ventros.create_tenant('bench', 'Bench');
SET ventros.tenant = 'bench';
SELECT ventros.create_channel('WAHA', 'waha', config => '{"base_url": "http://127.0.0.1:9", "session": "bench", "api_key": "k"}');
SELECT ventros.create_contact_list('Everyone', is_static => true);
SET session_replication_role = replica;   -- setup only: no triggers, no FK checks
INSERT INTO ventros.contacts (tenant_id, project_id, name, phone)
SELECT 'bench', ventros.default_project(), 'Contact ' || g, '+55119' || lpad(g::text, 8, '0')
FROM generate_series(1, $CONTACTS) g;
INSERT INTO ventros.contact_list_members (tenant_id, contact_list_id, contact_id)
SELECT 'bench', l.id, c.id FROM ventros.contact_lists l, ventros.contacts c WHERE l.tenant_id = 'bench' AND c.tenant_id = 'bench';
UPDATE ventros.contact_lists SET contact_count = $CONTACTS WHERE tenant_id = 'bench';
RESET session_replication_role;
SELECT ventros.create_broadcast('Promo', (SELECT id FROM ventros.contact_lists WHERE tenant_id = 'bench'),
                                (SELECT id FROM ventros.channels WHERE tenant_id = 'bench'),
                                '{"type": "text", "content": "Promo: 20% off this week"}');
CREATE SCHEMA raw;
CREATE TABLE raw.broadcast_executions (LIKE ventros.broadcast_executions INCLUDING ALL);
CREATE TABLE raw.messages (LIKE ventros.messages INCLUDING ALL);
CREATE TABLE raw.http_requests (LIKE ventros.http_requests INCLUDING ALL);
SQL
P -c "VACUUM ANALYZE" >/dev/null
B=$(P -tAc "SELECT id FROM ventros.broadcasts WHERE tenant_id = 'bench'")

log "ventros: a broadcast to $CONTACTS contacts"
t0=$(now)
{
	[ -z "${BENCH_PROFILE:-}" ] || echo "SET track_functions = 'all';"
	echo "SET ventros.tenant = 'bench';"
	echo "SELECT 1 FROM ventros.execute_broadcast('$B');"
	for _ in $(seq $(((CONTACTS + BATCH - 1) / BATCH))); do echo "SELECT ventros.send_broadcast_batch('$B', $BATCH);"; done
	echo "\\o $RUN/cpu-ventros"
	echo "$CPU_SQL"
} | P -tA >/dev/null
t1=$(now)
VEN=$(echo "$t1 - $t0" | bc -l)
VENCPU=$(sed -n 's/^cpu //p' "$RUN/cpu-ventros")
WROTE=$(P -tAc "SELECT (SELECT count(*) FROM ventros.broadcast_executions WHERE tenant_id = 'bench') || ' executions, '
             || (SELECT count(*) FROM ventros.messages WHERE tenant_id = 'bench' AND source = 'broadcast') || ' messages, '
             || (SELECT count(*) FROM ventros.http_requests WHERE tenant_id = 'bench' AND purpose = 'message.send') || ' provider requests, '
             || (SELECT count(*) FROM ventros.sessions WHERE tenant_id = 'bench') || ' sessions, '
             || (SELECT count(*) FROM ventros.outbox WHERE tenant_id = 'bench') || ' events; '
             || (SELECT ventros.broadcast_stats('$B')::text FROM (SELECT set_config('ventros.tenant', 'bench', false)) s)")
log "ventros wrote $WROTE"
if [ -n "${BENCH_PROFILE:-}" ]; then   # where the time goes: self time per function
	sleep 1   # the statistics collector's flush
	P -c "SELECT funcname, calls, round(self_time::numeric, 1) AS self_ms, round(total_time::numeric, 1) AS total_ms
	      FROM pg_stat_user_functions ORDER BY self_time DESC LIMIT 25"
fi

log "floor: INSERT ... SELECT of the same rows"
P -c "CHECKPOINT" >/dev/null
t0=$(now)
P -tA >/dev/null <<SQL
BEGIN;
INSERT INTO raw.broadcast_executions SELECT * FROM ventros.broadcast_executions WHERE tenant_id = 'bench';
INSERT INTO raw.messages SELECT * FROM ventros.messages WHERE tenant_id = 'bench' AND source = 'broadcast';
INSERT INTO raw.http_requests SELECT * FROM ventros.http_requests WHERE tenant_id = 'bench' AND purpose = 'message.send';
COMMIT;
\o $RUN/cpu-floor
$CPU_SQL
SQL
t1=$(now)
FLOOR=$(echo "$t1 - $t0" | bc -l)
FLOORCPU=$(sed -n 's/^cpu //p' "$RUN/cpu-floor")
log "floor wrote $(P -tAc "SELECT (SELECT count(*) FROM raw.broadcast_executions) || ' executions, ' || (SELECT count(*) FROM raw.messages) || ' messages, ' || (SELECT count(*) FROM raw.http_requests) || ' provider requests'")"
printf 'broadcast %s contacts (%s sends a transaction): floor %.2f s  ventros %.2f s  ratio %.1f (target <= 3; same run)\n' \
	"$CONTACTS" "$BATCH" "$FLOOR" "$VEN" "$(echo "$VEN / $FLOOR" | bc -l)"
printf 'CPU time (each side'\''s backend): floor %.2f s  ventros %.2f s  ratio %.1f; load: %s\n' \
	"$FLOORCPU" "$VENCPU" "$(echo "$VENCPU / $FLOORCPU" | bc -l)" "$(uptime)"
