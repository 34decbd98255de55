#!/usr/bin/env bash
# bench/engine: the aggregate engine against the floor (the same change and
# event written by hand, one statement) and against a PL/pgSQL trigger doing
# the same, interleaved in one run on a throwaway server.
#   single row: pgbench TPS at 1 and 8 clients, UPDATE and INSERT
#   bulk: UPDATE of BENCH_ROWS rows (default 100,000), microseconds per row
# BENCH_MODE=bulk runs the bulk update only; BENCH_PERF=<file> records the
# backend of the bulk updates with perf (perf record, self time), into <file>.floor
# and <file>.ventros, for `perf report -i`.  The bulk floor is printed twice:
# the rows of the change and its events, and those with the publisher's
# queue row of each event (ventros.outbox_queue), which Ventros writes too.
# BENCH_KEEP=1 leaves the server running.
# Prints one line per measure with the ratios; medians of BENCH_ROUNDS rounds.
# No assertion: these machines are noisy, read the ratios.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
RUN=${VENTROS_BENCH_RUN_DIR:-$VENTROS_ROOT/.run/bench-engine}
PORT=${VENTROS_BENCH_PG_PORT:-54349}
ROWS=${BENCH_ROWS:-100000}
ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
HERE=$VENTROS_ROOT/bench

ensure_packages
build_install
trap '[ -n "${BENCH_KEEP:-}" ] || pg_stop "$RUN"' EXIT
bench_pg "$RUN" "$PORT"
psql -X -q -v rows="$ROWS" -f "$HERE/engine_setup.sql"
psql -X -q -f "$HERE/engine_bulk.sql"
PROJECT=$(psql -X -tA -c "SELECT id FROM ventros.projects WHERE tenant_id = 'bench'")
PGBENCH=$PG_BIN/pgbench

declare -A script
script[update_floor]="\\set n random(1, $ROWS)
WITH u AS (UPDATE bench.floor_contacts c SET name = 'N' || (random() * 1e9)::int, version = c.version + 1, updated_at = now()
           FROM bench.floor_contacts o WHERE o.tenant_id = c.tenant_id AND o.id = c.id
             AND c.tenant_id = 'bench' AND c.id = (SELECT id FROM bench.ids WHERE n = :n)
           RETURNING c.tenant_id, c.id, c.version, c.name, o.name AS old_name)
INSERT INTO bench.floor_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, payload, actor, occurred_at)
SELECT tenant_id, nextval('bench.floor_seq'), gen_random_uuid(), e.type, 'contact', id, e.version, e.payload, session_user, statement_timestamp()
FROM u, LATERAL (VALUES ('contact.updated', u.version, jsonb_build_object('changed', jsonb_build_object('name', u.name), 'previous', jsonb_build_object('name', u.old_name))),
                        ('contact.name_changed', NULL, jsonb_build_object('name', u.name, 'previous_name', u.old_name))) e(type, version, payload);"
script[update_ventros]="\\set n random(1, $ROWS)
UPDATE ventros.contacts SET name = 'N' || (random() * 1e9)::int, version = version
WHERE tenant_id = 'bench' AND id = (SELECT id FROM bench.ids WHERE n = :n);"
script[update_plpgsql]="\\set n random(1, $ROWS)
UPDATE bench.plpgsql_contacts SET name = 'N' || (random() * 1e9)::int, version = version
WHERE tenant_id = 'bench' AND id = (SELECT id FROM bench.ids WHERE n = :n);"
script[insert_floor]="WITH i AS (INSERT INTO bench.floor_contacts (id, tenant_id, project_id, name, version, created_at, updated_at)
           VALUES (gen_random_uuid(), 'bench', '$PROJECT', 'New contact', 1, now(), now()) RETURNING *)
INSERT INTO bench.floor_outbox (tenant_id, seq, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, payload, actor, occurred_at)
SELECT tenant_id, nextval('bench.floor_seq'), gen_random_uuid(), 'contact.created', 'contact', id, 1, to_jsonb(i), session_user, statement_timestamp() FROM i;"
script[insert_ventros]="INSERT INTO ventros.contacts (tenant_id, project_id, name) VALUES ('bench', '$PROJECT', 'New contact');"
script[insert_plpgsql]="INSERT INTO bench.plpgsql_contacts (id, tenant_id, project_id, name) VALUES (gen_random_uuid(), 'bench', '$PROJECT', 'New contact');"

declare -A results
tps() {	# tps workload variant clients
	printf '%s\n' "${script[$1_$2]}" >"$RUN/$1_$2.sql"
	"$PGBENCH" -n -c "$3" -j "$3" -T "$SECONDS_PER_RUN" -f "$RUN/$1_$2.sql" 2>&1 |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

MODE=${BENCH_MODE:-all}
# one bulk update of a variant, in a transaction rolled back: us per row; with
# BENCH_PERF, perf records the backend meanwhile
bulk() {	# variant
	local pid perf_pid out
	if [ -z "${BENCH_PERF:-}" ]; then
		psql -X -tA -c "BEGIN" -c "SELECT bench.bulk_$1()" -c "ROLLBACK" | sed -n 2p
		return
	fi
	coproc BULK { psql -X -tA -q; }
	echo "SELECT pg_backend_pid();" >&"${BULK[1]}"
	read -r pid <&"${BULK[0]}"
	perf record -q -p "$pid" -o "$BENCH_PERF.$1" 2>/dev/null &
	perf_pid=$!
	sleep 1
	printf 'BEGIN;\nSELECT bench.bulk_%s();\nROLLBACK;\n' "$1" >&"${BULK[1]}"
	read -r out <&"${BULK[0]}"
	kill -INT "$perf_pid"; wait "$perf_pid" || true
	exec {BULK[1]}>&-
	wait "$BULK_PID" 2>/dev/null || true
	echo "$out"
}
for round in $(seq "$ROUNDS"); do
	for workload in update insert; do
		[ "$MODE" = bulk ] && continue
		for clients in 1 8; do
			for variant in floor ventros plpgsql; do
				results[$workload.$clients.$variant]+="$(tps $workload $variant $clients) "
			done
		done
	done
	for variant in floor floor_queue ventros plpgsql; do
		results[bulk.$variant]+="$(bulk "$variant") "
	done
	psql -X -q -c "VACUUM ANALYZE" >/dev/null
	log "round $round of $ROUNDS done"
done

echo "bench/engine: $ROWS rows, $ROUNDS rounds of ${SECONDS_PER_RUN}s, median per measure (superuser, no RLS, both sides)"
for workload in update insert; do
	[ "$MODE" = bulk ] && continue
	for clients in 1 8; do
		f=$(median ${results[$workload.$clients.floor]})
		v=$(median ${results[$workload.$clients.ventros]})
		p=$(median ${results[$workload.$clients.plpgsql]})
		printf 'engine_%s_%sc  floor %8.0f tps  ventros %8.0f tps  plpgsql %8.0f tps  ventros/floor %.2f  ventros/plpgsql %.2f\n' \
			"$workload" "$clients" "$f" "$v" "$p" "$(echo "$v / $f" | bc -l)" "$(echo "$v / $p" | bc -l)"
	done
done
f=$(median ${results[bulk.floor]})
q=$(median ${results[bulk.floor_queue]})
v=$(median ${results[bulk.ventros]})
p=$(median ${results[bulk.plpgsql]})
printf 'engine_bulk_update  floor %.2f us/row  ventros %.2f us/row  plpgsql %.2f us/row  ventros/floor %.2f  ventros/plpgsql %.2f\n' \
	"$f" "$v" "$p" "$(echo "$v / $f" | bc -l)" "$(echo "$v / $p" | bc -l)"
printf 'engine_bulk_update  floor with the queue rows %.2f us/row  ventros/that floor %.2f\n' "$q" "$(echo "$v / $q" | bc -l)"
if [ -n "${BENCH_PERF:-}" ]; then
	# CPU samples of the backend (the last round), which the load disturbs
	# far less than the wall time
	samples() { perf report -i "$BENCH_PERF.$1" --stdio -n --sort dso 2>/dev/null | awk '/^ +[0-9.]+%/ {n += $2} END {print n}'; }
	sf=$(samples floor) sq=$(samples floor_queue) sv=$(samples ventros)
	printf 'engine_bulk_update  perf samples (last round): floor %s, floor with the queue rows %s, ventros %s: ventros/floor %.2f, ventros/floor with the queue rows %.2f\n' \
		"$sf" "$sq" "$sv" "$(echo "$sv / $sf" | bc -l)" "$(echo "$sv / $sq" | bc -l)"
fi
echo "targets: single-row ventros/floor >= 0.90; bulk ventros/floor <= 1.10 (issue 19) and ventros/plpgsql <= 0.70"
