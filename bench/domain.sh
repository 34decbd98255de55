#!/usr/bin/env bash
# bench/domain.sh: the CRM domain's cost, measured on a throwaway server.
#
# 1. Mixed inbound workload.  Each transaction is one inbound message from one
#    of $SENDERS senders (new senders early, returning ones later):
#      ventros  SELECT ventros.receive_message(...): contact upsert by identity,
#               session start or continue, message insert, session, contact
#               and channel counters, report counters, events in the outbox;
#      raw      the same rows written with plain SQL in one statement into
#               copies of the tables (same indexes and CHECKs, no triggers, no
#               RLS, no foreign keys): contact lookup (and its interaction
#               time to the minute), session upsert with counters, message,
#               channel counters, two outbox rows.
#    Every sender's first message is written before the timed rounds, on
#    both sides, so the rounds measure returning senders (a live inbox).
#    Both run in the same pgbench runs (weights 1:1, so they see the same
#    load), $ROUNDS rounds of $SECONDS_PER_RUN s; the line printed has the
#    median latencies and the median ratio (target <= 1.5).
# 2. Report over a tenant with $MESSAGES messages (default 1,000,000) over 90
#    days, 20 channels and 50 agents: ventros.crm_report for 30 days by agent,
#    median of 20 runs (target < 50 ms).  The messages are generated with one
#    INSERT ... SELECT with triggers off, and crm_daily_stats is filled with
#    the same grouping its triggers apply, in one statement.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

RUN=${VENTROS_BENCH_RUN_DIR:-$VENTROS_ROOT/.run/bench}
PORT=${VENTROS_BENCH_PG_PORT:-54379}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-1}
SENDERS=${SENDERS:-1000}
MESSAGES=${MESSAGES:-1000000}

build_install
pg_stop "$RUN"
rm -rf "$RUN"
pg_start "$RUN" "$PORT"
trap 'pg_stop "$RUN"' EXIT
export PGHOST=$RUN/sock PGPORT=$PORT PGUSER=postgres
psql -X -q -d postgres -c "CREATE DATABASE bench" >/dev/null
P() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
P -c "CREATE EXTENSION ventros CASCADE" >/dev/null

P >/dev/null <<'SQL'
SELECT ventros.create_tenant('bench', 'Bench');
SET ventros.tenant = 'bench';
SELECT ventros.create_channel('Bench WA', 'whatsapp');
-- raw copies: same columns, defaults, checks and indexes; no triggers, RLS or FKs
CREATE SCHEMA raw;
CREATE TABLE raw.contacts (LIKE ventros.contacts INCLUDING ALL);
CREATE TABLE raw.sessions (LIKE ventros.sessions INCLUDING ALL);
CREATE TABLE raw.messages (LIKE ventros.messages INCLUDING ALL);
CREATE TABLE raw.channels (LIKE ventros.channels INCLUDING ALL);
CREATE TABLE raw.outbox (LIKE ventros.outbox INCLUDING ALL);
CREATE SEQUENCE raw.seq CACHE 1;
INSERT INTO raw.channels SELECT * FROM ventros.channels;
SQL
CH=$(P -tAc "SET ventros.tenant = 'bench'; SELECT id FROM ventros.channels")
PROJ=$(P -tAc "SET ventros.tenant = 'bench'; SELECT ventros.default_project()")

cat >"$RUN/ventros.sql" <<SQL
\set n random(1, $SENDERS)
BEGIN;
SET LOCAL ventros.tenant = 'bench';
SELECT 1 FROM ventros.receive_message('$CH', '+55119' || lpad(:n::text, 8, '0'), 'hello from ' || :n, 'text', gen_random_uuid()::text);
COMMIT;
SQL
cat >"$RUN/raw.sql" <<SQL
\set n random(1, $SENDERS)
BEGIN;
WITH c AS (
    SELECT id FROM raw.contacts
    WHERE tenant_id = 'bench' AND project_id = '$PROJ' AND phone = '+55119' || lpad(:n::text, 8, '0')
      AND deleted_at IS NULL),
u AS (  -- interaction times to the minute, as receive_message keeps them
    UPDATE raw.contacts SET last_interaction_at = now()
    WHERE id IN (SELECT id FROM c) AND last_interaction_at < now() - interval '1 minute'),
s AS (
    INSERT INTO raw.sessions (tenant_id, project_id, contact_id, channel_id, message_count, messages_from_contact)
    SELECT 'bench', '$PROJ', c.id, '$CH', 1, 1 FROM c
    ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status = 'active' AND deleted_at IS NULL
    DO UPDATE SET message_count = raw.sessions.message_count + 1, messages_from_contact = raw.sessions.messages_from_contact + 1,
                  last_activity_at = now(), expires_at = now() + interval '30 minutes'
    RETURNING id, contact_id),
m AS (
    INSERT INTO raw.messages (tenant_id, project_id, channel_id, session_id, contact_id, text, channel_message_id, status)
    SELECT 'bench', '$PROJ', '$CH', s.id, s.contact_id, 'hello from ' || :n, gen_random_uuid()::text, 'delivered' FROM s
    RETURNING *),
ch AS (
    UPDATE raw.channels SET messages_received = messages_received + 1, last_message_at = now() WHERE id = '$CH')
INSERT INTO raw.outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id, payload, occurred_at)
SELECT 'bench', nextval('raw.seq'), gen_random_uuid(), e.t, e.a, e.id, e.p, now()
FROM m, LATERAL (VALUES ('message.created', 'message', m.id, to_jsonb(m)),
                        ('session.message_recorded', 'session', m.session_id,
                         jsonb_build_object('message_id', m.id, 'from_me', false, 'at', now()))) e(t, a, id, p);
COMMIT;
SQL

# Both scripts run in the same pgbench run, picked at random per transaction
# (weights 1:1), so they share the machine's load moment by moment; the ratio
# is of their average latencies.
mixed() {
	pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$1" -f "$RUN/raw.sql@1" -f "$RUN/ventros.sql@1" bench 2>&1 |
		awk '/^SQL script/ {script = ($0 ~ /raw.sql/) ? "raw" : "ventros"}
		     /latency average/ && script {print script, $5}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Warm-up, not timed: every sender's first message (contact, identity,
# session) on both sides, so that the rounds measure returning senders
# whatever the machine's speed.
P >/dev/null <<SQL
SET ventros.tenant = 'bench';
SELECT count(ventros.receive_message('$CH', '+55119' || lpad(n::text, 8, '0'), 'hello', 'text', 'warm-' || n))
FROM generate_series(1, $SENDERS) n;
INSERT INTO raw.contacts (tenant_id, project_id, name, phone, first_interaction_at, last_interaction_at)
SELECT 'bench', '$PROJ', '+55119' || lpad(n::text, 8, '0'), '+55119' || lpad(n::text, 8, '0'), now(), now()
FROM generate_series(1, $SENDERS) n;
INSERT INTO raw.sessions (tenant_id, project_id, contact_id, channel_id, message_count, messages_from_contact)
SELECT 'bench', '$PROJ', id, '$CH', 1, 1 FROM raw.contacts;
SQL
P -c "VACUUM ANALYZE" >/dev/null
mixed 5 >/dev/null
raw_lat=() ventros_lat=() ratios=()
for r in $(seq "$ROUNDS"); do
	out=$(mixed "$SECONDS_PER_RUN")
	rl=$(echo "$out" | awk '$1 == "raw" {print $2}')
	vl=$(echo "$out" | awk '$1 == "ventros" {print $2}')
	raw_lat+=("$rl") ventros_lat+=("$vl") ratios+=("$(echo "$vl / $rl" | bc -l)")
	log "round $r: raw $rl ms, ventros $vl ms, ratio $(printf '%.2f' "${ratios[-1]}")"
done
RAW=$(printf '%s\n' "${raw_lat[@]}" | median)
VEN=$(printf '%s\n' "${ventros_lat[@]}" | median)
RATIO=$(printf '%s\n' "${ratios[@]}" | median)
CHECK=$(P -tAc "SELECT (SELECT count(*) FROM ventros.messages WHERE tenant_id = 'bench') || ' messages, ' || (SELECT count(*) FROM ventros.contacts WHERE tenant_id = 'bench') || ' contacts, ' || (SELECT count(*) FROM ventros.sessions WHERE tenant_id = 'bench') || ' sessions, ' || (SELECT count(*) FROM ventros.outbox WHERE tenant_id = 'bench') || ' events'")
log "ventros wrote $CHECK"
log "raw wrote $(P -tAc "SELECT (SELECT count(*) FROM raw.messages) || ' messages, ' || (SELECT count(*) FROM raw.sessions) || ' sessions, ' || (SELECT count(*) FROM raw.outbox) || ' events'")"
printf 'domain_inbound raw %.3f ms  ventros %.3f ms per message  ratio %.2f (median of %s rounds of %s s, %s clients, same run)\n' \
	"$RAW" "$VEN" "$RATIO" "$ROUNDS" "$SECONDS_PER_RUN" "$CLIENTS"

# ---- report over a tenant with $MESSAGES messages ----------------------------
log "generating $MESSAGES messages for tenant report"
P >/dev/null <<SQL
SELECT ventros.create_tenant('report', 'Report');
SET ventros.tenant = 'report';
SELECT ventros.create_channel('Channel ' || g, 'whatsapp') FROM generate_series(1, 20) g;
SELECT ventros.create_agent('Agent ' || g) FROM generate_series(1, 50) g;
SELECT ventros.create_contact('Report contact', phone => '+5521900000001');
SET session_replication_role = replica;   -- generation only: no triggers, no FK checks
CREATE TEMP TABLE ch AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM ventros.channels WHERE tenant_id = 'report';
CREATE TEMP TABLE ag AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM ventros.agents WHERE tenant_id = 'report' AND type = 'human';
INSERT INTO ventros.messages (tenant_id, "timestamp", project_id, channel_id, contact_id, from_me, text, status, agent_id, source)
SELECT 'report', now() - (g % 90) * interval '1 day' - (g % 86400) * interval '1 second', ventros.default_project(),
       (SELECT id FROM ch WHERE n = 1 + (g / 90) % 20), (SELECT id FROM ventros.contacts WHERE tenant_id = 'report'),
       g % 3 = 0, 'message ' || g, 'delivered',
       CASE WHEN g % 3 = 0 THEN (SELECT id FROM ag WHERE n = 1 + (g / 1800) % 50) END,
       'manual'
FROM generate_series(1, $MESSAGES) g;
-- what the statement trigger would have written, in one pass
INSERT INTO ventros.crm_daily_stats (tenant_id, day, channel_id, agent_id, team_id, slot, messages_in, messages_out)
SELECT tenant_id, ("timestamp" AT TIME ZONE 'UTC')::date, channel_id,
       coalesce(agent_id, '00000000-0000-0000-0000-000000000000'), '00000000-0000-0000-0000-000000000000'::uuid,
       (abs(hashtext(id::text)) % 4)::smallint,
       count(*) FILTER (WHERE NOT from_me), count(*) FILTER (WHERE from_me)
FROM ventros.messages WHERE tenant_id = 'report' GROUP BY 1, 2, 3, 4, 5, 6;
RESET session_replication_role;
SELECT ventros.compact_crm_daily_stats();   -- the daily job: past days' slots folded
VACUUM ANALYZE ventros.messages;   -- as autovacuum would: also merges the GIN pending list
VACUUM ANALYZE ventros.crm_daily_stats;
SQL
COUNT=$(P -tAc "SELECT count(*) FROM ventros.messages WHERE tenant_id = 'report'")
REP_LINE=$(P -tA 2>&1 <<'SQL' | sed -n 's/.*NOTICE: *//p'
SET ventros.tenant = 'report';
SET ROLE ventros_viewer;
DO $$
DECLARE
    t timestamptz;
    q text;
    times float8[];
    n bigint;
BEGIN
    FOREACH q IN ARRAY ARRAY[
        'SELECT count(*) FROM ventros.crm_report(current_date - 30, current_date, ''agent'')',
        'SELECT count(*) FROM ventros.crm_report(current_date - 89, current_date, ''day_channel'')',
        'SELECT count(*) FROM ventros.contact_timeline((SELECT id FROM ventros.contacts LIMIT 1), page_size => 50)',
        'SELECT count(*) FROM ventros.search_messages(''4242'', page_size => 50)'] LOOP
        times := '{}';
        FOR i IN 1..11 LOOP
            t := clock_timestamp();
            EXECUTE q INTO n;
            IF i > 1 THEN   -- the first run warms the cache
                times := times || extract(epoch FROM clock_timestamp() - t) * 1000;
            END IF;
        END LOOP;
        RAISE NOTICE '% rows=% median_ms=%', q, n,
            round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(times) x)::numeric, 2);
    END LOOP;
END
$$;
SQL
)
printf 'domain_report tenant with %s messages (target: report median < 50 ms)\n' "$COUNT"
printf '  %s\n' "$REP_LINE"
