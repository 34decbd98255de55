#!/usr/bin/env bash
# A real tenant-bound login over TCP with a password (what VENTROS_DEMO_PGURL
# gives a user): it sees its tenant only, and every way it might try to act
# for another tenant is refused.  Prints TAP.
set -u
: "${PGHOST:?run through scripts/test}"
ADMIN=(psql -X -q -v ON_ERROR_STOP=1 -d ventros)
PASSWORD=$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')
URL="postgresql://it_bound:$PASSWORD@127.0.0.1:$PGPORT/ventros"
n=0
check() {	# check "description" expected-regex actual
	n=$((n + 1))
	if [[ $3 =~ $2 ]]; then echo "ok $n - $1"; else echo "not ok $n - $1"; echo "#   got: $3"; echo "#   want: $2"; fi
}
as_login() { PGOPTIONS=${OPTS:-} psql -X -qtA "$URL" -c "$1" 2>&1; }

"${ADMIN[@]}" >/dev/null <<SQL
SELECT ventros.create_tenant(t, t) FROM unnest(ARRAY['it_a', 'it_b']) t
WHERE NOT EXISTS (SELECT 1 FROM ventros.projects WHERE tenant_id = t);
SET ventros.tenant = 'it_a';
SELECT ventros.create_contact('Alice of A');
SET ventros.tenant = 'it_b';
SELECT ventros.create_contact('Bob of B');
RESET ventros.tenant;
SELECT ventros.bind_login('it_bound', 'it_a', 'ventros_agent', '$PASSWORD');
SQL

check "the login acts for its tenant" '^it_a$' "$(as_login 'SELECT ventros.current_tenant()')"
check "it sees only its tenant's contacts" '^Alice of A$' "$(as_login "SELECT string_agg(name, ',') FROM ventros.contacts")"
check "SET ventros.tenant is refused" 'permission denied to choose the acting tenant' "$(as_login "SET ventros.tenant = 'it_b'")"
check "RESET ventros.bound_tenant is refused" 'permission denied to set parameter' "$(as_login 'RESET ventros.bound_tenant')"
check "SET ventros.bound_tenant is refused" 'permission denied to set parameter' "$(as_login "SET ventros.bound_tenant = 'it_b'")"
check "SET SESSION AUTHORIZATION is refused" 'permission denied to set session authorization' "$(as_login 'SET SESSION AUTHORIZATION postgres')"
check "SET ROLE to an admin role is refused" 'permission denied to set role' "$(as_login 'SET ROLE ventros_platform_admin')"
check "a crafted JWT claim is refused" 'cannot act for tenant "it_b"' \
	"$(as_login "SELECT set_config('request.jwt.claims', '{\"tenant_id\":\"it_b\"}', false); SELECT count(*) FROM ventros.contacts")"
check "a tenant in the startup options is refused" 'permission denied to choose the acting tenant' \
	"$(OPTS="-c ventros.tenant=it_b" as_login 'SELECT ventros.current_tenant()')"
check "a write for another tenant is refused" 'row-level security' \
	"$(as_login "INSERT INTO ventros.contacts (tenant_id, project_id, name) SELECT 'it_b', id, 'x' FROM ventros.projects LIMIT 1")"
check "a write for its own tenant works" '^1$' "$(as_login "SELECT (ventros.create_contact('Carol of A')).version")"
check "nothing reached the other tenant" '^Bob of B$' \
	"$("${ADMIN[@]}" -tA -c "SELECT string_agg(name, ',') FROM ventros.contacts WHERE tenant_id = 'it_b'")"
check "a crafted sub claim does not choose the actor" '^it_bound$' \
	"$(as_login "SELECT set_config('request.jwt.claims', '{\"sub\":\"ceo\",\"tenant_id\":\"it_a\"}', false) IS NULL; SELECT ventros.actor()" | tail -1)"
as_login "SELECT set_config('request.jwt.claims', '{\"sub\":\"ceo\"}', false) IS NULL; SELECT ventros.create_contact('Dora of A')" >/dev/null
check "nor the actor of its events" '^it_bound$' \
	"$("${ADMIN[@]}" -tA -c "SELECT string_agg(DISTINCT o.actor, ',') FROM ventros.outbox o JOIN ventros.contacts c ON c.id = o.aggregate_id WHERE c.name = 'Dora of A'")"

# Planner estimates come from every tenant's rows: no EXPLAIN over RLS tables.
check "EXPLAIN over a tenant table is refused" 'permission denied to explain a statement over a table under row-level security' \
	"$(as_login "EXPLAIN SELECT * FROM ventros.contacts WHERE name = 'Bob of B'")"
check "EXPLAIN ANALYZE too" 'permission denied to explain' \
	"$(as_login "EXPLAIN (ANALYZE) SELECT count(*) FROM ventros.contacts")"
check "and through a view over it" 'permission denied to explain' \
	"$(as_login "EXPLAIN SELECT * FROM api.contacts")"
check "EXPLAIN without tenant tables works" 'Result' "$(as_login 'EXPLAIN SELECT 1')"
check "the administrator still explains" 'Seq Scan|Index' \
	"$("${ADMIN[@]}" -tA -c "EXPLAIN SELECT * FROM ventros.contacts WHERE name = 'Bob of B'")"

# A bound login that is also a member of the trusted roles (the front's and
# the platform administrators'): the binding wins, it stays untrusted.
"${ADMIN[@]}" >/dev/null -c "SELECT ventros.bind_login('it_bound', 'it_a', 'ventros_agent', '$PASSWORD')" \
	-c "GRANT ventros_authenticator, ventros_platform_admin TO it_bound"
check "a bound member of the trusted roles is not trusted" '^f$' "$(as_login 'SELECT ventros.session_is_trusted()')"
check "nor may it EXPLAIN tenant tables" 'permission denied to explain' \
	"$(as_login "EXPLAIN SELECT * FROM ventros.contacts")"
check "it cannot choose another tenant by SET" 'permission denied to choose the acting tenant' \
	"$(as_login "SET ventros.tenant = 'it_b'")"
# (at startup the binding is applied after the client's options, so the
# refusal may come from the first use of the tenant instead of the SET)
check "nor in the startup options" 'permission denied to choose the acting tenant|cannot act for tenant "it_b"' \
	"$(OPTS="-c ventros.tenant=it_b" as_login 'SELECT ventros.current_tenant()')"
check "nor by a claim" 'cannot act for tenant "it_b"' \
	"$(as_login "SELECT set_config('request.jwt.claims', '{\"tenant_id\":\"it_b\"}', false); SELECT count(*) FROM ventros.contacts")"
check "nor choose the actor by a claim" '^it_bound$' \
	"$(as_login "SELECT set_config('request.jwt.claims', '{\"sub\":\"ceo\"}', false) IS NULL; SELECT ventros.actor()" | tail -1)"
check "it still sees only its tenant" '^0$' \
	"$(as_login "SELECT count(*) FROM ventros.contacts WHERE tenant_id <> 'it_a'")"
"${ADMIN[@]}" -c "DROP OWNED BY it_bound; DROP ROLE it_bound" >/dev/null 2>&1
echo "1..$n"
