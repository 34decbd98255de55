-- Contact lists, the contact timeline (contact events) and the activity log.
BEGIN;
SELECT plan(34);
SELECT ventros.create_tenant('t_lists', 'Lists');
SET LOCAL ventros.tenant = 't_lists';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.events(agg uuid) RETURNS text[] LANGUAGE sql AS
    $$ SELECT array_agg(event_type ORDER BY seq) FROM ventros.outbox WHERE aggregate_id = agg $$;
INSERT INTO ids SELECT 'ann', id FROM ventros.create_contact('Ann', email => 'ann@example.com', tags => '{vip,lead}', language => 'pt');
INSERT INTO ids SELECT 'bob', id FROM ventros.create_contact('Bob', email => 'bob@example.com', tags => '{lead}');
INSERT INTO ids SELECT 'cid', id FROM ventros.create_contact('Cid', phone => '+5511999990000');

-- static list
INSERT INTO ids SELECT 'static', id FROM ventros.create_contact_list('Static', true);
SELECT lives_ok($$SELECT ventros.add_contact_to_list(pg_temp.id('static'), pg_temp.id('ann'))$$, 'member added');
SELECT throws_ok($$SELECT ventros.add_contact_to_list(pg_temp.id('static'), pg_temp.id('ann'))$$, '23505', NULL, 'no duplicate member');
SELECT throws_ok($$SELECT ventros.add_contact_list_filter(pg_temp.id('static'), 'tag', 'eq', 'tag', '"vip"')$$, '23514', NULL,
                 'no rules on a static list');
SELECT throws_ok($$SELECT ventros.add_contact_to_list(pg_temp.id('static'), gen_random_uuid())$$, 'P0002', NULL, 'unknown contact');
SELECT is((ventros.get_contact_list(pg_temp.id('static'))).contact_count, 1, 'count kept');
SELECT ok(ventros.is_in_contact_list(pg_temp.id('static'), pg_temp.id('ann')) AND NOT ventros.is_in_contact_list(pg_temp.id('static'), pg_temp.id('bob')),
          'membership check');
SELECT lives_ok($$SELECT ventros.remove_contact_from_list(pg_temp.id('static'), pg_temp.id('ann'))$$, 'member removed');
SELECT throws_ok($$SELECT ventros.remove_contact_from_list(pg_temp.id('static'), pg_temp.id('ann'))$$, 'P0002', NULL, 'removing twice');
SELECT ok(pg_temp.events(pg_temp.id('static')) @> ARRAY['contact_list.created', 'contact_list.contact_added', 'contact_list.contact_removed'],
          'static list events');

-- dynamic list
INSERT INTO ids SELECT 'dyn', id FROM ventros.create_contact_list('Leads', false, 'AND');
SELECT throws_ok($$SELECT ventros.add_contact_to_list(pg_temp.id('dyn'), pg_temp.id('ann'))$$, '23514', NULL, 'no members on a dynamic list');
SELECT throws_ok($$SELECT ventros.add_contact_list_filter(pg_temp.id('dyn'), 'attribute', 'eq', 'password', '"x"')$$, '22023', NULL,
                 'attributes are whitelisted');
SELECT throws_ok($$SELECT ventros.add_contact_list_filter(pg_temp.id('dyn'), 'tag', 'like', 'tag', '"x"')$$, '22023', NULL, 'unknown operator');
SELECT throws_ok($$SELECT ventros.add_contact_list_filter(pg_temp.id('dyn'), 'tag', 'in', 'tag', '"x"')$$, '23514', NULL, 'in needs an array');
SELECT is((ventros.recalculate_contact_list(pg_temp.id('dyn'))).contact_count, 0, 'no rules: empty');
INSERT INTO ids SELECT 'f1', id FROM ventros.add_contact_list_filter(pg_temp.id('dyn'), 'tag', 'eq', 'tag', '"lead"');
SELECT is((ventros.recalculate_contact_list(pg_temp.id('dyn'))).contact_count, 2, 'tag rule');
INSERT INTO ids SELECT 'f2', id FROM ventros.add_contact_list_filter(pg_temp.id('dyn'), 'attribute', 'eq', 'language', '"pt"');
SELECT is(ARRAY(SELECT name FROM ventros.list_contact_list_contacts(pg_temp.id('dyn'))), ARRAY['Ann'], 'AND of two rules');
SELECT is((ventros.update_contact_list(pg_temp.id('dyn'), 1, '{"logical_operator": "OR"}')).logical_operator, 'OR', 'operator changed');
SELECT is((SELECT count(*)::integer FROM ventros.list_contact_list_contacts(pg_temp.id('dyn'))), 2, 'OR of two rules');
SELECT lives_ok($$SELECT ventros.remove_contact_list_filter(pg_temp.id('f2'))$$, 'rule removed');
INSERT INTO ids SELECT 'f3', id FROM ventros.add_contact_list_filter(pg_temp.id('dyn'), 'attribute', 'starts_with', 'email', '"BOB@"');
SELECT is(ventros.clear_contact_list_filters(pg_temp.id('dyn')), 2, 'rules cleared');
SELECT is((ventros.recalculate_contact_list(pg_temp.id('dyn'))).contact_count, 0, 'cleared: empty');
SELECT ok(pg_temp.events(pg_temp.id('dyn')) @> ARRAY['contact_list.filter_rule_added', 'contact_list.filter_rule_removed',
          'contact_list.filter_rules_cleared', 'contact_list.recalculated', 'contact_list.updated'], 'dynamic list events');
SELECT lives_ok($$SELECT ventros.delete_contact_list(pg_temp.id('dyn'))$$, 'list deleted');
SELECT throws_ok($$SELECT ventros.get_contact_list(pg_temp.id('dyn'))$$, 'P0002', NULL, 'deleted list is gone');

-- contact events
INSERT INTO ids SELECT 'e1', id FROM ventros.create_contact_event(pg_temp.id('ann'), 'tracking.created', 'tracking', 'Ad click',
    expires_at => now() + interval '1 day');
SELECT throws_ok($$SELECT ventros.create_contact_event(pg_temp.id('ann'), 'x', 'gossip')$$, '22023', NULL, 'unknown category');
SELECT throws_ok($$SELECT ventros.create_contact_event(pg_temp.id('ann'), 'x', expires_at => now() - interval '1 day')$$, '23514', NULL,
                 'expiry after occurrence');
SELECT is((ventros.mark_contact_event_read(pg_temp.id('e1'))).delivered, true, 'read implies delivered');
SELECT is((ventros.mark_contact_event_read(pg_temp.id('e1'))).version, 2, 'marking again changes nothing');
SELECT is((SELECT count(*)::integer FROM ventros.list_contact_events(pg_temp.id('ann'), undelivered_only => true)), 0, 'no undelivered');
SET LOCAL ROLE ventros_platform_admin;  -- maintenance is the scheduler's
SELECT is(ventros.purge_expired_contact_events(now() + interval '2 days'), 1, 'expired entries purged');
SET LOCAL ROLE ventros_admin;

-- activity log
INSERT INTO ids SELECT 'l1', id FROM ventros.append_event_log('tag.added', '{"tag": "vip"}', contact_id => pg_temp.id('ann'));
INSERT INTO ids SELECT 'l2', id FROM ventros.append_event_log('note.added', '{}', 'manual');
SELECT is((ventros.attach_event_log(pg_temp.id('l2'), contact_id => pg_temp.id('ann'))).sequence_number, 2::bigint,
          'attaching numbers the entry');
-- (a tenant's own UPDATE of the log is a direct write, refused before the
-- append-only guard: 620_direct_writes.sql; the erasure may blank payloads)
SELECT throws_ok($$UPDATE ventros.event_log SET payload = '{"tag": "x"}', version = version WHERE id = pg_temp.id('l1')$$, '42501',
                 'direct updates of event_log rows are refused', 'payload is append-only');
SELECT throws_ok($$SELECT ventros.attach_event_log(pg_temp.id('l1'), contact_id => pg_temp.id('bob'))$$, '55000', NULL,
                 'contact cannot be re-attached');
SELECT throws_ok($$SELECT ventros.append_event_log('contact.exploded')$$, '22023', NULL, 'unknown activity type');
SELECT * FROM finish();
ROLLBACK;
