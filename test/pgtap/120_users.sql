-- Users, sign-in and the api schema: bcrypt hashes that never reach events or
-- views, login and refresh-token rotation, API keys, and one security_invoker
-- view per aggregate.
BEGIN;
SELECT plan(27);

-- the api schema mirrors the aggregates
SELECT is((SELECT count(*)::int FROM ventros.aggregates a JOIN pg_class t ON t.oid = a.table_name
           WHERE to_regclass('api.' || quote_ident(t.relname)) IS NULL), 0, 'every aggregate has a view in api');
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'api' AND c.relkind = 'v'
             AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)), 0,
          'every api view runs with the caller''s rights');
SELECT hasnt_column('api', 'users', 'password_hash', 'api.users leaves password_hash out');
SELECT hasnt_column('api', 'user_api_keys', 'key_hash', 'api.user_api_keys leaves key_hash out');
SELECT has_column('api', 'contacts', 'version', 'api views expose version');

-- register: a new tenant with its admin
CREATE TEMP TABLE g AS SELECT * FROM api.register('Ann@Example.com', 'correct horse', 'Ann');
GRANT SELECT ON g TO PUBLIC;
SELECT is((SELECT claims->>'role' FROM g), 'ventros_admin', 'a sign-up is the admin of its tenant');
SELECT ok((SELECT claims->>'tenant_id' FROM g) ~ '^t[0-9a-f]{20}$', 'a sign-up gets a new tenant');
SELECT ok((SELECT refresh_token FROM g) ~ '^vnr_', 'a refresh token comes with it');
SELECT is((SELECT count(*)::int FROM ventros.projects WHERE tenant_id = (SELECT claims->>'tenant_id' FROM g)), 1,
          'the new tenant has its first project');
SELECT ok((SELECT password_hash FROM ventros.users WHERE email = 'ann@example.com') ~ '^\$2a\$08\$',
          'the password is stored as a bcrypt hash');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE aggregate_type = 'user' AND payload::text LIKE '%password%'), 0,
          'no event carries the password or its hash');
SELECT is((SELECT count(*)::int FROM ventros.outbox WHERE event_type IN ('user.created', 'user.registered')), 2,
          'user.created and user.registered are emitted');
SELECT is((SELECT claims->>'sub' FROM api.register('ann@example.com', 'correct horse', 'Ann')),
          (SELECT claims->>'sub' FROM g), 'register is idempotent by email and password');
SELECT throws_ok($$SELECT api.register('ann@example.com', 'another one', 'Ann')$$, '23505', NULL,
                 'the same email with another password is a duplicate');
SELECT throws_ok($$SELECT api.register('bob@example.com', 'short', 'Bob')$$, '22023', NULL, 'short passwords are refused');

-- login and refresh
SELECT is((SELECT claims->>'sub' FROM api.login('ann@example.com', 'correct horse')), (SELECT claims->>'sub' FROM g),
          'login with the right password grants the user (user.logged_in)');
SELECT throws_ok($$SELECT api.login('ann@example.com', 'wrong horse')$$, '28P01', 'invalid email or password',
                 'a wrong password is 28P01');
SELECT throws_ok($$SELECT api.login('nobody@example.com', 'correct horse')$$, '28P01', 'invalid email or password',
                 'an unknown email is the same 28P01');
CREATE TEMP TABLE r1 AS SELECT * FROM api.refresh((SELECT refresh_token FROM g));
SELECT isnt((SELECT refresh_token FROM r1), (SELECT refresh_token FROM g), 'refresh rotates the token');
SELECT is((SELECT claims FROM api.refresh((SELECT refresh_token FROM g))), NULL::jsonb,
          'a rotated token gets no grant');
SELECT is((SELECT claims FROM api.refresh((SELECT refresh_token FROM r1))), NULL::jsonb,
          'and its reuse revoked the whole family');

-- API keys
SELECT set_config('ventros.tenant', (SELECT claims->>'tenant_id' FROM g), true);
SELECT set_config('request.jwt.claims', (SELECT claims::text FROM g), true);
CREATE TEMP TABLE k AS SELECT api.create_api_key('bot') AS j;
SELECT is(ventros.api_key_claims((SELECT j->>'key' FROM k))->>'sub', (SELECT claims->>'sub' FROM g),
          'an API key stands for its user');
SELECT throws_ok($$SELECT ventros.api_key_claims('vnk_nope')$$, '28000', 'invalid API key', 'unknown keys are 28000');

-- adding users to a tenant: admins only, whichever way the caller acts
SELECT set_config('request.jwt.claims', '', true);
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT api.register('carl@example.com', 'correct horse', 'Carl')$$, '42501', NULL,
                 'an agent cannot add users to its tenant');
SELECT throws_ok($$SELECT api.create_api_key('agent key')$$, '42501', NULL, 'nor create API keys');
RESET ROLE;
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT claims->>'role' FROM api.register('dora@example.com', 'correct horse', 'Dora')), 'ventros_agent',
          'an admin adds a user (role user: ventros_agent) to its tenant');
SELECT is((SELECT tenant_id FROM ventros.users WHERE email = 'dora@example.com'), (SELECT claims->>'tenant_id' FROM g),
          'in the admin''s tenant');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
