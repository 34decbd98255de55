-- The OpenAPI document names the installed version instead of a constant.

CREATE OR REPLACE FUNCTION ventros.http_openapi() RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH rels AS (
        SELECT c.oid, c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') AS description
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'api' AND c.relkind IN ('v', 'r', 'm')
          AND has_table_privilege(c.oid, 'SELECT')
    ), cols AS (
        SELECT r.relname, json_object_agg(a.attname, json_build_object(
                   'type', CASE WHEN t.typcategory = 'N' THEN CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 'integer' ELSE 'number' END
                                WHEN t.typcategory = 'B' THEN 'boolean'
                                WHEN t.typcategory = 'A' THEN 'array'
                                WHEN t.typname IN ('json', 'jsonb') THEN 'object'
                                ELSE 'string' END,
                   'format', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) AS props
        FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        GROUP BY r.relname
    ), funcs AS (
        SELECT p.proname, coalesce(obj_description(p.oid, 'pg_proc'), '') AS description,
               p.provolatile <> 'v' AS stable,
               coalesce((SELECT json_object_agg(nm, json_build_object('type', 'string', 'format', format_type(ty, NULL)))
                         FROM unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[]) AS x(nm, ty)), '{}') AS args
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'api' AND has_function_privilege(p.oid, 'EXECUTE')
    )
    , rel_paths AS (
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
        SELECT '/rpc/' || f.proname AS path, jsonb_build_object('post', jsonb_build_object(
            'summary', f.description, 'tags', jsonb_build_array('rpc'),
            'requestBody', jsonb_build_object('content', jsonb_build_object('application/json',
                jsonb_build_object('schema', jsonb_build_object('type', 'object', 'properties', f.args::jsonb)))),
            'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK')))) AS item
        FROM funcs f
    )
    SELECT json_build_object(
        'openapi', '3.0.3',
        'info', json_build_object('title', 'Ventros API', 'version', (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'ventros'),
                                  'description', 'PostgREST dialect over schema api (ventros-http)'),
        'paths', coalesce((SELECT jsonb_object_agg(path, item) FROM (SELECT * FROM rel_paths UNION ALL SELECT * FROM rpc_paths) p),
                          '{}'::jsonb),
        'components', json_build_object('schemas', coalesce((SELECT json_object_agg(c.relname,
                          json_build_object('type', 'object', 'properties', c.props)) FROM cols c), '{}'::json)))
$$;
COMMENT ON FUNCTION ventros.http_openapi() IS 'OpenAPI 3 description of schema api as the calling role may use it (GET /)';
