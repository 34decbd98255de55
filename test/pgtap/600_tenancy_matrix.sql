-- The tenancy matrix, generated from the catalog: every table and view with a
-- tenant_id column, in every schema the extension owns objects in (not only
-- aggregates or api views), attacked by every tenant role (and ventros_anon)
-- of another tenant, through read, update, delete and insert.
--
-- Tenant mx_a is the victim and mx_b the attacker; both get one row of every
-- aggregate (the contract samples of test/fixtures/samples/) plus one row of
-- each table the samples leave empty (seeded below).  A table with tenant_id
-- that has no row of mx_a fails the first check, so a new table cannot escape
-- the matrix by being empty.
--
-- Cases, for each relation R x role (viewer, agent, admin, anon):
--   read           as mx_b: SELECT count(*) FROM R WHERE tenant_id <> 'mx_b'
--                  (nor the shared rows of the system tenant 'ventros')
--                  (soft-deleted rows included) is 0, or the grant refuses;
--   update         as mx_b: UPDATE R SET c = c WHERE tenant_id = 'mx_a' (c: a
--                  column the role may update, plus version = version) changes
--                  0 rows of mx_a, or the grant refuses;
--   update_blind   as mx_none (a tenant without a single row): UPDATE R SET
--                  c = <literal> with no WHERE, so only the UPDATE policies
--                  apply (a WHERE or SET that reads a column adds the SELECT
--                  policies): 0 rows and no row of mx_a touched;
--   delete         as mx_b: DELETE ... WHERE tenant_id = 'mx_a';
--   delete_blind   as mx_none: DELETE FROM R with no WHERE;
--   insert         as mx_b: a copy of one of mx_a's rows (to_jsonb, back
--                  through jsonb_populate_record, only the columns the role
--                  may insert) is refused with 42501 by the INSERT policy or
--                  the grant: RLS is checked before constraints, so the copy's
--                  duplicate keys and foreign keys are never reached.
-- "Touched" is decided on the base table by (ctid, xmin) of every mx_a row,
-- so a soft delete (an UPDATE in the engine's trigger, reported as 0 rows)
-- or an update that changes no value is still seen.
BEGIN;
SELECT * FROM no_plan();
SET LOCAL client_min_messages = warning;
SET LOCAL ventros.include_deleted = on;

SELECT ventros.create_tenant('mx_a', 'Matrix A');
SELECT ventros.create_tenant('mx_b', 'Matrix B');

-- One row of every aggregate for each tenant (the contract samples) and of
-- each table the samples leave empty (test/fixtures/60_tenancy_matrix.sql).
CREATE TEMP TABLE mx_seed_errors AS
SELECT t.tenant, s.aggregate, s.result
FROM unnest(ARRAY['mx_a', 'mx_b']) AS t(tenant)
CROSS JOIN LATERAL ventros_test.seed_tenant(t.tenant) s;
SELECT is((SELECT string_agg(tenant || ' ' || aggregate || ': ' || coalesce(result, 'NULL'), '; ')
           FROM mx_seed_errors WHERE result IS NULL OR result ~ '^ERROR'),
          NULL, 'every contract sample creates its row for both tenants');

-- The relations: every table or view with a tenant_id column in a schema the
-- extension owns objects in; base is the table a view writes to.
CREATE TEMP TABLE mx_relations AS
WITH ext_schemas AS (
    SELECT DISTINCT c.relnamespace AS nsp
    FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
    WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ventros')
)
SELECT c.oid::regclass AS rel, c.relkind,
       CASE WHEN c.relkind = 'v'
            THEN (SELECT format('%I.%I', u.table_schema, u.table_name)::regclass
                  FROM information_schema.view_table_usage u
                  WHERE u.view_schema = n.nspname AND u.view_name = c.relname LIMIT 1)
            ELSE c.oid::regclass END AS base
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relnamespace IN (SELECT nsp FROM ext_schemas)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
ORDER BY c.oid::regclass::text;

-- (ctid, xmin) of every row of mx_a in a base table: any write changes it.
CREATE FUNCTION pg_temp.mx_snapshot(base regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text;
BEGIN
    EXECUTE format('SELECT md5(coalesce(string_agg(ctid::text || xmin::text, '','' ORDER BY ctid), '''')) FROM %s WHERE tenant_id = %L',
                   base, 'mx_a') INTO s;
    RETURN s;
END
$$;

-- Runs one statement as role_name acting for tenant in a subtransaction that
-- is always rolled back; result is the count a SELECT returns, 'rows N' for a
-- write, or 'ERROR <SQLSTATE>: <message>'; touched says whether any row of
-- mx_a in base changed before the rollback.
CREATE FUNCTION pg_temp.mx_try(role_name text, tenant text, base regclass, sql text,
                               OUT result text, OUT touched boolean) LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.mx_snapshot(base);
    n bigint;
BEGIN
    touched := false;
    BEGIN
        PERFORM set_config('ventros.tenant', tenant, true);
        EXECUTE format('SET LOCAL ROLE %I', role_name);
        IF sql ~* '^SELECT' THEN
            EXECUTE sql INTO n;
            result := n::text;
        ELSE
            EXECUTE sql;
            GET DIAGNOSTICS n = ROW_COUNT;
            result := 'rows ' || n;
        END IF;
        RESET ROLE;
        touched := pg_temp.mx_snapshot(base) IS DISTINCT FROM before;
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'VNT99';
    EXCEPTION
        WHEN SQLSTATE 'VNT99' THEN NULL;
        WHEN OTHERS THEN result := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
    END;
END
$$;

-- A refusal by the grant (the role may not do this at all), or by a view
-- that is not updatable, is as good as 0 rows; any other error means the
-- statement reached a row of mx_a.
CREATE FUNCTION pg_temp.mx_refused(result text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT result ~ '^ERROR (42501: permission denied for |55000: cannot (update|delete from|insert into) view )'
$$;

-- The statements of one relation and role.
CREATE FUNCTION pg_temp.mx_cases(r mx_relations, role_name text)
RETURNS TABLE (action text, tenant text, sql text) LANGUAGE plpgsql AS $$
DECLARE
    col      text;
    set_read text;
    set_lit  text;
    sample   jsonb;
    agg      ventros.aggregates;
    cols     text;
BEGIN
    -- the row a sample created for mx_a when there is one (a project's
    -- system agents, made with it, may not be created by hand), else any
    EXECUTE format('SELECT to_jsonb(x) FROM %s x WHERE tenant_id = %L AND (to_jsonb(x)->>''deleted_at'') IS NULL
                    ORDER BY (to_jsonb(x)->>''id'') IN (SELECT result FROM mx_seed_errors WHERE tenant = %L) DESC LIMIT 1',
                   r.rel, 'mx_a', 'mx_a') INTO sample;
    -- a column the role may update, other than the keys the engine guards
    SELECT a.attname INTO col FROM pg_attribute a
    WHERE a.attrelid = r.rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      AND a.attname NOT IN ('tenant_id', 'id', 'version', 'created_at', 'updated_at', 'deleted_at')
    ORDER BY has_column_privilege(role_name, r.rel, a.attnum, 'UPDATE') DESC, a.attnum LIMIT 1;
    col := coalesce(col, 'tenant_id');
    set_read := format('%I = %I', col, col);
    set_lit := format('%I = %L::%s', col, sample->>col,
                      (SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = r.rel AND attname = col));
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = r.rel AND attname = 'version' AND NOT attisdropped) THEN
        set_read := set_read || ', version = version';
        set_lit := set_lit || format(', version = %L', sample->>'version');
    END IF;
    -- rows of the system tenant "ventros" are the shared catalog (system
    -- channel types: policy ventros_system_catalog_read), readable by all
    action := 'read'; tenant := 'mx_b';
    sql := format('SELECT count(*) FROM %s WHERE tenant_id IS DISTINCT FROM %L AND tenant_id IS DISTINCT FROM %L',
                  r.rel, 'mx_b', 'ventros');
    RETURN NEXT;
    action := 'update';
    sql := format('UPDATE %s SET %s WHERE tenant_id = %L', r.rel, set_read, 'mx_a');
    RETURN NEXT;
    action := 'delete';
    sql := format('DELETE FROM %s WHERE tenant_id = %L', r.rel, 'mx_a');
    RETURN NEXT;
    action := 'update_blind'; tenant := 'mx_none';
    sql := format('UPDATE %s SET %s', r.rel, set_lit);
    RETURN NEXT;
    action := 'delete_blind';
    sql := format('DELETE FROM %s', r.rel);
    RETURN NEXT;

    -- the copy: a row of mx_a as the engine would accept a new one (not
    -- deleted, in an initial state), with only the columns the role may insert
    SELECT * INTO agg FROM ventros.aggregates WHERE table_name = r.base;
    sample := sample - 'deleted_at';
    IF agg.state_column IS NOT NULL THEN
        sample := sample || jsonb_build_object(agg.state_column,
            (SELECT to_state FROM ventros.aggregate_transitions WHERE aggregate = agg.aggregate AND from_state IS NULL
             ORDER BY to_state LIMIT 1));
        IF sample->agg.state_column = 'null' THEN sample := sample - agg.state_column; END IF;
    END IF;
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute a
    WHERE a.attrelid = r.rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a'
      AND NOT EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = r.base AND b.attname = a.attname AND b.attgenerated <> '')
      AND sample ? a.attname
      AND (a.attname = 'tenant_id' OR has_column_privilege(role_name, r.rel, a.attnum, 'INSERT'))
      AND (r.relkind <> 'v' OR pg_relation_is_updatable(r.rel, false) & 8 = 8);
    action := 'insert'; tenant := 'mx_b';
    cols := coalesce(cols, 'tenant_id');	-- a view that is not insertable refuses any INSERT
    sql := format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, %L)', r.rel, cols, cols, r.rel, sample);
    RETURN NEXT;
END
$$;

-- Every relation has rows of both tenants to attack (and defend); a view no
-- tenant role may read at all (a platform status view) is only refused.
SELECT ok(x.mx_has_rows, r.rel || ': has rows of mx_a and mx_b')
FROM mx_relations r,
     LATERAL (SELECT ventros_test.exec_capture(format(
                 'SELECT count(*) FILTER (WHERE tenant_id = %L) > 0 AND count(*) FILTER (WHERE tenant_id = %L) > 0 FROM %s',
                 'mx_a', 'mx_b', r.rel))::boolean AS mx_has_rows) x
WHERE r.relkind <> 'v'
   OR EXISTS (SELECT 1 FROM unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon']) g
              WHERE has_table_privilege(g, r.rel, 'SELECT'));

CREATE TEMP TABLE mx_results AS
SELECT r.rel, role_name, c.action, c.sql, t.result, t.touched
FROM mx_relations r
CROSS JOIN unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon']) AS role_name
CROSS JOIN LATERAL pg_temp.mx_cases(r, role_name) c
CROSS JOIN LATERAL pg_temp.mx_try(role_name, c.tenant, r.base, c.sql) t;

SELECT ok(CASE action
              WHEN 'read' THEN result = '0' OR pg_temp.mx_refused(result)
              WHEN 'insert' THEN result ~ '^ERROR 42501: new row violates row-level security policy' OR pg_temp.mx_refused(result)
              ELSE (result = 'rows 0' OR pg_temp.mx_refused(result)) AND NOT touched
          END,
          format('%s as %s: %s -> %s%s', rel, role_name, action, result, CASE WHEN touched THEN ' (touched mx_a)' ELSE '' END))
FROM mx_results ORDER BY rel::text, role_name, action;

-- The summary the issue asks for: the case count and the cross-tenant rows.
SELECT diag(format('tenancy matrix: %s relations (%s tables, %s views) x 4 roles x 6 actions = %s cases: '
                   '%s refused by grants, %s inserts refused by row-level security, %s answered 0 rows; '
                   'cross-tenant rows read %s, rows of mx_a written %s, inserts past the policy %s',
                   count(DISTINCT rel), count(DISTINCT rel) FILTER (WHERE (SELECT relkind FROM pg_class WHERE oid = rel) <> 'v'),
                   count(DISTINCT rel) FILTER (WHERE (SELECT relkind FROM pg_class WHERE oid = rel) = 'v'),
                   count(*), count(*) FILTER (WHERE pg_temp.mx_refused(result)),
                   count(*) FILTER (WHERE result ~ '^ERROR 42501: new row violates row-level security policy'),
                   count(*) FILTER (WHERE result IN ('0', 'rows 0')),
                   coalesce(sum(result::bigint) FILTER (WHERE action = 'read' AND result ~ '^\d+$'), 0),
                   count(*) FILTER (WHERE touched OR (action NOT IN ('read', 'insert') AND result ~ '^rows [1-9]')),
                   count(*) FILTER (WHERE action = 'insert' AND NOT pg_temp.mx_refused(result)
                                    AND result !~ '^ERROR 42501: new row violates row-level security policy')))
FROM mx_results;

SELECT is((SELECT coalesce(sum(result::bigint), 0) FROM mx_results WHERE action = 'read' AND result ~ '^\d+$'), 0::numeric,
          'no role of another tenant reads a single row of mx_a');
SELECT ok((SELECT count(DISTINCT rel) FROM mx_results) >= 120, 'the matrix covers every tenant table and api view (at least 120)');

SELECT * FROM finish();
ROLLBACK;
