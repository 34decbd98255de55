#!/usr/bin/env bash
# One setting names the databases of every kind of worker: with
# ventros.databases = 'vn_one, vn_two', each database gets its outbox
# publisher, its HTTP dispatcher, ventros.inbox_workers inbox processors and
# ventros.automation_workers automation executors,
# each connected to it (pg_stat_activity), and each database's status
# functions show its own worker.  The settings of 0.1.0
# (ventros.outbox_databases, ventros.http_database, ventros.inbox_database)
# still work, each for its own kind, with a warning in the server log; a
# list that is not one stops the server with a message naming the setting.
# The settings are read at server start, so this runs a cluster of its own
# (a unix socket only, under the test run's folder).  Prints TAP.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
source "$ROOT/test/lib/tap.sh"
DIR=${VENTROS_RUN_DIR:-$ROOT/.run/test}/worker_databases
DATA=$DIR/pg
PORT=${VENTROS_PG_PORT:-54339}

server() {	# server start|stop LOG
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA" -l "${2:-$DIR/stop.log}" -w -t 60 "$1" >/dev/null 2>&1
}
settings() {	# settings LINE...: the Ventros settings of the next start
	printf '%s\n' "$@" >"$DATA/names.conf"
	chown postgres: "$DATA/names.conf"
}
q() { psql -X -qtA -h "$DIR/sock" -p "$PORT" -U postgres -d "$1" -c "$2"; }
# until_same WANT DB SQL: polls until the query answers WANT (workers start
# and connect on their own time); prints the last answer
until_same() {
	local deadline=$((SECONDS + 90)) got
	while :; do
		got=$(q "$2" "$3" 2>&1)
		[ "$got" = "$1" ] || [ $SECONDS -ge $deadline ] && break
		sleep 0.2
	done
	printf '%s' "$got"
}
# every slot of every kind: its database, and the database its process is
# connected to (pg_stat_activity)
SLOTS="SELECT string_agg(w.kind || ' ' || w.slot || ' ' || coalesce(w.database, '-') || ' '
                         || coalesce(a.datname, '-'), ', ' ORDER BY w.kind, w.slot)
         FROM ventros.worker_status() w LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid"

server stop
rm -rf "$DIR"
mkdir -p "$DIR/sock"
chown -R postgres: "$DIR"
runuser -u postgres -- "$PG_BIN/initdb" -D "$DATA" -U postgres --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR/sock'
shared_preload_libraries = 'ventros'
max_worker_processes = 32
fsync = off
include_if_exists = 'names.conf'
CONF
trap 'server stop' EXIT

settings "ventros.databases = ''"
tap_ok "a server with no database for the workers starts" server start "$DIR/setup.log"
for db in vn_one vn_two; do
	q postgres "CREATE DATABASE $db" && q "$db" "SET client_min_messages = warning; CREATE EXTENSION ventros CASCADE"
done
tap_is "it runs no worker" "" "$(q vn_one "$SLOTS")"
server stop

settings "ventros.databases = 'vn_one, vn_two'"
tap_ok "ventros.databases = 'vn_one, vn_two'" server start "$DIR/new.log"
want="ventros automation executor 0 vn_one vn_one, ventros automation executor 1 vn_one vn_one"
want+=", ventros automation executor 2 vn_two vn_two, ventros automation executor 3 vn_two vn_two"
want+=", ventros http dispatcher 0 vn_one vn_one, ventros http dispatcher 1 vn_two vn_two"
want+=", ventros inbox processor 0 vn_one vn_one, ventros inbox processor 1 vn_one vn_one"
want+=", ventros inbox processor 2 vn_two vn_two, ventros inbox processor 3 vn_two vn_two"
want+=", ventros outbox publisher 0 vn_one vn_one, ventros outbox publisher 1 vn_two vn_two"
tap_is "every kind runs in each database, connected to it" "$want" "$(until_same "$want" vn_one "$SLOTS")"
tap_is "vn_two's dispatcher is the one its status shows" "vn_two|t" \
	"$(q vn_two "SELECT database, pid = (SELECT pid FROM ventros.worker_status() WHERE kind = 'ventros http dispatcher' AND slot = 1) FROM ventros.http_dispatcher_state()")"
tap_is "vn_two's publisher is the one its status shows" "vn_two|t" \
	"$(q vn_two "SELECT database, pid = (SELECT pid FROM ventros.worker_status() WHERE kind = 'ventros outbox publisher' AND slot = 1) FROM ventros.outbox_worker_state()")"
tap_is "no deprecation warning" "0" "$(grep -c 'deprecated' "$DIR/new.log")"
server stop

# the settings of 0.1.0, each kind on its own; ventros.databases is left at its
# default (ventros, a database this cluster does not have)
settings "ventros.outbox_databases = 'vn_two'" "ventros.http_database = 'vn_one'" \
	"ventros.inbox_database = 'vn_two'" "ventros.inbox_workers = 1" "ventros.automation_workers = 1"
tap_ok "the settings of 0.1.0" server start "$DIR/old.log"
# (the automation executor, new in 0.2.0, has no old setting: it serves
# ventros.databases, whose default database does not exist here)
want="ventros automation executor 0 ventros -"
want+=", ventros http dispatcher 0 vn_one vn_one, ventros inbox processor 0 vn_two vn_two"
want+=", ventros outbox publisher 0 vn_two vn_two"
tap_is "each kind serves the database its 0.1.0 setting names" "$want" "$(until_same "$want" vn_one "$SLOTS")"
for name in outbox_databases http_database inbox_database; do
	tap_is "ventros.$name is warned of" "1" \
		"$(grep -c "WARNING:  ventros.$name is deprecated: use ventros.databases" "$DIR/old.log")"
done
tap_is "SHOW names the old setting's value" "vn_one" "$(q vn_one "SHOW ventros.http_database")"
server stop

settings "ventros.databases = 'vn_one, \"vn_two'"
if server start "$DIR/bad.log"; then
	tap_is "a list that is not one stops the server" "no start" "started"
else
	tap_is "a list that is not one stops the server" "1" "$(grep -c 'invalid list syntax in ventros.databases' "$DIR/bad.log")"
fi
tap_done
