-- WAHA group messages: the group's chat is created at its first message and
-- updated by the next ones, each writer becomes a participant once, and the
-- messages point at the chat.
BEGIN;
SET LOCAL ventros.inbox_processing = inline;
SELECT plan(14);

SELECT ventros.create_tenant('inb_grp', 'Inbox WAHA groups');
SET LOCAL ventros.tenant = 'inb_grp';
CREATE TEMP TABLE ids AS
SELECT (ventros.create_channel('WAHA', 'waha', config => '{"session": "acme-sales", "base_url": "http://waha:3000"}')).id AS ch;
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.ch() RETURNS uuid LANGUAGE sql AS $$ SELECT ch FROM ids $$;
-- A group message: id, group, participant, unix time.
CREATE FUNCTION pg_temp.group_message(id text, grp text, participant text, ts bigint, body text DEFAULT 'oi') RETURNS text LANGUAGE sql AS $$
    SELECT ventros_test.post_webhook('waha', pg_temp.ch(), ventros_test.body(jsonb_set(ventros_test.webhook_json('waha_text'), '{payload}',
        ventros_test.webhook_json('waha_text')->'payload'
        || jsonb_build_object('id', id, 'from', grp, 'participant', participant, 'timestamp', ts, 'body', body, '_data', NULL))))
$$;
CREATE FUNCTION pg_temp.chat(grp text) RETURNS ventros.chats LANGUAGE sql AS $$
    SELECT * FROM ventros.chats WHERE channel_id = pg_temp.ch() AND external_id = grp
$$;
CREATE FUNCTION pg_temp.participants(grp text) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(c.phone ORDER BY c.phone), '{}') FROM ventros.chat_participants p
    JOIN ventros.contacts c ON c.id = p.participant_id
    WHERE p.chat_id = (pg_temp.chat(grp)).id AND p.left_at IS NULL AND p.deleted_at IS NULL
$$;

-- a channel without groups: ignored, no chat
SELECT matches(pg_temp.group_message('false_120363000000000009@g.us_X1', '120363000000000009@g.us', '5511977776666@c.us', 1767607200),
               '^200 ', 'a group message on a channel without groups is accepted');
SELECT is((SELECT count(*)::int FROM ventros.chats WHERE channel_id = pg_temp.ch()), 0, '... ignored: no chat');

UPDATE ventros.channels SET allow_groups = true, version = version WHERE id = pg_temp.ch();
SELECT matches(pg_temp.group_message('false_120363000000000001@g.us_G1', '120363000000000001@g.us', '5511977776666@c.us', 1767607200),
               '^200 ', 'a first group message');
SELECT is((SELECT chat_type || ' ' || subject || ' ' || status || ' ' || last_message_at FROM pg_temp.chat('120363000000000001@g.us')),
          'group 120363000000000001@g.us active 2026-01-05 10:00:00+00', 'creates the group chat (subject: its id until named), last message at its time');
SELECT is(pg_temp.participants('120363000000000001@g.us'), ARRAY['+5511977776666'], 'its writer is a participant');
SELECT is((SELECT chat_id FROM ventros.messages WHERE channel_message_id = 'false_120363000000000001@g.us_G1'),
          (pg_temp.chat('120363000000000001@g.us')).id, 'the message points at the chat');
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = (pg_temp.chat('120363000000000001@g.us')).id),
          ARRAY['chat.created', 'chat.participant_added'], 'chat.created, chat.participant_added');

SELECT matches(pg_temp.group_message('false_120363000000000001@g.us_G2', '120363000000000001@g.us', '5511955554444@c.us', 1767607260),
               '^200 ', 'another member writes');
SELECT matches(pg_temp.group_message('false_120363000000000001@g.us_G3', '120363000000000001@g.us', '5511977776666@c.us', 1767607320),
               '^200 ', 'the first writes again');
SELECT is(pg_temp.participants('120363000000000001@g.us'), ARRAY['+5511955554444', '+5511977776666'], 'each writer is a participant once');
SELECT is((SELECT count(*)::int || ' ' || max(last_message_at) FROM ventros.chats WHERE channel_id = pg_temp.ch()), '1 2026-01-05 10:02:00+00',
          'one chat, updated to the last message''s time');
SELECT is((SELECT count(DISTINCT chat_id)::int FROM ventros.messages WHERE channel_id = pg_temp.ch() AND metadata->>'group_id' IS NOT NULL),
          1, 'every group message points at the chat');
-- a one-to-one message is not in a group chat
SELECT matches(ventros_test.post_webhook('waha', pg_temp.ch(), ventros_test.body(ventros_test.webhook_json('waha_text'))), '^200 ', 'a one-to-one message');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE channel_id = pg_temp.ch() AND chat_id IS NULL), 1, '... points at no group chat');

SELECT * FROM finish();
ROLLBACK;
