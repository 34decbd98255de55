#!/usr/bin/env bash
# Upgrades and dumps: a database made with the released 0.1.0 and filled
# through its commands is updated with ALTER EXTENSION ventros UPDATE; its
# catalog must then equal a fresh install's, line for line (test/upgrade/
# catalog.sql, catalog_rows.sql), and every row it held must still be there
# (snapshot.sql, check.sql).  The updated database is then dumped and
# restored as docs/sql.md says; the restored one must hold the same catalog and
# every row, unchanged, and pass the engine's contract suite.  Prints TAP.
set -u
: "${PGHOST:?run through scripts/test}"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UP=$ROOT/test/upgrade
OUT=${VENTROS_RUN_DIR:-$ROOT/.run/test}/upgrade
mkdir -p "$OUT"
source "$ROOT/test/lib/tap.sh"
sql() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }
same() {	# same FILE db1 db2: the file's output in both databases, no difference
	sql "$2" -f "$UP/$1" >"$OUT/$2.$1.txt" && sql "$3" -f "$UP/$1" >"$OUT/$3.$1.txt" &&
		diff "$OUT/$2.$1.txt" "$OUT/$3.$1.txt"
}

for db in vn_old vn_fresh; do psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"; done
tap_ok "0.1.0 installs" sql vn_old -c "SET client_min_messages = warning" -c "CREATE EXTENSION ventros VERSION '0.1.0' CASCADE"
tap_ok "0.1.0 is filled through its commands" sql vn_old -f "$UP/fill.sql"
tap_ok "its rows are recorded" sql vn_old -f "$UP/snapshot.sql"
tap_ok "ALTER EXTENSION ventros UPDATE" sql vn_old -c "ALTER EXTENSION ventros UPDATE"
want=$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$ROOT/ventros.control")
tap_is "the update reaches the current version" "$want" \
	"$(sql vn_old -tAc "SELECT extversion FROM pg_extension WHERE extname = 'ventros'")"
tap_ok "a fresh install of the current version" sql vn_fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION ventros CASCADE"
tap_ok "the updated catalog equals a fresh install's" same catalog.sql vn_old vn_fresh
tap_ok "the updated registries equal a fresh install's" same catalog_rows.sql vn_old vn_fresh
res=$(sql vn_old -f "$UP/check.sql")
tap_is "no row was lost by the update" "0" "${res%% *}"
[ "${res##* }" -gt 100 ] 2>/dev/null && tap_is "the check saw the data" yes yes || tap_is "the check saw the data" "over 100 rows" "${res##* }"
tap_ok "the updated database takes new commands" sql vn_old -c "BEGIN" -c "SET LOCAL ventros.tenant = 'up_a'" \
	-c "SELECT ventros.create_contact('After the update', phone => '+5511900000001')" -c "COMMIT"

# Dump and restore, as docs/sql.md says: the data section with the engine's
# triggers off (replica), so restored rows are not rewritten as new ones.
dump=$OUT/vn_old.dump
restore() {
	pg_restore --section=pre-data -d vn_restored "$dump" &&
		PGOPTIONS='-c session_replication_role=replica' pg_restore --section=data -d vn_restored "$dump" &&
		pg_restore --section=post-data -d vn_restored "$dump"
}
psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS vn_restored" -c "CREATE DATABASE vn_restored"
tap_ok "pg_dump of a database using Ventros" pg_dump -Fc -f "$dump" vn_old
tap_ok "pg_restore of it" restore
tap_ok "the restored catalog equals a fresh install's" same catalog.sql vn_restored vn_fresh
tap_ok "the restored registries equal a fresh install's" same catalog_rows.sql vn_restored vn_fresh
res=$(sql vn_restored -f "$UP/check.sql")
tap_is "every row is restored unchanged" "0" "${res%% *}"
tap_is "the outbox continues after the restored events" "t" "$(sql vn_restored -tAc \
	"SELECT (SELECT last_value FROM ventros.outbox_seq) >= (SELECT max(seq) FROM ventros.outbox)")"
fixtures() {
	sql vn_restored -c "SET client_min_messages = warning" -c "CREATE EXTENSION pgtap" || return 1
	for f in "$ROOT"/test/fixtures/*.sql "$ROOT"/test/fixtures/samples/*.sql; do
		sql vn_restored -f "$f" >/dev/null || return 1
	done
}
tap_ok "the test fixtures load into the restored database" fixtures
tap_ok "the restored database passes the engine's contract suite" \
	pg_prove -d vn_restored "$ROOT/test/pgtap/010_engine_contract.sql"

tap_done
