-- Search over a tenant's conversations: message text, the text extracted
-- from media (message_enrichments), notes and contact fields, ranked, with
-- typo tolerance, keyset paged (docs/ai.md, "Search").
--
-- Language: a message is indexed with the text search configuration of its
-- own language, ventros.search_config(messages.language); a new message
-- takes its contact's language when it names none (trigger below), so the
-- configuration is stored per row and never changes under the index.  A
-- query is parsed with every configuration (ventros.search_tsquery: the OR
-- of them) to use the index, then each candidate is matched exactly with its
-- own row's configuration.  Notes and enrichment text carry no language yet:
-- they are indexed with 'simple' (no stemming, any language).
--
-- Typos: pg_trgm (required by ventros.control; CREATE EXTENSION ventros
-- CASCADE installs it, in whatever schema) indexes message text, enrichment
-- text, note content and contact fields; a trigram match ranks below every
-- full-text match.  Its operator and opclass are reached through its schema
-- (as pgcrypto's hmac is in sql/88_inbox.sql): ventros.search_similar and
-- ventros.search_similarity are plain SQL functions the planner inlines, so
-- the operator meets the trigram indexes.
--
-- Tenancy: ventros.search is SECURITY DEFINER, like search_messages: under
-- row-level security the planner may not use a GIN index for @@ or <% (not
-- leakproof), so the function states the tenant and live-row conditions of
-- the tables' SELECT policies itself, and is granted to ventros_viewer, who
-- may SELECT every table it reads (test/pgtap/285_search.sql checks both).

-- search_config: the text search configuration of a language code (ISO
-- 639-1, optionally with a region: 'pt-BR'); 'simple' for any other.  No SET
-- clause: it runs in the index expression of every message written.
CREATE FUNCTION ventros.search_config(language text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE pg_catalog.split_part(pg_catalog.lower(language), '-', 1)
        WHEN 'pt' THEN 'pg_catalog.portuguese'::pg_catalog.regconfig WHEN 'es' THEN 'pg_catalog.spanish'::pg_catalog.regconfig
        WHEN 'en' THEN 'pg_catalog.english'::pg_catalog.regconfig WHEN 'fr' THEN 'pg_catalog.french'::pg_catalog.regconfig
        WHEN 'de' THEN 'pg_catalog.german'::pg_catalog.regconfig WHEN 'it' THEN 'pg_catalog.italian'::pg_catalog.regconfig
        WHEN 'nl' THEN 'pg_catalog.dutch'::pg_catalog.regconfig WHEN 'ca' THEN 'pg_catalog.catalan'::pg_catalog.regconfig
        WHEN 'ro' THEN 'pg_catalog.romanian'::pg_catalog.regconfig WHEN 'ru' THEN 'pg_catalog.russian'::pg_catalog.regconfig
        WHEN 'tr' THEN 'pg_catalog.turkish'::pg_catalog.regconfig WHEN 'id' THEN 'pg_catalog.indonesian'::pg_catalog.regconfig
        ELSE 'pg_catalog.simple'::pg_catalog.regconfig END
$$;
COMMENT ON FUNCTION ventros.search_config(text) IS
    'The text search configuration of a language code (pt, es, en, fr, de, it, nl, ca, ro, ru, tr, id; ''pt-BR'' counts as pt), else simple';

-- search_tsquery: a web-search style query parsed with every configuration
-- search_config yields, OR'ed (without the ones that are only stop words), so
-- one GIN scan finds the candidates of every language.
CREATE FUNCTION ventros.search_tsquery(query text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    result tsquery;
    part tsquery;
BEGIN
    FOR part IN
        SELECT DISTINCT websearch_to_tsquery(ventros.search_config(l), query)
        FROM unnest(ARRAY['pt', 'es', 'en', 'fr', 'de', 'it', 'nl', 'ca', 'ro', 'ru', 'tr', 'id', NULL]) l
    LOOP
        CONTINUE WHEN numnode(part) = 0;
        result := CASE WHEN result IS NULL THEN part ELSE result || part END;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.search_tsquery(text) IS
    'A web-search style query parsed with every configuration of ventros.search_config, OR''ed (the index condition of a search)';

-- The search text of a contact: name, email and phone (trigram indexed).
CREATE FUNCTION ventros.contact_search_text(name text, email text, phone text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT name OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) coalesce(email, '') OPERATOR(pg_catalog.||) ' '
             OPERATOR(pg_catalog.||) coalesce(phone, '') $$;
COMMENT ON FUNCTION ventros.contact_search_text(text, text, text) IS
    'The text a contact is found by: its name, email and phone';

-- A message names its language, or takes its contact's when written.
CREATE FUNCTION ventros.fill_message_language() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.language INTO NEW.language FROM ventros.contacts c
    WHERE c.tenant_id = coalesce(NEW.tenant_id, ventros.current_tenant()) AND c.id = NEW.contact_id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.fill_message_language() IS
    'Trigger: a new message without a language takes its contact''s (the text search configuration of its index entry)';
CREATE TRIGGER messages_search_language BEFORE INSERT ON ventros.messages
    FOR EACH ROW WHEN (NEW.language IS NULL) EXECUTE FUNCTION ventros.fill_message_language();

CREATE INDEX messages_search ON ventros.messages
    USING gin (to_tsvector(ventros.search_config(language), coalesce(text, ''))) WITH (fastupdate = on);
-- (enrichment text: message_enrichments.search_vector and its index
-- message_enrichments_search, sql/80_message_enrichments.sql)
CREATE INDEX notes_search ON ventros.notes USING gin (to_tsvector('simple'::regconfig, content));

DO $trgm$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.search_similar(query text, body text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE
        AS 'SELECT query OPERATOR(%1$I.<%%) body'$f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.search_similarity(query text, body text) RETURNS real
        LANGUAGE sql STABLE PARALLEL SAFE
        AS 'SELECT %1$I.word_similarity(query, body)'$f$, s);
    EXECUTE pg_catalog.format('CREATE INDEX messages_search_trgm ON ventros.messages USING gin (text %1$I.gin_trgm_ops) '
                              'WITH (fastupdate = on)', s);
    EXECUTE pg_catalog.format('CREATE INDEX message_enrichments_search_trgm ON ventros.message_enrichments '
                              'USING gin (extracted_text %1$I.gin_trgm_ops)', s);
    EXECUTE pg_catalog.format('CREATE INDEX notes_search_trgm ON ventros.notes USING gin (content %1$I.gin_trgm_ops)', s);
    EXECUTE pg_catalog.format('CREATE INDEX contacts_search_trgm ON ventros.contacts '
                              'USING gin (ventros.contact_search_text(name, email, phone) %1$I.gin_trgm_ops)', s);
END
$trgm$;
COMMENT ON FUNCTION ventros.search_similar(text, text) IS
    'Whether a query is like a part of a text (pg_trgm''s <%: word similarity over its threshold); inlined, so trigram indexes serve it';
COMMENT ON FUNCTION ventros.search_similarity(text, text) IS
    'How like a part of a text a query is, 0 to 1 (pg_trgm''s word_similarity)';

-- search_cursor / search_after: the keyset token of a hit, (rank, id) in
-- base64url, and its reading (22P02 when it is not one).
CREATE FUNCTION ventros.search_cursor(rank real, id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(rank::text || ',' || id::text, 'UTF8'),
                                                                   'base64'), '+/', '-_'), '=')
$$;
COMMENT ON FUNCTION ventros.search_cursor(real, uuid) IS 'The keyset token of a search hit: its rank and id in base64url';

CREATE FUNCTION ventros.search_after(token text, OUT rank real, OUT id uuid)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plain text;
BEGIN
    BEGIN
        plain := convert_from(decode(translate(token, '-_', '+/') || repeat('=', (4 - length(token) % 4) % 4), 'base64'), 'UTF8');
        IF plain !~ '^[0-9.e+-]{1,20},[0-9a-f-]{36}$' THEN
            RAISE EXCEPTION USING ERRCODE = '22P02';
        END IF;
        rank := split_part(plain, ',', 1)::real;
        id := split_part(plain, ',', 2)::uuid;
    EXCEPTION WHEN data_exception OR invalid_parameter_value OR character_not_in_repertoire THEN
        RAISE EXCEPTION 'malformed search cursor "%"', left(token, 64) USING ERRCODE = '22P02',
            HINT = 'Pass the cursor of the last row of the previous page, unchanged.';
    END;
END
$$;
COMMENT ON FUNCTION ventros.search_after(text) IS 'Reads a search cursor token (22P02 when malformed)';

-- search: the hits of a query over the acting tenant's messages, enrichment
-- text, notes and contacts, best first (rank, then id), one page per call.
--   rank: 1 + r / (1 + r) for a full-text match, r = ts_rank_cd divided by
--   1 + log(length) (normalization 1|32: denser and shorter texts first),
--   1 + word similarity for a contact whose name, email or phone contains the
--   query, word similarity alone (0.4 .. 1) for a typo match (pg_trgm).
--   fuzzy: true adds typo matches, false never; NULL (default) adds them when
--   the exact matches are fewer than 20.
-- A generic plan: planning this query for each call's values (a custom plan)
-- took longer than running it (about 60 ms against 1 for a rare word); its
-- branches are switched by one-time filters on the arguments, and the index
-- conditions are the same whatever the values.
CREATE FUNCTION ventros.search(query text, kinds text[] DEFAULT NULL, contact uuid DEFAULT NULL,
                               fuzzy boolean DEFAULT NULL, after text DEFAULT NULL, page_size integer DEFAULT 20)
RETURNS TABLE (kind text, id uuid, contact_id uuid, session_id uuid, message_id uuid, at timestamptz, rank real,
               snippet text, cursor text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET pg_trgm.word_similarity_threshold = 0.4
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    n integer := ventros.check_page_size(page_size);
    k text[] := coalesce(kinds, ARRAY['message', 'enrichment', 'note', 'contact']);
    q text;
    q_any tsquery;
    q_simple tsquery;
    digits text;
    pattern text;
    c_rank real := 'infinity';
    c_id uuid := '00000000-0000-0000-0000-000000000000';
    kind_name text;
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'search query must not be empty' USING ERRCODE = '22023';
    END IF;
    q := btrim(ventros.check_length(query, 500, 'search query'));
    FOREACH kind_name IN ARRAY k LOOP
        PERFORM ventros.require_value(kind_name, ARRAY['message', 'enrichment', 'note', 'contact'], 'search kind');
    END LOOP;
    IF after IS NOT NULL THEN
        SELECT a.rank, a.id INTO c_rank, c_id FROM ventros.search_after(after) a;
    END IF;
    q_any := ventros.search_tsquery(q);
    q_simple := websearch_to_tsquery('simple', q);
    pattern := '%' || replace(replace(replace(lower(q), '\', '\\'), '%', '\%'), '_', '\_') || '%';
    digits := CASE WHEN q ~ '^\+?[0-9\s().\-/]{3,}$' THEN '%' || regexp_replace(q, '[^0-9]', '', 'g') || '%' END;
    RETURN QUERY
    WITH exact AS MATERIALIZED (
        SELECT 'message'::text AS kind, m.id, m.contact_id, m.session_id, m.id AS message_id, m."timestamp" AS at,
               (1 + ts_rank_cd(v.tsv, v.tsq, 33))::real AS rank, v.cfg, m.text AS body
        FROM ventros.messages m
        -- each candidate's vector and query once, in its own language (OFFSET 0: not flattened into copies)
        CROSS JOIN LATERAL (SELECT c.cfg, to_tsvector(c.cfg, coalesce(m.text, '')) AS tsv, websearch_to_tsquery(c.cfg, q) AS tsq
                            FROM (SELECT ventros.search_config(m.language) AS cfg) c OFFSET 0) v
        WHERE 'message' = ANY (k) AND m.tenant_id = tenant AND m.deleted_at IS NULL
          AND to_tsvector(ventros.search_config(m.language), coalesce(m.text, '')) @@ q_any
          AND v.tsv @@ v.tsq
          AND (search.contact IS NULL OR m.contact_id = search.contact)
        UNION ALL
        SELECT 'enrichment', e.id, e.contact_id, m.session_id, e.message_id, m."timestamp",
               (1 + ts_rank_cd(e.search_vector, q_simple, 33))::real,
               'simple'::regconfig, e.extracted_text
        FROM ventros.message_enrichments e
        JOIN ventros.messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id AND m.deleted_at IS NULL
        WHERE 'enrichment' = ANY (k) AND e.tenant_id = tenant AND e.deleted_at IS NULL AND e.status = 'completed'
          AND e.search_vector @@ q_simple
          AND (search.contact IS NULL OR e.contact_id = search.contact)
        UNION ALL
        SELECT 'note', x.id, x.contact_id, x.session_id, NULL::uuid, x.created_at,
               (1 + ts_rank_cd(to_tsvector('simple'::regconfig, x.content), q_simple, 33))::real,
               'simple'::regconfig, x.content
        FROM ventros.notes x
        WHERE 'note' = ANY (k) AND x.tenant_id = tenant AND x.deleted_at IS NULL
          AND to_tsvector('simple'::regconfig, x.content) @@ q_simple
          AND (search.contact IS NULL OR x.contact_id = search.contact)
        UNION ALL
        SELECT 'contact', c.id, c.id, NULL::uuid, NULL::uuid, c.created_at,
               (1 + ventros.search_similarity(q, ventros.contact_search_text(c.name, c.email, c.phone)))::real,
               'simple'::regconfig, ventros.contact_search_text(c.name, c.email, c.phone)
        FROM ventros.contacts c
        WHERE 'contact' = ANY (k) AND c.tenant_id = tenant AND c.deleted_at IS NULL
          AND (ventros.contact_search_text(c.name, c.email, c.phone) ILIKE pattern
               OR (digits IS NOT NULL AND ventros.contact_search_text(c.name, c.email, c.phone) LIKE digits))
          AND (search.contact IS NULL OR c.id = search.contact)
    ), typo AS (
        SELECT 'message'::text AS kind, m.id, m.contact_id, m.session_id, m.id AS message_id, m."timestamp" AS at,
               ventros.search_similarity(q, m.text)::real AS rank, 'simple'::regconfig AS cfg, m.text AS body
        FROM ventros.messages m
        WHERE 'message' = ANY (k) AND m.tenant_id = tenant AND m.deleted_at IS NULL
          AND ventros.search_similar(q, m.text)
          AND (search.contact IS NULL OR m.contact_id = search.contact)
        UNION ALL
        SELECT 'enrichment', e.id, e.contact_id, m.session_id, e.message_id, m."timestamp",
               ventros.search_similarity(q, e.extracted_text)::real, 'simple'::regconfig, e.extracted_text
        FROM ventros.message_enrichments e
        JOIN ventros.messages m ON m.tenant_id = e.tenant_id AND m.id = e.message_id AND m.deleted_at IS NULL
        WHERE 'enrichment' = ANY (k) AND e.tenant_id = tenant AND e.deleted_at IS NULL AND e.status = 'completed'
          AND ventros.search_similar(q, e.extracted_text)
          AND (search.contact IS NULL OR e.contact_id = search.contact)
        UNION ALL
        SELECT 'note', x.id, x.contact_id, x.session_id, NULL::uuid, x.created_at,
               ventros.search_similarity(q, x.content)::real, 'simple'::regconfig, x.content
        FROM ventros.notes x
        WHERE 'note' = ANY (k) AND x.tenant_id = tenant AND x.deleted_at IS NULL
          AND ventros.search_similar(q, x.content)
          AND (search.contact IS NULL OR x.contact_id = search.contact)
        UNION ALL
        SELECT 'contact', c.id, c.id, NULL::uuid, NULL::uuid, c.created_at,
               ventros.search_similarity(q, ventros.contact_search_text(c.name, c.email, c.phone))::real,
               'simple'::regconfig, ventros.contact_search_text(c.name, c.email, c.phone)
        FROM ventros.contacts c
        WHERE 'contact' = ANY (k) AND c.tenant_id = tenant AND c.deleted_at IS NULL
          AND ventros.search_similar(q, ventros.contact_search_text(c.name, c.email, c.phone))
          AND (search.contact IS NULL OR c.id = search.contact)
    ), hits AS (
        SELECT * FROM exact
        UNION ALL
        SELECT t.* FROM typo t
        WHERE (fuzzy OR (fuzzy IS NULL AND (SELECT count(*) FROM exact) < 20))
          AND NOT EXISTS (SELECT 1 FROM exact x WHERE x.id = t.id)
    ), page AS (
        SELECT * FROM hits h
        WHERE h.rank < c_rank OR (h.rank = c_rank AND h.id > c_id)
        ORDER BY h.rank DESC, h.id
        LIMIT n
    )
    SELECT p.kind, p.id, p.contact_id, p.session_id, p.message_id, p.at, p.rank,
           CASE WHEN p.rank > 1 AND p.kind <> 'contact'
                THEN ts_headline(p.cfg, p.body, websearch_to_tsquery(p.cfg, q), 'MaxFragments=1, MaxWords=24, MinWords=8')
                ELSE left(p.body, 200) END,
           ventros.search_cursor(p.rank, p.id)
    FROM page p
    ORDER BY p.rank DESC, p.id;
END
$$;
COMMENT ON FUNCTION ventros.search(text, text[], uuid, boolean, text, integer) IS
    'Messages, media text, notes and contacts matching a web-search style query, best first (language-aware full text, then typo matches); next page: pass the last row''s cursor as after';

-- search_contacts: the contact hits of ventros.search, with the contact.
CREATE FUNCTION ventros.search_contacts(query text, fuzzy boolean DEFAULT NULL, after text DEFAULT NULL,
                                        page_size integer DEFAULT 20)
RETURNS TABLE (id uuid, name text, phone text, email text, language text, tags text[], rank real, cursor text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, c.name, c.phone, c.email, c.language, c.tags, s.rank, s.cursor
    FROM ventros.search(query, ARRAY['contact'], NULL, fuzzy, after, page_size) s
    JOIN ventros.contacts c ON c.tenant_id = ventros.require_tenant() AND c.id = s.id
    ORDER BY s.rank DESC, s.id
$$;
COMMENT ON FUNCTION ventros.search_contacts(text, boolean, text, integer) IS
    'Contacts by part of their name, phone or email, or a misspelling of it, best first; next page: pass the last row''s cursor as after';

-- The functions of index expressions run as whoever writes the rows.
GRANT EXECUTE ON FUNCTION ventros.search_config(text), ventros.contact_search_text(text, text, text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.search(text, text[], uuid, boolean, text, integer), ventros.search_contacts(text, boolean, text, integer)
    TO ventros_viewer;
