-- Broadcast accounting tells the truth: an execution follows its message to
-- the provider and back.  Its send queues the message (sending); the
-- provider's answer, recorded as the dispatcher records it
-- (ventros.http_record_attempt), makes it sent or failed; a later failed
-- status fails a sent one; the counts in broadcast_stats follow, and the
-- broadcast completes only when every send has its outcome.
BEGIN;
SELECT plan(21);

SELECT ventros.create_tenant('bcast_t', 'Broadcast accounting');
SET LOCAL ventros.tenant = 'bcast_t';

-- Answer a request as the dispatcher would (as test/pgtap/410_channel_send.sql does).
CREATE FUNCTION pg_temp.answer(req uuid, status integer, body text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE ventros.http_requests SET status = 'in_flight', attempts = attempts + 1 WHERE id = req RETURNING attempts INTO n;
    RETURN ventros.http_record_attempt('bcast_t', req, n, status BETWEEN 200 AND 299,
                                       status IN (408, 425, 429) OR status >= 500, NULL, status, NULL,
                                       convert_to(body, 'UTF8'), false,
                                       CASE WHEN status NOT BETWEEN 200 AND 299 THEN 'HTTP ' || status END);
END
$$;
-- The message.send request of a broadcast's execution for the n-th contact.
CREATE FUNCTION pg_temp.req(b uuid, n integer) RETURNS uuid LANGUAGE sql AS $$
    SELECT r.id FROM ventros.http_requests r
    JOIN ventros.broadcast_executions e ON e.message_id = r.correlation_id AND r.purpose = 'message.send'
    JOIN ventros.contacts c ON c.id = e.contact_id
    WHERE e.broadcast_id = b AND c.name = 'Contact ' || n
$$;
CREATE FUNCTION pg_temp.stats(b uuid) RETURNS text LANGUAGE sql AS $$
    SELECT format('sent %s, failed %s, sending %s, pending %s, %s', s->>'sent', s->>'failed', s->>'sending', s->>'pending', s->>'status')
    FROM ventros.broadcast_stats(b) s
$$;
CREATE FUNCTION pg_temp.executions(b uuid) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(e.status || coalesce(' (' || e.error || ')', ''), ', ' ORDER BY c.name)
    FROM ventros.broadcast_executions e JOIN ventros.contacts c ON c.id = e.contact_id WHERE e.broadcast_id = b
$$;

SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
INSERT INTO ids SELECT 'ch', id FROM ventros.create_channel('WAHA', 'waha',
    config => '{"base_url": "http://waha.test:3000", "session": "default", "api_key": "k1"}');
INSERT INTO ids SELECT 'l', id FROM ventros.create_contact_list('Four', true);
SELECT ventros.add_contact_to_list((SELECT id FROM ids WHERE name = 'l'),
                                   (ventros.create_contact('Contact ' || i, phone => '+5511900000' || lpad(i::text, 3, '0'))).id)
FROM generate_series(1, 4) i;
INSERT INTO ids SELECT 'b', id FROM ventros.create_broadcast('Four sends', (SELECT id FROM ids WHERE name = 'l'),
                                                             (SELECT id FROM ids WHERE name = 'ch'), '{"type": "text", "content": "Hi"}');
INSERT INTO ids SELECT 'b2', id FROM ventros.create_broadcast('Four more', (SELECT id FROM ids WHERE name = 'l'),
                                                              (SELECT id FROM ids WHERE name = 'ch'), '{"type": "text", "content": "Again"}');
GRANT SELECT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
SELECT ventros.execute_broadcast(pg_temp.id('b'));
RESET ROLE;

-- ---- every provider answer fails: four failed, none sent --------------------
SET LOCAL ROLE ventros_agent;
SELECT is(ventros.send_broadcast_batch(pg_temp.id('b')), 4, 'four sends queued');
RESET ROLE;
SELECT is(pg_temp.stats(pg_temp.id('b')), 'sent 0, failed 0, sending 4, pending 0, running',
          'queued is not sent: the four wait for the provider');
SELECT is((SELECT count(*)::int FROM ventros.broadcast_executions e JOIN ventros.http_requests r ON r.correlation_id = e.message_id
           WHERE e.broadcast_id = pg_temp.id('b') AND e.status = 'sending' AND r.purpose = 'message.send'), 4,
          'each sending execution has its message and the provider request');
SELECT is(pg_temp.answer(pg_temp.req(pg_temp.id('b'), i), 400,
                         '{"statusCode": 400, "message": ["chatId must end with @c.us"], "error": "Bad Request"}'), 'failed',
          format('the provider refuses send %s', i))
FROM generate_series(1, 4) i;
SELECT is(pg_temp.stats(pg_temp.id('b')), 'sent 0, failed 4, sending 0, pending 0, completed',
          'four refused sends count as four failed, none sent; the broadcast completes');
SELECT is(pg_temp.executions(pg_temp.id('b')),
          'failed (HTTP 400: chatId must end with @c.us), failed (HTTP 400: chatId must end with @c.us), '
          'failed (HTTP 400: chatId must end with @c.us), failed (HTTP 400: chatId must end with @c.us)',
          'each execution failed with the provider''s error');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE handler_error IS NOT NULL), 0, 'no handler failed');

-- ---- mixed: accepted, refused, retried then dead, accepted then failed ----
SET LOCAL ROLE ventros_agent;
SELECT ventros.execute_broadcast(pg_temp.id('b2'));
SELECT is(ventros.send_broadcast_batch(pg_temp.id('b2')), 4, 'four more queued');
RESET ROLE;
SELECT is(pg_temp.answer(pg_temp.req(pg_temp.id('b2'), 1), 201, '{"id": "true_5511900000001@c.us_AAA1"}'), 'succeeded',
          'the provider accepts send 1');
SELECT is(pg_temp.stats(pg_temp.id('b2')), 'sent 1, failed 0, sending 3, pending 0, running',
          'accepted: sent; the broadcast waits for the others');
SELECT is(pg_temp.answer(pg_temp.req(pg_temp.id('b2'), 2), 401, '{"statusCode": 401, "message": "Unauthorized"}'), 'failed',
          'the provider refuses send 2');
UPDATE ventros.http_requests SET max_attempts = 1 WHERE id = pg_temp.req(pg_temp.id('b2'), 3);
SELECT is(pg_temp.answer(pg_temp.req(pg_temp.id('b2'), 3), 503), 'dead', 'send 3 dies after its attempts');
SELECT is(pg_temp.answer(pg_temp.req(pg_temp.id('b2'), 4), 201, '{"id": "true_5511900000004@c.us_AAA4"}'), 'succeeded',
          'the provider accepts send 4');
SELECT is(pg_temp.stats(pg_temp.id('b2')), 'sent 2, failed 2, sending 0, pending 0, completed',
          'two sent, two failed; completed once every send has its outcome');
-- a delivery status moves nothing; a later failure status moves sent to failed
SELECT ventros.confirm_message_status('delivered', channel_id => pg_temp.id('ch'), channel_message_id => 'true_5511900000001@c.us_AAA1');
SELECT ventros.confirm_message_status('failed', channel_id => pg_temp.id('ch'), channel_message_id => 'true_5511900000004@c.us_AAA4',
                                      error => 'WAHA ack ERROR');
SELECT is(pg_temp.stats(pg_temp.id('b2')), 'sent 1, failed 3, sending 0, pending 0, completed',
          'delivered stays sent; a sent message reported failed later counts as failed');
SELECT is(pg_temp.executions(pg_temp.id('b2')),
          'sent, failed (HTTP 401: Unauthorized), failed (HTTP 503), failed (WAHA ack ERROR)',
          'each execution says why');
SELECT is((SELECT count(*)::int FROM ventros.broadcast_executions e JOIN ventros.messages m ON m.id = e.message_id
           WHERE e.broadcast_id IN (pg_temp.id('b'), pg_temp.id('b2')) AND (e.status = 'failed') <> (m.status = 'failed')), 0,
          'every execution agrees with its message');
SELECT ok(ventros_test.events_of(pg_temp.id('b2')) @> ARRAY['broadcast.started', 'broadcast.completed'], 'broadcast events');

SELECT * FROM finish();
ROLLBACK;
