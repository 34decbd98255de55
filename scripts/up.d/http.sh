# shellcheck shell=bash
# Sourced by scripts/up: starts ventros-http on VENTROS_HTTP_PORT in the
# background (pid in $RUN/http.pid, log in $RUN/http.log) as login
# ventros_http (a member of ventros_authenticator that inherits its rights, which
# stop there as the authenticator is NOINHERIT; password in
# $RUN/http_password), with the JWT secret in $RUN/jwt_secret; adds
# VENTROS_HTTP_URL, VENTROS_JWT_SECRET_FILE and VENTROS_DEMO_TOKEN (an admin
# of the demo tenant, valid 30 days) to .run/env.

http_start() {
	local run=$1 pg_port=$2 http_port=$3 password
	[ -s "$run/http_password" ] || { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/http_password"; chmod 600 "$run/http_password"; }
	[ -s "$run/jwt_secret" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/jwt_secret"; chmod 600 "$run/jwt_secret"; }
	password=$(cat "$run/http_password")
	runuser -u postgres -- psql -X -q -h "$run/sock" -p "$pg_port" -U postgres -d ventros -v ON_ERROR_STOP=1 \
		-v pw="$password" >/dev/null <<'SQL'
SELECT format('CREATE ROLE ventros_http LOGIN IN ROLE ventros_authenticator PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ventros_http') \gexec
SELECT format('ALTER ROLE ventros_http INHERIT PASSWORD %L', :'pw') \gexec
SQL
	http_stop "$run"
	VENTROS_HTTP_DB="host=$run/sock port=$pg_port dbname=ventros user=ventros_http password=$password application_name=ventros-http" \
	VENTROS_JWT_SECRET_FILE="$run/jwt_secret" VENTROS_HTTP_PORT="$http_port" \
	VENTROS_HTTP_AMQP_URL="amqp://ventros:ventros@127.0.0.1:${AMQP_PORT:-56720}/%2F" \
		setsid "$VENTROS_ROOT/src/http/ventros-http" >>"$run/http.log" 2>&1 </dev/null &
	echo $! >"$run/http.pid"
	local tries=0
	until curl -fsS "http://127.0.0.1:$http_port/health" >/dev/null 2>&1; do
		tries=$((tries + 1))
		if [ $tries -gt 100 ] || ! kill -0 "$(cat "$run/http.pid")" 2>/dev/null; then
			tail -5 "$run/http.log" >&2
			die "ventros-http did not start"
		fi
		sleep 0.1
	done
}

http_stop() {
	local run=$1 pid
	[ -s "$run/http.pid" ] || return 0
	pid=$(cat "$run/http.pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$run/http.pid"
}

http_start "$RUN" "$PG_PORT" "$HTTP_PORT"
log "ventros-http on port $HTTP_PORT"
ENV_EXTRA+="VENTROS_HTTP_URL='http://127.0.0.1:$HTTP_PORT'
VENTROS_JWT_SECRET_FILE='$RUN/jwt_secret'
VENTROS_DEMO_TOKEN='$("$VENTROS_ROOT/scripts/http-token" "$RUN/jwt_secret" ventros_admin "$DEMO_TENANT" 2592000 demo-admin)'
"
