-- The outbox publisher's SQL side: recording outcomes (attempts, backoff,
-- dead letters), replay, pruning, the publisher lock, the status view, and
-- who may see and call what.  Claims and their races are in the isolation spec
-- outbox_claim; delivery is in test/integration/outbox*.test.mjs.
BEGIN;
SELECT plan(32);

SELECT ventros.register_event_type('tapob.happened', 'tapob');
SET LOCAL ventros.tenant = 'tapob';
SELECT ventros.emit('tapob.happened', 'tapob', '00000000-0000-4000-8000-0000000000a1', jsonb_build_object('n', g))
  FROM generate_series(1, 4) g;
CREATE TEMP TABLE ev AS
SELECT row_number() OVER (ORDER BY seq) AS n, tenant_id, seq, event_id FROM ventros.outbox WHERE tenant_id = 'tapob';

-- every event has its queue row (pending rows are found there), and no
-- index of the outbox covers what the publisher writes: its updates are HOT
SELECT is((SELECT count(*) FROM ventros.outbox_queue q JOIN ev USING (tenant_id, seq)
            WHERE NOT q.dead AND q.next_attempt_at IS NULL), 4::bigint,
          'each emitted event is queued, never failed, not dead');
SELECT is((SELECT count(*) FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0
            WHERE i.indrelid = 'ventros.outbox'::regclass
              AND a.attname IN ('status', 'attempts', 'next_attempt_at', 'last_error', 'published_at')
              AND (a.attnum = ANY (i.indkey)
                   OR pg_get_expr(i.indpred, i.indrelid) ~ ('\m' || a.attname || '\M')
                   OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\m' || a.attname || '\M'))),
          0::bigint, 'no index of ventros.outbox covers a column the publisher writes (HOT updates)');

-- a failed attempt under the maximum: counted, pending, retried after backoff with jitter
UPDATE ventros.outbox SET attempts = 2
 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 1);
SELECT is(ventros.outbox_failed(ARRAY[(SELECT seq FROM ev WHERE n = 1)], ARRAY['nacked by the broker'], 5, 100, 1000),
          0, 'a failed attempt under max_attempts dead-letters nothing');
SELECT is((SELECT status || ' ' || last_error || ' ' || attempts FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n = 1),
          'pending nacked by the broker 3', 'it stays pending with its error, the attempt counted');
SELECT ok((SELECT next_attempt_at - now() BETWEEN interval '200 ms' AND interval '400 ms'
             FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n = 1),
          'retry after backoff_min * 2^(attempts-1) with jitter in [50%, 100%]');
SELECT ok((SELECT q.next_attempt_at = o.next_attempt_at AND NOT q.dead
             FROM ventros.outbox o JOIN ventros.outbox_queue q USING (tenant_id, seq) JOIN ev USING (tenant_id, seq) WHERE n = 1),
          'its queue row waits for the same retry time (what the claim reads)');
UPDATE ventros.outbox SET attempts = 39 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 2);
SELECT is(ventros.outbox_failed(ARRAY[(SELECT seq FROM ev WHERE n = 2)], ARRAY['x'], 50, 100, 1000),
          0, 'attempts under a high maximum');
SELECT ok((SELECT next_attempt_at - now() <= interval '1 second' FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n = 2),
          'the backoff is capped at backoff_max');

-- the attempt that reaches the maximum: dead
UPDATE ventros.outbox SET attempts = 4 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n IN (1, 3));
SELECT is(ventros.outbox_failed((SELECT array_agg(seq ORDER BY n) FROM ev WHERE n IN (1, 3)),
                                ARRAY['returned', 'returned'], 5, 100, 1000),
          2, 'at max_attempts both are dead-lettered');
SELECT is((SELECT dead FROM ventros.outbox_status), 2::bigint, 'the status view counts them as dead');
SELECT is((SELECT count(*) FROM ventros.outbox_queue q JOIN ev USING (tenant_id, seq) WHERE n IN (1, 3) AND q.dead),
          2::bigint, 'their queue rows are dead too');

-- replay
SELECT is(ventros.replay_dead_events(event_ids => ARRAY[(SELECT event_id FROM ev WHERE n = 3)]), 1::bigint,
          'replay by event id puts back exactly that one');
SELECT is((SELECT string_agg(status || ':' || attempts, ' ' ORDER BY n) FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n IN (1, 3)),
          'dead:5 pending:0', 'the replayed row is pending with no attempts; the other is still dead');
SELECT is(ventros.replay_dead_events('tapob'), 1::bigint, 'replay of a tenant puts back the rest');
SELECT is((SELECT count(*) FROM ventros.outbox_queue q JOIN ev USING (tenant_id, seq)
            WHERE n IN (1, 3) AND NOT q.dead AND q.next_attempt_at IS NULL),
          2::bigint, 'replayed events are queued again, due at once');

-- published, then pruned after the retention
SELECT is(ventros.outbox_published((SELECT array_agg(seq ORDER BY n) FROM ev WHERE n IN (1, 2))),
          2, 'confirmed rows are marked published');
SELECT is((SELECT count(*) FROM ventros.outbox_queue q JOIN ev USING (tenant_id, seq) WHERE n IN (1, 2)),
          0::bigint, 'and leave the queue');
SELECT is(ventros.outbox_published((SELECT array_agg(seq ORDER BY n) FROM ev WHERE n IN (1, 2))),
          0, 'recording them again changes nothing');
UPDATE ventros.outbox SET occurred_at = now() - interval '8 days', published_at = now() - interval '8 days' WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 1);
SELECT is(ventros.outbox_prune(interval '7 days'), 1, 'pruning deletes what was published before the retention');
SELECT is((SELECT count(*) FROM ventros.outbox WHERE tenant_id = 'tapob'), 3::bigint, 'and keeps the rest');
DELETE FROM ventros.outbox WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 4);
SELECT is((SELECT count(*) FROM ventros.outbox_queue q JOIN ev USING (tenant_id, seq) WHERE n = 4),
          0::bigint, 'a pending event deleted from the outbox leaves the queue with it');

-- batches a crashed publisher left in flight: a failed attempt each, at start
SELECT ventros.emit('tapob.happened', 'tapob', '00000000-0000-4000-8000-0000000000a2', jsonb_build_object('n', g))
  FROM generate_series(5, 7) g;
CREATE TEMP TABLE fl AS
SELECT row_number() OVER (ORDER BY seq) AS n, tenant_id, seq FROM ventros.outbox
 WHERE tenant_id = 'tapob' AND aggregate_id = '00000000-0000-4000-8000-0000000000a2';
SELECT ventros.outbox_published(ARRAY[(SELECT seq FROM fl WHERE n = 1)]);
UPDATE ventros.outbox SET attempts = 2 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM fl WHERE n = 3);
DELETE FROM ventros.outbox_in_flight;
INSERT INTO ventros.outbox_in_flight (seqs) SELECT array_agg(seq ORDER BY n) FROM fl WHERE n IN (1, 2);
INSERT INTO ventros.outbox_in_flight (seqs) SELECT array_agg(seq ORDER BY n) FROM fl WHERE n IN (2, 3);
SELECT is(ventros.outbox_recover_in_flight(3, 100, 1000), 3, 'the events of the batches left in flight are counted once each');
SELECT is((SELECT string_agg(status || ':' || attempts, ' ' ORDER BY n) FROM ventros.outbox o JOIN fl USING (tenant_id, seq)),
          'published:0 pending:1 dead:3', 'a published one is untouched, a pending one counts an attempt, the last allowed one is dead');
SELECT is((SELECT last_error FROM ventros.outbox o JOIN fl USING (tenant_id, seq) WHERE n = 2),
          'the publisher stopped before these events were confirmed (a crash)', 'with the reason');
SELECT is((SELECT count(*)::int FROM ventros.outbox_in_flight), 0, 'the log is emptied');
SELECT is(ventros.outbox_recover_in_flight(3, 100, 1000), 0, 'a second start finds nothing');
SELECT ok(NOT has_table_privilege('ventros_admin', 'ventros.outbox_in_flight', 'SELECT'), 'the log is the publisher''s alone');

-- the publisher records by the row addresses its claim returned; rows that
-- moved since (updated: a new version elsewhere) are found by their key
SELECT ventros.emit('tapob.happened', 'tapob', '00000000-0000-4000-8000-0000000000a3', jsonb_build_object('n', g))
  FROM generate_series(8, 10) g;
CREATE TEMP TABLE tp AS
SELECT row_number() OVER (ORDER BY o.seq) AS n, o.tenant_id, o.seq, o.ctid AS outbox_row, q.ctid AS queue_row
  FROM ventros.outbox o JOIN ventros.outbox_queue q USING (tenant_id, seq)
 WHERE o.tenant_id = 'tapob' AND o.aggregate_id = '00000000-0000-4000-8000-0000000000a3';
UPDATE ventros.outbox SET payload = payload || '{"moved": true}' WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM tp WHERE n = 2);
UPDATE ventros.outbox_queue SET next_attempt_at = NULL WHERE seq IN (SELECT seq FROM tp WHERE n = 3);
SELECT is(ventros.outbox_published((SELECT array_agg(seq ORDER BY n) FROM tp), (SELECT array_agg(outbox_row ORDER BY n) FROM tp),
                                   (SELECT array_agg(queue_row ORDER BY n) FROM tp)),
          3, 'recording by row address counts every event, also those whose rows moved since the claim');
SELECT is((SELECT string_agg(o.status || ':' || (q.seq IS NULL), ' ' ORDER BY n) FROM tp
             JOIN ventros.outbox o USING (tenant_id, seq) LEFT JOIN ventros.outbox_queue q USING (seq)),
          'published:true published:true published:true', 'all three are published and out of the queue');

-- the publisher lock (taken by claims, raced in the isolation spec outbox_claim)
SELECT is(ventros.outbox_release_publisher(), false, 'a session that never claimed holds no publisher lock');

-- privileges: the URL (credentials) is for superusers only; replay for platform admins
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT current_setting('ventros.amqp_url')$$, '42501', NULL,
                 'ventros.amqp_url is hidden from non-superusers');
SELECT throws_ok($$SELECT ventros.replay_dead_events()$$, '42501', NULL,
                 'tenant admins cannot replay dead letters');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
