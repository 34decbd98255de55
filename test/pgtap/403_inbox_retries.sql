-- The inbox under repetition and poison: the same webhook 100 times is one
-- message; malformed items are stored with their error and disturb nothing;
-- retries with backoff by process_inbox (time as a parameter), attempts
-- capped; who may see and drive the inbox.
BEGIN;
-- processed inside accept_webhook, so the outcome is visible in this transaction
SET LOCAL ventros.inbox_processing = inline;
SELECT plan(34);

SELECT ventros.create_tenant('inb_r', 'Inbox retries');
SET LOCAL ventros.tenant = 'inb_r';
CREATE TEMP TABLE ids AS
SELECT (ventros.create_channel('WAHA', 'waha')).id AS waha,
       (ventros.create_channel('Cloud', 'whatsapp', config => '{"phone_number_id": "106540352242922", "allow_unsigned": true}')).id AS wa;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.item(key text) RETURNS ventros.inbox LANGUAGE sql AS $$
    SELECT * FROM ventros.inbox WHERE dedupe_key = key AND tenant_id = 'inb_r'
$$;

-- 100 deliveries of one webhook
SELECT is((SELECT count(*)::int FROM generate_series(1, 100) n
           WHERE ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_text') LIKE '200 %'), 100,
          'the same webhook delivered 100 times is answered 200 every time');
SELECT is((SELECT count(*)::int FROM generate_series(1, 99) n
           WHERE ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_text') = '200 {"status": "duplicate"}'), 99,
          'every repetition is a duplicate');
SELECT results_eq($$SELECT (SELECT count(*)::int FROM ventros.messages WHERE channel_id = (SELECT waha FROM ids)),
                           (SELECT count(*)::int FROM ventros.inbox WHERE channel_id = (SELECT waha FROM ids)),
                           (SELECT count(*)::int FROM ventros.outbox WHERE tenant_id = 'inb_r' AND event_type = 'message.created')$$,
                  $$VALUES (1, 1, 1)$$, 'one message, one inbox row, one message.created');

-- poison
SELECT is(ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_text',
                                    '{"id": "evt_noid", "payload": {"from": "5511999998888@c.us", "body": "x"}}'),
          (SELECT '200 ' || jsonb_build_object('status', 'accepted', 'inbox_id', (SELECT id FROM pg_temp.item('evt_noid')))::text),
          'a message without id is answered 200');
SELECT results_eq($$SELECT status, last_error, next_attempt_at FROM pg_temp.item('evt_noid')$$,
                  $$VALUES ('failed'::text, '22023: webhook item has no message id'::text, NULL::timestamptz)$$,
                  'stored failed with its error, never retried (the item itself is wrong)');
SELECT matches(ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_text', '{"id": "evt_nopayload", "payload": "oops"}'), '^200 ',
               'a payload that is not an object is answered 200');
SELECT is((SELECT status FROM pg_temp.item('evt_nopayload')), 'failed', 'and stored failed');
SELECT matches(ventros_test.post_webhook('waha', (SELECT waha FROM ids), convert_to('[1, 2, 3]', 'UTF8')), '^200 ',
               'a JSON body that is not an object is answered 200');
SELECT is((SELECT status FROM ventros.inbox WHERE channel_id = (SELECT waha FROM ids) AND event = 'invalid'), 'failed', 'and stored failed');
SELECT matches(ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_call'), '^200 ', 'an event we do not parse');
SELECT is((SELECT status FROM pg_temp.item('evt_01k6zvfrkz58gdm8d5tbjq8ac1')), 'unparsed', 'is stored unparsed');
SELECT matches(ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_text', '{"id": "evt_plain", "event": "message"}'), '^200 ',
               'a "message" event (a subset of message.any)');
SELECT is((SELECT status FROM ventros.inbox WHERE channel_id = (SELECT waha FROM ids) AND event = 'message'), 'ignored',
          'is stored and ignored: message.any carries it');
SELECT matches(ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_text',
                   jsonb_build_object('id', 'evt_group', 'payload', ventros_test.webhook_json('waha_text')->'payload'
                       || '{"id": "false_120363000000000001@g.us_G1", "from": "120363000000000001@g.us", "participant": "5511999998888@c.us"}')), '^200 ',
               'a group message');
SELECT results_eq($$SELECT status, result->>'reason' FROM pg_temp.item('msg:false_120363000000000001@g.us_G1')$$,
                  $$VALUES ('ignored'::text, 'group message on a channel without groups'::text)$$, 'is ignored on a channel without groups');
-- A batch with a poisoned item and a good one: the good one is processed.
SELECT matches(ventros_test.post_webhook('whatsapp', (SELECT wa FROM ids), ventros_test.body(jsonb_set(ventros_test.webhook_json('whatsapp_batch'),
                   '{entry,0,changes,0,value,messages,0}', '{"id": "wamid.POISON", "type": "text", "timestamp": "1749416500"}'))), '^200 ',
               'a batch with a message without sender');
SELECT results_eq($$SELECT i.dedupe_key, i.status, i.last_error FROM ventros.inbox i WHERE i.dedupe_key IN ('msg:wamid.POISON', 'msg:wamid.BATCH2') ORDER BY 1$$,
                  $$VALUES ('msg:wamid.BATCH2'::text, 'processed'::text, NULL::text),
                           ('msg:wamid.POISON', 'failed', '22023: webhook item has no sender (messages[].from)')$$,
                  'the poisoned item fails alone; the next item of the batch is processed');

-- retries: an ack before its message exists
SELECT matches(ventros_test.post_fixture('waha', (SELECT waha FROM ids), 'waha_ack'), '^200 ', 'an ack for a message not recorded yet');
SELECT results_eq($$SELECT status, attempts, next_attempt_at - processed_at IS NULL FROM pg_temp.item('ack:true_5511999998888@c.us_3EB0378E606CA43FEF38D2:3')$$,
                  $$VALUES ('unmatched'::text, 1, true)$$, 'is unmatched after one attempt');
SELECT is((SELECT count(*)::int FROM ventros.process_inbox(100, now())), 0, 'process_inbox takes nothing before it is due');
SELECT ok((SELECT next_attempt_at BETWEEN now() + interval '29 seconds' AND now() + interval '31 seconds'
           FROM pg_temp.item('ack:true_5511999998888@c.us_3EB0378E606CA43FEF38D2:3')), 'the first retry is 30 s later');
SELECT is((SELECT sum(p.items)::int FROM generate_series(now() + interval '2 hours', now() + interval '40 hours', interval '2 hours') t,
                  LATERAL ventros.process_inbox(100, t) p), 14,
          'retried until its attempts are spent (7 more for it, 7 for the batch''s status of an unknown message)');
SELECT results_eq($$SELECT status, attempts, next_attempt_at FROM pg_temp.item('ack:true_5511999998888@c.us_3EB0378E606CA43FEF38D2:3')$$,
                  $$VALUES ('unmatched'::text, 8, NULL::timestamptz)$$, 'then stays unmatched, no longer due');
-- a transient failure is retried and succeeds
UPDATE ventros.inbox SET status = 'failed', last_error = '40P01: deadlock detected', next_attempt_at = now() + interval '1 minute', processed_at = NULL
WHERE dedupe_key = 'msg:wamid.BATCH2' AND tenant_id = 'inb_r';
SELECT results_eq($$SELECT status, items FROM ventros.process_inbox(100, now() + interval '2 minutes')$$,
                  $$VALUES ('processed'::text, 1)$$, 'a failed item is retried when due');
SELECT results_eq($$SELECT status, last_error, attempts FROM pg_temp.item('msg:wamid.BATCH2')$$,
                  $$VALUES ('processed'::text, NULL::text, 2)$$, 'and is processed, its error cleared');

-- erasure of the contact removes its inbox rows (raw bodies hold its data)
SELECT ok((SELECT count(*) FROM ventros.inbox WHERE tenant_id = 'inb_r' AND contact_id = (SELECT contact_id FROM ventros.messages
           WHERE channel_message_id = 'false_5511999998888@c.us_2AF14CD157D1CF76DC78')) > 0, 'the contact''s webhooks are in the inbox');
SELECT ventros_test.run_as('ventros_admin', 'inb_r', format('SELECT ventros.erase_contact(%L)',
    (SELECT contact_id FROM ventros.messages WHERE channel_message_id = 'false_5511999998888@c.us_2AF14CD157D1CF76DC78')));
SELECT is((SELECT count(*)::int FROM ventros.inbox WHERE tenant_id = 'inb_r' AND dedupe_key = 'msg:false_5511999998888@c.us_2AF14CD157D1CF76DC78'), 0,
          'erasing the contact deletes them');

-- who sees and drives the inbox
SELECT is(ventros_test.run_as('ventros_agent', 'inb_r', $$SELECT count(*) FROM ventros.inbox$$),
          'ERROR 42501: permission denied for table inbox', 'agents do not read raw webhooks');
SELECT matches(ventros_test.run_as('ventros_admin', 'inb_r', $$SELECT ventros.process_inbox(10, now())$$), '^ERROR 42501',
               'process_inbox is for platform administrators');

SELECT ventros_test.run_as('ventros_admin', 'inb_r', format('SELECT ventros.reprocess_inbox_item(%L)', (SELECT id FROM pg_temp.item('evt_noid'))));
SELECT results_eq($$SELECT status, attempts, left(last_error, 6), next_attempt_at FROM pg_temp.item('evt_noid')$$,
                  $$VALUES ('failed'::text, 2, '22023:'::text, NULL::timestamptz)$$,
                  'an administrator reprocesses a failed item: one more attempt, failed again (its sender was erased meanwhile)');
SELECT matches(ventros_test.run_as('ventros_agent', 'inb_r', format('SELECT ventros.reprocess_inbox_item(%L)', (SELECT id FROM pg_temp.item('evt_noid')))),
               '^ERROR 42501', 'agents may not');
-- the function's own role check (it is SECURITY DEFINER: it must ask for the
-- caller's role, not its owner's), with the grant widened by mistake
GRANT EXECUTE ON FUNCTION ventros.reprocess_inbox_item(uuid) TO ventros_agent;
SELECT matches(ventros_test.run_as('ventros_agent', 'inb_r', format('SELECT ventros.reprocess_inbox_item(%L)', (SELECT id FROM pg_temp.item('evt_noid')))),
               '^ERROR 42501: only administrators reprocess inbox items', 'agents may not, even when granted the function');
SELECT is((SELECT attempts FROM pg_temp.item('evt_noid')), 2, 'and the item is not processed again');
REVOKE EXECUTE ON FUNCTION ventros.reprocess_inbox_item(uuid) FROM ventros_agent;
SELECT matches(ventros_test.run_as('ventros_admin', 'inb_r', format('SELECT ventros.reprocess_inbox_item(%L)', (SELECT id FROM pg_temp.item('msg:wamid.BATCH2')))),
               '^ERROR 55000', 'a processed item is not reprocessed');

SELECT * FROM finish();
ROLLBACK;
