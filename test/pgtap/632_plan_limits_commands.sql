-- Plan limits on the commands that start costly work besides the sends
-- (sql/65_usage_metering.sql, ventros.check_plan_limit): contacts created
-- once the active-contacts limit is reached, sends that would make more
-- contacts active than the plan allows, enrichments and AI requests beyond
-- their limits -- VN020 (402 over HTTP), billing.limit_reached once per
-- period; contacts created for inbound deliveries by the platform are not
-- refused.
BEGIN;
SELECT plan(17);

SELECT ventros.create_tenant('t_lim', 'Limits');
SET LOCAL ventros.tenant = 't_lim';
CREATE TEMP TABLE ids AS SELECT ventros_test.new_channel('waha') AS channel, ventros_test.new_agent() AS agent,
    (ventros.create_contact('Ana', phone => '+5511955550001')).id AS a,
    (ventros.create_contact('Bia', phone => '+5511955550002')).id AS b,
    NULL::uuid AS c, ventros_test.new_session() AS session;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.send(contact uuid) RETURNS uuid LANGUAGE sql AS
    $$ SELECT (ventros.send_message(i.channel, contact, 'hello', i.agent)).id FROM ids i $$;
CREATE FUNCTION pg_temp.limit_events(text) RETURNS bigint LANGUAGE sql AS
    $$ SELECT count(*) FROM ventros.outbox WHERE event_type = 'billing.limit_reached' AND payload->>'metric' = $1
                                            AND tenant_id = 't_lim' $$;
GRANT EXECUTE ON FUNCTION pg_temp.send(uuid), pg_temp.limit_events(text) TO PUBLIC;
SET LOCAL ROLE ventros_platform_admin;
SELECT ventros.set_billing_plan('default', 'Free', '{"active_contacts": 2, "enrichments": 1, "ai_tokens": 100}');
-- the session's contact had no message: two contacts may still become active
SET LOCAL ROLE ventros_admin;

-- ---- active contacts
SELECT lives_ok($$SELECT pg_temp.send(a) FROM ids$$, 'a message makes the first contact active');
SELECT is(pg_temp.limit_events('active_contacts'), 0::bigint, 'no event below the limit');
SELECT lives_ok($$SELECT pg_temp.send(b) FROM ids$$, 'the second reaches the limit');
SELECT is(pg_temp.limit_events('active_contacts'), 1::bigint, 'billing.limit_reached when it is reached');
SELECT lives_ok($$SELECT pg_temp.send(a) FROM ids$$, 'a contact already active is messaged again');
SELECT throws_ok($$SELECT ventros.create_contact('Cris', phone => '+5511955550003')$$, 'VN020',
                 'plan limit reached: 2 active contacts', 'a new contact is refused once the limit is reached');
SELECT throws_ok($$INSERT INTO api.contacts (name, phone) VALUES ('Dora', '+5511955550005')$$, 'VN020',
                 'plan limit reached: 2 active contacts', 'a direct write (POST /contacts) too');
RESET ROLE;
UPDATE ids SET c = (ventros.create_contact('Cris', phone => '+5511955550003')).id;
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT pg_temp.send(c) FROM ids$$, 'VN020', 'plan limit reached: 2 active contacts',
                 'a send that would make a third contact active is refused');
SELECT is((SELECT array_agg(sqlstate) FROM ventros.import_contacts(E'name,phone\nDani,+5511955550004\n')), '{VN020}',
          'an import too: its lines refused with VN020, nothing written');
SELECT is((SELECT count(*) FROM ventros.contacts WHERE last_interaction_at IS NOT NULL), 2::bigint,
          'nothing was sent to the refused contact');
-- the platform's inbound path (the webhook entry point, the inbox worker) acts as the extension's owner
RESET ROLE;
SELECT lives_ok($$SELECT ventros.receive_message(channel, '5511955550009@c.us', 'oi', channel_message_id => 'lim-in-1') FROM ids$$,
                'a contact created for an inbound delivery is not refused');
SET LOCAL ROLE ventros_admin;
SELECT is(pg_temp.limit_events('active_contacts'), 1::bigint, 'billing.limit_reached once in the period');

-- ---- enrichments
RESET ROLE;
UPDATE ventros.contacts SET profile_picture_url = 'https://pics.example/a.jpg', version = version WHERE id = (SELECT a FROM ids);
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.enrich_profile_picture(a) FROM ids$$, '55000', NULL,
                 'below the enrichments limit the command goes on (here: enrichment is off)');
RESET ROLE;
SELECT ventros.meter_usage(ARRAY['enrichments'], ARRAY[1]::bigint[]);
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.enrich_profile_picture(a) FROM ids$$, 'VN020', 'plan limit reached: 1 enrichments',
                 'an enrichment beyond the limit is refused');

-- ---- AI tokens
RESET ROLE;
SELECT ventros.meter_usage(ARRAY['ai_tokens'], ARRAY[99]::bigint[]);
SET LOCAL ROLE ventros_admin;
SELECT lives_ok($$SELECT ventros.summarize_session(session) FROM ids$$, 'an AI request below the token limit is queued');
RESET ROLE;
SELECT ventros.meter_usage(ARRAY['ai_tokens'], ARRAY[1]::bigint[]);
UPDATE ventros.ai_completions SET status = 'failed' WHERE tenant_id = 't_lim';
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.summarize_session(session) FROM ids$$, 'VN020', 'plan limit reached: 100 ai tokens',
                 'one once the tokens used reached the limit is refused');
SELECT is((SELECT quantity FROM ventros.usage_status() WHERE metric = 'messages_sent'), 3::bigint,
          'the refused send counted nothing');

SELECT * FROM finish();
ROLLBACK;
