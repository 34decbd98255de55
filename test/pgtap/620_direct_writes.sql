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
SELECT is((SELECT string_agg(f, '; ') FROM ventros_test.seed_direct_writes('dw_a') f), NULL, 'every sample creates its row for dw_a');

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

CREATE TEMP TABLE dw_cases AS
SELECT c.* FROM ventros.aggregates a CROSS JOIN LATERAL ventros_test.direct_write_cases('dw_a', a.aggregate) c
ORDER BY a.aggregate;

CREATE TEMP TABLE dw_results AS
SELECT c.*, has_table_privilege(c.role_name, c.path, c.operation) AS granted, d.result, d.hint, d.row_after, d.events, d.counts,
       m.result AS command_result, m.hint AS command_hint, m.row_after AS command_row, m.events AS command_events,
       m.counts AS command_counts
FROM dw_cases c
CROSS JOIN LATERAL ventros_test.direct_write_try('dw_a', c.role_name, c.sql, c.tbl, c.row_id) d
LEFT JOIN LATERAL ventros_test.direct_write_try('dw_a', c.role_name, c.command_sql, c.tbl, c.row_id) m ON c.command_sql IS NOT NULL;

SELECT ok(CASE
              WHEN kind NOT IN ('direct', 'refused', 'refused column') THEN false
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

CREATE FUNCTION pg_temp.dw_try(role_name text, sql text, tbl regclass, row_id uuid,
                               OUT result text, OUT hint text, OUT row_after jsonb, OUT events jsonb, OUT counts jsonb)
LANGUAGE sql AS $$ SELECT * FROM ventros_test.direct_write_try('dw_a', role_name, sql, tbl, row_id) $$;
CREATE FUNCTION pg_temp.dw_counts() RETURNS jsonb LANGUAGE sql AS $$ SELECT ventros_test.direct_write_counts('dw_a') $$;

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
SELECT id AS agent FROM ventros_test.direct_write_rows WHERE tenant = 'dw_a' AND aggregate = 'agent' \gset
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
