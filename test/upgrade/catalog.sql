-- The catalog of the installed ventros extension as sorted text lines, one
-- object (or property) a line, with no OIDs: two databases with the same
-- schema print the same lines.  Used by test/integration/upgrade.sh to compare
-- an upgraded database with a fresh install.
\pset format unaligned
\pset tuples_only on
\pset pager off
WITH ext AS (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'ventros'),
member AS (
    SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d, ext
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
nsp AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname IN ('ventros', 'api')),
lines AS (
    -- every member of the extension
    SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, objsubid) AS line FROM member
    -- relations: kind, RLS, options, privileges, comment
    UNION ALL
    SELECT format('rel %s.%s kind=%s rls=%s force=%s opts=%s acl=%s comment=%s', n.nspname, c.relname, c.relkind,
                  c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
                  (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a),
                  pg_catalog.obj_description(c.oid, 'pg_class'))
    FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace
    -- columns by name (an upgrade may only append columns)
    UNION ALL
    SELECT format('col %s.%s.%s %s notnull=%s default=%s ident=%s gen=%s acl=%s comment=%s', n.nspname, c.relname, a.attname,
                  pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
                  (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(a.attacl) x),
                  pg_catalog.col_description(c.oid, a.attnum))
    FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    -- constraints, indexes, triggers, policies
    UNION ALL
    SELECT format('constraint %s.%s %s %s', n.nspname, c.relname, co.conname, pg_catalog.pg_get_constraintdef(co.oid))
    FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_class c ON c.oid = co.conrelid JOIN nsp n ON n.oid = c.relnamespace
    UNION ALL
    SELECT format('index %s', pg_catalog.pg_get_indexdef(i.indexrelid))
    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN nsp n ON n.oid = c.relnamespace
    UNION ALL
    SELECT format('trigger %s enabled=%s', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN nsp n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('policy %s.%s %s permissive=%s cmd=%s roles=%s using=%s check=%s', p.schemaname, p.tablename, p.policyname,
                  p.permissive, p.cmd, p.roles, p.qual, p.with_check)
    FROM pg_catalog.pg_policies p WHERE p.schemaname IN ('ventros', 'api')
    -- views and functions by their definitions
    UNION ALL
    SELECT format('view %s.%s %s', n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid))
    FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('function %s acl=%s comment=%s', pg_catalog.pg_get_functiondef(p.oid),
                  (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a),
                  pg_catalog.obj_description(p.oid, 'pg_proc'))
    FROM pg_catalog.pg_proc p JOIN nsp n ON n.oid = p.pronamespace WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT format('aggregate %s(%s)', p.oid::regprocedure, pg_catalog.pg_get_function_arguments(p.oid))
    FROM pg_catalog.pg_proc p JOIN nsp n ON n.oid = p.pronamespace WHERE p.prokind = 'a'
    -- types: enum labels in order, composite types' attributes, domains
    UNION ALL
    SELECT format('type %s.%s type=%s labels=%s comment=%s', n.nspname, t.typname, t.typtype,
                  (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid),
                  pg_catalog.obj_description(t.oid, 'pg_type'))
    FROM pg_catalog.pg_type t JOIN nsp n ON n.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'c')
    UNION ALL
    SELECT format('sequence %s.%s %s %s %s cache=%s cycle=%s', s.schemaname, s.sequencename, s.data_type,
                  s.increment_by, s.min_value, s.cache_size, s.cycle)
    FROM pg_catalog.pg_sequences s WHERE s.schemaname IN ('ventros', 'api')
    -- schemas' privileges and comments
    UNION ALL
    SELECT format('schema %s acl=%s comment=%s', ns.nspname,
                  (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(ns.nspacl) a),
                  pg_catalog.obj_description(ns.oid, 'pg_namespace'))
    FROM pg_catalog.pg_namespace ns JOIN nsp n ON n.oid = ns.oid
    -- what the extension's dump keeps
    UNION ALL
    SELECT format('config_dump %s filter=%s', cfg.rel::regclass, cfg.cond)
    FROM pg_catalog.pg_extension e,
         LATERAL unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)
    WHERE e.extname = 'ventros'
)
SELECT line FROM lines ORDER BY line COLLATE "C";
