-- The AI agent's knowledge snippets are ranked from indexes (docs/ai.md,
-- "Which knowledge snippets"): with seq scans priced out, the ranking query
-- (ventros.knowledge_ranked, inlined) reads the full-text index in each
-- snippet's language, the titles' trigram index and the oldest-first index,
-- and never a whole table; over 2,000 snippets a question still gets the
-- relevant ones: a stemmed word in the snippet's language, a typo of a
-- title, the oldest when nothing is relevant, never another tenant's.
BEGIN;
SELECT * FROM no_plan();

SELECT ventros.create_tenant('kn_t1', 'Knowledge one');
SELECT ventros.create_tenant('kn_t2', 'Knowledge two');
SET LOCAL ventros.tenant = 'kn_t2';
SELECT ventros.add_knowledge_snippet('Garantia estendida', 'Garantia de dois anos para entregas.', 'pt');
SET LOCAL ventros.tenant = 'kn_t1';
-- 2,000 snippets about nothing in particular, older than the ones below
INSERT INTO ventros.knowledge_snippets (tenant_id, title, content, created_at)
SELECT 'kn_t1', 'Assunto ' || g, 'Texto número ' || g || ' sobre ' || md5(g::text), now() - interval '1 day' + g * interval '1 second'
  FROM generate_series(1, 2000) g;
SELECT is((ventros.add_knowledge_snippet('Entregas', 'Entregamos em todo o Brasil em até 5 dias úteis.', 'pt-BR')).language,
          'pt-br', 'a snippet has a language');
SELECT ventros.add_knowledge_snippet('Pagamento parcelado', 'Aceitamos Pix, boleto e cartão em até 10 vezes.');
SELECT throws_ok($$SELECT ventros.add_knowledge_snippet('x', 'y', 'portuguese!')$$, '22023', NULL,
                 'a language that is not a code is 22023');
ANALYZE ventros.knowledge_snippets;

-- the plan of a query as text (one line per node)
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    result text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        result := result || line || E'\n';
    END LOOP;
    RETURN result;
END
$$;
SET LOCAL enable_seqscan = off;
CREATE TEMP TABLE plan AS
SELECT pg_temp.plan_of($q$SELECT * FROM ventros.knowledge_ranked('kn_t1', 'entreg | quer', ARRAY['quero', 'pagamneto'],
                                                                  'quero pagamneto', 5)$q$) AS p;
SELECT doesnt_match((SELECT p FROM plan), 'Seq Scan', 'the ranking reads no whole table');
SELECT doesnt_match((SELECT p FROM plan), 'Filter: \(to_tsvector', 'no snippet of the tenant is matched in full text outside the index');
SELECT doesnt_match((SELECT p FROM plan), 'Join Filter: [^\n]*<%', 'no title is compared by trigrams outside the index');
SELECT matches((SELECT p FROM plan), 'knowledge_snippets_search', 'full-text candidates come from the tsvector index');
SELECT matches((SELECT p FROM plan), 'knowledge_snippets_title_trgm', 'typo candidates come from the titles'' trigram index');
SELECT matches((SELECT p FROM plan), 'knowledge_snippets_oldest', 'the oldest come from their index');
SELECT matches((SELECT p FROM plan), 'Function Scan on unnest', 'the ranking function is inlined (its plan is the caller''s)');
RESET enable_seqscan;

-- what a question gets
SELECT is((SELECT array_agg(title ORDER BY ord) FROM ventros.knowledge_for_text('kn_t1', 'Vocês entregam em Recife?', 'portuguese', 1)),
          ARRAY['Entregas'], 'a stemmed word finds the snippet in its language (entregam: Entregamos)');
SELECT is((SELECT array_agg(title ORDER BY ord) FROM ventros.knowledge_for_text('kn_t1', 'posso fazer o pagamneto depois?', 'simple', 1)),
          ARRAY['Pagamento parcelado'], 'a typo of a title''s word finds it (trigrams)');
SELECT is((SELECT array_agg(title ORDER BY ord) FROM ventros.knowledge_for_text('kn_t1', 'zzz', 'simple', 2)),
          ARRAY['Assunto 1', 'Assunto 2'], 'nothing relevant: the oldest');
SELECT is((SELECT count(*)::int FROM ventros.knowledge_for_text('kn_t1', 'garantia estendida entregas', 'portuguese', 50)
            WHERE title LIKE 'Garantia%'), 0, 'another tenant''s snippet is never a candidate');
SELECT is((SELECT count(*)::int FROM ventros.knowledge_for_text('kn_t1', 'entregas', 'portuguese', 0)), 0, 'none asked, none given');

SELECT * FROM finish();
ROLLBACK;
