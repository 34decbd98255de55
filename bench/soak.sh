#!/usr/bin/env bash
# bench/soak: the standing fault proof at full size (docs/reliability.md), on
# throwaway servers of its own (PostgreSQL and RabbitMQ under .run/bench-soak).
# test/integration/soak.mjs drives it: SOAK_EVENTS (100,000) events from
# writers over SQL, SOAK_COMMANDS (2,000) HTTP commands (PATCH /contacts) and
# SOAK_WEBHOOKS (1,000) WAHA webhooks through ventros-http (on
# VENTROS_BENCH_HTTP_PORT, 3058), SOAK_SENDS (2,000) HTTP sends to a fake
# provider, while the harness kills the broker (kill -9;
# SOAK_BROKER_KILLS, 20), hangs it past the publisher's heartbeat (kill -STOP,
# then -CONT; SOAK_HANGS, 20), terminates a worker (publisher, dispatcher,
# inbox processor in turn; SOAK_WORKER_KILLS, 10), restarts PostgreSQL with
# -m immediate (SOAK_PG_RESTARTS, 5), and cuts and stalls the TCP proxies
# between the workers and the broker and provider (SOAK_PROXY_CUTS, 10;
# SOAK_PROXY_STALLS, 10).  Prints lost (events, HTTP commands answered 200,
# webhooks answered 200, sends: must be 0), duplicates, order violations and
# phantoms (events a crash took back after a consumer had them; must be 0),
# and exits non-zero when something was lost, out of order or taken back.
# Bounded: every wait of the driver has a limit, and the whole run is
# stopped after SOAK_TIMEOUT seconds (7200).
# The short form runs in scripts/test (test/integration/soak_short.test.mjs).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
export VENTROS_RUN_DIR=$VENTROS_ROOT/.run/bench-soak
RUN=$VENTROS_RUN_DIR
PORT=${VENTROS_BENCH_PG_PORT:-54358}
export VENTROS_AMQP_PORT=${VENTROS_BENCH_AMQP_PORT:-56740}
export VENTROS_HTTP_PORT=${VENTROS_BENCH_HTTP_PORT:-3058}

ensure_packages
build_install
[ -d "$VENTROS_ROOT/node_modules" ] || (cd "$VENTROS_ROOT" && npm ci --no-audit --no-fund --silent)
rabbit_stop "$RUN" "$VENTROS_AMQP_PORT" || true
trap 'rabbit_signal "$RUN" CONT 2>/dev/null || true; rabbit_stop "$RUN" "$VENTROS_AMQP_PORT"; pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
rabbit_start "$RUN" "$VENTROS_AMQP_PORT"
export VENTROS_PGURL="postgresql://postgres@/ventros?host=$RUN/sock&port=$PORT"
export VENTROS_AMQP_URL="amqp://ventros:ventros@127.0.0.1:$VENTROS_AMQP_PORT/%2F"

cd "$VENTROS_ROOT"
timeout "${SOAK_TIMEOUT:-7200}" node test/integration/soak.mjs \
	--events "${SOAK_EVENTS:-100000}" --broker-kills "${SOAK_BROKER_KILLS:-20}" --hangs "${SOAK_HANGS:-20}" \
	--worker-kills "${SOAK_WORKER_KILLS:-10}" --pg-restarts "${SOAK_PG_RESTARTS:-5}" \
	--proxy-cuts "${SOAK_PROXY_CUTS:-10}" --proxy-stalls "${SOAK_PROXY_STALLS:-10}" \
	--sends "${SOAK_SENDS:-2000}" --webhooks "${SOAK_WEBHOOKS:-1000}" --commands "${SOAK_COMMANDS:-2000}" --tenant soak
