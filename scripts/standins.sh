# shellcheck shell=bash
# Provider stand-ins for the demo: the fake WAHA and the fake Graph API of the
# tests (test/integration/fakes/standin.mjs), each a node process of its own
# that answers the demo channels' sends as the provider documents it, logs
# what it received, and posts delivery statuses back to ventros-http.
# Sourced (after lib.sh) by scripts/up.d/webhooks.sh, scripts/down.d/standins.sh
# and the README round trip test (test/integration/demo_roundtrip.test.mjs),
# so the test starts them exactly as scripts/up does.
#
# They listen on VENTROS_STANDIN_HOST (127.0.0.2), a loopback address of
# their own: the demo cluster allow-lists that one address
# (ventros.http_allow_hosts = '127.0.0.2/32', standins_allow), not the whole
# of 127.0.0.1, where PostgreSQL, RabbitMQ and ventros-http listen.

VENTROS_STANDIN_HOST=${VENTROS_STANDIN_HOST:-127.0.0.2}
STANDINS=(waha graph)

# standins_start DIR CONFIG: starts both stand-ins of CONFIG (JSON, see
# standin.mjs; its host, ports and log files are the caller's) in the
# background, pids in DIR/standin-<name>.pid, node's own output in
# DIR/standin-<name>.out; returns once both answer, dies otherwise.
standins_start() {
	local dir=$1 config=$2 name pid url tries
	standins_stop "$dir"
	for name in "${STANDINS[@]}"; do
		setsid node "$VENTROS_ROOT/test/integration/fakes/standin.mjs" "$name" "$config" \
			>>"$dir/standin-$name.out" 2>&1 </dev/null &
		echo $! >"$dir/standin-$name.pid"
	done
	for name in "${STANDINS[@]}"; do
		pid=$(cat "$dir/standin-$name.pid")
		url=$(standin_url "$config" "$name")
		tries=0
		until curl -fsS "$url/__fake/requests?path=/" >/dev/null 2>&1; do
			tries=$((tries + 1))
			if [ $tries -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
				tail -5 "$dir/standin-$name.out" >&2
				die "the $name stand-in did not start on $url"
			fi
			sleep 0.1
		done
	done
}

# standin_url CONFIG NAME: http://host:port of a stand-in.
standin_url() {
	node -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]];
		console.log(`http://${c.host}:${c.port}`)' "$1" "$2"
}

# standins_stop DIR: stops the stand-ins whose pid files are in DIR (a pid is
# signalled only while it is still a standin.mjs process: never another
# process that reused the number).
standins_stop() {
	local dir=$1 name pid
	for name in "${STANDINS[@]}"; do
		[ -s "$dir/standin-$name.pid" ] || continue
		pid=$(cat "$dir/standin-$name.pid")
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'fakes/standin\.mjs'; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
		rm -f "$dir/standin-$name.pid"
	done
}

# standins_allow PSQL...: allow-lists the stand-ins' address in the cluster
# PSQL connects to (ALTER SYSTEM, then a reload): the dispatcher may call
# them, and nothing else on loopback.  The extension's default stays empty.
standins_allow() {
	"$@" -X -q -v ON_ERROR_STOP=1 -d ventros -c "ALTER SYSTEM SET ventros.http_allow_hosts = '$VENTROS_STANDIN_HOST/32'" \
		-c "SELECT pg_reload_conf()" >/dev/null
}

# demo_providers_up DIR TENANT VENTROS_URL PSQL...: the demo channels of
# TENANT and their stand-ins, as scripts/up makes them (and the README round
# trip test, with its own DIR, tenant and ports):
#   1. secrets and provider ids made once in DIR/demo_channels (mode 600);
#   2. scripts/demo_channels.sql (through PSQL, a psql command line for a
#      superuser): one channel per provider pointing at the stand-ins, and
#      the demo agent;
#   3. DIR/standins.json: the stand-ins' addresses (VENTROS_STANDIN_HOST,
#      VENTROS_WAHA_STANDIN_PORT 3100, VENTROS_GRAPH_STANDIN_PORT 3101), logs
#      (DIR/standin-waha.log, DIR/standin-graph.log), the channels and secrets
#      of their status webhooks to VENTROS_URL;
#   4. standins_allow and standins_start.
# Prints the lines of step 2 ("WAHA <id>", ..., "AGENT <id>").
demo_providers_up() {
	local dir=$1 tenant=$2 ventros=$3 rows p id
	shift 3
	local waha_port=${VENTROS_WAHA_STANDIN_PORT:-3100} graph_port=${VENTROS_GRAPH_STANDIN_PORT:-3101}
	local -A ids=()
	_vn_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
	_vn_digits() { head -c 64 /dev/urandom | od -An -tu1 | tr -s ' \n' '\n' | sed '/^$/d' | awk -v n="$1" '{ s = s ($1 % 10) } END { print "1" substr(s, 1, n - 1) }'; }
	if [ ! -s "$dir/demo_channels" ]; then
		(
			umask 077
			cat >"$dir/demo_channels" <<EOF
WAHA_WEBHOOK_SECRET=$(_vn_hex 24)
META_APP_SECRET=$(_vn_hex 16)
META_VERIFY_TOKEN=$(_vn_hex 12)
WHATSAPP_PHONE_NUMBER_ID=$(_vn_digits 15)
WHATSAPP_WABA_ID=$(_vn_digits 15)
INSTAGRAM_ACCOUNT_ID=1784$(_vn_digits 13)
MESSENGER_PAGE_ID=$(_vn_digits 15)
WAHA_API_KEY=$(_vn_hex 16)
EOF
		)
	fi
	# a file made by an earlier checkout lacks the stand-in's API key: added once
	grep -q '^WAHA_API_KEY=' "$dir/demo_channels" || echo "WAHA_API_KEY=$(_vn_hex 16)" >>"$dir/demo_channels"
	(
		# shellcheck disable=SC1091
		. "$dir/demo_channels"
		rows=$("$@" -X -q -d ventros -v ON_ERROR_STOP=1 -tA -F ' ' -v tenant="$tenant" \
			-v waha_secret="$WAHA_WEBHOOK_SECRET" -v app_secret="$META_APP_SECRET" -v verify_token="$META_VERIFY_TOKEN" \
			-v phone_number_id="$WHATSAPP_PHONE_NUMBER_ID" -v waba_id="$WHATSAPP_WABA_ID" \
			-v ig_account_id="$INSTAGRAM_ACCOUNT_ID" -v page_id="$MESSENGER_PAGE_ID" \
			-v waha_url="http://$VENTROS_STANDIN_HOST:$waha_port" -v waha_api_key="$WAHA_API_KEY" \
			-v graph_url="http://$VENTROS_STANDIN_HOST:$graph_port" -v access_token=demo-access-token \
			-f "$VENTROS_ROOT/scripts/demo_channels.sql") || exit 1
		while read -r p id; do [ -n "$id" ] && ids[$p]=$id; done <<<"$rows"
		umask 077
		cat >"$dir/standins.json" <<EOF
{"ventros": "$ventros",
 "waha": {"host": "$VENTROS_STANDIN_HOST", "port": $waha_port, "log": "$dir/standin-waha.log",
          "api_key": "$WAHA_API_KEY", "session": "default", "channel_id": "${ids[WAHA]}",
          "hmac_key": "$WAHA_WEBHOOK_SECRET", "statuses": ["delivered"]},
 "graph": {"host": "$VENTROS_STANDIN_HOST", "port": $graph_port, "log": "$dir/standin-graph.log",
           "token": "demo-access-token", "app_secret": "$META_APP_SECRET", "statuses": ["delivered"],
           "channels": [{"provider": "whatsapp", "id": "${ids[WHATSAPP]}", "account": "$WHATSAPP_PHONE_NUMBER_ID"},
                        {"provider": "messenger", "id": "${ids[MESSENGER]}", "account": "$MESSENGER_PAGE_ID"},
                        {"provider": "instagram", "id": "${ids[INSTAGRAM]}", "account": "$INSTAGRAM_ACCOUNT_ID"}]}}
EOF
		echo "$rows"
	) || return 1
	standins_allow "$@" >&2 || return 1
	standins_start "$dir" "$dir/standins.json" >&2
}
