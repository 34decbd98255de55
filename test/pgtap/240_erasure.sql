-- Erasure of a contact's personal data everywhere, verified by scanning
-- every text, varchar, jsonb and text[] column of every table of schema
-- ventros (every tenant), outbox included; and the subject export.
BEGIN;
SELECT plan(15);
SELECT ventros.create_tenant('t_erase', 'Erase');
SELECT ventros.create_tenant('t_erase_other', 'Other');
SET LOCAL ventros.tenant = 't_erase';

CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- Every occurrence of any secret in any text-bearing column of any Ventros table.
CREATE FUNCTION pg_temp.leaks(secrets text[]) RETURNS TABLE (place text, hits bigint) LANGUAGE plpgsql AS $$
DECLARE
    col record;
    n bigint;
BEGIN
    FOR col IN SELECT c.oid::regclass AS rel, a.attname
               FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE s.nspname = 'ventros' AND c.relkind IN ('r', 'p')
                 -- (the platform's tables no tenant role reads hold no contact's data:
                 -- Stripe's event log, the webhook secrets, the outbox's in-flight marks)
                 AND has_table_privilege(c.oid, 'SELECT')
                 AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'jsonb'::regtype,
                                    'json'::regtype, 'text[]'::regtype, 'name'::regtype)
    LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE %I::text ILIKE ANY ($1)', col.rel, col.attname)
            INTO n USING ARRAY(SELECT '%' || s || '%' FROM unnest(secrets) s);
        IF n > 0 THEN
            place := col.rel || '.' || col.attname;
            hits := n;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

SET LOCAL ROLE ventros_admin;
-- The subject, reached on WhatsApp, with data in many places.
INSERT INTO ids SELECT 'ch', id FROM ventros.create_channel('WA', 'whatsapp');
INSERT INTO ids SELECT 'zeb', id FROM ventros.create_contact('Zebulon Quixote', phone => '+5511987654321',
    email => 'zeb.quixote@example.org', external_id => 'EXT-ZQ-777', tags => '{vip}');
INSERT INTO ids SELECT 'msg', id FROM ventros.receive_message(pg_temp.id('ch'), '5511987654321@c.us',
    'Hi, I am Zebulon Quixote, mail me at zeb.quixote@example.org', sender_name => 'Zebulon Quixote');
SELECT is((SELECT contact_id FROM ventros.messages WHERE id = pg_temp.id('msg')), pg_temp.id('zeb'), 'the message found the contact by phone');
SELECT ventros.set_contact_custom_field(pg_temp.id('zeb'), 'cpf', 'text', '"123.456.789-00"');
SELECT ventros.update_contact(pg_temp.id('zeb'), (ventros.get_contact(pg_temp.id('zeb'))).version, '{"timezone": "America/Sao_Paulo", "name": "Zebulon Q. Quixote"}');
SELECT ventros.create_contact_event(pg_temp.id('zeb'), 'note.added', 'note', 'Call Zebulon Q. Quixote', 'Prefers zeb.quixote@example.org');
SELECT ventros.append_event_log('message.received', '{"from": "5511987654321@c.us"}', 'webhook', contact_id => pg_temp.id('zeb'));
SELECT ventros.add_note(pg_temp.id('zeb'), 'Zebulon Q. Quixote asked for a callback', ventros_test.new_agent(),
                        attachments => ARRAY['https://files.example.com/zeb.quixote@example.org.pdf']);
INSERT INTO ids SELECT 'list', id FROM ventros.create_contact_list('VIPs', true);
SELECT ventros.add_contact_to_list(pg_temp.id('list'), pg_temp.id('zeb'));
SELECT ventros.start_saga('process_inbound_message', context => '{"sender": "5511987654321@c.us"}');
-- Someone else, whose data must stay.
INSERT INTO ids SELECT 'amy', id FROM ventros.create_contact('Amy Other', email => 'amy@example.org');
SELECT ventros.create_contact_event(pg_temp.id('amy'), 'note.added', 'note', 'Amy asked about Zeb', 'She knows +5511987654321');

SELECT isnt_empty($$SELECT * FROM pg_temp.leaks(ARRAY['zeb.quixote@example.org', '5511987654321', 'Zebulon', 'EXT-ZQ-777', '123.456.789-00'])$$,
                  'before erasure the data is in many places');
SELECT ok(ventros.export_contact_data(pg_temp.id('zeb')) ? 'messages', 'export has the messages');
SELECT ok((ventros.export_contact_data(pg_temp.id('zeb'))->>'events')::jsonb @> '[{"event_type": "contact.created"}]',
          'export has the contact''s events');
SELECT is(jsonb_array_length(ventros.export_contact_data(pg_temp.id('zeb'))->'contact_identities'), 1, 'export has identities');

SELECT ok((ventros.erase_contact(pg_temp.id('zeb'), 'GDPR art. 17'))->>'values_redacted' IS NOT NULL, 'erasure runs');
RESET ROLE;
SELECT is_empty($$SELECT * FROM pg_temp.leaks(ARRAY['zeb.quixote@example.org', '5511987654321', 'Zebulon', 'EXT-ZQ-777', '123.456.789-00'])$$,
                'no text, jsonb or array column of any table holds the data any more');
SELECT is((SELECT payload->>'reason' FROM ventros.outbox WHERE aggregate_id = pg_temp.id('zeb') AND event_type = 'contact.erased'),
          'GDPR art. 17', 'contact.erased emitted');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.get_contact(pg_temp.id('zeb'))$$, 'P0002', NULL, 'the erased contact is gone');
SELECT is((SELECT text FROM ventros.messages WHERE id = pg_temp.id('msg')), '[erased]', 'message text blanked');
SELECT is((ventros.get_contact(pg_temp.id('amy'))).email, 'amy@example.org', 'others keep their data');
SELECT throws_ok($$SELECT ventros.erase_contact(gen_random_uuid())$$, 'P0002', NULL, 'unknown contact');
SET LOCAL ventros.tenant = 't_erase_other';
SELECT throws_ok($$SELECT ventros.erase_contact(pg_temp.id('amy'))$$, 'P0002', NULL, 'another tenant''s contact cannot be erased');
SELECT throws_ok($$SELECT ventros.export_contact_data(pg_temp.id('amy'))$$, 'P0002', NULL, 'nor exported');
SET LOCAL ventros.tenant = 't_erase';
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT ventros.erase_contact(pg_temp.id('amy'))$$, '42501', NULL, 'agents may not erase');
SELECT * FROM finish();
ROLLBACK;
