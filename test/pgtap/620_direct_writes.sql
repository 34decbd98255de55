-- Direct writes, generated from the catalog: every registered aggregate x
-- INSERT, UPDATE, DELETE x every tenant role (viewer, agent, admin), through
-- SQL on the table and on its api view (the HTTP path's view;
-- test/integration/direct_writes.test.mjs sends the same over HTTP).  The
-- outcome must be the one ventros.aggregate_writes declares:
--   refused   42501 with the hint that names the declared commands (or the
--             grant's own 42501 for a role without the privilege), and
--             nothing written: no row, no event;
--   direct    the write succeeds, and does exactly what its command does
--             from the same state: the same row, the same events, the same
--             rows in every tenant table.  Each side runs in a
--             subtransaction that is rolled back, so both start from the
--             same rows.  The command runs as the same role, so a role the
--             command refuses is refused the direct write too.
-- A direct UPDATE may change only its command's fields: one other field is
-- tried and must be refused.  Tenant dw_a has one row of every aggregate
-- (the contract samples).  The named cases of issue 14 follow the matrix.
BEGIN;
SELECT * FROM no_plan();
SET LOCAL client_min_messages = warning;
SET LOCAL ventros.include_deleted = on;

SELECT ventros.create_tenant('dw_a', 'Direct writes A');
CREATE TEMP TABLE dw_seed AS SELECT * FROM ventros_test.seed_tenant('dw_a');
SELECT is((SELECT string_agg(aggregate || ': ' || coalesce(result, 'NULL'), '; ') FROM dw_seed
           WHERE result IS NULL OR result ~ '^ERROR'), NULL, 'every sample creates its row for dw_a');
-- the seed's webhook deliveries would be finished by the dispatcher while we compare
UPDATE ventros.http_requests SET status = 'dead' WHERE tenant_id = 'dw_a' AND status = 'pending';

-- ---- the declaration itself ------------------------------------------------

SELECT is((SELECT string_agg(a.aggregate || ' ' || o.op, ', ' ORDER BY 1)
           FROM ventros.aggregates a CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) o(op)
           WHERE NOT EXISTS (SELECT 1 FROM ventros.aggregate_writes w WHERE w.aggregate = a.aggregate AND w.operation = o.op)),
          NULL, 'every aggregate declares what a direct INSERT, UPDATE and DELETE are');
SELECT is((SELECT string_agg(DISTINCT w.aggregate || ': ' || c, ', ')
           FROM ventros.aggregate_writes w CROSS JOIN unnest(w.commands) c
           WHERE NOT EXISTS (SELECT 1 FROM pg_proc p
                             WHERE p.pronamespace = CASE WHEN c LIKE 'api.%' THEN 'api'::regnamespace ELSE 'ventros'::regnamespace END
                               AND p.proname = regexp_replace(c, '^api\.', ''))),
          NULL, 'every command a declaration names exists');
SELECT is((SELECT string_agg(DISTINCT w.aggregate || ': ' || c, ', ')
           FROM ventros.aggregate_writes w CROSS JOIN unnest(w.commands) c
           WHERE NOT EXISTS (SELECT 1 FROM pg_proc p
                             WHERE p.pronamespace = CASE WHEN c LIKE 'api.%' THEN 'api'::regnamespace ELSE 'ventros'::regnamespace END
                               AND p.proname = regexp_replace(c, '^api\.', '')
                               AND (has_function_privilege('ventros_agent', p.oid, 'EXECUTE')
                                    OR has_function_privilege('ventros_admin', p.oid, 'EXECUTE')
                                    OR has_function_privilege('ventros_anon', p.oid, 'EXECUTE')))),
          NULL, 'every command a hint names may be called by a tenant role');

-- The hint of a refusal, as src/direct_writes.c words it.
CREATE FUNCTION pg_temp.dw_hint(agg text, commands text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cardinality(commands) = 0
                THEN format('No command does this: %s rows are written by the system only.', agg)
                ELSE 'Use ' || (SELECT string_agg(CASE WHEN c LIKE '%.%' THEN c ELSE 'ventros.' || c END || '()'
                                                  || CASE WHEN i = cardinality(commands) THEN ''
                                                          WHEN i = cardinality(commands) - 1 THEN ' or ' ELSE ', ' END,
                                                  '' ORDER BY i)
                                FROM unnest(commands) WITH ORDINALITY AS x(c, i)) || '.' END
$$;

-- ---- running one statement -------------------------------------------------

-- Rows per tenant table of dw_a (soft-deleted ones included): the effects.
CREATE FUNCTION pg_temp.dw_counts() RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
    n bigint;
    result jsonb := '{}';
BEGIN
    FOR rel IN SELECT c.oid::regclass FROM pg_class c
               WHERE c.relnamespace = 'ventros'::regnamespace AND c.relkind = 'r'
                 AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
               ORDER BY 1::text LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE tenant_id = %L', rel, 'dw_a') INTO n;
        result := result || jsonb_build_object(rel::text, n);
    END LOOP;
    RETURN result;
END
$$;

-- Runs sql as role_name acting for dw_a in a subtransaction that is always
-- rolled back.  result: the statement's first column (RETURNING id for an
-- insert) or 'ERROR <SQLSTATE>: <message>'; hint: the error's hint; row: the
-- row written (by row_id, or the id an insert returned) without its id and
-- stamps; events: the events written, without ids; counts: rows per tenant
-- table after the statement.
CREATE FUNCTION pg_temp.dw_try(role_name text, sql text, tbl regclass, row_id uuid,
                               OUT result text, OUT hint text, OUT row_after jsonb, OUT events jsonb, OUT counts jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint := (SELECT coalesce(max(seq), 0) FROM ventros.outbox WHERE tenant_id = 'dw_a');
    target uuid;
BEGIN
    BEGIN
        PERFORM set_config('ventros.tenant', 'dw_a', true);
        EXECUTE format('SET LOCAL ROLE %I', role_name);
        EXECUTE sql INTO result;
        result := coalesce(result, 'no row');	-- a soft delete returns none
        RESET ROLE;
        target := coalesce(row_id, CASE WHEN result ~ '^[0-9a-f-]{36}$' THEN result::uuid END);
        EXECUTE format('SELECT to_jsonb(x) - %L - %L - %L FROM %s x WHERE id = $1', 'id', 'created_at', 'updated_at', tbl)
            INTO row_after USING target;
        SELECT coalesce(jsonb_agg(jsonb_build_object('type', o.event_type, 'aggregate', o.aggregate_type,
                                                     'same_row', o.aggregate_id = target, 'version', o.aggregate_version,
                                                     'payload', o.payload - 'id' - 'created_at' - 'updated_at' - 'step_id')
                                  ORDER BY o.seq), '[]')
        INTO events FROM ventros.outbox o WHERE o.tenant_id = 'dw_a' AND o.seq > last_seq;
        counts := pg_temp.dw_counts();
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'VNT99';
    EXCEPTION
        WHEN SQLSTATE 'VNT99' THEN NULL;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
            result := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
            row_after := NULL; events := NULL; counts := NULL;
    END;
    RESET ROLE;
END
$$;

-- ---- the cases ---------------------------------------------------------------

-- A value of a column's type that differs from current (NULL: none we can make).
CREATE FUNCTION pg_temp.dw_value(typ regtype, current jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT CASE
        WHEN typ = 'text'::regtype THEN quote_literal('Direct ' || left(md5(coalesce(current::text, '')), 6))
        WHEN typ = 'boolean'::regtype THEN CASE WHEN current = 'true' THEN 'false' ELSE 'true' END
        WHEN typ IN ('integer'::regtype, 'smallint'::regtype, 'bigint'::regtype)
            THEN (coalesce((current #>> '{}')::bigint, 0) + 1)::text
        WHEN typ = 'jsonb'::regtype THEN quote_literal('{"direct": true}') || '::jsonb'
        WHEN typ = 'timestamptz'::regtype THEN quote_literal(now() + interval '1 day') || '::timestamptz'
        WHEN typ = 'text[]'::regtype THEN quote_literal('{direct}') || '::text[]'
    END
$$;

-- What a direct insert of these aggregates does is compared with its
-- command called with the same values as named arguments: inputs that the
-- command normalises (a spaced name, a formatted phone, repeated tags).
CREATE TEMP TABLE dw_insert_inputs (aggregate text PRIMARY KEY, input jsonb NOT NULL);
INSERT INTO dw_insert_inputs VALUES
    ('contact', '{"name": "  Direct Bruno ", "phone": "+55 (11) 9 1234-0001", "email": "Bruno.Direct@Example.COM",
                  "tags": ["vip", "b", "vip"], "timezone": "America/Sao_Paulo"}');

-- A JSON input value as an SQL literal: strings as text, arrays as text[].
CREATE FUNCTION pg_temp.dw_literal(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'array'
                THEN quote_literal((SELECT array_agg(e) FROM jsonb_array_elements_text(v) e)::text) || '::text[]'
                ELSE quote_literal(v #>> '{}') END
$$;

CREATE TEMP TABLE dw_cases (aggregate text, tbl regclass, path regclass, role_name text, operation text, kind text,
                            sql text, command_sql text, expected_hint text, row_id uuid);

CREATE FUNCTION pg_temp.dw_make_cases(agg ventros.aggregates) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    w        ventros.aggregate_writes;
    view_rel regclass := (SELECT format('api.%I', c.relname)::regclass FROM pg_class c WHERE c.oid = agg.table_name);
    path     regclass;
    role_name text;
    row_id   uuid := (SELECT result::uuid FROM dw_seed WHERE aggregate = agg.aggregate);
    sample   jsonb;
    col      record;
    val      text;
    cols     text;
    cmd      text;
    input    jsonb;
BEGIN
    EXECUTE format('SELECT to_jsonb(x) FROM %s x WHERE id = $1', agg.table_name) INTO sample USING row_id;
    FOREACH path IN ARRAY ARRAY[agg.table_name, view_rel] LOOP
    FOREACH role_name IN ARRAY ARRAY['ventros_viewer', 'ventros_agent', 'ventros_admin'] LOOP
    FOR w IN SELECT * FROM ventros.aggregate_writes x WHERE x.aggregate = agg.aggregate ORDER BY operation LOOP
        cmd := CASE WHEN w.direct THEN w.commands[1] END;
        IF w.operation = 'DELETE' THEN
            INSERT INTO dw_cases VALUES (agg.aggregate, agg.table_name, path, role_name, w.operation,
                CASE WHEN w.direct THEN 'direct' ELSE 'refused' END,
                format('DELETE FROM %s WHERE id = %L RETURNING id', path, row_id),
                CASE WHEN w.direct THEN format('SELECT %L FROM ventros.%I(%L, %s)', row_id, cmd, row_id, sample->>'version') END,
                pg_temp.dw_hint(agg.aggregate, w.commands), row_id);
        ELSIF w.operation = 'UPDATE' THEN
            -- direct: the first of the command's fields it changes; refused: the
            -- first field that is not a key; and for direct, one it may not change
            FOR col IN SELECT a.attname, a.atttypid::regtype AS typ, w.direct AND a.attname = ANY (w.columns) AS allowed
                       FROM pg_attribute a
                       WHERE a.attrelid = agg.table_name AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                         AND a.attname NOT IN ('id', 'tenant_id', 'version', 'created_at', 'updated_at', 'deleted_at')
                       ORDER BY 3 DESC, a.attnum LOOP
                val := pg_temp.dw_value(col.typ, sample->col.attname);
                CONTINUE WHEN val IS NULL;
                IF col.allowed THEN
                    -- the command must accept the change, or the comparison proves nothing
                    CONTINUE WHEN (pg_temp.dw_try('ventros_admin',
                                       format('SELECT %L FROM ventros.%I(%L, %s, jsonb_build_object(%L, %s))',
                                              row_id, cmd, row_id, sample->>'version', col.attname, val),
                                       agg.table_name, row_id)).result ~ '^ERROR';
                    INSERT INTO dw_cases VALUES (agg.aggregate, agg.table_name, path, role_name, w.operation, 'direct',
                        format('UPDATE %s SET %I = %s, version = %s WHERE id = %L RETURNING id', path, col.attname, val, sample->>'version', row_id),
                        format('SELECT %L FROM ventros.%I(%L, %s, jsonb_build_object(%L, %s))',
                               row_id, cmd, row_id, sample->>'version', col.attname, val),
                        NULL, row_id);
                    -- and a field of another command (or none) is refused
                    SELECT a.attname, a.atttypid::regtype AS typ INTO col FROM pg_attribute a
                    WHERE a.attrelid = agg.table_name AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                      AND a.attname NOT IN ('id', 'tenant_id', 'version', 'created_at', 'updated_at', 'deleted_at')
                      AND NOT a.attname = ANY (w.columns) AND pg_temp.dw_value(a.atttypid::regtype, sample->a.attname) IS NOT NULL
                    ORDER BY a.attnum LIMIT 1;
                    IF col.attname IS NOT NULL THEN
                        INSERT INTO dw_cases VALUES (agg.aggregate, agg.table_name, path, role_name, w.operation, 'refused column',
                            format('UPDATE %s SET %I = %s, version = %s WHERE id = %L RETURNING id', path, col.attname,
                                   pg_temp.dw_value(col.typ, sample->col.attname), sample->>'version', row_id),
                            NULL, pg_temp.dw_hint(agg.aggregate, w.commands), row_id);
                    END IF;
                ELSE
                    INSERT INTO dw_cases VALUES (agg.aggregate, agg.table_name, path, role_name, w.operation,
                        CASE WHEN w.direct THEN 'direct without a field' ELSE 'refused' END,
                        format('UPDATE %s SET %I = %s, version = %s WHERE id = %L RETURNING id', path, col.attname, val, sample->>'version', row_id),
                        NULL, pg_temp.dw_hint(agg.aggregate, w.commands), row_id);
                END IF;
                EXIT;
            END LOOP;
        ELSE
            IF w.direct THEN
                input := (SELECT i.input FROM dw_insert_inputs i WHERE i.aggregate = agg.aggregate);
                INSERT INTO dw_cases VALUES (agg.aggregate, agg.table_name, path, role_name, w.operation,
                    CASE WHEN input IS NULL THEN 'direct without an input' ELSE 'direct' END,
                    (SELECT format('INSERT INTO %s (%s) VALUES (%s) RETURNING id', path,
                                   string_agg(format('%I', k), ', '), string_agg(v, ', '))
                     FROM jsonb_object_keys(input) k, LATERAL pg_temp.dw_literal(input->k) v),
                    (SELECT format('SELECT id FROM ventros.%I(%s)', cmd, string_agg(format('%I => %s', k, v), ', '))
                     FROM jsonb_object_keys(input) k, LATERAL pg_temp.dw_literal(input->k) v),
                    NULL, NULL);
            ELSE
                -- a copy of the sample row, as the role may insert it, in an initial state
                SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
                FROM pg_attribute a
                WHERE a.attrelid = path AND a.attnum > 0 AND NOT a.attisdropped
                  AND NOT EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = agg.table_name AND b.attname = a.attname AND b.attgenerated <> '')
                  AND a.attname NOT IN ('id', 'deleted_at', 'version', 'created_at', 'updated_at')
                  AND sample ? a.attname AND has_column_privilege('ventros_admin', path, a.attnum, 'INSERT');
                input := sample;
                IF agg.state_column IS NOT NULL THEN
                    input := input || jsonb_build_object(agg.state_column,
                        (SELECT to_state FROM ventros.aggregate_transitions t WHERE t.aggregate = agg.aggregate AND t.from_state IS NULL
                         ORDER BY to_state LIMIT 1));
                END IF;
                INSERT INTO dw_cases VALUES (agg.aggregate, agg.table_name, path, role_name, w.operation, 'refused',
                    format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, %L) RETURNING id',
                           path, cols, cols, agg.table_name, input),
                    NULL, pg_temp.dw_hint(agg.aggregate, w.commands), NULL);
            END IF;
        END IF;
    END LOOP;
    END LOOP;
    END LOOP;
END
$$;

SELECT pg_temp.dw_make_cases(a) FROM ventros.aggregates a ORDER BY a.aggregate;

CREATE TEMP TABLE dw_results AS
SELECT c.*, has_table_privilege(c.role_name, c.path, c.operation) AS granted, d.result, d.hint, d.row_after, d.events, d.counts,
       m.result AS command_result, m.hint AS command_hint, m.row_after AS command_row, m.events AS command_events,
       m.counts AS command_counts
FROM dw_cases c
CROSS JOIN LATERAL pg_temp.dw_try(c.role_name, c.sql, c.tbl, c.row_id) d
LEFT JOIN LATERAL pg_temp.dw_try(c.role_name, c.command_sql, c.tbl, c.row_id) m ON c.command_sql IS NOT NULL;

SELECT ok(CASE
              WHEN kind IN ('direct without a field', 'direct without an input') THEN false
              WHEN NOT granted THEN result ~ '^ERROR 42501: permission denied for (table|view) '
              WHEN kind IN ('refused', 'refused column') THEN result ~ '^ERROR 42501: direct ' AND hint IS NOT DISTINCT FROM expected_hint
              ELSE (result !~ '^ERROR' AND command_result !~ '^ERROR'
                    AND row_after IS NOT DISTINCT FROM command_row
                    AND events IS NOT DISTINCT FROM command_events AND jsonb_array_length(events) > 0
                    AND counts IS NOT DISTINCT FROM command_counts)
                   OR (result ~ '^ERROR' AND split_part(result, ':', 1) = split_part(command_result, ':', 1))
          END,
          format('%s %s as %s via %s (%s): %s%s', aggregate, operation, role_name, path,
                 CASE WHEN NOT granted THEN 'no grant' ELSE kind END, left(result, 120),
                 CASE WHEN kind = 'direct' AND granted THEN
                     CASE WHEN row_after IS DISTINCT FROM command_row THEN format(' | row %s <> command''s %s', row_after, command_row) ELSE '' END
                     || CASE WHEN events IS DISTINCT FROM command_events THEN format(' | events %s <> command''s %s', events, command_events) ELSE '' END
                     || CASE WHEN counts IS DISTINCT FROM command_counts THEN ' | other rows differ from the command''s' ELSE '' END
                     || CASE WHEN command_result ~ '^ERROR' THEN ' | command: ' || command_result ELSE '' END
                 WHEN kind LIKE 'refused%' AND granted AND hint IS DISTINCT FROM expected_hint
                     THEN format(' | hint %s, declared %s', hint, expected_hint) ELSE '' END))
FROM dw_results ORDER BY aggregate, operation, path::text, role_name, kind;

SELECT diag(format('direct writes: %s aggregates x 3 operations x 2 paths (table, api view) x 3 roles = %s cases '
                   '(%s with an extra field): %s refused with the declared hint, %s refused by the grant, '
                   '%s the same as their command (%s of them refused by the command too); writes past the declaration %s',
                   count(DISTINCT aggregate), count(*), count(*) FILTER (WHERE kind = 'refused column'),
                   count(*) FILTER (WHERE granted AND kind LIKE 'refused%' AND result ~ '^ERROR 42501: direct '),
                   count(*) FILTER (WHERE NOT granted AND result ~ '^ERROR 42501: permission denied'),
                   count(*) FILTER (WHERE granted AND kind = 'direct'),
                   count(*) FILTER (WHERE granted AND kind = 'direct' AND result ~ '^ERROR'),
                   count(*) FILTER (WHERE result !~ '^ERROR' AND (kind <> 'direct' OR NOT granted))))
FROM dw_results;
SELECT ok((SELECT count(DISTINCT aggregate) FROM dw_results) >= 56, 'the matrix covers every registered aggregate (at least 56)');

-- ---- the named cases -------------------------------------------------------

-- Campaign steps change only while the campaign is a draft.  Today's hole:
-- a direct INSERT by an agent (and POST /campaign_steps) on an active
-- campaign was accepted while add_campaign_step refused.
CREATE TEMP TABLE dw_campaign AS
SELECT ventros_test.run_as('ventros_agent', 'dw_a',
    $$SELECT id FROM ventros.create_campaign('Named case')$$)::uuid AS id;
SELECT ventros_test.run_as('ventros_agent', 'dw_a',
    format($$SELECT id FROM ventros.add_campaign_step(%L, 0, 'Wait', 'delay', '{"delay_minutes": 5}')$$, id)) AS step_id
FROM dw_campaign \gset
SELECT is(ventros_test.run_as('ventros_agent', 'dw_a', format($$SELECT status FROM ventros.set_campaign_status(%L, 1, 'active')$$, id)),
          'active', 'campaign steps: the named campaign is active')
FROM dw_campaign;
SELECT is((SELECT (pg_temp.dw_try('ventros_agent',
               format($$INSERT INTO ventros.campaign_steps (campaign_id, "order", name, type, config)
                        VALUES (%L, 1, 'Late', 'delay', '{"delay_minutes": 1}') RETURNING id$$, id), 'ventros.campaign_steps', NULL)).hint
           FROM dw_campaign),
          'Use ventros.add_campaign_step().', 'campaign steps: a direct INSERT by an agent on an active campaign is refused, naming add_campaign_step');
SELECT matches((SELECT (pg_temp.dw_try('ventros_agent',
                   format($$INSERT INTO api.campaign_steps (campaign_id, "order", name, type, config)
                            VALUES (%L, 1, 'Late', 'delay', '{"delay_minutes": 1}') RETURNING id$$, id), 'ventros.campaign_steps', NULL)).result
               FROM dw_campaign),
               '^ERROR 42501', 'campaign steps: the same through the api view (POST /campaign_steps) is refused (42501)');
SELECT matches((SELECT (pg_temp.dw_try('ventros_agent',
                   format($$SELECT id FROM ventros.add_campaign_step(%L, 1, 'Late', 'delay', '{"delay_minutes": 1}')$$, id),
                   'ventros.campaign_steps', NULL)).result FROM dw_campaign),
               '^ERROR VN002: campaign .* is active; steps change only in draft', 'campaign steps: add_campaign_step refuses too (VN002)');
SELECT matches((pg_temp.dw_try('ventros_agent',
                   format($$SELECT ventros.apply_changes(NULL::ventros.campaign_steps, 'campaign_step', %L, 1, '{"name": "Late"}', '{name}')$$,
                          :'step_id'), 'ventros.campaign_steps', NULL)).result,
               '^ERROR 42501: direct updates of campaign_step rows are refused',
               'campaign steps: the building block apply_changes called directly is a direct write');
SELECT matches((pg_temp.dw_try('postgres',
                   format($$UPDATE ventros.campaign_steps SET name = 'Late', version = 1 WHERE id = %L RETURNING id$$, :'step_id'),
                   'ventros.campaign_steps', NULL)).result,
               '^ERROR VN002: campaign .* is active; steps change only in draft',
               'campaign steps: the guard holds for the system''s own writes too (the owner, VN002)');
SELECT matches((pg_temp.dw_try('postgres',
                   format($$DELETE FROM ventros.campaign_steps WHERE id = %L RETURNING id$$, :'step_id'), 'ventros.campaign_steps', NULL)).result,
               '^ERROR VN002', 'campaign steps: nor does a step of an active campaign go away (VN002)');

-- Sequence steps: the same rule.
CREATE TEMP TABLE dw_sequence AS
SELECT ventros_test.run_as('ventros_agent', 'dw_a',
    $$SELECT id FROM ventros.create_sequence('Named sequence')$$)::uuid AS id;
SELECT ventros_test.run_as('ventros_agent', 'dw_a',
    format($$SELECT id FROM ventros.add_sequence_step(%L, 0, 'Hello', '{"type": "text", "content": "Hi"}')$$, id)) AS seq_step_id
FROM dw_sequence \gset
SELECT is(ventros_test.run_as('ventros_agent', 'dw_a', format($$SELECT status FROM ventros.set_sequence_status(%L, 1, 'active')$$, id)),
          'active', 'sequence steps: the named sequence is active')
FROM dw_sequence;
SELECT matches((pg_temp.dw_try('postgres',
                   format($$UPDATE ventros.sequence_steps SET name = 'Late', version = 1 WHERE id = %L RETURNING id$$, :'seq_step_id'),
                   'ventros.sequence_steps', NULL)).result,
               '^ERROR VN002: sequence .* is active; steps change only in draft', 'sequence steps change only in draft, on every path');

-- Outbound messages.  Today's hole: POST /messages with from_me true
-- answered 201 with status sent, and nothing was ever sent.
SELECT ventros_test.run_as('ventros_admin', 'dw_a',
    $$SELECT id FROM ventros.create_channel('Named WAHA', 'waha', config => '{"base_url": "http://waha.test:3000/", "session": "named"}')$$) AS chan,
       ventros_test.run_as('ventros_admin', 'dw_a',
    $$SELECT id FROM ventros.create_contact('Named contact', phone => '+5511955550001')$$) AS person \gset
SELECT is((pg_temp.dw_try('ventros_agent',
               format($$INSERT INTO ventros.messages (channel_id, contact_id, from_me, content_type, text, status)
                        VALUES (%L, %L, true, 'text', 'Hello', 'sent') RETURNING id$$, :'chan', :'person'),
               'ventros.messages', NULL)).hint,
          'Use ventros.send_message(), ventros.receive_message() or ventros.import_message().',
          'outbound message: a direct INSERT (from_me true) is refused, naming send_message');
SELECT matches((pg_temp.dw_try('ventros_agent',
                   format($$INSERT INTO api.messages (channel_id, contact_id, from_me, content_type, text, status)
                            VALUES (%L, %L, true, 'text', 'Hello', 'sent') RETURNING id$$, :'chan', :'person'),
                   'ventros.messages', NULL)).result,
               '^ERROR 42501', 'outbound message: the same through the api view (POST /messages) is refused (42501)');
SELECT result AS agent FROM dw_seed WHERE aggregate = 'agent' \gset
SELECT is((SELECT ((d.counts->>'ventros.http_requests')::int - (pg_temp.dw_counts()->>'ventros.http_requests')::int, d.row_after->>'status')::text
           FROM pg_temp.dw_try('ventros_agent', format($$SELECT id FROM ventros.send_message(%L, %L, 'Hello', %L)$$, :'chan', :'person', :'agent'),
                               'ventros.messages', NULL) d),
          '(1,queued)', 'outbound message: send_message stores it queued and queues one provider request');

-- A message's delivery state only moves forward; a session closes once:
-- the engine's state machines, on every path (here the owner's).
SELECT ventros_test.run_as('ventros_agent', 'dw_a',
    format($$SELECT id FROM ventros.send_message(%L, %L, 'Forward only', %L)$$, :'chan', :'person', :'agent')) AS msg \gset
UPDATE ventros.messages SET status = 'delivered', version = version WHERE id = :'msg';
SELECT matches((pg_temp.dw_try('postgres',
                   format($$UPDATE ventros.messages SET status = 'sent', version = version WHERE id = %L RETURNING id$$, :'msg'),
                   'ventros.messages', NULL)).result,
               '^ERROR VN002', 'a delivered message does not go back to sent (VN002), even for the owner');
SELECT matches((pg_temp.dw_try('ventros_agent',
                   format($$UPDATE ventros.messages SET status = 'read', version = version WHERE id = %L RETURNING id$$, :'msg'),
                   'ventros.messages', NULL)).result,
               '^ERROR 42501: direct updates of message rows are refused', 'an agent''s direct status change is refused (42501)');
SELECT id AS sess FROM ventros.sessions WHERE tenant_id = 'dw_a' AND contact_id = :'person' AND status = 'active' \gset
SELECT isnt(ventros_test.run_as('ventros_agent', 'dw_a', format($$SELECT status FROM ventros.close_session(%L)$$, :'sess')), NULL,
            'a session closes');
SELECT matches(ventros_test.run_as('ventros_agent', 'dw_a', format($$SELECT status FROM ventros.close_session(%L)$$, :'sess')),
               '^ERROR', 'a closed session does not close again');
SELECT matches((pg_temp.dw_try('postgres',
                   format($$UPDATE ventros.sessions SET status = 'active', version = version WHERE id = %L RETURNING id$$, :'sess'),
                   'ventros.sessions', NULL)).result,
               '^ERROR VN002', 'nor does it reopen, even for the owner (VN002)');

SELECT * FROM finish();
ROLLBACK;
