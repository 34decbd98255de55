-- The outbox publisher's SQL side: recording outcomes (backoff, dead
-- letters), replay, pruning, lease release, the status view, and who may
-- see and call what.  Claims and their races are in the isolation spec
-- outbox_claim; delivery is in test/integration/outbox*.test.mjs.
BEGIN;
SELECT plan(16);

SELECT ventros.register_event_type('tapob.happened', 'tapob');
SET LOCAL ventros.tenant = 'tapob';
SELECT ventros.emit('tapob.happened', 'tapob', '00000000-0000-4000-8000-0000000000a1', jsonb_build_object('n', g))
  FROM generate_series(1, 4) g;
CREATE TEMP TABLE ev AS
SELECT row_number() OVER (ORDER BY seq) AS n, tenant_id, seq, event_id FROM ventros.outbox WHERE tenant_id = 'tapob';

-- a failed attempt under the maximum: pending, retried after backoff with jitter
UPDATE ventros.outbox SET attempts = 3, claimed_until = now() + interval '1 minute', claimed_by = 1
 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 1);
SELECT is(ventros.outbox_failed(ARRAY['tapob'], ARRAY[(SELECT seq FROM ev WHERE n = 1)], ARRAY['nacked by the broker'], 5, 100, 1000),
          0, 'a failed attempt under max_attempts dead-letters nothing');
SELECT is((SELECT status || ' ' || last_error || ' ' || (claimed_until IS NULL) FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n = 1),
          'pending nacked by the broker true', 'it stays pending with its error, lease released');
SELECT ok((SELECT next_attempt_at - now() BETWEEN interval '200 ms' AND interval '400 ms'
             FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n = 1),
          'retry after backoff_min * 2^(attempts-1) with jitter in [50%, 100%]');
UPDATE ventros.outbox SET attempts = 40 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 2);
SELECT is(ventros.outbox_failed(ARRAY['tapob'], ARRAY[(SELECT seq FROM ev WHERE n = 2)], ARRAY['x'], 50, 100, 1000),
          0, 'attempts under a high maximum');
SELECT ok((SELECT next_attempt_at - now() <= interval '1 second' FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n = 2),
          'the backoff is capped at backoff_max');

-- at the maximum: dead
UPDATE ventros.outbox SET attempts = 5 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n IN (1, 3));
SELECT is(ventros.outbox_failed(ARRAY['tapob', 'tapob'], (SELECT array_agg(seq ORDER BY n) FROM ev WHERE n IN (1, 3)),
                                ARRAY['returned', 'returned'], 5, 100, 1000),
          2, 'at max_attempts both are dead-lettered');
SELECT is((SELECT dead FROM ventros.outbox_status), 2::bigint, 'the status view counts them as dead');

-- replay
SELECT is(ventros.replay_dead_events(event_ids => ARRAY[(SELECT event_id FROM ev WHERE n = 3)]), 1::bigint,
          'replay by event id puts back exactly that one');
SELECT is((SELECT string_agg(status || ':' || attempts, ' ' ORDER BY n) FROM ventros.outbox o JOIN ev USING (tenant_id, seq) WHERE n IN (1, 3)),
          'dead:5 pending:0', 'the replayed row is pending with no attempts; the other is still dead');
SELECT is(ventros.replay_dead_events('tapob'), 1::bigint, 'replay of a tenant puts back the rest');

-- published, then pruned after the retention
SELECT is(ventros.outbox_published(ARRAY['tapob', 'tapob'], (SELECT array_agg(seq ORDER BY n) FROM ev WHERE n IN (1, 2))),
          2, 'confirmed rows are marked published');
UPDATE ventros.outbox SET published_at = now() - interval '8 days' WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n = 1);
SELECT is(ventros.outbox_prune(interval '7 days'), 1, 'pruning deletes what was published before the retention');
SELECT is((SELECT count(*) FROM ventros.outbox WHERE tenant_id = 'tapob'), 3::bigint, 'and keeps the rest');

-- leases of publishers that are gone are released; a live one's are kept
UPDATE ventros.outbox SET claimed_until = now() + interval '1 hour', claimed_by = CASE WHEN seq = (SELECT seq FROM ev WHERE n = 3) THEN 0 ELSE pg_backend_pid() END
 WHERE (tenant_id, seq) IN (SELECT tenant_id, seq FROM ev WHERE n IN (3, 4));
SELECT is(ventros.outbox_release_leases(-1), 1, 'a dead claimer''s lease is released, a live one''s kept');

-- privileges: the URL (credentials) is for superusers only; replay for platform admins
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT current_setting('ventros.amqp_url')$$, '42501', NULL,
                 'ventros.amqp_url is hidden from non-superusers');
SELECT throws_ok($$SELECT ventros.replay_dead_events()$$, '42501', NULL,
                 'tenant admins cannot replay dead letters');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
