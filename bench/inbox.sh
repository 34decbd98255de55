#!/usr/bin/env bash
# bench/inbox: ventros.accept_webhook (verify, store, process into contact,
# session and message) against the floor: a plain INSERT of the same raw
# body into an unindexed table, one transaction per webhook, on a throwaway
# server.  Workloads (pgbench, BENCH_CLIENTS clients, BENCH_SECONDS each):
#   floor       INSERT of the body
#   new         a new WAHA text message, signed (HMAC-SHA512), from one of
#               1,000 known senders: the whole inbound path
#   duplicate   the same delivery again: verify, dedupe, answer
# Prints TPS medians of BENCH_ROUNDS rounds and the ratios to the floor.
# No assertion: the machine may be shared and noisy; read the ratios.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-inbox
PORT=${VENTROS_BENCH_PG_PORT:-54359}
ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-1}

ensure_packages
build_install
trap 'pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
CHANNEL=$(psql -X -tA -v ON_ERROR_STOP=1 <<'SQL'
SELECT ventros.create_tenant('bench', 'Bench') \gset
SET ventros.tenant = 'bench';
CREATE TABLE public.floor_inbox (body bytea, received_at timestamptz DEFAULT now());
SELECT id FROM ventros.create_channel('WAHA', 'waha', config => '{"session": "bench", "webhook_secret": "s3cret"}');
SQL
)
CHANNEL=$(echo "$CHANNEL" | tail -1)
# Warm-up: the 1,000 senders exist (contacts and sessions).
psql -X -q -c "SELECT count(*) FROM generate_series(1, 1000) n, LATERAL ventros.accept_webhook('waha', '$CHANNEL', '{}',
    convert_to(format('{\"event\":\"message.any\",\"session\":\"bench\",\"payload\":{\"id\":\"warm_%s\",\"from\":\"55119%s@c.us\",\"fromMe\":false,\"body\":\"oi\",\"_data\":{\"Info\":{\"PushName\":\"Sender %s\"}}}}', n, 10000000 + n, n), 'UTF8'))" \
    -c "UPDATE ventros.channels SET config = '{\"session\": \"bench\", \"webhook_secret\": \"s3cret\"}', version = version WHERE id = '$CHANNEL'" >/dev/null
PGBENCH=$PG_BIN/pgbench

BODY="convert_to(format('{\"event\":\"message.any\",\"session\":\"bench\",\"payload\":{\"id\":\"m_%s_%s\",\"from\":\"55119%s@c.us\",\"fromMe\":false,\"timestamp\":1759425214,\"body\":\"Olá! Queria mais informações, por favor.\",\"_data\":{\"Info\":{\"PushName\":\"Sender\"}}}}', :client_id, :n, 10000000 + :s), 'UTF8')"
declare -A script
script[floor]="\\set n random(1, 2000000000)
\\set s random(1, 1000)
INSERT INTO public.floor_inbox (body) VALUES ($BODY);"
script[new]="\\set n random(1, 2000000000)
\\set s random(1, 1000)
SELECT http_status FROM ventros.accept_webhook('waha', '$CHANNEL',
    jsonb_build_object('x-webhook-hmac', encode(ventros.webhook_hmac($BODY, 's3cret', 'sha512'), 'hex')), $BODY);"
script[duplicate]="\\set n 1
\\set s 1
SELECT http_status FROM ventros.accept_webhook('waha', '$CHANNEL',
    jsonb_build_object('x-webhook-hmac', encode(ventros.webhook_hmac($BODY, 's3cret', 'sha512'), 'hex')), $BODY);"

tps() {
	printf '%s\n' "${script[$1]}" >"$RUN/$1.sql"
	"$PGBENCH" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$RUN/$1.sql" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
declare -A results
for round in $(seq "$ROUNDS"); do
	for w in floor new duplicate; do
		results[$w]="${results[$w]:-} $(tps "$w")"
	done
done
floor=$(median ${results[floor]})
for w in floor new duplicate; do
	m=$(median ${results[$w]})
	printf 'inbox %-10s %9.1f tps  ratio to floor %.3f  (clients %s, rounds:%s)\n' "$w" "$m" "$(echo "$m / $floor" | bc -l)" "$CLIENTS" "${results[$w]}"
done
psql -X -tA -c "SELECT 'messages stored: ' || count(*) FROM ventros.messages WHERE tenant_id = 'bench'" \
            -c "SELECT 'inbox rows not processed: ' || count(*) FROM ventros.inbox WHERE tenant_id = 'bench' AND status <> 'processed'"
