-- The event catalog, ventros.emit, misuse of the engine, and projects.
BEGIN;
SELECT plan(35);

SELECT ventros.create_tenant('cat_a', 'Catalog A');
SET LOCAL ventros.tenant = 'cat_a';

-- event names
SELECT ok(ventros.is_valid_event_name(n), n || ' is a valid event name')
FROM unnest(ARRAY['contact.merged', 'message.read', 'user.logged_in', 'billing_account.payment_activated']) n;
SELECT throws_ok(format('SELECT ventros.register_event_type(%L)', n), '22023', NULL, n || ' is refused as an event name (22023)')
FROM unnest(ARRAY['Contact.Merged', 'contact.merge', 'contact', 'contact.merged.now', 'contact.-merged']) n;
SELECT throws_ok($$INSERT INTO ventros.event_types VALUES ('contact.merging', 'contact')$$, '23514', NULL,
                 'the catalog itself refuses a malformed name (23514)');

-- ventros.emit
SELECT lives_ok($$SELECT ventros.register_event_type('contact.merged', 'Contacts were merged.')$$, 'register a business event');
SELECT lives_ok($$SELECT ventros.emit('contact.merged', 'contact', '00000000-0000-4000-8000-000000000042', '{"merged_ids": []}', 3)$$,
                'emit a registered event');
SELECT is(tenant_id || '|' || aggregate_version || '|' || (payload->>'merged_ids') || '|' || status,
          'cat_a|3|[]|pending', 'the emitted event has the acting tenant, version, payload and is pending')
FROM ventros.outbox WHERE event_type = 'contact.merged';
SELECT throws_ok($$SELECT ventros.emit('contact.teleported', 'contact', gen_random_uuid(), '{}')$$, '22023',
                 'unknown event type "contact.teleported"', 'an unregistered event type fails loudly (22023)');
SELECT throws_ok($$SELECT ventros.emit('contact.merged', 'channel', gen_random_uuid(), '{}')$$, '22023', NULL,
                 'an event of another aggregate is refused (22023)');
SELECT throws_ok($$SELECT ventros.emit('contact.merged', 'contact', gen_random_uuid(), '[1, 2]')$$, '22023', NULL,
                 'a payload that is not an object is refused (22023)');
SELECT throws_ok($$SELECT ventros.emit(NULL, 'contact', gen_random_uuid(), '{}')$$, '23502', NULL,
                 'a NULL event type is refused (23502)');
SELECT throws_ok($$SELECT ventros.emit('contact.merged', 'contact', gen_random_uuid(), '{}')$$, '42501', NULL,
                 'emitting without an acting tenant is refused (42501)')
FROM (SELECT set_config('ventros.tenant', '', true)) s;
SET LOCAL ventros.tenant = 'cat_a';
SAVEPOINT before_emit;
SELECT ventros.emit('contact.merged', 'contact', '00000000-0000-4000-8000-000000000043', '{}');
ROLLBACK TO SAVEPOINT before_emit;
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE aggregate_id = '00000000-0000-4000-8000-000000000043'), 0,
          'an event rolls back with its (sub)transaction');

-- engine misuse
CREATE TABLE pg_temp.loose (id uuid PRIMARY KEY, tenant_id text, version int, created_at timestamptz,
                            updated_at timestamptz, deleted_at timestamptz);
CREATE TRIGGER misattached BEFORE INSERT ON pg_temp.loose FOR EACH STATEMENT EXECUTE FUNCTION ventros.engine_before();
SELECT throws_ok($$INSERT INTO pg_temp.loose (id) VALUES (gen_random_uuid())$$, '39P01', NULL,
                 'the engine attached per statement raises 39P01');
DROP TRIGGER misattached ON pg_temp.loose;
CREATE TRIGGER unregistered BEFORE INSERT ON pg_temp.loose FOR EACH ROW EXECUTE FUNCTION ventros.engine_before();
SELECT throws_ok($$INSERT INTO pg_temp.loose (id) VALUES (gen_random_uuid())$$, '39P01', NULL,
                 'the engine on a table that is not registered raises 39P01');
SELECT throws_ok($$SELECT ventros.register_aggregate('loose', 'pg_temp.loose', 'crm')$$, '22023',
                 'primary key of loose must lead with tenant_id', 'register_aggregate checks the key leads with tenant_id');
CREATE TABLE pg_temp.partial (id uuid, tenant_id text);
SELECT throws_ok($$SELECT ventros.register_aggregate('partial', 'pg_temp.partial', 'crm')$$, '22023', NULL,
                 'register_aggregate checks the common columns');

-- quiet columns
SELECT throws_ok($$SELECT ventros.register_quiet_columns('teleporter', '{x}')$$, '22023', NULL,
                 'quiet columns of an unregistered aggregate are refused (22023)');
SELECT throws_ok($$SELECT ventros.register_quiet_columns('contact', '{no_such_column}')$$, '22023', NULL,
                 'a quiet column the table does not have is refused (22023)');
SELECT is((SELECT quiet_columns FROM ventros.aggregates WHERE aggregate = 'channel'),
          '{messages_received,messages_sent,last_message_at}'::name[], 'channel counters are declared quiet');

-- projects
SELECT throws_ok($$SELECT ventros.create_tenant('cat_a', 'Again')$$, '23505', NULL, 'a tenant is created once (23505)');
SELECT throws_ok($$SELECT ventros.create_tenant('bad tenant!', 'X')$$, '22023', NULL, 'a malformed tenant id is refused (22023)');
SELECT is(ventros_test.run_as('ventros_admin', 'cat_a', $$SELECT ventros.create_tenant('sneaky', 'X')$$) ~ '^ERROR 42501', true,
          'a tenant admin cannot create tenants (42501)');
SELECT is(ventros.current_tenant(), 'cat_a', 'create_tenant restores the caller''s acting tenant');
SELECT is((ventros.update_project(ventros.default_project(), 1, '{"active": false}')).active, false, 'deactivate a project');
SELECT is((SELECT event_type FROM ventros.outbox ORDER BY seq DESC LIMIT 1), 'project.deactivated',
          'deactivation emits project.deactivated');
SELECT is((ventros.update_project(ventros.default_project(), 2, '{"active": true}')).version, 3, 'reactivate a project');
SELECT is((SELECT event_type FROM ventros.outbox ORDER BY seq DESC LIMIT 1), 'project.activated',
          'reactivation emits project.activated');
SELECT throws_ok($$SELECT ventros.update_project(ventros.default_project(), 3, '{"session_timeout_minutes": 0}')$$, '23514', NULL,
                 'a session timeout out of 1..1440 is refused (23514)');

SELECT * FROM finish();
ROLLBACK;
