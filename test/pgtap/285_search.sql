-- Search (sql/82_search.sql): one ranked search over messages, media text,
-- notes and contacts; language-aware stemming (pt, es, en; 'simple' for
-- others); typo matches through pg_trgm; keyset paging without duplicates or
-- gaps; what a tenant role may read and nothing of another tenant; bad input.
BEGIN;
SELECT plan(47);

SELECT ventros.create_tenant('srch_a', 'Search A');
SELECT ventros.create_tenant('srch_b', 'Search B');
SET LOCAL ventros.tenant = 'srch_a';
SET LOCAL ROLE ventros_admin;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id uuid);
GRANT SELECT, INSERT ON ids TO PUBLIC;
CREATE FUNCTION pg_temp.id(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.hits(q text, k text[] DEFAULT NULL, fz boolean DEFAULT NULL) RETURNS text[] LANGUAGE sql AS
    $$ SELECT coalesce(array_agg(coalesce(i.name, s.kind) ORDER BY s.rank DESC, s.id), '{}')
       FROM ventros.search(q, k, fuzzy => fz) s LEFT JOIN ids i ON i.id = s.id $$;
INSERT INTO ids VALUES ('ch', ventros_test.new_channel('waha')), ('agent', ventros_test.new_agent());
INSERT INTO ids SELECT 'pt', id FROM ventros.create_contact('Maria Souza', phone => '+5511988887777', language => 'pt-BR');
INSERT INTO ids SELECT 'es', id FROM ventros.create_contact('Juan Pérez', email => 'juan.perez@correo.example', language => 'es');
INSERT INTO ids SELECT 'en', id FROM ventros.create_contact('John Smith', email => 'john@mail.example');
INSERT INTO ids SELECT 'xx', id FROM ventros.create_contact('Kim Lee', phone => '+821055554444', language => 'ko');
INSERT INTO ids SELECT 'identity_' || name, (ventros.add_contact_identity(id, 'whatsapp', v)).id
FROM (VALUES ('pt', '5511988887777@c.us'), ('es', '5491144443333@c.us'), ('en', '14155550100@c.us'), ('xx', '821055554444@c.us')) v(n, v)
JOIN ids ON name = n;

SET LOCAL ROLE ventros_agent;
CREATE FUNCTION pg_temp.inbound(who text, body text) RETURNS uuid LANGUAGE sql AS $$
    SELECT (ventros.receive_message(pg_temp.id('ch'), (SELECT value FROM ventros.contact_identities WHERE id = pg_temp.id('identity_' || who)),
                                    body)).id $$;
INSERT INTO ids VALUES ('m_pt', pg_temp.inbound('pt', 'As casas estão correndo perigo e o pagamento do boleto atrasou'));
INSERT INTO ids VALUES ('m_es', pg_temp.inbound('es', 'Los niños estaban corriendo hacia las casas'));
INSERT INTO ids VALUES ('m_en', pg_temp.inbound('en', 'The running shoes arrived, thanks for the houses catalogue'));
INSERT INTO ids VALUES ('m_xx', pg_temp.inbound('xx', 'casas correndo'));

-- grants: the definer function reads what its callers may read
SELECT ok(has_function_privilege('ventros_viewer', 'ventros.search(text, text[], uuid, boolean, text, integer)', 'EXECUTE')
          AND has_function_privilege('ventros_viewer', 'ventros.search_contacts(text, boolean, text, integer)', 'EXECUTE')
          AND NOT has_function_privilege('ventros_anon', 'ventros.search(text, text[], uuid, boolean, text, integer)', 'EXECUTE'),
          'search is granted to the tenant roles (viewer and up), not to anon');
SELECT is(array(SELECT t FROM unnest(ARRAY['ventros.messages', 'ventros.message_enrichments', 'ventros.notes', 'ventros.contacts']) t
                WHERE NOT has_table_privilege('ventros_viewer', t, 'SELECT')), '{}'::text[],
          'every role that may search may read every table the search reads');

-- languages
SELECT is(array[ventros.search_config('pt-BR'), ventros.search_config('es'), ventros.search_config('en'),
                ventros.search_config('ko'), ventros.search_config(NULL)]::text[],
          ARRAY['portuguese', 'spanish', 'english', 'simple', 'simple'], 'a language code chooses the configuration, simple otherwise');
SELECT is((SELECT array_agg(language ORDER BY i.name) FROM ventros.messages m JOIN ids i ON i.id = m.id),
          ARRAY['en', 'es', 'pt-BR', 'ko'], 'a new message takes its contact''s language');
SELECT is(pg_temp.hits('correr', '{message}', false), ARRAY['m_es', 'm_pt'], 'stemming: "correr" finds "correndo" (pt) and "corriendo" (es)');
SELECT is(pg_temp.hits('casa', '{message}', false), ARRAY['m_es', 'm_pt'],
          'stemming: "casa" finds "casas" in Portuguese and Spanish, not in a message without a stemming language');
SELECT is(pg_temp.hits('run house', '{message}'), ARRAY['m_en'], 'stemming: "run house" finds "running ... houses" (en)');
SELECT ok('m_xx' = ANY (pg_temp.hits('casas correndo', '{message}', false)),
          'the exact words find the message without a stemming language (simple)');
SELECT is(pg_temp.hits('the', '{message}', false), '{}'::text[], 'a query of stop words only finds nothing, without error');

-- ranking
INSERT INTO ids VALUES ('r1', pg_temp.inbound('pt', 'frete'));
INSERT INTO ids VALUES ('r2', pg_temp.inbound('pt', 'frete grátis, frete rápido, frete hoje'));
INSERT INTO ids VALUES ('r3', pg_temp.inbound('pt', 'qual o valor do frete para o meu endereço no interior de São Paulo, por favor?'));
SELECT is(pg_temp.hits('frete', '{message}'), ARRAY['r2', 'r1', 'r3'],
          'ranking: more occurrences first, then the denser message');
SELECT ok((SELECT bool_and(rank > 1) FROM ventros.search('frete', '{message}')), 'a full-text match ranks above 1');

-- typos
SELECT is(pg_temp.hits('pagamneto', '{message}'), ARRAY['m_pt'], 'a misspelt word finds the message (trigram)');
SELECT ok((SELECT rank < 1 FROM ventros.search('pagamneto', '{message}')), 'a typo match ranks below every full-text match');
SELECT is(pg_temp.hits('pagamneto', '{message}', false), '{}'::text[], 'fuzzy => false: no typo matches');
SELECT is(pg_temp.hits('pagamento', '{message}', true), ARRAY['m_pt'], 'an exact match is not repeated as a typo match');
SELECT is(pg_temp.hits('Smitth', '{contact}'), ARRAY['en'], 'a misspelt name finds the contact');

-- contacts: partial name, phone, email
SELECT is(pg_temp.hits('souz', '{contact}', false), ARRAY['pt'], 'part of a name');
SELECT is(pg_temp.hits('98888-77', '{contact}', false), ARRAY['pt'], 'part of a phone, written with separators');
SELECT is(pg_temp.hits('correo.example', '{contact}', false), ARRAY['es'], 'part of an email');
SELECT results_eq($$SELECT id, name, phone FROM ventros.search_contacts('maria')$$,
                  $$SELECT id, 'Maria Souza'::text, '+5511988887777'::text FROM ids WHERE name = 'pt'$$,
                  'search_contacts answers the contact''s fields');
SELECT is(pg_temp.hits('maria'), ARRAY['pt'], 'the one search finds contacts too');

-- notes and media text
INSERT INTO ids SELECT 'note', id FROM ventros.add_note(pg_temp.id('pt'), 'cliente pediu desconto na renovação', pg_temp.id('agent'));
SELECT is(pg_temp.hits('desconto'), ARRAY['note'], 'a note is found');
INSERT INTO ids SELECT 'voice', id FROM ventros.receive_message(pg_temp.id('ch'), '5511988887777@c.us', content_type => 'voice',
                                                              media_url => 'https://media.example.com/voice.ogg');
INSERT INTO ids SELECT 'enrichment', e.id
FROM ventros.add_message_to_group(pg_temp.id('voice')) g,
     ventros.create_message_enrichment(pg_temp.id('voice'), g.id, 'whisper') c,
     ventros.start_message_enrichment(c.id, 1) s,
     ventros.complete_message_enrichment(c.id, 2, 'quero cancelar a assinatura amanhã') e;
SELECT is(pg_temp.hits('assinatura'), ARRAY['enrichment'], 'the text of a transcribed voice message is found');
SELECT is((SELECT message_id FROM ventros.search('assinatura')), pg_temp.id('voice'), 'an enrichment hit names its message');
SELECT is(pg_temp.hits('assinatrua'), ARRAY['enrichment'], 'a misspelling of transcribed text is found');
SELECT is((SELECT array_agg(kind ORDER BY kind) FROM ventros.search('desconto assinatura', contact => pg_temp.id('pt'), fuzzy => false)), NULL,
          'words are AND''ed: no single row holds both');
SELECT is((SELECT array_agg(kind ORDER BY kind) FROM ventros.search('desconto OR assinatura OR boleto', contact => pg_temp.id('pt'), fuzzy => false)),
          ARRAY['enrichment', 'message', 'note'], 'OR finds the note, the transcript and the message of the contact');
SELECT is((SELECT count(*)::int FROM ventros.search('desconto', contact => pg_temp.id('es'))), 0, 'and none of the others''');
SELECT alike((SELECT snippet FROM ventros.search('boleto', '{message}')), '%<b>boleto</b>%', 'the snippet marks the matched word');

-- keyset paging: 30 hits, ties of rank included, paged 7 at a time
INSERT INTO ids SELECT 'p' || i, pg_temp.inbound('en', CASE WHEN i % 3 = 0 THEN 'invoice invoice number ' || i ELSE 'invoice ' || i END)
FROM generate_series(1, 30) i;
CREATE TEMP TABLE pages (page integer, pos integer, id uuid, rank real, cursor text);
GRANT ALL ON pages TO PUBLIC;
DO $$
DECLARE
    after text;
    p integer := 0;
    got integer;
BEGIN
    LOOP
        p := p + 1;
        INSERT INTO pages SELECT p, row_number() OVER (), s.id, s.rank, s.cursor
        FROM ventros.search('invoice', '{message}', after => after, page_size => 7) s;
        GET DIAGNOSTICS got = ROW_COUNT;
        EXIT WHEN got < 7 OR p > 10;
        SELECT cursor INTO after FROM pages WHERE page = p ORDER BY pos DESC LIMIT 1;
    END LOOP;
END
$$;
SELECT is((SELECT count(*)::int FROM pages), 30, 'the pages hold every hit');
SELECT is((SELECT count(DISTINCT id)::int FROM pages), 30, 'no hit appears twice');
SELECT is((SELECT count(DISTINCT rank)::int FROM pages), 2, 'the hits tie on rank (two ranks among thirty)');
SELECT is(array(SELECT id FROM pages ORDER BY page, pos),
          array(SELECT id FROM ventros.search('invoice', '{message}', page_size => 100)),
          'the pages, in order, are the one big page: no gap');
SELECT is((SELECT max(page) FROM pages), 5, 'five pages of 7 for 30 hits');

-- visibility: what the roles read, never a deleted row nor another tenant's
SET LOCAL ROLE ventros_viewer;
SELECT is(pg_temp.hits('desconto'), ARRAY['note'], 'a viewer searches as well');
RESET ROLE; SET LOCAL ROLE ventros_admin;
SELECT ventros.delete_note(pg_temp.id('note'), 1);
SELECT ventros.delete_message(pg_temp.id('r1'));
SET LOCAL ROLE ventros_agent;
SELECT is(pg_temp.hits('desconto'), '{}'::text[], 'a deleted note is not found');
SELECT is(pg_temp.hits('frete', '{message}'), ARRAY['r2', 'r3'], 'a deleted message is not found');
SET LOCAL ventros.tenant = 'srch_b';
SELECT is((SELECT count(*)::int FROM ventros.search('frete casa correr assinatura maria desconto invoice', fuzzy => true)), 0,
          'another tenant finds nothing, typo matches included');
SELECT is((SELECT count(*)::int FROM ventros.search('maria', fuzzy => true)) + (SELECT count(*)::int FROM ventros.search_contacts('souza')),
          0, 'another tenant finds none of the contacts');
SELECT is((SELECT count(*)::int FROM ventros.search('invoice', '{message}')), 0, 'another tenant finds none of the messages');
SET LOCAL ventros.tenant = 'srch_a';

-- bad input
SELECT throws_ok($$SELECT * FROM ventros.search('')$$, '22023', 'search query must not be empty', 'an empty query');
SELECT throws_ok($$SELECT * FROM ventros.search('   ')$$, '22023', 'search query must not be empty', 'a blank query');
SELECT throws_ok($$SELECT * FROM ventros.search(repeat('x', 501))$$, '54000', 'search query is too long', 'an over-long query');
SELECT throws_ok($$SELECT * FROM ventros.search('frete', after => 'not a cursor!')$$, '22P02', NULL, 'a malformed cursor');
SELECT throws_ok($$SELECT * FROM ventros.search('frete', after => rtrim(encode('1.5,zzz', 'base64'), '='))$$, '22P02', NULL,
                 'a cursor that decodes to something else');
SELECT throws_ok($$SELECT * FROM ventros.search('frete', '{messages}')$$, '22023', NULL, 'an unknown kind');
SELECT throws_ok($$SELECT * FROM ventros.search('frete', page_size => 0)$$, '22023', NULL, 'a page size of 0');

SELECT * FROM finish();
ROLLBACK;
