-- Every key of a tenant's data leads with tenant_id (issue 12, hole 10): the
-- primary key, unique constraints and unique indexes of every table with a
-- tenant_id column, in every schema of the extension, walked from the
-- catalog (a new table is checked without being named here); and no such
-- table carries an aggregate's version without the engine.  A key that
-- does not lead with tenant_id is one tenant's rows colliding with
-- another's, or a lookup that crosses tenants.
BEGIN;
SELECT plan(5);

CREATE TEMP VIEW tenant_tables AS
SELECT c.oid, c.oid::regclass::text AS name
  FROM pg_class c
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'ventros'
 WHERE c.relkind IN ('r', 'p')
   AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped);

SELECT cmp_ok((SELECT count(*)::int FROM tenant_tables), '>', 50, 'the walk finds the tenant tables');

SELECT is_empty($$
    SELECT t.name || ' ' || k.conname
      FROM tenant_tables t
      JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype IN ('p', 'u')
     WHERE (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = k.conkey[1]) <> 'tenant_id'
     ORDER BY 1$$,
    'every primary key and unique constraint of a table with tenant_id leads with tenant_id');

-- Unique indexes that are not constraints: the global lookups of a request
-- that names no tenant yet, each for a reason (a new one fails here until
-- it is added with its reason)
SELECT results_eq($$
    SELECT i.indexrelid::regclass::text
      FROM tenant_tables t
      JOIN pg_index i ON i.indrelid = t.oid
     WHERE i.indisunique
       AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)
       AND (i.indkey[0] = 0
            OR (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = i.indkey[0]) <> 'tenant_id')
     ORDER BY 1$$,
    $$VALUES ('ventros.channels_id'),             -- a webhook URL names the channel alone
             ('ventros.projects_id'),             -- ids are global (the API addresses rows by id)
             ('ventros.user_api_keys_unique_hash'), -- an API key names no tenant
             ('ventros.users_id'),
             ('ventros.users_unique_email')$$,    -- login by email, before the tenant is known
    'unique indexes not led by tenant_id are only the global lookups');

SELECT is_empty($$
    SELECT t.name FROM tenant_tables t
     WHERE NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = t.oid AND i.indisprimary)
     ORDER BY 1$$,
    'every table with tenant_id has a primary key');

-- a version column means the engine keeps it (optimistic locking, events):
-- a table that carries one without the engine's trigger has a column
-- nothing maintains (processed_events had version, created_at, updated_at
-- and deleted_at for nothing; a table keeping updated_at by hand, as
-- http_requests does, is fine)
SELECT is_empty($$
    SELECT t.name FROM tenant_tables t
     WHERE EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = 'version'
                                                AND NOT a.attisdropped)
       AND NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = t.oid AND g.tgname = 'ventros_engine_before')
     ORDER BY 1$$,
    'every table with a version column has the engine''s trigger');

SELECT * FROM finish();
ROLLBACK;
