#!/usr/bin/env bash
# bench/enrich: media enrichment requests per second through the HTTP
# dispatcher against the fake providers (test/integration/fakes/ai.mjs),
# beside the dispatcher's plain request rate (the floor), in one run on a
# throwaway server:
#   floor   $N plain requests (ventros.enqueue_http_request) carrying the
#           same multipart body as a transcription, built beforehand in SQL,
#           with the key in a stored header, to the same fake endpoint, which
#           parses and answers them as it answers the enrichments; no
#           completion handler;
#   enrich  ventros.enrich_message for $N downloaded voice notes (audio of
#           $SIZE bytes in ventros.message_media): per message the route, the
#           tenant's settings and cap, the request built by the provider's
#           function, the key decrypted by the preparer at claim time, the
#           multipart body built by the dispatcher with curl_mime from the
#           stored media, the answer handler (result, cost, message.enriched).
# Both are queued $BATCH a transaction (as messages arrive: the dispatcher
# starts on the first batches while the next are queued), and timed from the
# first transaction to the last request finished.  Prints both rates and the ratio (target >= 0.8),
# and the CPU time per request of the queuing backend and of the dispatcher's
# (from /proc; both sides run at once, so the slower one sets the rate: their
# ratio is the load-resistant figure).  No assertion:
# the machine may be shared and noisy; read the ratio beside the load.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-enrich
PORT=${VENTROS_BENCH_PG_PORT:-54371}
AI_PORT=${VENTROS_BENCH_AI_PORT:-54372}
N=${N:-2000}
SIZE=${SIZE:-8000}
BATCH=${BATCH:-50}
KEY=gsk_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

build_install
node "$VENTROS_ROOT/test/integration/fakes/ai.mjs" --port "$AI_PORT" >"$RUN.ai.log" 2>&1 &
AI_PID=$!
trap 'kill "$AI_PID" 2>/dev/null || true; pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$AI_PORT/__fake/jobs" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "http://127.0.0.1:$AI_PORT/__fake/ai" -d "{\"keys\": {\"groq\": [\"$KEY\"]}}" >/dev/null

P >/dev/null <<SQL
ALTER SYSTEM SET ventros.http_allow_hosts = '127.0.0.1/32';
SELECT pg_reload_conf();
SELECT ventros.create_tenant('bench', 'Bench');
SET ventros.tenant = 'bench';
SELECT ventros.create_channel('WAHA', 'waha', config => '{"base_url": "http://127.0.0.1:9", "session": "bench", "api_key": "k"}');
SELECT ventros.configure_enrichment(enabled => true, auto => false);
SELECT ventros.configure_enrichment_provider('groq', (ventros.create_credential('groq', 'api_key', '$KEY')).id,
                                             base_url => 'http://127.0.0.1:$AI_PORT/openai');
SELECT count(*) FROM generate_series(1, $N) g,
       ventros.receive_message((SELECT id FROM ventros.channels), '55119' || lpad(g::text, 8, '0') || '@c.us', NULL, 'voice',
                               'bench_' || g, media_url => 'http://127.0.0.1:9/a' || g || '.oga', media_mimetype => 'audio/ogg');
-- the media as the download stores it (setup, not timed)
INSERT INTO ventros.message_media (tenant_id, message_id, status, content_type, size, sha256, data, downloaded_at)
SELECT m.tenant_id, m.id, 'downloaded', 'audio/ogg', $SIZE, encode(sha256(d), 'hex'), d, now()
  FROM ventros.messages m, LATERAL (SELECT decode(repeat(md5(m.id::text), $SIZE / 32 + 1), 'hex') AS x) r,
       LATERAL (SELECT substr(r.x || r.x, 1, $SIZE) AS d) b
 WHERE m.tenant_id = 'bench';
-- the floor's requests: the same multipart body, prepared beforehand
CREATE TABLE floor_bodies AS
SELECT m.id, convert_to(E'--vnbench\r\nContent-Disposition: form-data; name="file"; filename="audio.ogg"\r\nContent-Type: audio/ogg\r\n\r\n', 'UTF8')
             || mm.data
             || convert_to(E'\r\n--vnbench\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-large-v3-turbo'
                           || E'\r\n--vnbench\r\nContent-Disposition: form-data; name="response_format"\r\n\r\nverbose_json'
                           || E'\r\n--vnbench\r\nContent-Disposition: form-data; name="language"\r\n\r\npt\r\n--vnbench--\r\n', 'UTF8') AS body
  FROM ventros.messages m JOIN ventros.message_media mm ON mm.tenant_id = m.tenant_id AND mm.message_id = m.id
 WHERE m.tenant_id = 'bench';
SQL
P -c "VACUUM ANALYZE" >/dev/null

wait_done() {	# $1: SQL counting what is finished
	until [ "$(P -tAc "$1")" -ge "$N" ]; do sleep 0.05; done
}
# CPU time (user + system, clock ticks) of a process: the load disturbs it far
# less than rates.  The queuing backend's is read by its own psql (\!) at the
# start and at the end of its stream; the dispatcher's around each phase.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
DISPATCHER=$(P -tAc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ventros http dispatcher'")
queue() {	# stdin: the statements; $1: phase name
	{
		echo "SELECT pg_backend_pid() AS bpid \gset"
		echo "\setenv BPID :bpid"
		echo "\! awk '{print \$14 + \$15}' /proc/\$BPID/stat > $RUN.$1.q0"
		cat
		echo "\! awk '{print \$14 + \$15}' /proc/\$BPID/stat > $RUN.$1.q1"
	} | P -c "SET ventros.tenant = 'bench'" -f - >/dev/null
}
per_request() {	# ms of CPU per request from tick counts: $1 - $2
	echo "($1 - $2) * 1000 / $(getconf CLK_TCK) / $N" | bc -l
}

log "floor: $N plain requests through the dispatcher"
d0=$(cpu "$DISPATCHER")
t0=$(now)
for b in $(seq 0 $(((N - 1) / BATCH))); do
	echo "SELECT count(ventros.enqueue_http_request('http://127.0.0.1:$AI_PORT/openai/v1/audio/transcriptions', 'POST',
	          jsonb_build_object('Content-Type', 'multipart/form-data; boundary=vnbench', 'Authorization', 'Bearer $KEY'),
	          f.body, 'bench.plain', f.id, max_attempts => 1))
	        FROM (SELECT * FROM floor_bodies ORDER BY id OFFSET $((b * BATCH)) LIMIT $BATCH) f;"
done | queue floor
wait_done "SELECT count(*) FROM ventros.http_requests WHERE purpose = 'bench.plain' AND status IN ('succeeded', 'failed', 'dead')"
t1=$(now)
FLOOR_D=$(per_request "$(cpu "$DISPATCHER")" "$d0")
FLOOR_Q=$(per_request "$(cat "$RUN.floor.q1")" "$(cat "$RUN.floor.q0")")
FLOOR=$(echo "$t1 - $t0" | bc -l)
log "floor: $(P -tAc "SELECT string_agg(status || ' ' || response_status || ': ' || n, ', ') FROM (SELECT status, response_status, count(*) n FROM ventros.http_requests WHERE purpose = 'bench.plain' GROUP BY 1, 2) x")"

log "enrich: $N voice notes through the route"
[ -z "${BENCH_PROFILE:-}" ] || P -c "ALTER SYSTEM SET track_functions = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
d0=$(cpu "$DISPATCHER")
t0=$(now)
for b in $(seq 0 $(((N - 1) / BATCH))); do
	echo "SELECT count(ventros.enrich_message(m.id))
	        FROM (SELECT id FROM ventros.messages WHERE tenant_id = 'bench' ORDER BY id OFFSET $((b * BATCH)) LIMIT $BATCH) m;"
done | queue enrich
log "enrich: queued in $(echo "$(now) - $t0" | bc -l) s"
wait_done "SELECT count(*) FROM ventros.message_enrichments WHERE status IN ('completed', 'failed')"
t1=$(now)
ENR_D=$(per_request "$(cpu "$DISPATCHER")" "$d0")
ENR_Q=$(per_request "$(cat "$RUN.enrich.q1")" "$(cat "$RUN.enrich.q0")")
ENR=$(echo "$t1 - $t0" | bc -l)
log "enrich: $(P -tAc "SELECT string_agg(status || ' ' || provider || ': ' || n, ', ') FROM (SELECT status, provider, count(*) n FROM ventros.message_enrichments GROUP BY 1, 2) x")"

if [ -n "${BENCH_PROFILE:-}" ]; then   # where the time goes: self time per function
	sleep 1
	P -c "SELECT funcname, calls, round(self_time::numeric, 1) AS self_ms, round(total_time::numeric, 1) AS total_ms
	      FROM pg_stat_user_functions ORDER BY self_time DESC LIMIT 25"
fi
printf 'CPU per request (ms): floor %.2f queuing + %.2f dispatcher; enrich %.2f queuing + %.2f dispatcher; ratio of the slower sides %.2f\n' \
	"$FLOOR_Q" "$FLOOR_D" "$ENR_Q" "$ENR_D" \
	"$(echo "a = $FLOOR_Q; if ($FLOOR_D > a) a = $FLOOR_D; b = $ENR_Q; if ($ENR_D > b) b = $ENR_D; a / b" | bc -l)"
printf 'enrichment %s voice notes of %s bytes: floor %.0f requests/s  enrich %.0f requests/s  ratio %.2f (target >= 0.8; same run; load %s)\n' \
	"$N" "$SIZE" "$(echo "$N / $FLOOR" | bc -l)" "$(echo "$N / $ENR" | bc -l)" "$(echo "$FLOOR / $ENR" | bc -l)" \
	"$(cut -d' ' -f1-3 /proc/loadavg)"
