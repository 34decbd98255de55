-- Contact identities and merge suggestions, custom fields, consent, and the
-- contact merge.
BEGIN;
SELECT plan(28);

SELECT ventros.create_tenant('crm_x', 'Contacts');
SET LOCAL ventros.tenant = 'crm_x';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids AS SELECT ventros_test.new_contact() AS a, ventros_test.new_contact() AS b,
                                ventros_test.new_channel() AS ch, ventros_test.new_channel() AS ch2, ventros_test.new_agent() AS agent;

-- identities
SELECT is((ventros.add_contact_identity((SELECT a FROM ids), 'phone', '+55 (11) 97777-1111')).value, '+5511977771111',
          'a phone identity is stored in E.164');
SELECT is((ventros.add_contact_identity((SELECT a FROM ids), 'whatsapp_lid', '99887766@LID')).value, '99887766@lid',
          'a @lid identity is lowercased');
SELECT throws_ok($$SELECT ventros.add_contact_identity((SELECT a FROM ids), 'psid', 'abc')$$, '22P02', NULL, 'a malformed PSID is refused');
SELECT throws_ok($$SELECT ventros.add_contact_identity((SELECT a FROM ids), 'fax', '1')$$, '22023', NULL, 'an unknown identity type is refused');
SELECT is((ventros.add_contact_identity((SELECT a FROM ids), 'phone', '+5511977771111')).version, 1, 'adding an identity again is idempotent');
SELECT ventros.add_contact_identity((SELECT a FROM ids), 'igsid', '1234567890');
SELECT ventros.add_contact_identity((SELECT b FROM ids), 'igsid', '1234567890');
SELECT results_eq($$SELECT status, identity_type, value FROM ventros.contact_merge_suggestions$$,
                  $$VALUES ('open'::text, 'igsid'::text, '1234567890'::text)$$, 'a shared identity opens a merge suggestion');
SELECT is(ventros.find_contact_by_identity('phone', '+5511977771111'), (SELECT a FROM ids), 'a contact is found by identity');

-- custom fields
SELECT is((ventros.set_contact_custom_field((SELECT a FROM ids), 'plan', 'select', '"gold"')).field_value, '"gold"'::jsonb, 'a custom field is set');
SELECT is((ventros.set_contact_custom_field((SELECT a FROM ids), 'plan', 'select', '"silver"')).version, 2, 'and changed');
SELECT throws_ok($$SELECT ventros.set_contact_custom_field((SELECT a FROM ids), 'age', 'number', '"old"')$$, '22P02', NULL,
                 'a value of the wrong type is refused');
SELECT throws_ok($$SELECT ventros.set_contact_custom_field((SELECT a FROM ids), 'Bad Key', 'text', '"x"')$$, '22023', NULL,
                 'a malformed key is refused');

-- consent
SELECT is(ventros.may_message((SELECT a FROM ids), (SELECT ch FROM ids)), true, 'no record: the contact may be messaged');
SELECT ventros.set_contact_consent((SELECT a FROM ids), false);
SELECT is(ventros.may_message((SELECT a FROM ids), (SELECT ch2 FROM ids)), false, 'an opt-out of all channels blocks every channel');
SELECT ventros.set_contact_consent((SELECT a FROM ids), true, (SELECT ch FROM ids));
SELECT is(ventros.may_message((SELECT a FROM ids), (SELECT ch FROM ids)), true, 'a channel opt-in wins over the general opt-out');
SELECT results_eq($$SELECT event_type FROM ventros.outbox WHERE aggregate_type = 'contact_consent' ORDER BY seq$$,
                  $$VALUES ('contact_consent.withdrawn'::text), ('contact_consent.granted')$$, 'consent events');
SELECT ventros.set_contact_consent((SELECT a FROM ids), true);

-- merge
GRANT SELECT ON ids TO PUBLIC;
SET LOCAL ROLE ventros_agent;
CREATE TEMP TABLE mb AS SELECT * FROM ventros.receive_message((SELECT ch FROM ids), '+5511966660000', 'from b', channel_message_id => 'b1');
RESET ROLE; SET LOCAL ROLE ventros_admin;
UPDATE ventros.contacts SET tags = '{vip}', version = version WHERE id = (SELECT contact_id FROM mb);
CREATE TEMP TABLE sa AS SELECT * FROM ventros.start_or_continue_session((SELECT a FROM ids), (SELECT ch FROM ids));
SELECT ventros.add_note((SELECT contact_id FROM mb), 'note on b', (SELECT agent FROM ids));
SELECT ventros.set_contact_custom_field((SELECT contact_id FROM mb), 'plan', 'select', '"bronze"');
SELECT ventros.set_contact_custom_field((SELECT contact_id FROM mb), 'city', 'text', '"Recife"');
SELECT ventros.change_contact_pipeline_status((SELECT contact_id FROM mb), ventros_test.new_pipeline_status());
SELECT ventros.set_contact_consent((SELECT contact_id FROM mb), false, (SELECT ch2 FROM ids));

CREATE TEMP TABLE lst AS SELECT * FROM ventros.create_contact_list('VIPs', is_static => true);
SELECT ventros.add_contact_to_list((SELECT id FROM lst), (SELECT contact_id FROM mb));
SELECT throws_ok($$SELECT ventros.merge_contacts((SELECT a FROM ids), ARRAY[(SELECT a FROM ids)])$$, '22023', NULL,
                 'a contact cannot be merged into itself');
SELECT throws_ok($$SELECT ventros.merge_contacts((SELECT a FROM ids), ARRAY[gen_random_uuid()])$$, 'P0002', NULL, 'unknown contacts are not found');
SELECT throws_ok($$SELECT ventros.merge_contacts((SELECT a FROM ids), ARRAY[(SELECT b FROM ids)], 'random')$$, '22023', NULL,
                 'an unknown strategy is refused');
CREATE TEMP TABLE merged AS SELECT * FROM ventros.merge_contacts((SELECT a FROM ids), ARRAY[(SELECT contact_id FROM mb), (SELECT b FROM ids)], 'fill_empty');
SELECT results_eq($$SELECT tags, phone FROM merged$$, $$VALUES ('{vip}'::text[], '+5511966660000'::text)$$,
                  'tags are united and empty fields filled (fill_empty)');
SELECT is((SELECT count(*)::int FROM ventros.messages WHERE contact_id = (SELECT a FROM ids)), 1, 'messages moved to the primary');
SELECT results_eq($$SELECT count(*)::int, count(*) FILTER (WHERE status = 'active')::int FROM ventros.sessions WHERE contact_id = (SELECT a FROM ids)$$,
                  $$VALUES (2, 1)$$, 'sessions moved; the colliding active one was ended');
SELECT is((SELECT count(*)::int FROM ventros.notes WHERE contact_id = (SELECT a FROM ids)), 1, 'notes moved');
SELECT results_eq($$SELECT field_key, field_value FROM ventros.contact_custom_fields WHERE contact_id = (SELECT a FROM ids) ORDER BY 1$$,
                  $$VALUES ('city'::text, '"Recife"'::jsonb), ('plan', '"silver"')$$, 'custom fields the primary lacked moved; its own won');
SELECT is(ventros.may_message((SELECT a FROM ids), (SELECT ch2 FROM ids)), false, 'an opt-out of a merged contact survives');
SELECT ok(ventros.is_in_contact_list((SELECT id FROM lst), (SELECT a FROM ids)), 'list memberships moved to the primary');
SELECT is((SELECT count(*)::int FROM ventros.contacts WHERE id IN ((SELECT contact_id FROM mb), (SELECT b FROM ids))), 0,
          'the merged contacts are soft-deleted');
SELECT is((SELECT payload->'merged_ids' FROM ventros.outbox WHERE event_type = 'contact.merged'),
          jsonb_build_array((SELECT contact_id FROM mb), (SELECT b FROM ids)), 'contact.merged names the merged contacts');
SELECT is((SELECT status FROM ventros.contact_merge_suggestions), 'accepted', 'the merge suggestion is accepted');

SELECT * FROM finish();
ROLLBACK;
