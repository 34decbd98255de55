#!/usr/bin/env bash
# bench/ingest: inbound webhooks from POST to committed message row, against
# the floor, in one run on a throwaway server.
#   ventros: bench/ingest_load.c POSTs BENCH_MESSAGES signed WAHA message.any
#            webhooks (X-Webhook-Hmac sha512, ~900 bytes, BENCH_CONTACTS
#            senders) to POST /webhooks/waha/<channel> over BENCH_CLIENTS
#            keep-alive connections, twice: to a front whose sessions process
#            deferred (the default: each answer follows the commit of the
#            inbox row, the inbox processor makes contact, session and message
#            right after) and to one processing inline (the answer follows the
#            message's commit).  The rate runs from the first POST to the
#            commit of the last message; the run checks that exactly
#            BENCH_MESSAGES messages were made.  p50/p99: the answers.
#   floor:   the same payloads INSERTed as JSON into a plain table with a
#            unique key (INSERT ... VALUES ($1, $2::jsonb), one per
#            transaction) over libpq, same concurrency.
#   sql:     the same ingestion without HTTP: pgbench calls accept_webhook
#            with the same payload shape (signed in SQL), to show what the
#            front itself costs (HTTP / sql) apart from the SQL's processing.
#   rows:    the floor of issue 19: the same rows written by plain SQL, one
#            statement per message, from the same clients, senders on one
#            channel (pgbench): contact found by identity (its interaction
#            time to the minute), session upsert with its counters, the
#            message with its provider id and raw payload, its two events;
#            into copies of the tables (same indexes and CHECKs, no
#            triggers, RLS nor foreign keys), like bench/domain.sh's floor.
# Rounds (BENCH_ROUNDS, 3) interleave the five; figures are medians.  Prints
# the rates, the ratios against the rows floor (targets: deferred >= 0.7,
# inline and accept_webhook >= 0.8), the CPU time per message of PostgreSQL
# and the front together (from /proc: the load disturbs it far less than
# rates) and the webhook answer latency (p50, p99).  No assertion: read the
# figures.  The server runs BENCH_INBOX_WORKERS inbox processors (default:
# as many as clients).  ventros-http runs with a pool of
# BENCH_CLIENTS connections.  Ports: VENTROS_BENCH_PG_PORT (54379),
# VENTROS_BENCH_HTTP_PORT (54389 and the next).
# Growth (BENCH_GROWTH, e.g. "10000 100000 1000000"): instead of the rounds
# above, the tenant's history is grown to each number of messages in turn
# (messages of one other contact over 90 days on the same channel, written
# by INSERT ... SELECT with triggers off, and as many rows in the floor's
# copy of the table), and at each size accept_webhook over libpq and the
# rows floor are measured (BENCH_ROUNDS rounds of BENCH_MESSAGES): CPU per
# message, and its ratio to the floor's, which should stay flat.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-ingest
PORT=${VENTROS_BENCH_PG_PORT:-54379}
HTTP_PORT=${VENTROS_BENCH_HTTP_PORT:-54389}
CLIENTS=${BENCH_CLIENTS:-8}
MESSAGES=${BENCH_MESSAGES:-2000}
CONTACTS=${BENCH_CONTACTS:-500}
ROUNDS=${BENCH_ROUNDS:-3}

ensure_packages
build_install
HTTP_PID=
trap '[ -n "$HTTP_PID" ] && kill $HTTP_PID 2>/dev/null; [ -n "${BENCH_KEEP:-}" ] || pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
# As many inbox processors as clients (BENCH_INBOX_WORKERS; the default of
# ventros.inbox_workers is 2): they take one channel's items in parallel, and
# on a shared machine each runnable process gets its share of the CPUs.
psql -X -q -c "ALTER SYSTEM SET ventros.inbox_workers = ${BENCH_INBOX_WORKERS:-$CLIENTS}"
pg_stop "$RUN"
pg_start "$RUN" "$PORT"
cc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -I"$("$PG_BIN/pg_config" --includedir)" \
	-o "$RUN/ingest_load" "$VENTROS_ROOT/bench/ingest_load.c" -L"$("$PG_BIN/pg_config" --libdir)" -lpq -lcrypto
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
CHANNEL=$(psql -X -q -tA -v secret="$SECRET" <<'SQL'
SELECT ventros.create_tenant('bench', 'Bench Inc.') \gset
BEGIN;
SET LOCAL ventros.tenant = 'bench';
SELECT (ventros.create_channel('Bench WAHA', 'waha',
        config => jsonb_build_object('base_url', 'http://127.0.0.1:9', 'session', 'bench', 'api_key', 'k',
                                     'webhook_secret', :'secret'))).id;
COMMIT;
SQL
)
psql -X -q <<'SQL'
CREATE ROLE bench_http LOGIN IN ROLE ventros_authenticator PASSWORD 'bench-http-password';
-- the floor: the raw JSON under a unique key, nothing else
CREATE TABLE bench_floor (dedupe_key text PRIMARY KEY, body jsonb NOT NULL);
SQL

# message n of pgbench's run @RUN@: the loader's payload shape, as text (signed
# in SQL by accept.sql)
PAYLOAD="format('{\"id\":\"evt_@RUN@%s\",\"timestamp\":%s101,\"event\":\"message.any\",\"session\":\"bench\",\"me\":{\"id\":\"5511988887777@c.us\",\"pushName\":\"Acme Sales\"},\"payload\":{\"id\":\"false_55119%s@c.us_@RUN@%s\",\"timestamp\":%s,\"from\":\"55119%s@c.us\",\"fromMe\":false,\"source\":\"app\",\"to\":\"5511988887777@c.us\",\"participant\":null,\"body\":\"Olá! Queria mais informações, por favor. Pedido %s.\",\"hasMedia\":false,\"media\":null,\"ack\":2,\"ackName\":\"DEVICE\",\"replyTo\":null,\"_data\":{\"Info\":{\"Chat\":\"55119%s@s.whatsapp.net\",\"Sender\":\"55119%s@s.whatsapp.net\",\"IsGroup\":false,\"ID\":\"@RUN@%s\",\"Type\":\"text\",\"PushName\":\"Cliente %s\"},\"Message\":{\"conversation\":\"Olá! Queria mais informações, por favor. Pedido %s.\"}}},\"engine\":\"GOWS\",\"environment\":{\"version\":\"2025.9.5\",\"engine\":\"GOWS\",\"tier\":\"PLUS\",\"browser\":null}}',
             n, 1759425214 + n, w, n, 1759425214 + n, w, n, w, w, n, n % $CONTACTS, n)"
NUMBERED="(SELECT n, lpad((n % $CONTACTS)::text, 8, '0') AS w FROM (SELECT nextval('bench_seq') AS n) s) s"
cat >"$RUN/accept.sql" <<SQL
SELECT a.http_status
FROM (SELECT convert_to($PAYLOAD, 'UTF8') AS body
      FROM $NUMBERED) b,
     LATERAL ventros.accept_webhook('waha', '$CHANNEL',
         jsonb_build_object('x-webhook-hmac', encode(hmac(b.body, '$SECRET', 'sha512'), 'hex'),
                            'x-webhook-hmac-algorithm', 'sha512', 'content-type', 'application/json'), b.body) a
WHERE a.http_status = 200 AND a.response->>'status' = 'accepted';
SQL
psql -X -q -c "CREATE SEQUENCE bench_seq"

# The rows floor: copies of the tables the inbound path writes (same
# columns, defaults, CHECKs and indexes; no triggers, RLS nor foreign keys),
# every sender's contact, identity and open session written beforehand as
# the warm-up does on the Ventros side, then one statement per message.
PROJ=$(psql -X -q -tA -c "SET ventros.tenant = 'bench'" -c "SELECT ventros.default_project()")
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE SCHEMA raw;
CREATE TABLE raw.contacts (LIKE ventros.contacts INCLUDING ALL);
CREATE TABLE raw.contact_identities (LIKE ventros.contact_identities INCLUDING ALL);
CREATE TABLE raw.sessions (LIKE ventros.sessions INCLUDING ALL);
CREATE TABLE raw.messages (LIKE ventros.messages INCLUDING ALL);
CREATE TABLE raw.outbox (LIKE ventros.outbox INCLUDING ALL);
CREATE SEQUENCE raw.seq CACHE 1;
INSERT INTO raw.contacts (tenant_id, project_id, name, phone, first_interaction_at, last_interaction_at)
SELECT 'bench', '$PROJ', 'Cliente ' || n, '+55119' || lpad(n::text, 8, '0'), now(), now()
FROM generate_series(0, $CONTACTS - 1) n;
INSERT INTO raw.contact_identities (tenant_id, contact_id, identity_type, value, channel_id)
SELECT 'bench', c.id, 'whatsapp', substr(c.phone, 2) || '@c.us', '$CHANNEL' FROM raw.contacts c;
INSERT INTO raw.sessions (tenant_id, project_id, contact_id, channel_id, message_count, messages_from_contact)
SELECT 'bench', '$PROJ', id, '$CHANNEL', 1, 1 FROM raw.contacts;
SQL
cat >"$RUN/rows.sql" <<SQL
WITH b AS (SELECT $PAYLOAD::jsonb AS doc FROM $NUMBERED),
c AS (  -- the contact by its WhatsApp identity, its interaction time to the minute
    SELECT i.contact_id AS id, b.doc FROM b
      JOIN raw.contact_identities i
        ON i.tenant_id = 'bench' AND i.identity_type = 'whatsapp'
       AND i.value = b.doc->'payload'->>'from' AND i.deleted_at IS NULL),
u AS (
    UPDATE raw.contacts x SET last_interaction_at = now()
    WHERE x.tenant_id = 'bench' AND x.id IN (SELECT id FROM c) AND x.last_interaction_at < now() - interval '1 minute'),
s AS (
    INSERT INTO raw.sessions (tenant_id, project_id, contact_id, channel_id, message_count, messages_from_contact)
    SELECT 'bench', '$PROJ', c.id, '$CHANNEL', 1, 1 FROM c
    ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status = 'active' AND deleted_at IS NULL
    DO UPDATE SET message_count = raw.sessions.message_count + 1, messages_from_contact = raw.sessions.messages_from_contact + 1,
                  last_activity_at = now(), expires_at = now() + interval '30 minutes'
    RETURNING id, contact_id),
m AS (
    INSERT INTO raw.messages (tenant_id, "timestamp", project_id, channel_id, session_id, contact_id, text,
                              channel_message_id, status, source, metadata)
    SELECT 'bench', to_timestamp((c.doc->'payload'->>'timestamp')::bigint), '$PROJ', '$CHANNEL', s.id, s.contact_id,
           c.doc->'payload'->>'body', c.doc->'payload'->>'id', 'delivered', 'webhook', c.doc->'payload'->'_data'
    FROM s JOIN c ON c.id = s.contact_id
    RETURNING *)
INSERT INTO raw.outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id, payload, occurred_at)
SELECT 'bench', nextval('raw.seq'), gen_random_uuid(), e.t, e.a, e.id, e.p, now()
FROM m, LATERAL (VALUES ('message.created', 'message', m.id, to_jsonb(m)),
                        ('session.message_recorded', 'session', m.session_id,
                         jsonb_build_object('message_id', m.id, 'from_me', false, 'at', now()))) e(t, a, id, p);
SQL

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/jwt_secret"
# Two fronts on one server: deferred processing (the default: the answer
# follows the inbox row's commit, the inbox processor makes the message right
# after) on HTTP_PORT, inline processing (the answer follows the message's
# commit) on HTTP_PORT + 1.
start_front() {	# port, PGOPTIONS
	PGOPTIONS=$2 VENTROS_HTTP_DB="host=$RUN/sock port=$PORT dbname=ventros user=bench_http password=bench-http-password" \
	VENTROS_JWT_SECRET_FILE=$RUN/jwt_secret VENTROS_HTTP_PORT=$1 VENTROS_HTTP_POOL=$CLIENTS \
		"$VENTROS_ROOT/src/http/ventros-http" 2>/dev/null &
	HTTP_PID="$HTTP_PID $!"
	for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && break; sleep 0.1; done
}
start_front "$HTTP_PORT" ""
start_front "$((HTTP_PORT + 1))" "-c ventros.inbox_processing=inline"

messages() { psql -X -tA -c "SELECT count(*) FROM ventros.messages WHERE tenant_id = 'bench' AND channel_id = '$CHANNEL'"; }
# "<msgs/s> <p50> <p99>": the answers' latency, and the rate from the first
# POST to the commit of the last message (for deferred processing: until the
# inbox processor has made every message); dies unless every message was made
run_http() {	# run id, n, port[, rate: messages/s, paced]
	local before after out start end
	before=$(messages)
	start=$(date +%s.%N)
	out=$("$RUN/ingest_load" http 127.0.0.1 "$3" "/webhooks/waha/$CHANNEL" "$SECRET" "$2" "$CLIENTS" "$1" "$CONTACTS" ${4:+"$4"}) \
		|| die "webhook load failed: $out"
	for _ in $(seq 6000); do
		after=$(messages)
		[ $((after - before)) -ge "$2" ] && break
		sleep 0.01
	done
	end=$(date +%s.%N)
	[ $((after - before)) -eq "$2" ] || die "$2 webhooks answered, $((after - before)) messages committed"
	read -r _ p50 p99 _ <<<"$out"
	awk -v n="$2" -v s="$start" -v e="$end" -v p50="$p50" -v p99="$p99" 'BEGIN { printf "%.0f %s %s\n", n / (e - s), p50, p99 }'
}
# the same ingestion without HTTP: accept_webhook called over libpq by
# pgbench (as the superuser, signature computed in SQL), to show what the
# front adds; dies unless every call committed a message
run_sql() {	# run id, n
	local before after dir=$RUN/pgbench-$1 tps
	rm -rf "$dir"; mkdir -p "$dir"
	sed "s/@RUN@/$1/g" "$RUN/accept.sql" >"$dir/accept.sql"
	before=$(messages)
	(cd "$dir" && PGOPTIONS='-c ventros.inbox_processing=inline' "$PG_BIN/pgbench" -n -c "$CLIENTS" -j 2 -t $(($2 / CLIENTS)) -l -f "$dir/accept.sql" ventros >"$dir/out" 2>&1) \
		|| die "pgbench accept_webhook failed: $(tail -3 "$dir/out")"
	after=$(messages)
	[ $((after - before)) -eq $(($2 / CLIENTS * CLIENTS)) ] || die "accept_webhook over libpq: $((after - before)) messages committed"
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out")
	cat "$dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -g | awk -v tps="$tps" '
		{ a[NR] = $1 } END { printf "%.0f %.2f %.2f\n", tps, a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1] }'
}
# the rows floor, by pgbench: "<msgs/s> <p50> <p99>"; dies unless every
# statement wrote its message
run_rows() {	# run id, n
	local before after dir=$RUN/rows-$1 tps
	rm -rf "$dir"; mkdir -p "$dir"
	sed "s/@RUN@/$1/g" "$RUN/rows.sql" >"$dir/rows.sql"
	before=$(psql -X -tA -c "SELECT count(*) FROM raw.messages")
	(cd "$dir" && "$PG_BIN/pgbench" -n -c "$CLIENTS" -j 2 -t $(($2 / CLIENTS)) -l -f "$dir/rows.sql" ventros >"$dir/out" 2>&1) \
		|| die "pgbench rows floor failed: $(tail -3 "$dir/out")"
	after=$(psql -X -tA -c "SELECT count(*) FROM raw.messages")
	[ $((after - before)) -eq $(($2 / CLIENTS * CLIENTS)) ] || die "rows floor: $((after - before)) messages written"
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out")
	cat "$dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -g | awk -v tps="$tps" '
		{ a[NR] = $1 } END { printf "%.0f %.2f %.2f\n", tps, a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1] }'
}
# CPU time (clock ticks) of the server (the postmaster, its children alive
# and those it has reaped) and of the fronts: sampled around each run, it
# gives the CPU per message, which the machine's load disturbs far less
# than rates.  The loader and pgbench are not counted.
cpu_ticks() {
	local pm pids
	pm=$(head -1 "$RUN/pg/postmaster.pid")
	pids="$pm $(cat /proc/"$pm"/task/*/children 2>/dev/null) $HTTP_PID"
	# shellcheck disable=SC2086
	for p in $pids; do cat /proc/"$p"/stat 2>/dev/null; done |
		awk '{ sub(/^.*\) /, ""); t += $12 + $13; if (NR == 1) t += $14 + $15 } END { print t }'
}
cpu_us_per_msg() {	# ticks before, ticks after, messages
	awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", (b - a) * 1e6 / hz / n }'
}
run_floor() {
	local out
	out=$("$RUN/ingest_load" pg "host=$RUN/sock port=$PORT dbname=ventros user=postgres" "$2" "$CLIENTS" "$1" "$CONTACTS") \
		|| die "floor load failed: $out"
	echo "$out"
}

# ---- growth: the cost per message as the tenant's history grows ----------
growth() {
	local size have t0 t1 lo hi cpu_s cpu_w rate_s rate_w r
	run_sql w 496 >/dev/null
	run_rows w 496 >/dev/null
	FILLER=$(psql -X -q -tA -c "SET ventros.tenant = 'bench'" -c "SELECT (ventros.create_contact('History', phone => '+5521900000009')).id")
	echo "bench/ingest growth: $CLIENTS clients, $ROUNDS rounds of $MESSAGES messages from $CONTACTS senders per size, medians, $(nproc) CPUs"
	printf '%-28s %14s %14s %10s %10s %10s\n' "messages in the tenant" "sql CPU us/msg" "floor us/msg" "x floor" "sql msg/s" "floor msg/s"
	for size in $BENCH_GROWTH; do
		have=$(psql -X -tA -c "SELECT count(*) FROM ventros.messages WHERE tenant_id = 'bench'")
		for ((lo = have + 1; lo <= size; lo += 1000000)); do
			hi=$((lo + 999999 < size ? lo + 999999 : size))
			psql -X -q -v ON_ERROR_STOP=1 <<SQL
BEGIN;
SET LOCAL session_replication_role = replica;   -- history only: no triggers, no FK checks
INSERT INTO ventros.messages (tenant_id, "timestamp", project_id, channel_id, contact_id, text, status, source, channel_message_id)
SELECT 'bench', now() - (g % 90) * interval '1 day' - (g % 86400) * interval '1 second', '$PROJ', '$CHANNEL', '$FILLER',
       'history ' || g, 'delivered', 'webhook', 'history-' || g
FROM generate_series($lo, $hi) g;
INSERT INTO raw.messages (tenant_id, "timestamp", project_id, channel_id, contact_id, text, status, source, channel_message_id)
SELECT 'bench', now() - (g % 90) * interval '1 day' - (g % 86400) * interval '1 second', '$PROJ', '$CHANNEL', '$FILLER',
       'history ' || g, 'delivered', 'webhook', 'history-' || g
FROM generate_series($lo, $hi) g;
COMMIT;
SQL
		done
		psql -X -q -c "VACUUM ANALYZE" >/dev/null
		R=()
		for r in $(seq "$ROUNDS"); do
			measure s run_sql "g${size}s$r" "$MESSAGES"
			measure w run_rows "g${size}w$r" "$MESSAGES"
		done
		# shellcheck disable=SC2086
		cpu_s=$(median ${R[s_cpu]}); cpu_w=$(median ${R[w_cpu]}); rate_s=$(median ${R[s_rate]}); rate_w=$(median ${R[w_rate]})
		printf '%-28s %14s %14s %10s %10s %10s\n' "$(psql -X -tA -c "SELECT count(*) FROM ventros.messages WHERE tenant_id = 'bench'")" \
			"$cpu_s" "$cpu_w" "$(ratio "$cpu_s" "$cpu_w")" "$rate_s" "$rate_w"
	done
	echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
}
declare -A R
measure() {	# key, runner and its arguments
	local key=$1 t0 t1 a b c
	shift
	t0=$(cpu_ticks)
	read -r a b c _ < <("$@")
	t1=$(cpu_ticks)
	R[${key}_rate]+="$a "; R[${key}_p50]+="$b "; R[${key}_p99]+="$c "
	R[${key}_cpu]+="$(cpu_us_per_msg "$t0" "$t1" "$MESSAGES") "
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
if [ -n "${BENCH_GROWTH:-}" ]; then
	growth
	exit 0
fi

log "warming up"
run_http w 500 "$HTTP_PORT" >/dev/null
run_http wi 500 "$((HTTP_PORT + 1))" >/dev/null
run_floor w 500 >/dev/null
run_sql w 496 >/dev/null
run_rows w 496 >/dev/null
psql -X -q -c "VACUUM ANALYZE" >/dev/null
for round in $(seq "$ROUNDS"); do
	measure h run_http "r$round" "$MESSAGES" "$HTTP_PORT"
	measure i run_http "i$round" "$MESSAGES" "$((HTTP_PORT + 1))"
	measure s run_sql "s$round" "$MESSAGES"
	measure w run_rows "w$round" "$MESSAGES"
	measure f run_floor "r$round" "$MESSAGES"
	log "round $round of $ROUNDS done"
done
for k in "${!R[@]}"; do
	# shellcheck disable=SC2086
	printf -v "$k" '%s' "$(median ${R[$k]})"
done
# the provider-facing answer at half the sustainable deferred rate, paced
# (BENCH_PACED_MESSAGES, 600): issue 19's p99 <= 20 ms
half=$(awk -v r="$h_rate" 'BEGIN { printf "%.0f", r / 2 }')
read -r _ half_p50 half_p99 _ < <(run_http paced "${BENCH_PACED_MESSAGES:-600}" "$HTTP_PORT" "$half")
echo "bench/ingest: $CLIENTS clients, $(psql -X -tA -c "SHOW ventros.inbox_workers") inbox processors, $ROUNDS rounds of $MESSAGES messages from $CONTACTS senders on one channel, medians, $(nproc) CPUs (loader, ventros-http and PostgreSQL share them; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-52s %10s %9s %9s %12s\n' "" "msgs/s" "p50 ms" "p99 ms" "CPU us/msg"
printf '%-52s %10s %9s %9s %12s\n' "POST /webhooks/waha -> message, deferred (default)" "$h_rate" "$h_p50" "$h_p99" "$h_cpu"
printf '%-52s %10s %9s %9s %12s\n' "POST /webhooks/waha -> message, inline" "$i_rate" "$i_p50" "$i_p99" "$i_cpu"
printf '%-52s %10s %9s %9s %12s\n' "accept_webhook over libpq, inline (pgbench)" "$s_rate" "$s_p50" "$s_p99" "$s_cpu"
printf '%-52s %10s %9s %9s %12s\n' "the same rows by plain SQL (floor, pgbench)" "$w_rate" "$w_p50" "$w_p99" "$w_cpu"
printf '%-52s %10s %9s %9s %12s\n' "INSERT raw JSON, unique key (libpq)" "$f_rate" "$f_p50" "$f_p99" "$f_cpu"
echo "ingest: msgs/s ratio to the rows floor: deferred $(ratio "$h_rate" "$w_rate") (target >= 0.70), inline $(ratio "$i_rate" "$w_rate") (>= 0.80), accept_webhook $(ratio "$s_rate" "$w_rate") (>= 0.80); webhook answer p99 deferred $h_p99 ms, inline $i_p99 ms"
echo "provider-facing answer at half the sustainable deferred rate ($half msgs/s, paced): p50 $half_p50 ms, p99 $half_p99 ms (target p99 <= 20 ms)"
echo "cpu: per message deferred $(ratio "$h_cpu" "$w_cpu"), inline $(ratio "$i_cpu" "$w_cpu"), accept_webhook $(ratio "$s_cpu" "$w_cpu") x the rows floor's"
echo "front: HTTP inline / accept_webhook over libpq $(ratio "$i_rate" "$s_rate") (what ventros-http keeps of the SQL's rate)"
