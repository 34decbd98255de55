-- Security lints over the catalog, in the manner of Supabase's splinter: each
-- query lists the objects of the extension that break one rule, and the test
-- expects the list to be empty.  A deliberate exception goes into the
-- allow-list table below with its reason, so every exception is reviewed here
-- and nowhere else.
--
-- "The extension" is every object pg_depend ties to extension ventros, plus
-- anything else in the schemas it owns objects in (api views made at run time
-- by ventros.expose_api() included).
BEGIN;
SELECT * FROM no_plan();
SET LOCAL client_min_messages = warning;

CREATE TEMP TABLE lint_schemas AS
SELECT DISTINCT n.oid AS nsp, n.nspname
FROM pg_depend d
JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ventros');

SELECT set_eq('SELECT nspname::text FROM lint_schemas', ARRAY['api', 'ventros'],
              'the extension''s objects live in schemas api and ventros');

-- Roles a tenant's user acts as (anon: the front's unauthenticated role).
CREATE TEMP TABLE lint_tenant_roles (role_name name PRIMARY KEY);
INSERT INTO lint_tenant_roles VALUES ('ventros_viewer'), ('ventros_agent'), ('ventros_admin'), ('ventros_anon');

-- Reviewed exceptions: (lint, object, reason).  Keep it short.
CREATE TEMP TABLE lint_allow (lint text, object text, reason text NOT NULL, PRIMARY KEY (lint, object));
INSERT INTO lint_allow VALUES
    ('policy_shape', 'ventros.channel_types.ventros_system_catalog_read',
     'SELECT only: the system channel types (tenant "ventros") are a catalog shared by every tenant; no write policy exists for them.'),
    ('tenant_argument', 'api.register(text,text,text,text,jsonb)',
     'tenant_name is the display name of the tenant being created; the tenant id is derived, never chosen among existing tenants.'),
    ('definer_without_tenant_check', 'api.login(text,text)',
     'Anonymous sign-in: finds the user by email and password hash and answers the same for a wrong email or password.'),
    ('definer_without_tenant_check', 'api.refresh(text)',
     'Anonymous: the refresh token itself (hashed) identifies the user and tenant.'),
    ('definer_without_tenant_check', 'api.logout(text)',
     'Anonymous: revokes the family of the refresh token presented, nothing else.'),
    ('definer_without_tenant_check', 'ventros.encrypt_secret(text)',
     'Encrypts the caller''s own plaintext with the cluster key; reads no table.'),
    ('definer_without_tenant_check', 'ventros.accept_webhook(text,text,jsonb,bytea)',
     'Anonymous webhook endpoint: the channel (and its tenant) is found by the path id and the delivery must carry the channel''s signature.'),
    ('definer_without_tenant_check', 'ventros.accept_platform_webhook(text,jsonb,bytea)',
     'Anonymous platform webhook endpoint (Stripe): the delivery must carry the endpoint''s signature; the tenant is found from the verified event.'),
    ('definer_without_tenant_check', 'ventros.webhook_challenge(text,text,text,text,text)',
     'Anonymous webhook handshake: answers only with the challenge when the channel''s verify token matches.'),
    ('stable_calls_volatile', 'ventros.require_tenant()',
     'Names ventros.bind_login() in its hint; calls no volatile function.'),
    ('stable_calls_volatile', 'ventros.require_consent(uuid,uuid)',
     'Names ventros.set_contact_consent() in its hint; calls no volatile function.');

CREATE FUNCTION pg_temp.allowed(l text, o text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM lint_allow WHERE lint = l AND object = o)
$$;

-- 1. Views run with the caller's rights (security_invoker), so the tables'
--    grants and forced RLS decide what a tenant sees through them.  A view
--    with its owner's rights sees every tenant: only platform status views
--    (ventros.outbox_status, ventros.http_dispatcher_status) are made so, and
--    no tenant role or anon may read them.
SELECT is((SELECT array_agg(c.oid::regclass::text ORDER BY 1) FROM pg_class c
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relkind IN ('v', 'm')
             AND NOT coalesce(c.reloptions && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'], false)
             AND EXISTS (SELECT 1 FROM lint_tenant_roles r WHERE has_table_privilege(r.role_name, c.oid, 'SELECT'))),
          NULL, 'lint view_security_invoker: every view a tenant role or anon may read is security_invoker');
SELECT ok((SELECT count(*) FROM pg_class c
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relkind = 'v'
             AND coalesce(c.reloptions && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'], false)) >= 56,
          'lint view_security_invoker: the api views are security_invoker');

-- 2. SECURITY DEFINER functions pin search_path, to schemas no tenant can
--    create objects in, with pg_temp last (unlisted, it would come first).
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
           WHERE p.pronamespace IN (SELECT nsp FROM lint_schemas) AND p.prosecdef
             AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')),
          NULL, 'lint definer_search_path: every SECURITY DEFINER function pins search_path');
SELECT is((SELECT array_agg(DISTINCT p.oid::regprocedure::text || ': ' || c) FROM pg_proc p, unnest(p.proconfig) c
           WHERE p.pronamespace IN (SELECT nsp FROM lint_schemas) AND c LIKE 'search_path=%'
             AND (EXISTS (SELECT 1 FROM unnest(string_to_array(replace(substr(c, 13), ' ', ''), ',')) s
                          WHERE s NOT IN ('pg_catalog', 'pg_temp', 'ventros', 'api'))
                  OR replace(substr(c, 13), ' ', '') !~ '(^|,)pg_temp$')),
          NULL, 'lint definer_search_path: pinned paths hold only pg_catalog, ventros, api and pg_temp, pg_temp last');

-- 3. Every table of the extension enables and FORCEs row-level security (the
--    owner is subject to it too); tables with tenant_id above all.
SELECT is((SELECT array_agg(c.oid::regclass::text ORDER BY 1) FROM pg_class c
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relkind IN ('r', 'p')
             AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
             AND NOT (c.relrowsecurity AND c.relforcerowsecurity)),
          NULL, 'lint tenant_rls: every table with tenant_id has ENABLE and FORCE ROW LEVEL SECURITY');
SELECT is((SELECT array_agg(c.oid::regclass::text ORDER BY 1) FROM pg_class c
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relkind IN ('r', 'p')
             AND NOT (c.relrowsecurity AND c.relforcerowsecurity)),
          NULL, 'lint tenant_rls: so does every other table of the extension');
SELECT is((SELECT array_agg(c.oid::regclass::text ORDER BY 1) FROM pg_class c
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relkind IN ('r', 'p', 'v', 'm')
             AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
             AND EXISTS (SELECT 1 FROM lint_tenant_roles r
                         WHERE has_table_privilege(r.role_name, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))),
          NULL, 'lint tenant_rls: a table or view without tenant_id is read-only for tenant roles and anon');

-- 4. Policies of tables with tenant_id: USING and WITH CHECK are the tenant
--    predicate, alone or as the first AND conjunct (never OR'ed with more);
--    an INSERT policy states its WITH CHECK (an UPDATE or ALL policy without
--    one checks new rows with its USING); all are PERMISSIVE to PUBLIC.  A policy widened to USING (true) or WITH CHECK (... OR true)
--    fails here, whether or not a test reaches the table.
-- pg_get_expr parenthesises every boolean operator, so an expression that
-- starts with "((tenant_id = ... ) AND " is a top-level AND of the predicate.
CREATE FUNCTION pg_temp.tenant_predicate(e text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT e = '(tenant_id = ( SELECT ventros.current_tenant() AS current_tenant))'
        OR starts_with(e, '((tenant_id = ( SELECT ventros.current_tenant() AS current_tenant)) AND ')
$$;
SELECT is((SELECT array_agg(format('%s.%s (%s): USING %s WITH CHECK %s', p.polrelid::regclass, p.polname, p.polcmd,
                                   coalesce(pg_get_expr(p.polqual, p.polrelid), '-'),
                                   coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')) ORDER BY 1)
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas)
             AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
             AND NOT pg_temp.allowed('policy_shape', p.polrelid::regclass::text || '.' || p.polname)
             AND NOT ((p.polqual IS NULL OR pg_temp.tenant_predicate(pg_get_expr(p.polqual, p.polrelid)))
                      AND (p.polwithcheck IS NULL OR pg_temp.tenant_predicate(pg_get_expr(p.polwithcheck, p.polrelid)))
                      AND (p.polcmd <> 'a' OR p.polwithcheck IS NOT NULL)
                      AND (p.polcmd = 'a' OR p.polqual IS NOT NULL)
                      AND p.polpermissive AND p.polroles = '{0}')),
          NULL, 'lint policy_shape: every policy of a tenant table checks tenant_id = current_tenant() and nothing looser');
SELECT is((SELECT array_agg(a.object ORDER BY 1) FROM lint_allow a
           WHERE a.lint = 'policy_shape'
             AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid::regclass::text || '.' || p.polname = a.object
                             AND p.polcmd = 'r' AND p.polqual IS NOT NULL AND p.polwithcheck IS NULL)),
          NULL, 'lint policy_shape: allow-listed policies are SELECT policies (they never let a row be written)');
SELECT is((SELECT array_agg(format('%s.%s (%s)', p.polrelid::regclass, p.polname, p.polcmd) ORDER BY 1)
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND p.polcmd <> 'r'
             AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)),
          NULL, 'lint policy_shape: tables without tenant_id have SELECT policies only');

-- 5. Nothing of the extension is granted to PUBLIC.  Functions get EXECUTE
--    for PUBLIC by default when created (acldefault): the install revokes it
--    (sql/99_grants.sql), so an unlisted function is callable by no one but
--    the roles it is granted to.  Types keep PostgreSQL's default USAGE for
--    PUBLIC: a type grants no access to data.
SELECT is((SELECT array_agg(c.oid::regclass::text || ' ' || a.privilege_type ORDER BY 1)
           FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
           WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND a.grantee = 0),
          NULL, 'lint public_grants: no table, view or sequence grants anything to PUBLIC');
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
           FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
           WHERE p.pronamespace IN (SELECT nsp FROM lint_schemas) AND a.grantee = 0),
          NULL, 'lint public_grants: no function is executable by PUBLIC (the default EXECUTE is revoked)');
SELECT is((SELECT array_agg(n.nspname || ' ' || a.privilege_type ORDER BY 1)
           FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
           WHERE n.oid IN (SELECT nsp FROM lint_schemas) AND a.grantee = 0),
          NULL, 'lint public_grants: schemas api and ventros grant nothing to PUBLIC');
SELECT is((SELECT array_agg(n.nspname || ' CREATE to ' || r.role_name ORDER BY 1)
           FROM pg_namespace n, lint_tenant_roles r
           WHERE n.oid IN (SELECT nsp FROM lint_schemas) AND has_schema_privilege(r.role_name, n.oid, 'CREATE')),
          NULL, 'lint public_grants: no tenant role or anon may create objects in the extension''s schemas');

-- 6. Functions a tenant role (or anon) may call that take a tenant: a tenant
--    id in an argument is a way around current_tenant().  Each must refuse
--    every tenant but the acting one (42501): the test calls it, as each
--    tenant role that may, for tenant lint_b naming tenant lint_a (other
--    arguments: a plain value of their type, optional ones left out).  Or
--    it is allow-listed with the reason the argument is no tenant id.
SELECT ventros.create_tenant('lint_a', 'Lint A');
SELECT ventros.create_tenant('lint_b', 'Lint B');
CREATE TEMP TABLE lint_tenant_functions AS
SELECT DISTINCT p.oid AS fn, p.oid::regprocedure::text AS signature
FROM pg_proc p, lint_tenant_roles r
WHERE p.pronamespace IN (SELECT nsp FROM lint_schemas)
  AND has_function_privilege(r.role_name, p.oid, 'EXECUTE')
  AND EXISTS (SELECT 1 FROM unnest(p.proargnames) WITH ORDINALITY AS x(n, i)
              WHERE x.n ~* 'tenant' AND coalesce(p.proargmodes[x.i], 'i') IN ('i', 'b', 'v'))
  AND NOT pg_temp.allowed('tenant_argument', p.oid::regprocedure::text);

CREATE FUNCTION pg_temp.call_naming_tenant(fn oid, tenant text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    p    pg_proc;
    args text[] := '{}';
    typ  oid;
BEGIN
    SELECT * INTO p FROM pg_proc WHERE oid = fn;
    FOR i IN 1 .. p.pronargs LOOP
        typ := p.proargtypes[i - 1];
        CONTINUE WHEN i > p.pronargs - p.pronargdefaults AND p.proargnames[i] !~* 'tenant';
        args := args || format('%I => %s', p.proargnames[i], CASE
            WHEN p.proargnames[i] ~* 'tenant' THEN quote_literal(tenant)
            WHEN typ = 'uuid'::regtype THEN quote_literal(gen_random_uuid()) || '::uuid'
            WHEN typ IN ('integer'::regtype, 'bigint'::regtype, 'smallint'::regtype, 'numeric'::regtype) THEN '1'
            WHEN typ = 'text'::regtype THEN '''matrix'''
            WHEN typ = 'boolean'::regtype THEN 'false'
            WHEN typ IN ('jsonb'::regtype, 'json'::regtype) THEN '''{}''::' || format_type(typ, NULL)
            WHEN typ = 'timestamptz'::regtype THEN 'now()'
            ELSE 'NULL::' || format_type(typ, NULL) END);
    END LOOP;
    RETURN format('SELECT %s(%s)::text', fn::regproc, array_to_string(args, ', '));
END
$$;

SELECT is((SELECT array_agg(f.signature || ' as ' || r.role_name || ': ' || coalesce(x.result, 'NULL') ORDER BY 1)
           FROM lint_tenant_functions f, lint_tenant_roles r,
                LATERAL (SELECT ventros_test.run_as(r.role_name, 'lint_b', pg_temp.call_naming_tenant(f.fn, 'lint_a')) AS result) x
           WHERE has_function_privilege(r.role_name, f.fn, 'EXECUTE') AND coalesce(x.result, 'NULL') !~ '^ERROR 42501'),
          NULL, 'lint tenant_argument: every function a tenant role may call that takes a tenant refuses another tenant (42501)');
SELECT is((SELECT array_agg(f.signature || ': ' || coalesce(x.result, 'NULL') ORDER BY 1)
           FROM lint_tenant_functions f,
                LATERAL (SELECT ventros_test.run_as((SELECT r.role_name FROM lint_tenant_roles r
                                                     WHERE has_function_privilege(r.role_name, f.fn, 'EXECUTE') LIMIT 1),
                                                    'lint_b', pg_temp.call_naming_tenant(f.fn, 'lint_b')) AS result) x
           WHERE x.result ~ '^ERROR 42501'),
          NULL, 'lint tenant_argument: ... and serves the acting tenant (it does not refuse everything)');

-- 7. SECURITY DEFINER functions callable by a tenant role or anon run as
--    their owner, above RLS: each must establish the tenant itself
--    (ventros.require_tenant() or current_tenant() in its body) or be
--    allow-listed.  test/pgtap/601_tenancy_functions.sql then calls every
--    function with the other tenant's ids.
SELECT is((SELECT array_agg(DISTINCT p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
           FROM pg_proc p, lint_tenant_roles r
           WHERE p.pronamespace IN (SELECT nsp FROM lint_schemas) AND p.prosecdef
             AND has_function_privilege(r.role_name, p.oid, 'EXECUTE')
             AND p.prosrc !~ 'ventros\.(require_tenant|current_tenant)\(\)'
             AND NOT pg_temp.allowed('definer_without_tenant_check', p.oid::regprocedure::text)),
          NULL, 'lint definer_tenant_check: every SECURITY DEFINER function a tenant role may call establishes the tenant (or is allow-listed)');

-- 8. The roles: tenant roles and anon are plain (no superuser, BYPASSRLS,
--    CREATEROLE), hold no trusted role, and own nothing of the extension
--    (an owner is above its own table's grants).
SELECT is((SELECT array_agg(r.rolname::text ORDER BY 1) FROM pg_roles r
           WHERE r.rolname IN (SELECT role_name FROM lint_tenant_roles)
             AND (r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolcreatedb
                  OR pg_has_role(r.oid, 'ventros_authenticator', 'MEMBER')
                  OR pg_has_role(r.oid, 'ventros_platform_admin', 'MEMBER'))),
          NULL, 'lint roles: tenant roles and anon have no privileged attribute and hold no trusted role');
SELECT is((SELECT array_agg(x ORDER BY 1) FROM (
               SELECT c.oid::regclass::text AS x FROM pg_class c
               WHERE c.relnamespace IN (SELECT nsp FROM lint_schemas) AND c.relowner IN (SELECT oid FROM pg_roles WHERE rolname IN (SELECT role_name FROM lint_tenant_roles))
               UNION ALL
               SELECT p.oid::regprocedure::text FROM pg_proc p
               WHERE p.pronamespace IN (SELECT nsp FROM lint_schemas) AND p.proowner IN (SELECT oid FROM pg_roles WHERE rolname IN (SELECT role_name FROM lint_tenant_roles))) o),
          NULL, 'lint roles: no tenant role owns a table, view or function of the extension');

-- 9. Foreign keys between tables with tenant_id pair tenant_id with tenant_id,
--    so no row can reference another tenant's row, whatever a function or a
--    policy lets through.
SELECT is((SELECT array_agg(c.conrelid::regclass::text || '.' || c.conname ORDER BY 1)
           FROM pg_constraint c
           WHERE c.contype = 'f'
             AND c.conrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN (SELECT nsp FROM lint_schemas))
             AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
             AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
             AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey, c.confkey) AS k(a, b)
                             JOIN pg_attribute x ON x.attrelid = c.conrelid AND x.attnum = k.a
                             JOIN pg_attribute y ON y.attrelid = c.confrelid AND y.attnum = k.b
                             WHERE x.attname = 'tenant_id' AND y.attname = 'tenant_id')),
          NULL, 'lint tenant_foreign_keys: every foreign key between tenant tables pairs tenant_id with tenant_id');

-- 10. A STABLE (or IMMUTABLE) function reads in its caller's snapshot; a
--     VOLATILE function that it calls takes a newer one of its own.  The two
--     halves of one answer then disagree: broadcast_stats read the broadcast
--     through get_broadcast (volatile, as it can lock) and counted its
--     executions in the query's snapshot, so a reading that raced the last
--     send's outcome said "completed" beside sends still "sending"
--     (test/isolation/specs/broadcast_stats_snapshot.spec).  Read with the
--     stable ventros.get_row instead.  Volatile callees that run no statement
--     (they only raise) cannot skew and are not counted.
SELECT is((SELECT array_agg(DISTINCT s.oid::regprocedure::text ORDER BY s.oid::regprocedure::text)
           FROM pg_proc s, pg_proc v
           WHERE s.pronamespace IN (SELECT nsp FROM lint_schemas) AND s.provolatile IN ('s', 'i')
             AND s.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
             AND v.pronamespace IN (SELECT nsp FROM lint_schemas) AND v.provolatile = 'v'
             AND (v.prolang NOT IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
                  OR v.prosrc ~* '\m(select|insert|update|delete|perform|execute)\M')
             AND s.prosrc ~ ('\m(ventros|api)\.' || v.proname || '\s*\(')
             AND NOT pg_temp.allowed('stable_calls_volatile', s.oid::regprocedure::text)),
          NULL, 'lint stable_calls_volatile: no STABLE or IMMUTABLE function reads through a VOLATILE one (one snapshot per answer)');

-- The allow-list holds only what exists (a stale exception hides nothing).
SELECT is((SELECT array_agg(a.lint || ': ' || a.object ORDER BY 1) FROM lint_allow a
           WHERE CASE WHEN a.lint = 'policy_shape'
                      THEN NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid::regclass::text || '.' || p.polname = a.object)
                      ELSE to_regprocedure(a.object) IS NULL END),
          NULL, 'every allow-listed object exists');

-- The function it found: event_log_sequence (the activity log's trigger calls
-- it with the caller's rights, so agents may) took any tenant; its lock is now
-- ventros.lock_tenant_key, which refuses another tenant.
SELECT matches(ventros_test.run_as('ventros_agent', 'lint_b',
                   format('SELECT ventros.event_log_sequence(%L, %L)', 'lint_a', gen_random_uuid())),
               '^ERROR 42501', 'event_log_sequence refuses another tenant''s log (42501)');
SELECT is(ventros_test.run_as('ventros_agent', 'lint_b',
              format('SELECT ventros.event_log_sequence(%L, %L)', 'lint_b', gen_random_uuid())),
          '1', 'event_log_sequence numbers the acting tenant''s log');
-- and the trigger that numbers entries leaves a row of another tenant to the
-- row policy (it used to meet the lock's 42501 first, so a widened INSERT
-- policy would have hidden behind the lock)
SELECT matches(ventros_test.run_as('ventros_agent', 'lint_b',
                   format('INSERT INTO ventros.event_log (tenant_id, event_type, contact_id) VALUES (%L, %L, %L)',
                          'lint_a', 'note.added', gen_random_uuid())),
               '^ERROR 42501: new row violates row-level security policy',
               'an activity-log row of another tenant is refused by the row policy, not by the lock');

SELECT diag(format('lints: %s tables, %s views, %s functions of the extension checked; %s allow-listed exceptions',
                   (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT nsp FROM lint_schemas) AND relkind IN ('r', 'p')),
                   (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT nsp FROM lint_schemas) AND relkind IN ('v', 'm')),
                   (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT nsp FROM lint_schemas)),
                   (SELECT count(*) FROM lint_allow)));

SELECT * FROM finish();
ROLLBACK;
