#!/usr/bin/env bash
# ventros-http with curl: the dialect and the refusals as a shell client sees
# them.  TAP output.  Starts its own ventros-http on VENTROS_HTTP_PORT.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN=${VENTROS_RUN_DIR:?}
PORT=${VENTROS_HTTP_PORT:?}
URL=http://127.0.0.1:$PORT
SECRET=$RUN/http_curl_secret
TENANT=tc$$
n=0
ok() { n=$((n + 1)); if [ "$1" = "$2" ]; then echo "ok $n - $3"; else echo "not ok $n - $3 (got '$1', want '$2')"; fi; }
like() { n=$((n + 1)); if [[ $1 =~ $2 ]]; then echo "ok $n - $3"; else echo "not ok $n - $3 (got '${1:0:200}')"; fi; }

psql -X -q -v ON_ERROR_STOP=1 -v tenant="$TENANT" >/dev/null <<'SQL' || { echo "not ok 1 - setup"; exit 1; }
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ventros_http_test') THEN
    CREATE ROLE ventros_http_test LOGIN IN ROLE ventros_authenticator PASSWORD 'http-test-password';
  END IF;
END $$;
SELECT ventros.create_tenant(:'tenant', 'Curl Inc.');
SQL
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET"
VENTROS_HTTP_DB="host=$RUN/sock port=$PGPORT dbname=ventros user=ventros_http_test password=http-test-password" \
VENTROS_JWT_SECRET_FILE=$SECRET VENTROS_HTTP_PORT=$PORT VENTROS_JWT_AUD= \
	"${VENTROS_HTTP_BIN:-$ROOT/src/http/ventros-http}" 2>"$RUN/http_curl.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fsS "$URL/health" >/dev/null 2>&1 && break; sleep 0.05; done

ADMIN=$("$ROOT/scripts/http-token" "$SECRET" ventros_admin $TENANT 600)
VIEWER=$("$ROOT/scripts/http-token" "$SECRET" ventros_viewer $TENANT 600)
A=(-H "Authorization: Bearer $ADMIN")
V=(-H "Authorization: Bearer $VIEWER")
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

ok "$(code "$URL/health")" 200 "GET /health"
body=$(curl -s -X POST "$URL/contacts?select=name,version" "${A[@]}" -H 'Prefer: return=representation' \
	-d '[{"name":"Curl One","tags":["c"]},{"name":"Curl Two"}]')
ok "$body" '[{"name":"Curl One","version":1}, '$'\n'' {"name":"Curl Two","version":1}]' "POST bulk with representation"
ok "$(curl -s "$URL/contacts?select=name&tags=cs.%7Bc%7D" "${V[@]}")" '[{"name":"Curl One"}]' "GET with cs filter"
ok "$(curl -s -g "$URL/contacts?select=name&or=(name.eq.Curl%20Two,name.eq.Nobody)" "${V[@]}")" '[{"name":"Curl Two"}]' "GET with or="
ok "$(curl -s "$URL/contacts?select=name&order=name.desc&limit=1" "${V[@]}")" '[{"name":"Curl Two"}]' "order and limit"
hdrs=$(curl -s -D - -o /dev/null "$URL/contacts?select=name" "${V[@]}" -H 'Range: 0-0' -H 'Prefer: count=exact')
like "$hdrs" 'HTTP/1.1 206' "Range gives 206"
like "$hdrs" 'Content-Range: 0-0/2' "Content-Range with the exact count"
ok "$(curl -s "$URL/contacts?select=name&name=eq.Curl%20One" "${V[@]}" -H 'Accept: application/vnd.pgrst.object+json')" '{"name":"Curl One"}' "single object"
ok "$(curl -s "$URL/contacts?select=name&order=name" "${V[@]}" -H 'Accept: text/csv')" $'name\nCurl One\nCurl Two' "CSV"
id=$(curl -s "$URL/contacts?select=id&name=eq.Curl%20One" "${V[@]}" -H 'Accept: application/vnd.pgrst.object+json' | sed 's/.*"id":"\([^"]*\)".*/\1/')
ok "$(code -X PATCH "$URL/contacts?id=eq.$id" "${A[@]}" -d '{"name":"Curl Uno","version":1}')" 204 "PATCH with the version read"
stale=$(curl -s -X PATCH "$URL/contacts?id=eq.$id" "${A[@]}" -d '{"name":"Curl Again","version":1}')
like "$stale" '"code":"VN001".*"details":"Current version is 2\."' "stale PATCH: 409 body names the conflict"
ok "$(code -X PATCH "$URL/contacts?id=eq.$id" "${A[@]}" -d '{"name":"Curl Again","version":1}')" 409 "stale PATCH is 409"
ok "$(code -X DELETE "$URL/contacts?id=eq.$id" "${V[@]}")" 403 "viewers cannot delete"
ok "$(code -X DELETE "$URL/contacts?id=eq.$id&version=eq.2" "${A[@]}")" 204 "DELETE with the version"
ok "$(curl -s "$URL/contacts?select=name&id=eq.$id" "${V[@]}")" '[]' "deleted rows are gone"
ok "$(code "$URL/contacts?name=zz.1" "${V[@]}")" 400 "unknown operator"
ok "$(code "$URL/contacts?select=nope" "${V[@]}")" 400 "unknown column"
ok "$(code -X POST "$URL/contacts" "${A[@]}" -H 'Prefer: tx=rollback' -d '{"name":"Curl Rolled"}')" 201 "POST with tx=rollback answers 201"
ok "$(curl -s "$URL/contacts?select=name&name=eq.Curl%20Rolled" "${V[@]}")" '[]' "and leaves nothing"
ok "$(curl -s "$URL/contacts?select=name,...projects(project:name)&name=eq.Curl%20Two" "${V[@]}")" '[{"name":"Curl Two","project":"Curl Inc."}]' "spread embedding"
ok "$(code "$URL/contacts" "${V[@]}" -H 'Accept-Profile: ventros')" 406 "Accept-Profile other than api"
ok "$(code "$URL/nope" "${V[@]}")" 400 "unknown relation"
ok "$(code "$URL/contacts")" 401 "anonymous reads nothing"
EXPIRED=$("$ROOT/scripts/http-token" "$SECRET" ventros_admin $TENANT -10)
ok "$(code "$URL/contacts" -H "Authorization: Bearer $EXPIRED")" 401 "expired token"
ESCALATED=$("$ROOT/scripts/http-token" "$SECRET" postgres $TENANT 600)
ok "$(code "$URL/contacts" -H "Authorization: Bearer $ESCALATED")" 401 "role escalation"
ok "$(code "$URL/contacts" -H "Authorization: Bearer ${ADMIN%.*}.")" 401 "unsigned token"
NONE=$(printf '%s' '{"alg":"none"}' | openssl base64 -A | tr '+/' '-_' | tr -d '=').$(echo "$ADMIN" | cut -d. -f2).
ok "$(code "$URL/contacts" -H "Authorization: Bearer $NONE")" 401 "alg none"
ok "$(code -X POST "$URL/contacts" "${A[@]}" -d '{"name": ')" 400 "malformed JSON"
ok "$(printf '{"name":"\xff"}' | code -X POST "$URL/contacts" "${A[@]}" --data-binary @-)" 400 "invalid UTF-8 body"
ok "$(head -c 1100000 /dev/zero | tr '\0' 'a' | code -X POST "$URL/contacts" "${A[@]}" --data-binary @-)" 413 "body over 1 MiB"
ok "$(code "$URL/contacts?name=eq.%27%3B%20DROP%20TABLE%20ventros.contacts%3B--" "${V[@]}")" 200 "an injection in a value is a value"
ok "$(code "$URL/contacts?order=name%3BDROP%20TABLE%20x" "${V[@]}")" 400 "an injection in order is refused"
ok "$(psql -X -tAc "SELECT to_regclass('ventros.contacts') IS NOT NULL")" t "contacts still exist"
ok "$(code "$URL/health")" 200 "still serving"
# the access log is written by a thread of its own every 100 ms: wait for the line
for _ in $(seq 100); do grep -q "POST /contacts 201" "$RUN/http_curl.log" && break; sleep 0.05; done
like "$(cat "$RUN/http_curl.log")" "POST /contacts 201 [0-9.]+ms tenant=$TENANT" "access log line"
[[ "$(cat "$RUN/http_curl.log")" == *"$ADMIN"* ]] && ok leaked clean "no token in the log" || ok clean clean "no token in the log"
if [ -n "${VENTROS_HTTP_BIN:-}" ]; then	# a sanitizer build: its reports go to the same log
	kill $PID 2>/dev/null; wait $PID 2>/dev/null
	grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$RUN/http_curl.log" &&
		{ ok report none "no sanitizer report"; grep -E 'ERROR|runtime error|#[0-9]+ 0x' "$RUN/http_curl.log" | head -20 | sed 's/^/#   /'; } ||
		ok none none "no sanitizer report"
fi
echo "1..$n"
