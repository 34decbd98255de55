-- The tenancy matrix for functions, generated from the catalog: every
-- function of the extension that a tenant role (or ventros_anon) may execute,
-- called by each role allowed to, acting for tenant fx_b, with the ids of
-- tenant fx_a's rows wherever it takes an id (uuid, uuid[] or a row of a
-- table).  A function without ids (a report, a tick) must not reach fx_a's
-- rows either.
--
-- Each uuid argument gets the id of fx_a's row of the table its name points
-- at (contact_id -> contacts; an argument named id -> the table the function
-- is named after: update_contact -> contacts), else fx_a's contact; a row
-- argument gets fx_a's row itself.  Other required arguments get a plain
-- value of their type (the version 1 every seeded row has, 'matrix' or the
-- first value of the list the function checks the argument against, {}, a
-- time tomorrow); a search (a function with a query argument) is called with
-- the name of fx_a's first contact as its query and nothing else.
-- The call runs in a subtransaction that is always rolled back.  It passes
-- when no row of fx_a (in any table, by ctid and xmin) changed and the
-- answer names neither fx_a nor any id of fx_a's rows it was not given.
-- Most calls end in P0002 (not found) or 42501; the summary counts them.
BEGIN;
SELECT * FROM no_plan();
SET LOCAL client_min_messages = warning;
-- a bound, not a budget: the walk takes about a minute under UBSan on a busy
-- machine, and must never hang the suite
SET LOCAL statement_timeout = '300s';

SELECT ventros.create_tenant('fx_a', 'Functions A');
SELECT ventros.create_tenant('fx_b', 'Functions B');
CREATE TEMP TABLE fx_seed AS
SELECT t.tenant, s.aggregate, s.result
FROM unnest(ARRAY['fx_a', 'fx_b']) AS t(tenant)
CROSS JOIN LATERAL ventros_test.seed_tenant(t.tenant) s;
SELECT is((SELECT string_agg(tenant || ' ' || aggregate || ': ' || coalesce(result, 'NULL'), '; ')
           FROM fx_seed WHERE result IS NULL OR result ~ '^ERROR'),
          NULL, 'every contract sample creates its row for both tenants');

-- Base tables with tenant_id, and one id of fx_a per table that has an id
-- (the sample's row first).
CREATE TEMP TABLE fx_tables AS
SELECT c.oid::regclass AS rel, c.relname::text AS relname
FROM pg_class c
WHERE c.relnamespace = 'ventros'::regnamespace AND c.relkind = 'r'
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped);

CREATE TEMP TABLE fx_ids (rel regclass, relname text, id uuid);
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM fx_tables WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = 'id'
                                                                                 AND a.atttypid = 'uuid'::regtype) LOOP
        EXECUTE format('INSERT INTO fx_ids SELECT %L, %L, id FROM %s x WHERE tenant_id = %L
                        ORDER BY id::text IN (SELECT result FROM fx_seed WHERE tenant = %L) DESC,
                                 (to_jsonb(x)->>''deleted_at'') IS NULL DESC LIMIT 1',
                       t.rel, t.relname, t.rel, 'fx_a', 'fx_a');
    END LOOP;
END
$$;

-- Every id fx_a has (any uuid column of its rows): an answer naming one it
-- was not given has read fx_a's data.
CREATE TEMP TABLE fx_secrets (id text PRIMARY KEY);
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT t.rel, a.attname FROM fx_tables t JOIN pg_attribute a ON a.attrelid = t.rel
             WHERE a.atttypid = 'uuid'::regtype AND a.attnum > 0 AND NOT a.attisdropped LOOP
        EXECUTE format('INSERT INTO fx_secrets SELECT DISTINCT %I::text FROM %s WHERE tenant_id = %L AND %I IS NOT NULL
                        ON CONFLICT DO NOTHING', c.attname, c.rel, 'fx_a', c.attname);
    END LOOP;
    -- ids both tenants have (the well-known system agents) are no secret
    FOR c IN SELECT t.rel, a.attname FROM fx_tables t JOIN pg_attribute a ON a.attrelid = t.rel
             WHERE a.atttypid = 'uuid'::regtype AND a.attnum > 0 AND NOT a.attisdropped LOOP
        EXECUTE format('DELETE FROM fx_secrets s USING %s x WHERE x.tenant_id = %L AND x.%I::text = s.id', c.rel, 'fx_b', c.attname);
    END LOOP;
END
$$;

-- (table, ctid, xmin) of every row of fx_a: any write changes it.
CREATE FUNCTION pg_temp.fx_snapshot() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    q text;
    s text;
BEGIN
    SELECT string_agg(format('SELECT %L || ctid::text || xmin::text AS k FROM %s WHERE tenant_id = %L', rel, rel, 'fx_a'),
                      ' UNION ALL ') INTO q FROM fx_tables;
    EXECUTE 'SELECT md5(string_agg(k, '','' ORDER BY k)) FROM (' || q || ') x' INTO s;
    RETURN s;
END
$$;

-- The table a name points at: contact -> contacts, identity -> contact_identities,
-- merge_suggestion -> contact_merge_suggestions; NULL when none.
CREATE FUNCTION pg_temp.fx_table_for(word text, fname text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT relname FROM fx_ids
    WHERE relname IN (word || 's', word || 'es', word, regexp_replace(word, 'y$', 'ies'))
       OR relname LIKE '%\_' || word || 's' OR relname LIKE '%\_' || word || 'es'
       OR relname LIKE '%\_' || regexp_replace(word, 'y$', 'ies')
    ORDER BY relname IN (word || 's', word || 'es', word, regexp_replace(word, 'y$', 'ies')) DESC,
             position(split_part(relname, '_', 1) IN fname) > 0 DESC, relname
    LIMIT 1
$$;

-- The table a uuid argument's id comes from.
CREATE FUNCTION pg_temp.fx_arg_table(arg text, fname text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    words text[] := string_to_array(fname, '_');
    base  text := regexp_replace(coalesce(arg, 'id'), '(_ids?|_by)$', '');
    r     text;
BEGIN
    base := CASE base WHEN 'reply_to' THEN 'message' WHEN 'author' THEN 'agent' WHEN 'created' THEN 'user'
                      WHEN 'triggered' THEN 'user' WHEN 'origin' THEN 'broadcast' WHEN 'primary' THEN 'contact'
                      WHEN 'list' THEN 'contact_list' ELSE base END;
    IF base NOT IN ('id', 'row', 'aggregate', 'after', 'before', 'target') THEN
        r := pg_temp.fx_table_for(base, fname);
        IF r IS NOT NULL THEN RETURN r; END IF;
    END IF;
    -- an id of the function's own aggregate: the longest run of words after the verb
    FOR n IN REVERSE cardinality(words) - 1 .. 1 LOOP
        FOR s IN 2 .. cardinality(words) - n + 1 LOOP
            r := pg_temp.fx_table_for(array_to_string(words[s:s + n - 1], '_'), fname);
            IF r IS NOT NULL THEN RETURN r; END IF;
        END LOOP;
    END LOOP;
    RETURN 'contacts';
END
$$;

-- The functions and, per argument, the value it is called with.
CREATE TEMP TABLE fx_functions AS
SELECT p.oid AS fn, p.oid::regprocedure::text AS signature, p.proname::text AS fname
FROM pg_proc p
WHERE p.pronamespace IN ('ventros'::regnamespace, 'api'::regnamespace) AND p.prokind = 'f'
  AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
  AND EXISTS (SELECT 1 FROM unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon']) r
              WHERE has_function_privilege(r, p.oid, 'EXECUTE'));

CREATE FUNCTION pg_temp.fx_call(f fx_functions) RETURNS TABLE (sql text, given text[]) LANGUAGE plpgsql AS $$
DECLARE
    p     pg_proc;
    args  text[] := '{}';
    i     int;
    name  text;
    typ   oid;
    v     text;
    tbl   text;
    id    uuid;
    row_t regclass;
    ndef  int;
BEGIN
    SELECT * INTO p FROM pg_proc WHERE oid = f.fn;
    given := '{}';
    ndef := p.pronargdefaults;
    FOR i IN 1 .. p.pronargs LOOP
        typ := p.proargtypes[i - 1];
        name := coalesce(p.proargnames[i], '');
        IF i > p.pronargs - ndef AND 'query' = ANY (p.proargnames) THEN
            CONTINUE;	-- a search keeps its optional filters: any id of fx_a in its answer was not given
        ELSIF typ IN ('uuid'::regtype, 'uuid[]'::regtype) THEN
            tbl := pg_temp.fx_arg_table(name, f.fname);
            SELECT x.id INTO id FROM fx_ids x WHERE x.relname = tbl;
            given := given || id::text;
            v := CASE WHEN typ = 'uuid'::regtype THEN format('%L::uuid', id) ELSE format('ARRAY[%L]::uuid[]', id) END;
        ELSIF typ IN (SELECT reltype FROM pg_class WHERE oid IN (SELECT rel FROM fx_tables)) THEN
            row_t := (SELECT oid FROM pg_class WHERE reltype = typ);
            EXECUTE format('SELECT x::text, (to_jsonb(x)->>''id'')::uuid FROM %s x WHERE tenant_id = %L LIMIT 1', row_t, 'fx_a') INTO v, id;
            -- the caller holds the whole row: what it names is given, tenant included
            given := given || 'fx_a'::text || ARRAY(SELECT m[1] FROM regexp_matches(v, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'g') m);
            v := format('%L::%s', v, row_t);
        ELSIF i > p.pronargs - ndef THEN
            CONTINUE;	-- an optional argument keeps its default
        ELSE
            -- a text argument checked against a list (require_value(arg, ARRAY['a', ...]))
            -- gets the list's first value, so the call gets past the check to the ids
            v := quote_literal(substring(p.prosrc from
                     'require_value\(\s*(?:coalesce\()?\s*(?:\w+\.)?' || name || '\M[^;]*?ARRAY\[\s*''([^'']*)'''));
            v := CASE
                WHEN typ IN ('integer'::regtype, 'bigint'::regtype, 'smallint'::regtype, 'numeric'::regtype) THEN '1'
                WHEN typ = 'text'::regtype AND v IS NOT NULL THEN v
                -- a search query: the name of fx_a's contact (search, search_contacts, search_messages)
                WHEN typ = 'text'::regtype AND name = 'query' THEN
                    quote_literal((SELECT c.name FROM ventros.contacts c WHERE c.tenant_id = 'fx_a' ORDER BY c.created_at, c.id LIMIT 1))
                WHEN typ = 'text'::regtype AND name ~ 'url' THEN '''https://hooks.example/matrix'''
                WHEN typ = 'text'::regtype AND name ~ 'email' THEN '''matrix@matrix.example'''
                WHEN typ = 'text'::regtype AND name ~ 'phone' THEN '''+5511977770000'''
                WHEN typ = 'text'::regtype THEN '''matrix'''
                WHEN typ = 'boolean'::regtype THEN 'false'
                WHEN typ IN ('jsonb'::regtype, 'json'::regtype) THEN '''{}''::' || format_type(typ, NULL)
                WHEN typ = 'timestamptz'::regtype THEN 'now() + interval ''1 day'''
                WHEN typ = 'date'::regtype THEN 'current_date'
                WHEN typ = 'interval'::regtype THEN '''1 hour''::interval'
                WHEN typ = 'text[]'::regtype THEN '''{}''::text[]'
                WHEN typ = 'bytea'::regtype THEN '''''::bytea'
                WHEN typ = 'regclass'::regtype THEN '''ventros.contacts''::regclass'
                WHEN typ = 'anyelement'::regtype THEN 'NULL::ventros.contacts'
                ELSE 'NULL::' || format_type(typ, NULL) END;
        END IF;
        args := args || CASE WHEN name <> '' THEN format('%I => %s', name, v) ELSE v END;
    END LOOP;
    sql := format('SELECT coalesce(string_agg(format(''%%s'', x), '',''), '''') FROM %s(%s) x',
                  f.fn::regproc, array_to_string(args, ', '));
    RETURN NEXT;
END
$$;

-- Runs one call as role_name of fx_b in a subtransaction always rolled back.
CREATE FUNCTION pg_temp.fx_try(role_name text, sql text, OUT result text, OUT touched boolean) LANGUAGE plpgsql AS $$
DECLARE
    before text := pg_temp.fx_snapshot();
BEGIN
    touched := false;
    BEGIN
        PERFORM set_config('ventros.tenant', 'fx_b', true);
        EXECUTE format('SET LOCAL ROLE %I', role_name);
        EXECUTE sql INTO result;
        RESET ROLE;
        touched := pg_temp.fx_snapshot() IS DISTINCT FROM before;
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'VNT99';
    EXCEPTION
        WHEN SQLSTATE 'VNT99' THEN NULL;
        WHEN OTHERS THEN result := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
    END;
END
$$;

CREATE TEMP TABLE fx_results AS
SELECT f.signature, r.role_name, c.sql, c.given, t.result, t.touched,
       (t.result LIKE '%fx\_a%' AND NOT 'fx_a' = ANY (c.given)) OR EXISTS (SELECT 1 FROM fx_secrets s
                                          WHERE strpos(t.result, s.id) > 0 AND NOT s.id = ANY (c.given)) AS leaked
FROM fx_functions f
CROSS JOIN unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin', 'ventros_anon']) AS r(role_name)
CROSS JOIN LATERAL pg_temp.fx_call(f) c
CROSS JOIN LATERAL pg_temp.fx_try(r.role_name, c.sql) t
WHERE has_function_privilege(r.role_name, f.fn, 'EXECUTE');

SELECT ok(NOT touched AND NOT leaked,
          format('%s as %s -> %s%s%s', signature, role_name, left(result, 120),
                 CASE WHEN touched THEN ' (wrote fx_a''s rows)' ELSE '' END,
                 CASE WHEN leaked THEN ' (answered with fx_a''s data)' ELSE '' END))
FROM fx_results ORDER BY signature, role_name;

SELECT diag(format('function matrix: %s functions x the roles that may call them = %s calls with fx_a''s ids as fx_b: '
                   '%s not found (P0002), %s refused (42501), %s other errors, %s answers; '
                   'rows of fx_a written %s, answers with fx_a''s data %s',
                   count(DISTINCT signature), count(*),
                   count(*) FILTER (WHERE result LIKE 'ERROR P0002%'), count(*) FILTER (WHERE result LIKE 'ERROR 42501%'),
                   count(*) FILTER (WHERE result LIKE 'ERROR %' AND result NOT LIKE 'ERROR P0002%' AND result NOT LIKE 'ERROR 42501%'),
                   count(*) FILTER (WHERE result NOT LIKE 'ERROR %'),
                   count(*) FILTER (WHERE touched), count(*) FILTER (WHERE leaked)))
FROM fx_results;

SELECT ok((SELECT count(DISTINCT signature) FROM fx_results) >= 400, 'the function matrix covers at least 400 functions');

SELECT * FROM finish();
ROLLBACK;
