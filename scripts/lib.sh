# shellcheck shell=bash
# Shared helpers for scripts/up, scripts/down and scripts/test: install what is
# missing, build, and run throwaway PostgreSQL and RabbitMQ servers under a
# folder of the checkout. Sourced, never run.

VENTROS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# VENTROS_PG_PREFIX: build against and run a private copy of PostgreSQL 15
# under this folder (made by pg_copy), so that several checkouts on one
# machine do not install over each other.  Empty: the system's PostgreSQL.
VENTROS_PG_PREFIX=${VENTROS_PG_PREFIX:-}
PG_BIN=$VENTROS_PG_PREFIX/usr/lib/postgresql/15/bin
RABBIT_BIN=/usr/lib/rabbitmq/bin

log() { printf '[ventros] %s\n' "$*" >&2; }
die() { printf '[ventros] error: %s\n' "$*" >&2; exit 1; }

# Debian packages every part of Ventros needs, installed when missing.
VENTROS_PACKAGES=(build-essential pkg-config postgresql-15 postgresql-server-dev-15
	postgresql-15-cron postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
	rabbitmq-server librabbitmq-dev libcurl4-openssl-dev libmicrohttpd-dev libjwt-dev
	libssl-dev openssl wrk curl bc jq nodejs npm clang libclang-rt-14-dev cppcheck clang-format
	chromium)

ensure_packages() {
	local missing=() p
	for p in "${VENTROS_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	# Node.js may come from outside Debian's packages; accept any node and npm on PATH.
	if command -v node >/dev/null && command -v npm >/dev/null; then
		local keep=()
		for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || keep+=("$p"); done
		missing=("${keep[@]}")
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing: ${missing[*]}"
	[ "$(id -u)" -eq 0 ] || die "installing packages needs root"
	# The packages' services must not start on their own: we run our own servers.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# PostgreSQL finds its share and lib folders relative to its binaries, so a
# copy of the installed trees is a private, relocated installation.
pg_copy() {
	[ -n "$VENTROS_PG_PREFIX" ] || return 0
	[ -x "$PG_BIN/postgres" ] && return 0
	log "copying PostgreSQL 15 to $VENTROS_PG_PREFIX"
	mkdir -p "$VENTROS_PG_PREFIX/usr/lib/postgresql" "$VENTROS_PG_PREFIX/usr/share/postgresql" "$VENTROS_PG_PREFIX/usr/include"
	cp -a /usr/lib/postgresql/15 "$VENTROS_PG_PREFIX/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/15 "$VENTROS_PG_PREFIX/usr/share/postgresql/"
	cp -a /usr/include/postgresql "$VENTROS_PG_PREFIX/usr/include/"
	chmod -R a+rX "$VENTROS_PG_PREFIX"
}

# build_install: build the extension with the extra compiler options of
# VENTROS_EXT_COPT (scripts/test passes UBSan's; scripts/up none) and install
# it.  Objects built with other options are not reused: the options of the
# last build are kept in .build-copt and a change cleans first.
build_install() {
	local copt=${VENTROS_EXT_COPT:-} stamp=$VENTROS_ROOT/.build-copt
	pg_copy
	if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$copt" ]; then
		make -C "$VENTROS_ROOT" -s clean PG_CONFIG="$PG_BIN/pg_config" >/dev/null
		printf '%s' "$copt" >"$stamp"
	fi
	log "building and installing the extension${copt:+ (COPT=$copt)}"
	make -C "$VENTROS_ROOT" -s -j2 PG_CONFIG="$PG_BIN/pg_config" COPT="$copt" >/dev/null
	make -C "$VENTROS_ROOT" -s install PG_CONFIG="$PG_BIN/pg_config" COPT="$copt" >/dev/null
}

# ---- PostgreSQL -------------------------------------------------------------
# pg_start DIR PORT: a cluster in DIR/pg listening on 127.0.0.1:PORT and on a
# unix socket in DIR/sock, owned by the postgres user (initdb refuses root).
pg_start() {
	local dir=$1 port=$2 data=$1/pg sock=$1/sock
	mkdir -p "$dir" "$sock"
	chown postgres: "$dir" "$sock"
	if [ ! -s "$data/PG_VERSION" ]; then
		log "initdb in $data"
		runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust \
			--auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
		echo "include_if_exists = 'ventros.conf'" >>"$data/postgresql.conf"
		# The credential key is made once per cluster and kept with it.
		od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$data/ventros_secret_key"
		# Local socket: trust for the postgres superuser only; passwords for all others.
		cat >"$data/pg_hba.conf" <<HBA
local all postgres trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
HBA
	fi
	# Written at every start, so a cluster made by an older checkout gets the
	# settings of this one (they take effect at the next start).
	cat >"$data/ventros.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
shared_preload_libraries = 'ventros, pg_cron'
cron.database_name = 'ventros'
cron.host = '$sock'
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
ventros.databases = 'ventros'
ventros.secret_key = '$(cat "$data/ventros_secret_key" 2>/dev/null)'
ventros.amqp_url = 'amqp://ventros:ventros@127.0.0.1:${VENTROS_AMQP_PORT:-56720}/%2F'
CONF
	chown postgres: "$data/ventros.conf"
	chmod 600 "$data/ventros.conf"
	if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		log "starting PostgreSQL on port $port"
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$dir/postgresql.log" -w -t 60 start >/dev/null \
			|| { tail -20 "$dir/postgresql.log" >&2; die "PostgreSQL did not start"; }
	fi
}

# bench_pg RUN PORT: a fresh throwaway cluster under RUN (what was there is
# removed) with database ventros and the extension, PG* exported for psql.
# The caller's EXIT trap stops it (set the trap first).
bench_pg() {
	local run=$1 port=$2
	pg_stop "$run"; rm -rf "$run"; mkdir -p "$run"
	pg_start "$run" "$port"
	export PGHOST=$run/sock PGPORT=$port PGUSER=postgres PGDATABASE=ventros
	psql -X -q -d postgres -c "CREATE DATABASE ventros"
	psql -X -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION ventros CASCADE"
}

pg_stop() {
	local data=$1/pg
	[ -s "$data/PG_VERSION" ] || return 0
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# ---- RabbitMQ -----------------------------------------------------------------
# rabbit_env DIR PORT: the environment of a node whose whole world is DIR/rabbit.
rabbit_env() {
	local dir=$1/rabbit port=$2
	export HOME=$dir/home
	export RABBITMQ_NODENAME=ventros$port@localhost
	export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	export RABBITMQ_NODE_PORT=$port
	export RABBITMQ_DIST_PORT=$((port + 1))
	export ERL_EPMD_PORT=$((port + 2))
	export ERL_EPMD_ADDRESS=127.0.0.1
	export RABBITMQ_MNESIA_BASE=$dir/mnesia
	export RABBITMQ_LOG_BASE=$dir/log
	export RABBITMQ_PID_FILE=$dir/rabbit.pid
	export RABBITMQ_CONFIG_FILE=$dir/rabbitmq
	export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
	export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
	export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	# Neither the node nor rabbitmqctl starts an epmd of its own (a daemon
	# whose pid nobody knows): rabbit_start starts it (epmd_start).
	export ERL_FLAGS="-start_epmd false"
	unset RABBITMQ_ALLOW_INPUT
}

# Every call is bounded: a node that is half up must not hang a script.
rabbitmqctl_() { timeout 120 "$RABBIT_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"; }

# port_free PORT [SECONDS]: wait (bounded) until nothing listens on PORT.
port_free() {
	local tries=0
	while ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; do
		[ $tries -lt "${2:-30}" ] || return 1
		sleep 1
		tries=$((tries + 1))
	done
}

rabbit_start() {
	local dir=$1 port=$2
	(
		rabbit_env "$dir" "$port"
		mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
		[ -f "$HOME/.erlang.cookie" ] || { head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOME/.erlang.cookie"; chmod 400 "$HOME/.erlang.cookie"; }
		echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
		echo '[].' >"$RABBITMQ_ADVANCED_CONFIG_FILE"
		: >"$RABBITMQ_CONF_ENV_FILE"
		cat >"$RABBITMQ_CONFIG_FILE.conf" <<CONF
loopback_users = none
listeners.tcp.default = 127.0.0.1:$port
default_user = ventros
default_pass = ventros
log.console = false
log.file.level = warning
CONF
		epmd_start "$dir"
		if rabbitmqctl_ -q status >/dev/null 2>&1; then exit 0; fi
		local tries=0 starts=0 server=
		start_node() {
			rm -f "$RABBITMQ_PID_FILE"
			setsid "$RABBIT_BIN/rabbitmq-server" >>"$dir/rabbit/server.out" 2>&1 </dev/null &
			server=$!
			starts=$((starts + 1))
		}
		# A node of an earlier run may still be letting go of its ports.
		port_free "$port" 30 || log "port $port is still in use"
		port_free "$RABBITMQ_DIST_PORT" 30 || log "port $RABBITMQ_DIST_PORT is still in use"
		log "starting RabbitMQ on port $port"
		start_node
		# await_startup fails at once while the node is not yet registered:
		# retry; a node that died while starting (a port still held by its
		# predecessor, a loaded machine) is started again, up to three times.
		until rabbitmqctl_ -q -t 10 await_startup >/dev/null 2>&1; do
			tries=$((tries + 1))
			if ! kill -0 "$server" 2>/dev/null; then
				[ $starts -lt 3 ] || break
				log "RabbitMQ exited while starting; starting it again"
				port_free "$port" 30 || true
				sleep 1
				start_node
			fi
			[ $tries -lt 120 ] || break
			sleep 1
		done
		if ! rabbitmqctl_ -q status >/dev/null 2>&1; then
			tail -30 "$dir/rabbit/server.out" >&2
			tail -30 "$RABBITMQ_LOG_BASE"/*.log >&2 2>/dev/null
			exit 1
		fi
	) || die "RabbitMQ did not start"
}

rabbit_stop() {
	local dir=$1 port=$2
	[ -d "$dir/rabbit" ] || return 0
	(
		rabbit_env "$dir" "$port"
		local node_pid tries=0
		node_pid=$(cat "$RABBITMQ_PID_FILE" 2>/dev/null)
		timeout 60 "$RABBIT_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" -q stop >/dev/null 2>&1 || true
		# stop returns before the node has exited: wait (bounded) so that its
		# ports are free for the next start, then make sure.
		if [ -n "$node_pid" ] && grep -q beam "/proc/$node_pid/cmdline" 2>/dev/null; then
			while kill -0 "$node_pid" 2>/dev/null && [ $tries -lt 30 ]; do
				sleep 1
				tries=$((tries + 1))
			done
			kill -9 "$node_pid" 2>/dev/null || true
		fi
		port_free "$port" 30 || true
		# epmd outlives the node: stop the one rabbit_start started (its pid
		# file), never another process that happens to listen on the port.
		local pid
		pid=$(cat "$dir/rabbit/epmd.pid" 2>/dev/null)
		if [ -n "$pid" ] && epmd_is_ours "$pid"; then
			kill "$pid" 2>/dev/null || true
			port_free "$ERL_EPMD_PORT" 10 || true
		fi
		rm -f "$dir/rabbit/epmd.pid"
	)
}

# epmd_is_ours PID: PID is an epmd serving this node's epmd port (not a
# process that reused the number of one that exited).
epmd_is_ours() {
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qE "epmd .*-port $ERL_EPMD_PORT( |$)"
}

# epmd_start DIR: Erlang's port mapper for this node, started here in the
# foreground of its own session (not by the node as a daemon), so that its
# pid is known (DIR/rabbit/epmd.pid) and rabbit_stop stops exactly it.
# In rabbit_env's environment.
epmd_start() {
	local dir=$1 pidfile=$1/rabbit/epmd.pid tries=0
	if [ -s "$pidfile" ] && epmd_is_ours "$(cat "$pidfile")"; then return 0; fi
	if ! port_free "$ERL_EPMD_PORT" 10; then
		log "port $ERL_EPMD_PORT (epmd) is in use by a process not started here; the node will use it"
		return 0
	fi
	setsid epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 </dev/null >>"$dir/rabbit/epmd.out" 2>&1 &
	echo $! >"$pidfile"
	while ! ss -ltnH "sport = :$ERL_EPMD_PORT" 2>/dev/null | grep -q . && [ $tries -lt 50 ]; do
		sleep 0.1
		tries=$((tries + 1))
	done
}

# rabbit_signal DIR SIGNAL: send SIGNAL (STOP, CONT, KILL) to the node this
# checkout started (its pid file), for fault tests.
rabbit_signal() {
	local pid
	pid=$(cat "$1/rabbit/rabbit.pid" 2>/dev/null)
	[ -n "$pid" ] && grep -q beam "/proc/$pid/cmdline" 2>/dev/null || return 1
	kill -s "$2" "$pid"
}
