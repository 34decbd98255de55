-- The functions ventros-http serves under /rpc/<name>, defined once: the
-- front's schema cache (src/http/schema.c), the OpenAPI document
-- (ventros.http_openapi below) and the generated reference in docs/http.md
-- (scripts/http-reference) all read ventros.http_rpc_functions, so they
-- cannot disagree.
--
-- The declaration is the grant.  A function of schema ventros is served
-- when a tenant role (ventros_viewer, ventros_agent, ventros_admin) may
-- execute it: a command added later with its GRANT next to it is served
-- without touching the front (SIGHUP or a restart re-reads the catalog).
-- What only the scheduler or the workers run is granted to no tenant role,
-- so it is not served.  What is granted to ventros_platform_admin itself and
-- to no tenant role (platform_only) is served to a request acting as
-- ventros_platform_admin alone (a platform administrator's token, when the
-- front may take that role: docs/operations.md); to every other caller it
-- does not exist (404), and the tenants' reference leaves it out.  Schema api's functions (the sign-in
-- flows) are served as before, and a name in api hides the same name in
-- ventros.  Left out because no call with named JSON arguments can reach
-- them: trigger functions, functions with an unnamed, polymorphic
-- (pseudo-type) or VARIADIC argument, and those returning record without
-- OUT columns (a call needs a column list) -- today the engine's plumbing
-- that invoker-rights commands need EXECUTE on (ventros.get_row, lock_row,
-- apply_changes ...) and trigger functions.

CREATE VIEW ventros.http_rpc_functions WITH (security_invoker = true) AS
SELECT p.oid::pg_catalog.regprocedure AS function,
       p.proname::text AS name,
       n.nspname::text AS schema_name,
       coalesce(a.names, '{}') AS arg_names,
       coalesce(a.types, '{}') AS arg_types,
       coalesce(a.categories, '') AS arg_categories,
       p.pronargs - p.pronargdefaults AS required_args,
       pg_catalog.format_type(p.prorettype, NULL) AS result_type,
       rt.typtype AS result_kind,
       rt.typrelid AS result_relid,
       p.proretset AS returns_set,
       coalesce(o.columns, c.columns) AS result_columns,
       CASE WHEN rt.typtype = 'd' AND rt.typname ~ '^[a-z]+/[-+.a-z0-9]+$' THEN rt.typname::text END AS result_media_type,
       p.provolatile <> 'v' AS read_only,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') AS description,
       ARRAY(SELECT r FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
             WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE')) AS roles,
       coalesce(pa.platform_only, false) AS platform_only
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype
-- the input arguments (IN, INOUT, VARIADIC), in order
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(coalesce(x.name, '') ORDER BY x.n) AS names,
           pg_catalog.array_agg(pg_catalog.format_type(x.type, NULL) ORDER BY x.n) AS types,
           pg_catalog.string_agg(t.typcategory::text, '' ORDER BY x.n) AS categories,
           pg_catalog.bool_or(t.typtype = 'p' OR coalesce(x.name, '') = '') AS unservable
    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::pg_catalog.oid[]),
                           coalesce(p.proargnames, '{}'),
                           coalesce(p.proargmodes, '{}')) WITH ORDINALITY AS x(type, name, mode, n)
    JOIN pg_catalog.pg_type t ON t.oid = x.type
    WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')
) a ON true
-- the result's columns: its OUT, INOUT and TABLE arguments ...
LEFT JOIN LATERAL (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', x.name, 'type', pg_catalog.format_type(x.type, NULL))
                               ORDER BY x.n) AS columns
    FROM unnest(p.proallargtypes, p.proargnames, p.proargmodes) WITH ORDINALITY AS x(type, name, mode, n)
    WHERE x.mode IN ('o', 'b', 't')
) o ON true
-- ... or its composite type's attributes (multi-argument unnest is
-- syntax, ROWS FROM, which takes no schema)
LEFT JOIN LATERAL (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', att.attname,
                                                            'type', pg_catalog.format_type(att.atttypid, att.atttypmod))
                               ORDER BY att.attnum) AS columns
    FROM pg_catalog.pg_attribute att
    WHERE att.attrelid = rt.typrelid AND att.attnum > 0 AND NOT att.attisdropped
) c ON rt.typtype = 'c'
-- platform functions: granted to ventros_platform_admin itself (not through
-- a tenant role it holds) and to no tenant role; served to a request acting
-- as ventros_platform_admin only (src/http/rpc.c), never listed for tenants
LEFT JOIN LATERAL (
    SELECT true AS platform_only
    WHERE n.nspname = 'ventros'
      AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) x
                  JOIN pg_catalog.pg_roles g ON g.oid = x.grantee
                  WHERE g.rolname = 'ventros_platform_admin' AND x.privilege_type = 'EXECUTE')
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
                      WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE'))
) pa ON true
WHERE p.prokind = 'f'
  AND p.prorettype NOT IN ('pg_catalog.trigger'::pg_catalog.regtype, 'pg_catalog.event_trigger'::pg_catalog.regtype)
  AND NOT coalesce(a.unservable, false)
  AND p.provariadic = 0
  AND NOT (p.prorettype = 'pg_catalog.record'::pg_catalog.regtype AND o.columns IS NULL)
  AND (n.nspname = 'api'
       OR (n.nspname = 'ventros'
           AND (EXISTS (SELECT 1 FROM pg_catalog.unnest(ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin']) r
                        WHERE pg_catalog.has_function_privilege(r, p.oid, 'EXECUTE'))
                OR pa.platform_only)
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc q JOIN pg_catalog.pg_namespace qn ON qn.oid = q.pronamespace
                           WHERE qn.nspname = 'api' AND q.proname = p.proname)));
COMMENT ON VIEW ventros.http_rpc_functions IS
    'The functions ventros-http serves under /rpc/<name>: schema api''s, those of ventros a tenant role may execute (arguments, result, comment, roles), and those granted to ventros_platform_admin only (platform_only: served to platform administrators'' tokens alone)';
GRANT SELECT ON ventros.http_rpc_functions TO ventros_viewer, ventros_anon, ventros_authenticator;

-- The JSON Schema of a value of a PostgreSQL type, for the OpenAPI document:
-- {type, format}, items for arrays; json and jsonb take any JSON value.  By
-- oid: a type's name would have to be parsed, and a caller may send any text.
CREATE FUNCTION ventros.http_json_schema(type_oid oid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN t.typname IN ('json', 'jsonb') THEN jsonb_build_object('format', format_type(t.oid, NULL))
        WHEN t.typcategory = 'A' THEN jsonb_build_object('type', 'array', 'format', format_type(t.oid, NULL),
                                                         'items', ventros.http_json_schema(t.typelem))
        ELSE jsonb_build_object('type', CASE
                 WHEN b.typname IN ('int2', 'int4', 'int8') THEN 'integer'
                 WHEN b.typname IN ('numeric', 'float4', 'float8') THEN 'number'
                 WHEN b.typname = 'bool' THEN 'boolean'
                 WHEN b.typtype = 'c' THEN 'object'
                 ELSE 'string' END, 'format', format_type(t.oid, NULL)) END
    FROM pg_type t
    JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    WHERE t.oid = type_oid
$$;
COMMENT ON FUNCTION ventros.http_json_schema(oid) IS
    'The JSON Schema ({type, format}, items for arrays) of a value of a PostgreSQL type, for the OpenAPI document';

-- OpenAPI 3 description of what the calling role may use: the views of
-- schema api it may read, and the functions of ventros.http_rpc_functions it
-- may execute, with their arguments, results and the first line of their
-- COMMENT as summary.
CREATE FUNCTION ventros.http_openapi() RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH rels AS (
        SELECT c.oid, c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') AS description,
               coalesce((SELECT d.refobjid FROM pg_rewrite r JOIN pg_depend d
                           ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                          WHERE r.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
                          LIMIT 1), c.oid) AS base
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'api' AND c.relkind IN ('v', 'r', 'm')
          AND has_table_privilege(c.oid, 'SELECT')
    ), cols AS (
        SELECT r.relname, jsonb_object_agg(a.attname, ventros.http_json_schema(a.atttypid)) AS props
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
        GROUP BY r.relname
    ), funcs AS (
        -- one description per name: api's before ventros', then the fewest arguments
        SELECT DISTINCT ON (f.name) f.*,
               (SELECT r.relname FROM rels r WHERE r.base = f.result_relid AND f.result_relid <> 0 LIMIT 1) AS result_rel
        FROM ventros.http_rpc_functions f
        WHERE has_function_privilege(f.function, 'EXECUTE')
        ORDER BY f.name, f.schema_name, cardinality(f.arg_names)
    ), shaped AS (
        SELECT f.*,
               CASE
                   WHEN f.result_rel IS NOT NULL THEN jsonb_build_object('$ref', '#/components/schemas/' || f.result_rel)
                   WHEN f.result_columns IS NOT NULL THEN jsonb_build_object('type', 'object', 'properties',
                       (SELECT jsonb_object_agg(c ->> 'name', ventros.http_json_schema(to_regtype(c ->> 'type')))
                        FROM json_array_elements(f.result_columns) c))
                   ELSE ventros.http_json_schema(to_regtype(f.result_type)) END AS item,
               (SELECT jsonb_object_agg(x.name, ventros.http_json_schema(to_regtype(x.type)))
                FROM unnest(f.arg_names, f.arg_types) AS x(name, type)) AS props,
               to_jsonb(f.arg_names[1:f.required_args]) AS required,
               split_part(f.description, E'\n', 1) AS summary
        FROM funcs f
    ), ops AS (
        SELECT s.name, jsonb_build_object('summary', s.summary, 'description', s.description,
                   'tags', jsonb_build_array(CASE WHEN s.schema_name = 'api' THEN 'auth' ELSE 'commands' END),
                   'responses', CASE WHEN s.result_type = 'void' THEN
                           jsonb_build_object('204', jsonb_build_object('description', 'No Content'))
                       ELSE jsonb_build_object('200', jsonb_build_object('description', 'OK', 'content',
                           CASE WHEN s.result_media_type IS NOT NULL THEN
                               jsonb_build_object(s.result_media_type, jsonb_build_object('schema', jsonb_build_object('type', 'string')))
                           ELSE '{}'::jsonb END
                           || jsonb_build_object('application/json', jsonb_build_object('schema',
                               CASE WHEN s.returns_set THEN jsonb_build_object('type', 'array', 'items', s.item)
                                    ELSE s.item END)))) END) AS common,
               s.props, s.required, s.read_only, s.arg_names, s.arg_types, s.required_args
        FROM shaped s
    ), rel_paths AS (
        SELECT '/' || r.relname AS path, jsonb_build_object(
            'get', jsonb_build_object('summary', r.description, 'tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK',
                    'content', jsonb_build_object('application/json', jsonb_build_object('schema',
                        jsonb_build_object('type', 'array', 'items',
                            jsonb_build_object('$ref', '#/components/schemas/' || r.relname))))))),
            'post', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('201', jsonb_build_object('description', 'Created'))),
            'patch', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK'))),
            'delete', jsonb_build_object('tags', jsonb_build_array(r.relname),
                'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK')))) AS item
        FROM rels r
    ), rpc_paths AS (
        SELECT '/rpc/' || o.name AS path,
               jsonb_build_object('post', o.common || jsonb_build_object('requestBody', jsonb_build_object(
                   'required', o.required_args > 0,
                   'content', jsonb_build_object('application/json', jsonb_build_object('schema',
                       jsonb_build_object('type', 'object', 'properties', coalesce(o.props, '{}'), 'required', o.required)))
                   -- the one required text argument may come as the raw body (docs/http.md)
                   || CASE WHEN o.required_args = 1 AND o.arg_types[1] = 'text' THEN
                          jsonb_build_object('text/csv', jsonb_build_object('schema', jsonb_build_object('type', 'string')),
                                             'text/plain', jsonb_build_object('schema', jsonb_build_object('type', 'string')))
                      ELSE '{}'::jsonb END)))
               || CASE WHEN o.read_only THEN jsonb_build_object('get', o.common || jsonb_build_object('parameters',
                      (SELECT coalesce(jsonb_agg(jsonb_build_object('name', x.name, 'in', 'query', 'required', x.n <= o.required_args,
                                                                    'schema', ventros.http_json_schema(to_regtype(x.type))) ORDER BY x.n), '[]')
                       FROM unnest(o.arg_names, o.arg_types) WITH ORDINALITY AS x(name, type, n))))
                  ELSE '{}'::jsonb END AS item
        FROM ops o
    )
    SELECT json_build_object(
        'openapi', '3.0.3',
        'info', json_build_object('title', 'Ventros API', 'version', (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'ventros'),
                                  'description', 'PostgREST dialect over schema api and the commands of schema ventros (ventros-http)'),
        'paths', coalesce((SELECT jsonb_object_agg(path, item) FROM (SELECT * FROM rel_paths UNION ALL SELECT * FROM rpc_paths) p),
                          '{}'::jsonb),
        'components', json_build_object('schemas', coalesce((SELECT jsonb_object_agg(c.relname,
                          jsonb_build_object('type', 'object', 'properties', c.props)) FROM cols c), '{}'::jsonb)))
$$;
COMMENT ON FUNCTION ventros.http_openapi() IS 'OpenAPI 3 description of schema api and the /rpc/ commands as the calling role may use them (GET /)';

GRANT EXECUTE ON FUNCTION ventros.http_json_schema(oid), ventros.http_openapi() TO ventros_viewer, ventros_anon;
