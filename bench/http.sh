#!/usr/bin/env bash
# bench/http: ventros-http against the floor, in one run on a throwaway server.
#   read:  GET /contacts?limit=20&order=created_at.desc   (wrk)
#          vs  SELECT ... ORDER BY created_at DESC LIMIT 20 (pgbench)
#          and, as a reading aid, the JSON statement ventros-http sends (pgbench -M prepared)
#   write: POST /contacts {"name": ...}                     (wrk)
#          vs  INSERT INTO ventros.contacts ...              (pgbench)
# Same concurrency on both sides (BENCH_CLIENTS, default 8).  The floor runs
# as a login bound to the tenant (so row-level security applies as it does
# behind the front), over libpq's simple protocol, one statement per
# transaction.  ventros-http runs as scripts/up runs it: a session of its own
# (as the postmaster has: with the kernel's autogroups each session gets its
# own share of the CPUs), its access log going to a file, and a pool of
# BENCH_CLIENTS connections.
# Prints requests/s, p50 and p99 (medians of BENCH_ROUNDS interleaved rounds,
# default 3 of BENCH_SECONDS=5) for both sides and the ratios; targets
# (issue 19) are >= 0.9 x the floor's requests/s and p99 <= 1.5 x the
# floor's + 1 ms.  Beside them, the CPU time per request (from /proc, which
# other jobs on the machine disturb far less than rates): ventros-http's own
# and its pooled backends' against the floor's backends' (the clients, wrk
# and pgbench, are counted on neither side).  No assertion: read the figures.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=$VENTROS_ROOT/.run/bench-http
PORT=${VENTROS_BENCH_PG_PORT:-54359}
HTTP_PORT=${VENTROS_BENCH_HTTP_PORT:-54369}
CLIENTS=${BENCH_CLIENTS:-8}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
ROWS=${BENCH_ROWS:-10000}

ensure_packages
build_install
HTTP_PID=
trap '[ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null; [ -n "${BENCH_KEEP:-}" ] || pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
psql -X -q -v rows="$ROWS" <<'SQL'
SELECT ventros.create_tenant('bench', 'Bench Inc.');
BEGIN;
SET LOCAL ventros.tenant = 'bench';
INSERT INTO ventros.contacts (project_id, name, email)
SELECT ventros.default_project(), 'Contact ' || i, 'c' || i || '@bench.example' FROM generate_series(1, :rows) i;
COMMIT;
SELECT ventros.bind_login('bench_floor', 'bench', 'ventros_agent', 'bench-floor-password');
CREATE ROLE bench_http LOGIN IN ROLE ventros_authenticator PASSWORD 'bench-http-password';
VACUUM ANALYZE;
SQL
PROJECT=$(psql -X -tA -c "SELECT id FROM ventros.projects WHERE tenant_id = 'bench'")
# The read is an index scan on both sides (contacts_by_created), so the
# front's own cost shows.

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/jwt_secret"
VENTROS_HTTP_DB="host=$RUN/sock port=$PORT dbname=ventros user=bench_http password=bench-http-password" \
VENTROS_JWT_SECRET_FILE=$RUN/jwt_secret VENTROS_HTTP_PORT=$HTTP_PORT VENTROS_HTTP_POOL=$CLIENTS \
	setsid "$VENTROS_ROOT/src/http/ventros-http" 2>"$RUN/http.log" </dev/null &
HTTP_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$("$VENTROS_ROOT/scripts/http-token" "$RUN/jwt_secret" ventros_agent bench 3600 bench-user)
URL=http://127.0.0.1:$HTTP_PORT

cat >"$RUN/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"project_id": "$PROJECT", "name": "Bench contact"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat >"$RUN/read.sql" <<'SQL'
SELECT * FROM ventros.contacts ORDER BY created_at DESC LIMIT 20;
SQL
# Not the floor, a reading aid: the statement ventros-http sends for the GET
# (the page as one JSON document, built by PostgreSQL), run by pgbench
# prepared, as ventros-http prepares it (no planning per request).  Between
# it and ventros-http's backends is the rest of a request in PostgreSQL (the
# setup statement, the commit); ventros-http's own cost is beside them.
cat >"$RUN/json.sql" <<'SQL'
SELECT coalesce(pg_catalog.json_agg(_r)::text, '[]'), pg_catalog.count(*), NULL::bigint FROM (SELECT _t.* FROM "api"."contacts" _t WHERE TRUE ORDER BY _t."created_at" DESC LIMIT 20) _r;
SQL
cat >"$RUN/insert.sql" <<SQL
INSERT INTO ventros.contacts (project_id, name) VALUES ('$PROJECT', 'Bench contact');
SQL

# wrk: "rps p50_ms p99_ms"
run_wrk() {
	local out
	out=$(wrk -t2 -c"$CLIENTS" -d"${SECONDS_PER_RUN}s" --latency "$@")
	echo "$out" | awk '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		/^Requests\/sec:/ { rps = $2 }
		/^ +50%/ { p50 = ms($2) }
		/^ +99%/ { p99 = ms($2) }
		/Non-2xx/ { bad = $NF }
		/ requests in / { n = $1 }
		END { printf "%.0f %.2f %.2f %s %d\n", rps, p50, p99, bad + 0, n }'
}
# CPU time per request, from /proc: clock ticks of pids (user + system), of
# the postmaster's reaped children (the floor's backends, once pgbench has
# disconnected), and microseconds per request
TICK=$(getconf CLK_TCK)
ticks() { local p s=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }
reaped() { awk '{print $16 + $17}' "/proc/$(head -1 "$RUN/pg/postmaster.pid")/stat"; }
floor_gone() {
	for _ in $(seq 50); do
		[ "$(psql -X -tA -c "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = 'bench_floor'")" = 0 ] && break
		sleep 0.1
	done
	sleep 0.2 # the postmaster reaps them after they left pg_stat_activity
}
us_per() { awk -v t="$1" -v n="$2" -v hz="$TICK" 'BEGIN { printf "%.0f", (n > 0) ? t * 1e6 / hz / n : 0 }'; }
# wrk against ventros-http: "rps p50_ms p99_ms non2xx front_us backends_us"
run_http() {
	local backends h0 b0 out
	# shellcheck disable=SC2207
	backends=($(psql -X -tA -c "SELECT pid FROM pg_catalog.pg_stat_activity WHERE usename = 'bench_http'"))
	h0=$(ticks "$HTTP_PID"); b0=$(ticks "${backends[@]}")
	out=$(run_wrk "$@")
	# shellcheck disable=SC2086
	set -- $out
	echo "$1 $2 $3 $4 $(us_per $(($(ticks "$HTTP_PID") - h0)) "$5") $(us_per $(($(ticks "${backends[@]}") - b0)) "$5")"
}
# pgbench as the bound login: "tps p50_ms p99_ms backends_us"
run_pgbench() {
	local dir=$RUN/pgbench-$1 mode=${2:-simple} c0 n
	rm -rf "$dir"; mkdir -p "$dir"
	c0=$(reaped)
	(cd "$dir" && PGHOST=127.0.0.1 PGUSER=bench_floor PGPASSWORD=bench-floor-password \
		"$PG_BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -M "$mode" -l -f "$RUN/$1.sql" ventros >"$dir/out" 2>&1)
	floor_gone
	local tps
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out")
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/out")
	cat "$dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -g | awk -v tps="$tps" -v us="$(us_per $(($(reaped) - c0)) "$n")" '
		{ a[NR] = $1 } END { printf "%.0f %.2f %.2f %s\n", tps, a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1], us }'
}

# sanity: the answers are what we measure
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL/contacts?limit=20&order=created_at.desc")" = 200 ] || die "GET failed"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" -d "{\"project_id\":\"$PROJECT\",\"name\":\"x\"}" "$URL/contacts")" = 201 ] || die "POST failed"

log "warming up"
run_wrk -H "Authorization: Bearer $TOKEN" "$URL/contacts?limit=20&order=created_at.desc" >/dev/null
# Rounds interleave the four runs, so that noise from the machine falls on
# both sides; each figure is the median of its rounds.
declare -A R
# Reads first (the table keeps its size), then writes.
for round in $(seq "$ROUNDS"); do
	read -r a b c d e f < <(run_http -H "Authorization: Bearer $TOKEN" "$URL/contacts?limit=20&order=created_at.desc")
	R[g_rps]+="$a "; R[g_p50]+="$b "; R[g_p99]+="$c "; R[g_bad]+="$d "; R[g_fcpu]+="$e "; R[g_bcpu]+="$f "
	read -r a b c d < <(run_pgbench read)
	R[f_rps]+="$a "; R[f_p50]+="$b "; R[f_p99]+="$c "; R[f_cpu]+="$d "
	read -r a b c d < <(run_pgbench json prepared)
	R[j_rps]+="$a "; R[j_p50]+="$b "; R[j_p99]+="$c "; R[j_cpu]+="$d "
	log "read round $round of $ROUNDS done"
done
for round in $(seq "$ROUNDS"); do
	read -r a b c d e f < <(run_http -s "$RUN/post.lua" "$URL/contacts")
	R[p_rps]+="$a "; R[p_p50]+="$b "; R[p_p99]+="$c "; R[p_bad]+="$d "; R[p_fcpu]+="$e "; R[p_bcpu]+="$f "
	read -r a b c d < <(run_pgbench insert)
	R[i_rps]+="$a "; R[i_p50]+="$b "; R[i_p99]+="$c "; R[i_cpu]+="$d "
	log "write round $round of $ROUNDS done"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for k in "${!R[@]}"; do
	# shellcheck disable=SC2086
	printf -v "$k" '%s' "$(median ${R[$k]})"
done
sum() { printf '%s\n' "$@" | awk '{s += $1} END {print s + 0}'; }
# shellcheck disable=SC2086
g_bad=$(sum ${R[g_bad]}); p_bad=$(sum ${R[p_bad]})

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
# p99 target: 1.5 x the floor's + 1 ms
p99_max() { awk -v f="$1" 'BEGIN { printf "%.2f", 1.5 * f + 1 }'; }
echo "bench/http: $CLIENTS clients, $ROUNDS rounds of ${SECONDS_PER_RUN}s, medians, $ROWS contacts, $(nproc) CPUs (wrk, ventros-http and PostgreSQL share them; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-38s %10s %9s %9s %18s\n' "" "req/s" "p50 ms" "p99 ms" "CPU us/request"
printf '%-38s %10s %9s %9s %18s\n' "GET /contacts?limit=20 (ventros-http)" "$g_rps" "$g_p50" "$g_p99" "$g_fcpu + $g_bcpu"
printf '%-38s %10s %9s %9s %18s\n' "SELECT ... LIMIT 20 (pgbench floor)" "$f_rps" "$f_p50" "$f_p99" "$f_cpu"
printf '%-38s %10s %9s %9s %18s\n' "its statement, prepared (pgbench)" "$j_rps" "$j_p50" "$j_p99" "$j_cpu"
printf '%-38s %10s %9s %9s %18s\n' "POST /contacts (ventros-http)" "$p_rps" "$p_p50" "$p_p99" "$p_fcpu + $p_bcpu"
printf '%-38s %10s %9s %9s %18s\n' "INSERT (pgbench floor)" "$i_rps" "$i_p50" "$i_p99" "$i_cpu"
echo "(CPU: ventros-http's own + its backends', against the floor's backends')"
echo "read:  req/s ratio $(ratio "$g_rps" "$f_rps") (target >= 0.90), p99 $g_p99 ms (target <= $(p99_max "$f_p99")), CPU ratio $(ratio "$f_cpu" "$(sum "$g_fcpu" "$g_bcpu")"), non-2xx $g_bad"
echo "write: req/s ratio $(ratio "$p_rps" "$i_rps") (target >= 0.90), p99 $p_p99 ms (target <= $(p99_max "$i_p99")), CPU ratio $(ratio "$i_cpu" "$(sum "$p_fcpu" "$p_bcpu")"), non-2xx $p_bad"
