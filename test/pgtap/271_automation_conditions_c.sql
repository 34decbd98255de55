-- The executor's condition evaluator in C (src/automation_conditions.c)
-- against the PL/pgSQL reference (ventros.automation_conditions_hold): the
-- same answer on every case, NULL and errors included; and the rules filter.
BEGIN;
SELECT plan(9);

CREATE TEMP TABLE ctxs (name text PRIMARY KEY, ctx jsonb);
INSERT INTO ctxs VALUES
    ('full', '{"event": {"id": "6f0c1a52-9b1e-4a43-8c55-0d2f4c0b1a01", "type": "message.created"},
               "payload": {"score": 8, "name": "Ana", "text": "What is the PRICE?", "tags": ["vip", "lead"], "n": null,
                           "s": "10", "obj": {"a": 1, "b": 2}, "big": 10.50, "flag": true, "deep": {"x": [1, {"y": "z"}]}},
               "contact": {"name": "Ana Souza", "tags": ["vip"], "custom": {"plan": "gold"}},
               "message": {"text": "What is the PRICE?", "type": "text"},
               "session": {"sentiment": "negative", "sentiment_score": -0.4, "topics": ["Billing"]}}'),
    ('bare', '{"event": {"type": "contact.created"}, "payload": {}}');

-- every case: a list of conditions, evaluated on each context
CREATE TEMP TABLE cases (n serial PRIMARY KEY, conditions jsonb);
INSERT INTO cases (conditions) VALUES
    ('[{"field": "score", "operator": "gte", "value": 5}]'), ('[{"field": "score", "operator": "gt", "value": 8}]'),
    ('[{"field": "score", "operator": "lt", "value": 10}]'), ('[{"field": "score", "operator": "lte", "value": 8}]'),
    ('[{"field": "score", "operator": "eq", "value": 8}]'), ('[{"field": "score", "operator": "eq", "value": "8"}]'),
    ('[{"field": "score", "operator": "ne", "value": 8}]'), ('[{"field": "score", "operator": "ne", "value": 9}]'),
    ('[{"field": "score", "operator": "gte", "value": "5"}]'), ('[{"field": "s", "operator": "gt", "value": 9}]'),
    ('[{"field": "s", "operator": "lt", "value": "9"}]'), ('[{"field": "big", "operator": "eq", "value": 10.5}]'),
    ('[{"field": "big", "operator": "gt", "value": 10.49}]'), ('[{"field": "flag", "operator": "eq", "value": "true"}]'),
    ('[{"field": "name", "operator": "eq", "value": "Ana"}]'), ('[{"field": "name", "operator": "eq", "value": "ana"}]'),
    ('[{"field": "name", "operator": "contains", "value": "AN"}]'), ('[{"field": "name", "operator": "starts_with", "value": "aN"}]'),
    ('[{"field": "name", "operator": "ends_with", "value": "NA"}]'), ('[{"field": "name", "operator": "ends_with", "value": "xAna"}]'),
    ('[{"field": "name", "operator": "matches", "value": "^a.a$"}]'), ('[{"field": "name", "operator": "matches", "value": "("}]'),
    ('[{"field": "name", "operator": "not_contains", "value": "x"}]'), ('[{"field": "text", "operator": "contains", "value": "price"}]'),
    ('[{"field": "nope", "operator": "eq", "value": 1}]'), ('[{"field": "nope", "operator": "ne", "value": 1}]'),
    ('[{"field": "nope", "operator": "is_null"}]'), ('[{"field": "n", "operator": "is_null"}]'),
    ('[{"field": "n", "operator": "is_not_null"}]'), ('[{"field": "name", "operator": "is_not_null"}]'),
    ('[{"field": "n", "operator": "eq", "value": null}]'), ('[{"field": "score", "operator": "eq"}]'),
    ('[{"field": "score", "operator": "gt"}]'), ('[{"field": "name", "operator": "contains"}]'),
    ('[{"field": "tags", "operator": "contains"}]'), ('[{"field": "score", "operator": "in"}]'),
    ('[{"field": "score", "operator": "ne"}]'), ('[{"field": "score", "operator": "eq", "value": null}]'),
    ('[{"field": "score", "operator": "starts_with"}]'), ('[{"field": "score", "operator": "matches", "value": null}]'),
    ('[{"field": "score", "operator": "in", "value": [7, 8]}]'), ('[{"field": "score", "operator": "in", "value": ["8"]}]'),
    ('[{"field": "name", "operator": "in", "value": "Ana"}]'), ('[{"field": "score", "operator": "not_in", "value": [1, 2]}]'),
    ('[{"field": "obj", "operator": "in", "value": [{"a": 1, "b": 2, "c": 3}]}]'), ('[{"field": "obj", "operator": "in", "value": [1, {"a": 1}]}]'),
    ('[{"field": "tags", "operator": "in", "value": [["vip", "lead"]]}]'), ('[{"field": "flag", "operator": "in", "value": ["true"]}]'),
    ('[{"field": "obj", "operator": "in", "value": ["{\"a\": 1, \"b\": 2}"]}]'), ('[{"field": "score", "operator": "in", "value": [null, 8.0]}]'),
    ('[{"field": "tags", "operator": "contains", "value": "vip"}]'), ('[{"field": "tags", "operator": "contains", "value": ["vip", "x"]}]'),
    ('[{"field": "tags", "operator": "not_contains", "value": "x"}]'), ('[{"field": "obj", "operator": "eq", "value": {"b": 2, "a": 1}}]'),
    ('[{"field": "obj", "operator": "contains", "value": "a"}]'), ('[{"field": "contact.tags", "operator": "contains", "value": "vip"}]'),
    ('[{"field": "contact.custom.plan", "operator": "eq", "value": "gold"}]'), ('[{"field": "event.type", "operator": "starts_with", "value": "message."}]'),
    ('[{"field": "payload.score", "operator": "eq", "value": 8}]'), ('[{"field": "payload", "operator": "is_not_null"}]'),
    ('[{"field": "", "operator": "is_not_null"}]'), ('[{"field": "tags.0", "operator": "eq", "value": "vip"}]'),
    ('[{"field": "tags.-1", "operator": "eq", "value": "lead"}]'), ('[{"field": "deep.x.1.y", "operator": "eq", "value": "z"}]'),
    ('[{"field": "payload..x", "operator": "is_null"}]'), ('[{"field": "session.sentiment_score", "operator": "lt", "value": 0}]'),
    ('[{"field": "score", "operator": "like", "value": 1}]'), ('[{"field": "score", "value": 1}]'),
    ('[{"field": "nope", "operator": "like", "value": 1}]'), ('[{"field": 5, "operator": "is_null"}]'),
    ('[{"field": null, "operator": "is_null"}]'), ('[{"operator": "is_not_null"}]'),
    ('[{"all": [{"field": "score", "operator": "eq", "value": 8}, {"field": "score", "operator": "eq"}]}]'),
    ('[{"all": [{"field": "score", "operator": "eq", "value": 9}, {"field": "score", "operator": "like"}]}]'),
    ('[{"any": [{"field": "score", "operator": "eq"}, {"field": "score", "operator": "eq", "value": 9}]}]'),
    ('[{"any": [{"field": "score", "operator": "eq", "value": 8}, {"field": "score", "operator": "like"}]}]'),
    ('[{"not": {"field": "score", "operator": "eq"}}]'), ('[{"not": {"field": "score", "operator": "eq", "value": 9}}]'),
    ('[{"not": {"not": {"keyword": "price"}}}]'), ('[{"all": {"field": "score"}}]'), ('[{"all": null}]'), ('[{"any": []}]'),
    ('[{"all": []}]'), ('[{"not": null}]'), ('[{"not": [1]}]'),
    ('[{"field": "score", "operator": "eq", "value": 9, "all": [{"field": "score", "operator": "eq", "value": 8}]}]'),
    ('[{"field": "score", "operator": "eq", "value": 8, "keyword": "nothing"}]'),
    ('[{"field": "score", "operator": "eq", "value": 8}, {"logic": "OR", "field": "score", "operator": "eq", "value": 9}]'),
    ('[{"field": "score", "operator": "eq", "value": 9}, {"logic": "or", "field": "score", "operator": "eq", "value": 8}]'),
    ('[{"field": "score", "operator": "eq"}, {"logic": "OR", "field": "score", "operator": "eq", "value": 9}]'),
    ('[{"field": "score", "operator": "eq"}, {"logic": "OR", "field": "score", "operator": "eq", "value": 8}]'),
    ('[{"field": "score", "operator": "eq", "value": 8}, {"field": "score", "operator": "eq"}]'),
    ('[{"field": "score", "operator": "eq"}, {"field": "score", "operator": "eq", "value": 9}]'),
    ('[{"field": "score", "operator": "eq", "value": 9}, {"field": "score", "operator": "like"}]'),
    ('[{"field": "score", "operator": "eq", "value": 8}, {"logic": "OR", "field": "score", "operator": "like"}]'),
    ('[{"field": "score", "operator": "eq", "value": 8}, {"logic": 1, "field": "score", "operator": "eq", "value": 9}]'),
    ('[{"field": "score", "operator": "eq", "value": 9}, {"logic": "AND", "field": "score", "operator": "eq", "value": 8},
       {"logic": "OR", "field": "name", "operator": "eq", "value": "Ana"}]'),
    ('[{"keyword": ["price", "cost"]}]'), ('[{"keyword": "nothing"}]'), ('[{"regex": "pr.ce"}]'), ('[{"tag": "vip"}]'),
    ('[{"time_window": {"from": "09:00", "to": "18:00"}}]'), ('[{"time_window": {"from": "22:00", "to": "06:00", "weekdays": [2]}}]'),
    ('[{"weekdays": [1, 2, 3]}]'), ('[{"sentiment": ["negative", "neutral"]}]'), ('[{"sentiment_below": 0}]'), ('[{"topic": "billing"}]'),
    ('[{"time_window": {"from": "nine", "to": "18:00"}}]'), ('[{"regex": "("}]'),
    ('[]'), ('{}'), ('null'), (NULL), ('["score"]'), ('[5]'), ('[[{"field": "score", "operator": "eq", "value": 8}]]'), ('"all"');

-- a result, or the error's SQLSTATE and message
CREATE FUNCTION pg_temp.outcome(c jsonb, ctx jsonb, tz text, at timestamptz, in_c boolean) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF in_c THEN
        RETURN coalesce(ventros.automation_conditions_hold_c(c, ctx, tz, at)::text, 'NULL');
    END IF;
    RETURN coalesce(ventros.automation_conditions_hold(c, ctx, tz, at)::text, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE TEMP TABLE outcomes AS
SELECT k.n, x.name, pg_temp.outcome(k.conditions, x.ctx, 'America/Sao_Paulo', '2026-12-08 13:30:00+00', false) AS reference,
       pg_temp.outcome(k.conditions, x.ctx, 'America/Sao_Paulo', '2026-12-08 13:30:00+00', true) AS c
  FROM cases k, ctxs x;

SELECT is((SELECT count(*)::int FROM outcomes), (SELECT 2 * count(*)::int FROM cases), 'every case on both contexts');
SELECT is((SELECT string_agg(format('case %s (%s): reference %s, C %s', n, name, reference, c), '; ' ORDER BY n, name)
             FROM outcomes WHERE reference IS DISTINCT FROM c), NULL, 'the C evaluator gives the reference''s answer on every case');
-- the cases are not vacuous: every kind of answer occurs
SELECT is((SELECT array_agg(DISTINCT k ORDER BY k)
             FROM (SELECT CASE WHEN reference IN ('true', 'false', 'NULL') THEN reference ELSE 'error' END AS k FROM outcomes) x),
          ARRAY['NULL', 'error', 'false', 'true'], 'true, false, NULL and errors all occur');
-- the reference's answers on the full context, case by case (what the cases pin down)
SELECT is((SELECT string_agg(reference, ',' ORDER BY n) FROM outcomes WHERE name = 'full'),
          'true,false,true,true,true,true,false,true,true,false,true,true,true,true,true,false,true,true,true,false,true,2201B: invalid regular expression: parentheses () not balanced,true,true,false,true,true,true,false,true,false,NULL,NULL,NULL,false,NULL,NULL,NULL,NULL,NULL,true,true,false,true,true,false,true,true,true,true,true,false,true,true,true,true,true,true,true,true,true,true,true,true,true,true,22023: unknown condition operator "like",22023: unknown condition operator "<NULL>",false,true,false,true,true,false,false,true,NULL,true,true,22023: cannot extract elements from an object,22023: cannot extract elements from a scalar,false,true,22023: unknown condition operator "<NULL>",22023: unknown condition operator "<NULL>",true,false,true,true,NULL,true,NULL,false,false,true,false,true,true,false,true,true,true,false,true,true,true,true,22007: invalid input syntax for type time: "nine",2201B: invalid regular expression: parentheses () not balanced,true,22023: cannot get array length of a non-array,22023: cannot get array length of a scalar,true,22023: unknown condition operator "<NULL>",22023: unknown condition operator "<NULL>",22023: unknown condition operator "<NULL>",22023: cannot get array length of a scalar', 'the answers on the full context');
SELECT is(ventros.automation_conditions_hold_c('[{"field": "score", "operator": "eq", "value": 8}]', NULL, 'UTC', now()),
          ventros.automation_conditions_hold('[{"field": "score", "operator": "eq", "value": 8}]', NULL, 'UTC', now()),
          'a NULL context: the reference''s answer');

-- the rules filter: in priority order, up to the first rule that holds and stops
SELECT ventros.create_tenant('t_cond_c', 'Conditions in C');
SET LOCAL ventros.tenant = 't_cond_c';
CREATE TEMP TABLE rules AS
SELECT i, ventros.create_automation('Rule ' || i, 'contact.lead_qualified', '[{"type": "notify_agents", "params": {}}]',
           CASE WHEN i % 2 = 0 THEN '[{"field": "score", "operator": "gte", "value": 5}]'::jsonb
                ELSE '[{"field": "score", "operator": "gt", "value": 50}]' END,
           automation_type => 'event', stop_processing => i = 4) AS a
  FROM generate_series(1, 6) i;
SELECT is((SELECT h.acting FROM ventros.automation_rules_holding((SELECT array_agg(a ORDER BY i) FROM rules),
                                                                 (SELECT ctx FROM ctxs WHERE name = 'full'), 'UTC', now()) h),
          '{2,4}', 'acting: the rules that hold, up to the one that stops');
SELECT is((SELECT h.skipped FROM ventros.automation_rules_holding((SELECT array_agg(a ORDER BY i) FROM rules),
                                                                  (SELECT ctx FROM ctxs WHERE name = 'full'), 'UTC', now()) h),
          (SELECT array_agg((a).id ORDER BY i) FROM rules WHERE i IN (1, 3)), 'skipped: those before it that do not hold');
SELECT is((SELECT h.acting FROM ventros.automation_rules_holding((SELECT array_agg(a ORDER BY i) FROM rules WHERE i <> 4),
                                                                 (SELECT ctx FROM ctxs WHERE name = 'full'), 'UTC', now()) h),
          '{2,5}', 'without it, every rule that holds');
SELECT is((SELECT cardinality(h.acting) || '/' || cardinality(h.skipped)
             FROM ventros.automation_rules_holding((SELECT array_agg(a ORDER BY i) FROM rules),
                                                   (SELECT ctx FROM ctxs WHERE name = 'bare'), 'UTC', now()) h),
          '0/6', 'nothing holds: every rule skipped');

SELECT * FROM finish();
ROLLBACK;
