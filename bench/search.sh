#!/usr/bin/env bash
# bench/search.sh: what search costs (sql/82_search.sql, docs/ai.md "Search"),
# on a throwaway server.
#
# 1. Write cost on the inbound hot path.  Two databases of one cluster: "after"
#    as installed (language trigger, language-aware GIN, trigram GIN on the
#    text), "before" with them dropped and the one 'simple' GIN index of 0.1.0
#    put back.  ventros.receive_message from returning senders (a ~70
#    character text), alternating rounds of $SECONDS_PER_RUN s on each, and
#    the median latencies and their ratio; a third database, "notrgm", has
#    everything but the trigram index on message text.
# 2. Query times over a tenant with $MESSAGES messages (default 1,000,000)
#    in Portuguese, Spanish and English (60/20/20) and $CONTACTS contacts,
#    generated with one INSERT ... SELECT each (triggers off), indexes built
#    after.  The floor: the same words as a plain to_tsvector('simple') @@
#    match over a plain table (id, text) with its GIN index, ranked with
#    ts_rank_cd, top 20.  Medians of $RUNS runs each:
#      rare word (10 hits), 0.1 % (1,000 hits), 1 % (10,000 hits), a typo of
#      the rare word (no exact hit: the trigram index), a contact by part of
#      a name.
# SKIP_WRITE=1 or SKIP_QUERY=1 runs one part only.
# No assertion: read the figures beside the machine's load (printed).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

RUN=${VENTROS_BENCH_RUN_DIR:-$VENTROS_ROOT/.run/bench-search}
PORT=${VENTROS_BENCH_PG_PORT:-54389}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
SENDERS=${SENDERS:-1000}
MESSAGES=${MESSAGES:-1000000}
CONTACTS=${CONTACTS:-100000}
RUNS=${RUNS:-9}

build_install
trap 'pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
psql -X -q -d postgres -c "CREATE DATABASE before" -c "ALTER SYSTEM SET maintenance_work_mem = '256MB'" \
	-c "SELECT pg_reload_conf()" >/dev/null
psql -X -q -d before -c "SET client_min_messages = warning" -c "CREATE EXTENSION ventros CASCADE"
psql -X -q -d before -v ON_ERROR_STOP=1 <<'SQL'
DROP TRIGGER messages_search_language ON ventros.messages;
DROP INDEX ventros.messages_search, ventros.messages_search_trgm;
CREATE INDEX messages_text_search ON ventros.messages USING gin (to_tsvector('simple'::regconfig, coalesce(text, '')))
    WITH (fastupdate = on);
SQL
# "notrgm": as installed but without the trigram index on message text
psql -X -q -d postgres -c "CREATE DATABASE notrgm" >/dev/null
psql -X -q -d notrgm -c "SET client_min_messages = warning" -c "CREATE EXTENSION ventros CASCADE" \
	-c "DROP INDEX ventros.messages_search_trgm"

# ---- 1. write cost ----------------------------------------------------------
[ "${SKIP_WRITE:-0}" = 1 ] || for db in before notrgm ventros; do
	psql -X -q -d "$db" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT ventros.create_tenant('bench', 'Bench');
SET ventros.tenant = 'bench';
SELECT ventros.create_channel('Bench WA', 'whatsapp');
SQL
	ch=$(psql -X -tA -d "$db" -c "SET ventros.tenant = 'bench'" -c "SELECT id FROM ventros.channels" | tail -1)
	cat >"$RUN/inbound_$db.sql" <<SQL
\\set n random(1, $SENDERS)
BEGIN;
SET LOCAL ventros.tenant = 'bench';
SELECT 1 FROM ventros.receive_message('$ch', '+55119' || lpad(:n::text, 8, '0'),
    'Olá, gostaria de saber o status do meu pedido número ' || :n || ', obrigado!', 'text', gen_random_uuid()::text);
COMMIT;
SQL
	# every sender's first message, untimed: the rounds measure returning senders
	psql -X -q -d "$db" -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET ventros.tenant = 'bench';
SELECT count(ventros.receive_message('$ch', '+55119' || lpad(n::text, 8, '0'), 'primeira mensagem', 'text', gen_random_uuid()::text))
FROM generate_series(1, $SENDERS) n;
SQL
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
if [ "${SKIP_WRITE:-0}" != 1 ]; then
lat() { "$PG_BIN/pgbench" -n -c 1 -T "$SECONDS_PER_RUN" -f "$RUN/inbound_$1.sql" "$1" 2>&1 | awk '/latency average/ {print $4}'; }
before_lat=() notrgm_lat=() after_lat=()
for ((r = 1; r <= ROUNDS; r++)); do
	before_lat+=("$(lat before)")
	notrgm_lat+=("$(lat notrgm)")
	after_lat+=("$(lat ventros)")
done
B=$(printf '%s\n' "${before_lat[@]}" | median)
N=$(printf '%s\n' "${notrgm_lat[@]}" | median)
A=$(printf '%s\n' "${after_lat[@]}" | median)
printf 'search_write receive_message before %s ms  without the text trigram index %s ms (ratio %.2f)  after %s ms  ratio %.2f (median of %s rounds; load %s)\n' \
	"$B" "$N" "$(echo "$N / $B" | bc -l)" "$A" "$(echo "$A / $B" | bc -l)" "$ROUNDS" "$(cut -d' ' -f1-3 /proc/loadavg)"
fi
[ "${SKIP_QUERY:-0}" = 1 ] && exit 0

# ---- 2. query times at $MESSAGES messages ----------------------------------
psql -X -q -v ON_ERROR_STOP=1 -v messages="$MESSAGES" -v contacts="$CONTACTS" >/dev/null <<'SQL'
SELECT ventros.create_tenant('big', 'Big');
SET ventros.tenant = 'big';
SELECT ventros.create_channel('Big WA', 'whatsapp');
SET session_replication_role = replica;     -- generated rows: no engine, no events
SET maintenance_work_mem = '256MB';
CREATE SCHEMA bench;
-- 5,000 words of 2 to 4 syllables, 50,000 sentences of 3 to 12 of them
-- (Zipf-like: low word numbers far more often), a message is two sentences.
CREATE TABLE bench.words AS
SELECT i, (SELECT string_agg((ARRAY['ba','ce','di','fo','gu','la','me','ni','po','ru','sa','te','vi','xo','ca','de','ma','no',
                                    'pa','ra'])[1 + floor(random() * 20)::int + 0 * g], '') FROM generate_series(1, 2 + i % 3) g WHERE i > 0) AS w
FROM generate_series(1, 5000) i;
CREATE TABLE bench.sentences AS
WITH a AS (SELECT array_agg(w ORDER BY i) AS arr FROM bench.words)
SELECT s, (SELECT string_agg(a.arr[floor(power(5000, random()))::int + 0 * g], ' ') FROM generate_series(1, 3 + s % 10) g WHERE s > 0) AS t
FROM generate_series(1, 50000) s, a;
CREATE TABLE bench.contact_names AS
SELECT row_number() OVER (ORDER BY f.first, l.last) - 1 AS k, f.first, l.last
FROM unnest(ARRAY['Maria','José','Ana','João','Antônio','Francisca','Carlos','Paulo','Lucas','Juan','Carmen','Luis','John','Mary',
                  'Robert','Linda']) f(first)
CROSS JOIN unnest(ARRAY['Silva','Santos','Oliveira','Souza','Rodrigues','Ferreira','Alves','Pereira','García','Martínez','López',
                        'Smith','Johnson','Williams','Brown','Jones']) l(last);
DROP INDEX ventros.messages_search, ventros.messages_search_trgm, ventros.contacts_search_trgm;
INSERT INTO ventros.contacts (tenant_id, project_id, name, phone, language)
SELECT 'big', ventros.default_project(), n.first || ' ' || n.last || ' ' || i, '+55' || (11900000000 + i)::text,
       (ARRAY['pt', 'pt', 'pt', 'es', 'en'])[1 + i % 5]
FROM generate_series(1, :contacts) i
JOIN bench.contact_names n ON n.k = i % 256;
CREATE TABLE bench.contact_ids AS SELECT row_number() OVER (ORDER BY id) AS n, id, language FROM ventros.contacts WHERE tenant_id = 'big';
INSERT INTO ventros.messages (tenant_id, "timestamp", project_id, channel_id, contact_id, content_type, text, status, language)
SELECT 'big', now() - (i || ' seconds')::interval, ventros.default_project(), (SELECT id FROM ventros.channels WHERE tenant_id = 'big'),
       c.id, 'text',
       s1.t || ' ' || s2.t || CASE WHEN i % 100000 = 7 THEN ' xilofone' ELSE '' END
                           || CASE WHEN i % 1000 = 3 THEN ' reembolso' ELSE '' END
                           || CASE WHEN i % 100 = 5 THEN ' boletos' ELSE '' END,
       'delivered', c.language
FROM generate_series(1, :messages) i
JOIN bench.contact_ids c ON c.n = 1 + i % :contacts
JOIN bench.sentences s1 ON s1.s = 1 + (i::bigint * 7919) % 50000
JOIN bench.sentences s2 ON s2.s = 1 + (i::bigint * 104729) % 50000;
RESET session_replication_role;
SQL
log "building the search indexes over $MESSAGES messages"
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET maintenance_work_mem = '256MB';
\timing on
CREATE INDEX messages_search ON ventros.messages
    USING gin (to_tsvector(ventros.search_config(language), coalesce(text, ''))) WITH (fastupdate = on);
SELECT format('CREATE INDEX messages_search_trgm ON ventros.messages USING gin (text %I.gin_trgm_ops) WITH (fastupdate = on)',
              extnamespace::regnamespace) FROM pg_extension WHERE extname = 'pg_trgm' \gexec
SELECT format('CREATE INDEX contacts_search_trgm ON ventros.contacts USING gin (ventros.contact_search_text(name, email, phone) %I.gin_trgm_ops)',
              extnamespace::regnamespace) FROM pg_extension WHERE extname = 'pg_trgm' \gexec
-- the floor: a plain table, a plain 'simple' GIN index
CREATE TABLE bench.plain AS SELECT id, text FROM ventros.messages WHERE tenant_id = 'big';
CREATE INDEX plain_text ON bench.plain USING gin (to_tsvector('simple'::regconfig, text));
VACUUM ANALYZE ventros.messages;
VACUUM ANALYZE ventros.contacts;
VACUUM ANALYZE bench.plain;
CREATE FUNCTION bench.median_ms(q text, runs integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    ms numeric[] := '{}';
    n bigint;
BEGIN
    FOR i IN 1 .. runs LOOP
        t := clock_timestamp();
        EXECUTE q INTO n;
        ms := ms || (extract(epoch FROM clock_timestamp() - t) * 1000)::numeric;
    END LOOP;
    RETURN (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY x)::numeric, 1) FROM unnest(ms) x);
END
$$;
SQL
q() {	# label, ventros query, floor query (or -)
	local v f
	v=$(psql -X -tA -c "SET ventros.tenant = 'big'" -c "SELECT bench.median_ms(\$q\$$2\$q\$, $RUNS)" | tail -1)
	if [ "$3" = - ]; then
		printf 'search_query %-34s ventros %8s ms\n' "$1" "$v"
	else
		f=$(psql -X -tA -c "SELECT bench.median_ms(\$q\$$3\$q\$, $RUNS)" | tail -1)
		printf 'search_query %-34s ventros %8s ms  floor %8s ms  ratio %.2f\n' "$1" "$v" "$f" "$(echo "$v / $f" | bc -l)"
	fi
}
floor_q() { echo "SELECT count(*) FROM (SELECT id FROM bench.plain WHERE to_tsvector('simple', text) @@ websearch_to_tsquery('simple', '$1') ORDER BY ts_rank_cd(to_tsvector('simple', text), websearch_to_tsquery('simple', '$1'), 33) DESC, id LIMIT 20) x"; }
hits() { psql -X -tA -c "SELECT count(*) FROM bench.plain WHERE to_tsvector('simple', text) @@ websearch_to_tsquery('simple', '$1')"; }
printf 'search_data %s messages, %s contacts; hits in the floor: xilofone %s, reembolso %s, boletos %s (load %s)\n' \
	"$MESSAGES" "$CONTACTS" "$(hits xilofone)" "$(hits reembolso)" "$(hits boletos)" "$(cut -d' ' -f1-3 /proc/loadavg)"
q "rare word (xilofone)" "SELECT count(*) FROM ventros.search('xilofone', page_size => 20)" "$(floor_q xilofone)"
q "rare word, exact only" "SELECT count(*) FROM ventros.search('xilofone', fuzzy => false, page_size => 20)" "$(floor_q xilofone)"
q "0.1% word (reembolso)" "SELECT count(*) FROM ventros.search('reembolso', page_size => 20)" "$(floor_q reembolso)"
q "1% word, stemmed (boleto)" "SELECT count(*) FROM ventros.search('boleto', page_size => 20)" "$(floor_q boletos)"
q "typo of the rare word (xilofnoe)" "SELECT count(*) FROM ventros.search('xilofnoe', page_size => 20)" -
q "contact by part of a name" "SELECT count(*) FROM ventros.search_contacts('Rodrig', page_size => 20)" -
q "search_messages (newest first)" "SELECT count(*) FROM ventros.search_messages('reembolso', page_size => 20)" "$(floor_q reembolso)"
