-- Granular contact events: each changed field emits the event that names it,
-- in the transaction of the change, beside contact.updated; rules trigger on them.
BEGIN;
SELECT plan(29);
SELECT ventros.create_tenant('t_cfe', 'Contact field events');
SET LOCAL ventros.tenant = 't_cfe';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT ALL ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
-- The events written since the mark, in order, as "type payload".
CREATE TEMP TABLE mark (seq bigint);
GRANT ALL ON mark TO PUBLIC;
INSERT INTO mark VALUES (0);
CREATE FUNCTION pg_temp.since() RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(event_type || CASE WHEN event_type = 'contact.updated' THEN '' ELSE ' ' || payload::text END ORDER BY seq), '{}')
    FROM ventros.outbox WHERE seq > (SELECT seq FROM mark) AND tenant_id = 't_cfe'
$$;
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
    UPDATE mark SET seq = (SELECT coalesce(max(seq), 0) FROM ventros.outbox)
$$;

INSERT INTO ids SELECT 'ana', id FROM ventros.create_contact('Ana', tags => ARRAY['b', 'a']);
SELECT is((SELECT array_agg(event_type || ' ' || payload::text ORDER BY seq) FROM ventros.outbox
           WHERE aggregate_id = pg_temp.id('ana') AND event_type <> 'contact.created'),
          ARRAY['contact.tag_added {"tag": "a"}', 'contact.tag_added {"tag": "b"}'],
          'tags given at creation: contact.tag_added each, after contact.created');
SELECT pg_temp.mark();
SELECT ventros.update_contact(pg_temp.id('ana'), 1, '{"name": "Ana Souza", "email": "Ana@Example.com"}');
SELECT is(pg_temp.since(), ARRAY['contact.updated',
    'contact.name_changed {"name": "Ana Souza", "previous_name": "Ana"}',
    'contact.email_set {"email": "ana@example.com", "previous_email": null}'],
    'name and email: contact.updated, then contact.name_changed and contact.email_set with previous values');
SELECT is((SELECT payload FROM ventros.outbox WHERE aggregate_id = pg_temp.id('ana') AND event_type = 'contact.updated'),
          '{"changed": {"name": "Ana Souza", "email": "ana@example.com"}, "previous": {"name": "Ana", "email": null}}'::jsonb,
          'contact.updated keeps its changed/previous payload');
SELECT is((SELECT array_agg(aggregate_version ORDER BY seq) FROM ventros.outbox WHERE seq > (SELECT seq FROM mark)), ARRAY[2, NULL, NULL],
          'contact.updated carries the new version, the granular events none (the engine''s versions stay consecutive)');
SELECT pg_temp.mark();
SELECT ventros.update_contact(pg_temp.id('ana'), 2, '{"phone": "+55 11 98888-0000", "language": "pt-BR", "timezone": "America/Sao_Paulo", "external_id": "crm-1", "source_channel": "waha", "profile_picture_url": "https://example.com/a.jpg"}');
SELECT is(pg_temp.since(), ARRAY['contact.updated',
    'contact.phone_set {"phone": "+5511988880000", "previous_phone": null}',
    'contact.external_id_set {"external_id": "crm-1", "previous_external_id": null}',
    'contact.source_channel_set {"source_channel": "waha", "previous_source_channel": null}',
    'contact.language_changed {"language": "pt-BR", "previous_language": "en"}',
    'contact.timezone_set {"timezone": "America/Sao_Paulo", "previous_timezone": null}',
    'contact.profile_picture_updated {"profile_picture_url": "https://example.com/a.jpg", "previous_profile_picture_url": null}'],
    'phone, external id, source channel, language, timezone and picture: one event each');
SELECT pg_temp.mark();
SELECT ventros.update_contact(pg_temp.id('ana'), 3, '{"tags": ["a", "c", "d"]}');
SELECT is(pg_temp.since(), ARRAY['contact.updated',
    'contact.tag_added {"tag": "c"}', 'contact.tag_added {"tag": "d"}', 'contact.tag_removed {"tag": "b"}'],
    'a tag change: one tag_added per new tag, one tag_removed per removed tag');
SELECT pg_temp.mark();
SELECT ventros.update_contact(pg_temp.id('ana'), 4, '{"tags": []}');
SELECT is(pg_temp.since(), ARRAY['contact.updated',
    'contact.tag_removed {"tag": "a"}', 'contact.tag_removed {"tag": "c"}', 'contact.tag_removed {"tag": "d"}',
    'contact.tags_cleared {"previous_tags": ["a", "c", "d"]}'],
    'clearing every tag: tag_removed each, then contact.tags_cleared');
SELECT pg_temp.mark();
SELECT ventros.update_contact(pg_temp.id('ana'), 5, '{"tags": [], "name": "Ana Souza"}');
SELECT is(pg_temp.since(), '{}'::text[], 'nothing changed: no event at all');
SELECT ventros.update_contact(pg_temp.id('ana'), 5, '{"timezone": null}');
SELECT is(pg_temp.since(), ARRAY['contact.updated',
    'contact.timezone_set {"timezone": null, "previous_timezone": "America/Sao_Paulo"}'], 'a cleared field: its event with null');

-- custom fields
SELECT pg_temp.mark();
SELECT ventros.set_contact_custom_field(pg_temp.id('ana'), 'plan', 'text', '"gold"');
SELECT ventros.set_contact_custom_field(pg_temp.id('ana'), 'plan', 'text', '"gold"');
SELECT ventros.set_contact_custom_field(pg_temp.id('ana'), 'plan', 'text', '"silver"');
SELECT is((SELECT array_agg(payload::text ORDER BY seq) FROM ventros.outbox
           WHERE seq > (SELECT seq FROM mark) AND event_type = 'contact.custom_field_set' AND aggregate_id = pg_temp.id('ana')),
          ARRAY['{"value": "gold", "field_key": "plan", "field_type": "text", "previous_value": null}',
                '{"value": "silver", "field_key": "plan", "field_type": "text", "previous_value": "gold"}'],
          'contact.custom_field_set on the contact''s stream, when the value changes only');

-- soft delete and erasure: no field events
INSERT INTO ids SELECT 'bob', id FROM ventros.create_contact('Bob', phone => '+5511977770000', tags => ARRAY['x']);
SELECT pg_temp.mark();
SELECT ventros.delete_contact(pg_temp.id('bob'));
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE seq > (SELECT seq FROM mark)),
          ARRAY['contact.deleted'], 'a soft delete emits contact.deleted only');
RESET ROLE;
INSERT INTO ids SELECT 'eve', id FROM ventros.create_contact('Eve', phone => '+5511966660000', tags => ARRAY['y']);
SELECT pg_temp.mark();
SELECT ventros.erase_contact(pg_temp.id('eve'), 'request');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE seq > (SELECT seq FROM mark)
           AND event_type IN ('contact.name_changed', 'contact.phone_set', 'contact.tag_removed', 'contact.tags_cleared')),
          0, 'erasure emits no field events (nothing about the erased values)');
SET LOCAL ROLE ventros_admin;

-- merge: the union of tags shows as tag_added on the primary
INSERT INTO ids SELECT 'p1', id FROM ventros.create_contact('P1', tags => ARRAY['p']);
INSERT INTO ids SELECT 'p2', id FROM ventros.create_contact('P2', tags => ARRAY['q']);
SELECT pg_temp.mark();
SELECT ventros.merge_contacts(pg_temp.id('p1'), ARRAY[pg_temp.id('p2')]);
SELECT ok(pg_temp.since() @> ARRAY['contact.tag_added {"tag": "q"}'], 'a merge that brings a tag emits contact.tag_added on the primary');

-- a direct write gets them too (triggers, not the commands)
SELECT pg_temp.mark();
UPDATE ventros.contacts SET name = 'Ana S.', version = 6 WHERE id = pg_temp.id('ana');
SELECT ok(pg_temp.since() @> ARRAY['contact.name_changed {"name": "Ana S.", "previous_name": "Ana Souza"}'],
          'a direct UPDATE emits contact.name_changed');

-- lead qualification
INSERT INTO ids SELECT 'pl', id FROM ventros.create_pipeline('Sales');
SELECT throws_ok(format($$SELECT ventros.qualify_contact_lead(%L, %L, 8)$$, pg_temp.id('ana'), pg_temp.id('pl')),
                 'VN002', NULL, 'no lead qualification enabled: VN002');
SELECT ventros.update_pipeline(pg_temp.id('pl'), 1, '{"lead_qualification": {"enabled": true, "min_score": 7}}');
SELECT throws_ok(format($$SELECT ventros.qualify_contact_lead(%L, %L, 11)$$, pg_temp.id('ana'), pg_temp.id('pl')),
                 '22023', NULL, 'a score over 10: 22023');
SELECT pg_temp.mark();
SELECT is(ventros.qualify_contact_lead(pg_temp.id('ana'), pg_temp.id('pl'), 6.9), false, 'below min_score: not qualified');
SELECT is(pg_temp.since(), '{}'::text[], '... and no event');
SELECT is(ventros.qualify_contact_lead(pg_temp.id('ana'), pg_temp.id('pl'), 7, '{"budget": "yes"}'), true, 'at min_score: qualified');
SELECT is(pg_temp.since(), ARRAY[format('contact.lead_qualified {"score": 7, "answers": {"budget": "yes"}, "min_score": 7, "pipeline_id": "%s"}', pg_temp.id('pl'))],
          'contact.lead_qualified with the pipeline, score and answers');

-- a rule triggers on a granular event
INSERT INTO ids SELECT 'rule', id FROM ventros.create_automation('VIP welcome', 'contact.tag_added',
    '[{"type": "set_field", "params": {"field": "language", "value": "es"}}]', '[{"field": "tag", "operator": "eq", "value": "vip"}]',
    automation_type => 'event');
SELECT ventros.update_contact(pg_temp.id('ana'), 7, '{"tags": ["vip"]}');
SET LOCAL ROLE ventros_platform_admin;
SELECT ok(ventros.run_automations(100, now()) >= 1, 'the executor runs the rule on contact.tag_added');
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT outcome FROM ventros.automation_runs WHERE automation_id = pg_temp.id('rule')), 'executed', 'the rule on contact.tag_added executed');

-- The field events are a declaration the engine reads (ventros.aggregate_field_events).
RESET ROLE;
SELECT is((SELECT count(*)::int FROM ventros.aggregate_field_events WHERE aggregate = 'contact'), 8,
          'contact declares its eight field events to the engine');
SELECT throws_ok($$SELECT ventros.register_field_events('contact', '{"nickname": "contact.nickname_changed"}')$$,
                 '22023', 'aggregate table ventros.contacts has no column nickname', 'a column the table lacks is refused');
SELECT throws_ok($$SELECT ventros.register_field_events('contact', '{"version": "contact.version_changed"}')$$,
                 '22023', NULL, 'the engine''s own columns are not fields');
SELECT throws_ok($$SELECT ventros.register_field_events('contact', '{"name": "note.name_changed"}')$$,
                 '22023', 'field event note.name_changed is not an event of contact', 'an event of another aggregate is refused');
SELECT throws_ok($$SELECT ventros.register_field_events('contact', '{"name": "automation.executed"}')$$,
                 '22023', NULL, 'an event type of another aggregate (here a reserved one) is refused');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT ventros.register_field_events('contact', '{}')$$, '42501', NULL,
                 'tenant roles cannot declare field events');
-- one UPDATE of many rows: each row's updated event, then its field events
SELECT pg_temp.mark();
UPDATE ventros.contacts SET name = name || '!', version = version WHERE id IN (pg_temp.id('ana'), pg_temp.id('p1'));
SELECT is((SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE seq > (SELECT seq FROM mark) AND tenant_id = 't_cfe'
             AND event_type LIKE 'contact.%'),
          ARRAY['contact.updated', 'contact.name_changed', 'contact.updated', 'contact.name_changed'],
          'a bulk UPDATE writes each row''s contact.updated followed by its contact.name_changed');

SELECT * FROM finish();
ROLLBACK;
