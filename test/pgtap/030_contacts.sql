-- Contacts: commands, normalisation, lookups with keyset paging, and bad
-- input getting the SQLSTATEs of the error table with nothing written.
BEGIN;
SELECT plan(47);

SELECT ventros.create_tenant('con_a', 'Contacts A');
SET LOCAL ventros.tenant = 'con_a';
SET LOCAL ROLE ventros_agent;

CREATE TEMP TABLE snapshot AS SELECT 0 AS contacts, 0 AS events;
GRANT ALL ON snapshot TO PUBLIC;
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM ventros.contacts) || '/' || (SELECT count(*) FROM ventros.outbox)
$$;

-- create and normalise
SELECT is(c.phone, '+5511987654321', 'phones are normalised to E.164')
FROM ventros.create_contact('  Maria Silva ', phone => '+55 (11) 98765-4321', email => ' Maria@Example.COM ') c;
SELECT is(name || '|' || email || '|' || version || '|' || language, 'Maria Silva|maria@example.com|1|en',
          'names are trimmed, emails lowercased, version 1, language en')
FROM ventros.contacts WHERE phone = '+5511987654321';
SELECT is(ventros.normalize_phone('005511987654321'), '+5511987654321', '00 is the international prefix');
SELECT is(ventros.normalize_phone('5511987654321@c.us'), '+5511987654321', 'a WhatsApp id yields its number');
SELECT is(c.tags, ARRAY['a', 'b'], 'tags are made distinct')
FROM ventros.create_contact('Tagged', tags => ARRAY['b', 'a', 'b']) c;
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = (SELECT id FROM ventros.contacts WHERE name = 'Tagged')),
          ARRAY['contact.created', 'contact.tag_added', 'contact.tag_added'],
          'create_contact emits contact.created (then contact.tag_added per tag)');

-- lookups
SELECT is((SELECT name FROM ventros.find_contact(phone => '55 11 98765 4321')), 'Maria Silva',
          'find_contact by phone normalises the query');
SELECT is((SELECT name FROM ventros.find_contact(email => 'MARIA@example.com')), 'Maria Silva',
          'find_contact by email ignores case');
SELECT is((SELECT count(*)::int FROM ventros.find_contact(phone => '+5511900000000')), 0,
          'find_contact returns no row for an unknown phone');
SELECT ventros.create_contact(n, phone => '+55119000000' || lpad(i::text, 2, '0'))
FROM unnest(ARRAY['Paula', 'Pedro', 'pablo', 'Patricia', 'Paulo']) WITH ORDINALITY AS x(n, i);
SELECT results_eq(
    $$SELECT name FROM ventros.list_contacts(name_prefix => 'pa', page_size => 2)$$,
    $$VALUES ('pablo'), ('Patricia')$$, 'list_contacts by name prefix, first page, in name order');
SELECT results_eq(
    $$SELECT name FROM ventros.list_contacts(name_prefix => 'pa', page_size => 2,
        after_name => 'Patricia', after_id => (SELECT id FROM ventros.contacts WHERE name = 'Patricia'))$$,
    $$VALUES ('Paula'), ('Paulo')$$, 'list_contacts second page continues after the keyset cursor');
SELECT is((SELECT count(*)::int FROM ventros.list_contacts(name_prefix => 'pa', page_size => 2,
        after_name => 'Paulo', after_id => (SELECT id FROM ventros.contacts WHERE name = 'Paulo'))), 0,
    'list_contacts after the last row is empty');
SELECT is((SELECT name FROM ventros.list_contacts(tag => 'a')), 'Tagged', 'list_contacts by tag');
SELECT is((SELECT count(*)::int FROM ventros.list_contacts(name_prefix => '%')), 0,
          'LIKE wildcards in a name prefix are taken literally');
SELECT throws_ok($$SELECT * FROM ventros.list_contacts(page_size => 0)$$, '22023', NULL, 'page_size 0 is refused (22023)');
SELECT throws_ok($$SELECT * FROM ventros.list_contacts(page_size => 100000)$$, '54000', NULL,
                 'page_size over ventros.max_page_size is refused (54000)');

-- update
SELECT is(c.version, 2, 'update_contact with the current version bumps it')
FROM ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Maria Silva'), 1,
                            '{"name": "Maria S.", "phone": "+55 11 98765-0000"}') c;
SELECT is(payload, '{"changed": {"name": "Maria S.", "phone": "+5511987650000"}, "previous": {"name": "Maria Silva", "phone": "+5511987654321"}}'::jsonb,
          'contact.updated carries the changed fields and their previous values')
FROM ventros.outbox WHERE event_type = 'contact.updated' ORDER BY seq DESC LIMIT 1;
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Maria S.'), 1, '{"name": "Late"}')$$,
                 'VN001', NULL, 'a stale expected_version is refused (VN001)');
SELECT throws_like($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Maria S.'), 1, '{"name": "Late"}')$$,
                   '%has changed since version 1 was read%', 'the VN001 message names the stale version');

-- bad input: the right SQLSTATE and nothing written
UPDATE snapshot SET contacts = (SELECT count(*) FROM ventros.contacts), events = (SELECT count(*) FROM ventros.outbox);
SELECT throws_ok($$SELECT ventros.create_contact(NULL)$$, '23502', NULL, 'a NULL name is refused (23502)');
SELECT throws_ok($$SELECT ventros.create_contact('   ')$$, '23514', NULL, 'a blank name is refused (23514)');
SELECT throws_ok($$SELECT ventros.create_contact(repeat('x', 201))$$, '54000', NULL, 'an oversized name is refused (54000)');
SELECT throws_like($$SELECT ventros.create_contact(repeat('x', 100000))$$, '%contact name is too long%',
                   'the size error names the field');
SELECT throws_ok($$SELECT ventros.create_contact('Bad phone', phone => 'call me')$$, '22P02', NULL,
                 'a malformed phone is refused (22P02)');
SELECT throws_ok($$SELECT ventros.create_contact('Bad phone', phone => '+123')$$, '22P02', NULL,
                 'a too short phone is refused (22P02)');
SELECT throws_ok($$SELECT ventros.create_contact('Bad email', email => 'not-an-email')$$, '22P02', NULL,
                 'a malformed email is refused (22P02)');
SELECT throws_ok($$SELECT ventros.create_contact('Bad lang', language => 'English!')$$, '23514', NULL,
                 'a malformed language is refused by its CHECK (23514)');
SELECT throws_ok($$SELECT ventros.create_contact('Null tag', tags => ARRAY[NULL]::text[])$$, '23514', NULL,
                 'a NULL tag is refused (23514)');
SELECT throws_ok($$SELECT ventros.create_contact('Twin', phone => '+55 11 98765-0000')$$, '23505',
                 'a contact with phone +5511987650000 already exists', 'a duplicate phone is a clear 23505');
SELECT throws_ok($$SELECT ventros.create_contact('Twin', email => 'maria@example.com')$$, '23505',
                 'a contact with email maria@example.com already exists', 'a duplicate email is a clear 23505');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1, '{"phone": "+5511987650000"}')$$,
                 '23505', 'a contact with phone +5511987650000 already exists', 'an update to a duplicate phone is a clear 23505');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1, '{"nmae": "x"}')$$,
                 '22023', 'unknown or read-only contact field "nmae"', 'an unknown field is refused (22023)');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1, '{"tenant_id": "x"}')$$,
                 '22023', NULL, 'tenant_id is not an updatable field (22023)');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1, '"name"')$$,
                 '22023', NULL, 'changes that are not a JSON object are refused (22023)');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1, '{"tags": "vip"}')$$,
                 '22P02', NULL, 'a value of the wrong type is refused (22P02)');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1, '{"name": "unterminated'::jsonb)$$,
                 '22P02', NULL, 'malformed JSON is refused (22P02)');
SELECT throws_ok($$SELECT ventros.update_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), NULL, '{"name": "x"}')$$,
                 '23502', NULL, 'a NULL expected_version is refused (23502)');
SELECT throws_ok($$SELECT ventros.update_contact('00000000-0000-4000-8000-00000000dead', 1, '{"name": "x"}')$$,
                 'P0002', 'contact 00000000-0000-4000-8000-00000000dead not found', 'an unknown id is P0002');
SELECT throws_ok($$SELECT ventros.get_contact('00000000-0000-4000-8000-00000000dead')$$, 'P0002', NULL,
                 'get_contact of an unknown id is P0002');
SELECT throws_ok($$SELECT ventros.get_contact('not-a-uuid')$$, '22P02', NULL, 'a malformed id is refused (22P02)');
SELECT is(pg_temp.counts(), (SELECT contacts || '/' || events FROM snapshot), 'refused commands wrote nothing');

-- delete (admins only)
SELECT throws_ok($$SELECT ventros.delete_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'))$$, '42501', NULL,
                 'agents may not delete contacts (42501)');
RESET ROLE;
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.delete_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 7)$$, 'VN001', NULL,
                 'delete with a stale version is refused (VN001)');
SELECT lives_ok($$SELECT ventros.delete_contact((SELECT id FROM ventros.contacts WHERE name = 'Paula'), 1)$$,
                'delete with the current version succeeds');
SELECT lives_ok($$SELECT ventros.create_contact('Paula again', phone => '+5511900000001')$$,
                'a deleted contact''s phone may be used again');
SELECT throws_ok($$SELECT ventros.delete_contact('00000000-0000-4000-8000-00000000dead')$$, 'P0002', NULL,
                 'deleting an unknown contact is P0002');

SELECT * FROM finish();
ROLLBACK;
