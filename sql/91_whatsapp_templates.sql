-- whatsapp_templates (CRM): the message templates of a WhatsApp Cloud
-- channel, synced from the Cloud API (GET /<ver>/<waba_id>/message_templates,
-- a dispatcher request of purpose template.sync whose handler upserts them).
-- A child aggregate of the channel, like channel_labels: the engine gives it
-- versions, RLS, and the events whatsapp_template.created / .updated /
-- .deleted, so subscribers learn when Meta approves, pauses or rejects one.
--
-- send_message with a template validates the call's components against the
-- stored template before anything is queued (prepare_template_message):
-- the template must exist for the channel and language and be APPROVED, and
-- each component must carry exactly as many parameters as the template has
-- {{n}} placeholders (body, text header, URL / copy-code buttons) and the
-- media of a media header.

CREATE TABLE ventros.whatsapp_templates (
    id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            text        NOT NULL,
    version              integer     NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    channel_id           uuid        NOT NULL,
    name                 text        NOT NULL,
    language             text        NOT NULL,
    category             text,
    status               text        NOT NULL,
    provider_template_id text,
    parameter_format     text,
    components           jsonb       NOT NULL DEFAULT '[]',
    synced_at            timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT whatsapp_templates_name_format CHECK (name ~ '^[a-z0-9_]+$' AND length(name) <= 512),
    CONSTRAINT whatsapp_templates_language_format CHECK (language ~ '^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT whatsapp_templates_status_format CHECK (status ~ '^[A-Z_]{1,40}$'),
    CONSTRAINT whatsapp_templates_category_size CHECK (length(category) <= 64),
    CONSTRAINT whatsapp_templates_components_array CHECK (jsonb_typeof(components) = 'array')
);
CREATE UNIQUE INDEX whatsapp_templates_unique ON ventros.whatsapp_templates (tenant_id, channel_id, name, language)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.whatsapp_templates IS
    'A message template of a WhatsApp Cloud channel (name, language, category, status, components), synced from the Cloud API';

SELECT ventros.register_aggregate('whatsapp_template', 'ventros.whatsapp_templates', 'crm',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A WhatsApp Cloud message template of a channel');

-- upsert_whatsapp_template: one template as the Cloud API lists it.
CREATE FUNCTION ventros.upsert_whatsapp_template(channel_id uuid, name text, language text, status text,
                                                 components jsonb DEFAULT '[]', category text DEFAULT NULL,
                                                 provider_template_id text DEFAULT NULL,
                                                 parameter_format text DEFAULT NULL)
RETURNS ventros.whatsapp_templates
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    channel_type text;
    existing ventros.whatsapp_templates;
    result ventros.whatsapp_templates;
BEGIN
    SELECT c.type INTO channel_type FROM ventros.channels c
     WHERE c.tenant_id = tenant AND c.id = upsert_whatsapp_template.channel_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    IF channel_type NOT IN ('whatsapp', 'whatsapp_business') THEN
        RAISE EXCEPTION 'channel % of type % has no WhatsApp templates', channel_id, channel_type USING ERRCODE = '22023',
            DETAIL = 'Templates exist on WhatsApp Cloud API channels only.';
    END IF;
    IF name IS NULL OR language IS NULL OR status IS NULL THEN
        RAISE EXCEPTION 'template name, language and status must not be null' USING ERRCODE = '23502';
    END IF;
    IF components IS NULL OR jsonb_typeof(components) <> 'array' THEN
        RAISE EXCEPTION 'template components must be a JSON array' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO existing FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = upsert_whatsapp_template.channel_id
       AND t.name = upsert_whatsapp_template.name AND t.language = upsert_whatsapp_template.language
       AND t.deleted_at IS NULL
       FOR UPDATE;
    IF FOUND THEN
        IF (existing.status, existing.category, existing.components, existing.provider_template_id, existing.parameter_format)
           IS NOT DISTINCT FROM (upper(upsert_whatsapp_template.status), upsert_whatsapp_template.category,
                                 upsert_whatsapp_template.components, upsert_whatsapp_template.provider_template_id,
                                 upsert_whatsapp_template.parameter_format) THEN
            RETURN existing;    -- unchanged: no new version, no event
        END IF;
        UPDATE ventros.whatsapp_templates t
           SET status = upper(upsert_whatsapp_template.status), category = upsert_whatsapp_template.category,
               components = upsert_whatsapp_template.components,
               provider_template_id = upsert_whatsapp_template.provider_template_id,
               parameter_format = upsert_whatsapp_template.parameter_format, synced_at = now(), version = existing.version
         WHERE t.tenant_id = tenant AND t.id = existing.id
        RETURNING * INTO result;
    ELSE
        INSERT INTO ventros.whatsapp_templates (channel_id, name, language, status, category, components,
                                                provider_template_id, parameter_format, synced_at)
        VALUES (channel_id, name, language, upper(status), category, components, provider_template_id,
                parameter_format, now())
        RETURNING * INTO result;
    END IF;
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid WhatsApp template: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.upsert_whatsapp_template(uuid, text, text, text, jsonb, text, text, text) IS
    'Creates or changes a template of a WhatsApp Cloud channel (by name and language; an unchanged one writes nothing); emits whatsapp_template.created / .updated';

CREATE FUNCTION ventros.delete_whatsapp_template(template_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.whatsapp_templates', 'whatsapp_template', template_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_whatsapp_template(uuid, integer) IS 'Soft-deletes a template; emits whatsapp_template.deleted';

CREATE FUNCTION ventros.list_whatsapp_templates(channel_id uuid)
RETURNS SETOF ventros.whatsapp_templates
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.* FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = ventros.require_tenant() AND t.channel_id = list_whatsapp_templates.channel_id
     ORDER BY t.name, t.language
     LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_whatsapp_templates(uuid) IS 'The live templates of a channel, by name and language';

-- ---- sync from the Cloud API --------------------------------------------------

CREATE FUNCTION ventros.template_sync_url(ch ventros.channels, after text DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.graph_base(ch) || '/' || (ch.config->>'waba_id')
           || '/message_templates?fields=id,name,language,status,category,parameter_format,components&limit=100'
           || coalesce('&after=' || after, '')
$$;
COMMENT ON FUNCTION ventros.template_sync_url(ventros.channels, text) IS
    'GET <graph>/<version>/<waba_id>/message_templates with the fields we store, 100 a page, after a paging cursor';

CREATE FUNCTION ventros.sync_whatsapp_templates(channel_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
-- SECURITY DEFINER to read the channel's token (sql/68_credentials_channels.sql);
-- it acts on the caller's tenant only
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch ventros.channels;
BEGIN
    SELECT * INTO ch FROM ventros.channels c
     WHERE c.tenant_id = ventros.require_tenant() AND c.id = sync_whatsapp_templates.channel_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
    END IF;
    ch := ventros.channel_with_secrets(ch);
    IF ch.type NOT IN ('whatsapp', 'whatsapp_business') OR coalesce(ch.config->>'waba_id', '') = ''
       OR coalesce(ch.config->>'access_token', '') = '' THEN
        RAISE EXCEPTION 'channel % cannot sync WhatsApp templates', channel_id USING ERRCODE = '22023',
            HINT = 'Templates are synced for WhatsApp Cloud channels whose config has waba_id and access_token.';
    END IF;
    IF ch.config->>'waba_id' !~ '^[0-9A-Za-z_]{1,64}$' THEN
        RAISE EXCEPTION 'malformed waba_id "%"', left(ch.config->>'waba_id', 64) USING ERRCODE = '22P02';
    END IF;
    RETURN ventros.enqueue_http_request(ventros.template_sync_url(ch), 'GET', ventros.graph_headers(ch, false), NULL,
                                        'template.sync', ch.id, retry_policy => 'graph');
END
$$;
COMMENT ON FUNCTION ventros.sync_whatsapp_templates(uuid) IS
    'Queues the sync of a WhatsApp Cloud channel''s templates from GET /<ver>/<waba_id>/message_templates (purpose template.sync); returns the request id';

-- The template.sync handler: upserts every listed template, follows the
-- paging cursor, and -- when the whole listing fitted in one page -- deletes
-- the channel's templates Meta no longer lists.
CREATE FUNCTION ventros.handle_template_sync(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb := ventros.json_body(r.response_body);
    ch ventros.channels;
    t jsonb;
    seen uuid[] := '{}';
    gone uuid;
BEGIN
    IF r.status <> 'succeeded' THEN
        RETURN;     -- the request keeps its error (http_requests.last_error); nothing changes
    END IF;
    IF jsonb_typeof(answer->'data') <> 'array' THEN
        RAISE EXCEPTION 'message_templates answer has no data array' USING ERRCODE = '22P02';
    END IF;
    SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = r.correlation_id AND c.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    FOR t IN SELECT * FROM jsonb_array_elements(answer->'data') LOOP
        seen := seen || (ventros.upsert_whatsapp_template(ch.id, t->>'name', t->>'language', t->>'status',
                                                          coalesce(t->'components', '[]'), t->>'category', t->>'id',
                                                          t->>'parameter_format')).id;
    END LOOP;
    IF answer->'paging' ? 'next' AND answer->'paging'->'cursors'->>'after' IS NOT NULL THEN
        PERFORM ventros.enqueue_http_request(ventros.template_sync_url(ch, answer->'paging'->'cursors'->>'after'), 'GET',
                                             r.headers, NULL, 'template.sync', ch.id, retry_policy => r.retry_policy);
    ELSIF r.url !~ '[?&]after=' THEN
        FOR gone IN SELECT x.id FROM ventros.whatsapp_templates x
                     WHERE x.tenant_id = r.tenant_id AND x.channel_id = ch.id AND x.deleted_at IS NULL
                       AND x.id <> ALL (seen) LOOP
            PERFORM ventros.delete_whatsapp_template(gone);
        END LOOP;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_template_sync(ventros.http_requests) IS
    'Completion handler of template.sync: upserts the listed templates, queues the next page, and deletes templates no longer listed when the listing had one page';

SELECT ventros.register_http_request_handler('template.sync', 'ventros.handle_template_sync(ventros.http_requests)');

-- ---- sending a template ------------------------------------------------------

-- The distinct placeholders {{1}}, {{name}} of a template text, in order of first use.
CREATE FUNCTION ventros.template_placeholders(txt text) RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(p ORDER BY first), '{}')
      FROM (SELECT m[1] AS p, min(n) AS first
              FROM regexp_matches(coalesce(txt, ''), '\{\{\s*([A-Za-z0-9_]+)\s*\}\}', 'g') WITH ORDINALITY AS x(m, n)
             GROUP BY m[1]) s
$$;
COMMENT ON FUNCTION ventros.template_placeholders(text) IS 'The distinct {{n}} / {{name}} placeholders of a template text';

-- Validates the components of a template send against the stored template
-- and returns {"text": the body with its variables, "template": {name,
-- language, components}} for send_message.
-- A component given with as many parameters as its template has variables.
CREATE FUNCTION ventros.require_template_params(template_name text, component text, want integer, params jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(jsonb_array_length(params), 0) <> want THEN
        RAISE EXCEPTION 'template % % expects % parameter(s), got %', template_name, component, want,
                coalesce(jsonb_array_length(params), 0)
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_template_params(text, text, integer, jsonb) IS
    'Refuses (22023) the parameters of a template component when they are not as many as its variables';

CREATE FUNCTION ventros.prepare_template_message(channel_id uuid, template_name text, template_language text,
                                                 template_components jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    tpl ventros.whatsapp_templates;
    matches integer;
    c jsonb;
    given jsonb := coalesce(template_components, '[]');
    used integer[] := '{}';
    idx integer;
    want integer;
    what text;
    fmt text;
    params jsonb;
    body_text text;
    b jsonb;
    b_index integer;
    body_params jsonb := '[]';
    p text;
    pos integer;
BEGIN
    IF jsonb_typeof(given) <> 'array' THEN
        RAISE EXCEPTION 'template components must be a JSON array' USING ERRCODE = '22023';
    END IF;
    SELECT count(*) INTO matches FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = prepare_template_message.channel_id AND t.name = template_name
       AND (template_language IS NULL OR t.language = template_language) AND t.deleted_at IS NULL;
    IF matches = 0 THEN
        RAISE EXCEPTION 'WhatsApp template % (%) not found on channel %', template_name, coalesce(template_language, 'any language'),
                channel_id
            USING ERRCODE = 'P0002', HINT = 'Sync the channel''s templates (ventros.sync_whatsapp_templates).';
    ELSIF matches > 1 THEN
        RAISE EXCEPTION 'WhatsApp template % exists in % languages', template_name, matches USING ERRCODE = '22023',
            HINT = 'Pass template_language.';
    END IF;
    SELECT * INTO tpl FROM ventros.whatsapp_templates t
     WHERE t.tenant_id = tenant AND t.channel_id = prepare_template_message.channel_id AND t.name = template_name
       AND (template_language IS NULL OR t.language = template_language) AND t.deleted_at IS NULL;
    IF tpl.status <> 'APPROVED' THEN
        RAISE EXCEPTION 'WhatsApp template % (%) is %', tpl.name, tpl.language, lower(tpl.status) USING ERRCODE = '22023',
            HINT = 'Only approved templates are sent.';
    END IF;
    -- Each component the template defines with variables must be given once,
    -- with exactly its number of parameters; nothing else may be given.
    FOR c IN SELECT * FROM jsonb_array_elements(tpl.components) LOOP
        CASE upper(c->>'type')
            WHEN 'HEADER' THEN
                fmt := upper(coalesce(c->>'format', 'TEXT'));
                want := CASE WHEN fmt = 'TEXT' THEN cardinality(ventros.template_placeholders(c->>'text'))
                             WHEN fmt IN ('IMAGE', 'VIDEO', 'DOCUMENT') THEN 1 ELSE 0 END;
                what := 'header';
                SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                 WHERE lower(x.e->>'type') = 'header';
                IF fmt IN ('IMAGE', 'VIDEO', 'DOCUMENT') AND params IS NOT NULL
                   AND (lower(params->0->>'type') IS DISTINCT FROM lower(fmt)
                        OR NOT (params->0->lower(fmt) ? 'link' OR params->0->lower(fmt) ? 'id')) THEN
                    RAISE EXCEPTION 'template % header needs a % parameter with a link or id', tpl.name, lower(fmt)
                        USING ERRCODE = '22023';
                END IF;
            WHEN 'BODY' THEN
                body_text := c->>'text';
                want := cardinality(ventros.template_placeholders(body_text));
                what := 'body';
                SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                 WHERE lower(x.e->>'type') = 'body';
                body_params := coalesce(params, '[]');
            WHEN 'BUTTONS' THEN
                FOR b, b_index IN SELECT x.e, x.n - 1 FROM jsonb_array_elements(c->'buttons') WITH ORDINALITY x(e, n) LOOP
                    want := CASE upper(b->>'type') WHEN 'URL' THEN cardinality(ventros.template_placeholders(b->>'url'))
                                                   WHEN 'COPY_CODE' THEN 1 ELSE 0 END;
                    what := format('button %s', b_index);
                    idx := NULL;
                    params := NULL;
                    SELECT x.n - 1, x.e->'parameters' INTO idx, params FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
                     WHERE lower(x.e->>'type') = 'button' AND (x.e->>'index')::integer = b_index;
                    PERFORM ventros.require_template_params(tpl.name, what, want, params);
                    IF idx IS NOT NULL THEN
                        used := used || idx;
                    END IF;
                END LOOP;
                CONTINUE;
            ELSE
                CONTINUE;   -- FOOTER and others take no parameters
        END CASE;
        PERFORM ventros.require_template_params(tpl.name, what, want, params);
        IF idx IS NOT NULL THEN
            used := used || idx;
        END IF;
        idx := NULL;
        params := NULL;
    END LOOP;
    SELECT min(x.n - 1) INTO idx FROM jsonb_array_elements(given) WITH ORDINALITY x(e, n)
     WHERE NOT ((x.n - 1)::integer = ANY (used));
    IF idx IS NOT NULL THEN
        RAISE EXCEPTION 'template % has no variables for component %', tpl.name, given->idx USING ERRCODE = '22023';
    END IF;
    -- The text kept on the message: the body with its variables filled in.
    pos := 0;
    FOREACH p IN ARRAY ventros.template_placeholders(body_text) LOOP
        body_text := replace(body_text, '{{' || p || '}}',
                             coalesce((SELECT e->>'text' FROM jsonb_array_elements(body_params) e WHERE e->>'parameter_name' = p),
                                      body_params->(CASE WHEN p ~ '^[0-9]+$' THEN p::integer - 1 ELSE pos END)->>'text',
                                      ''));
        pos := pos + 1;
    END LOOP;
    RETURN jsonb_build_object('text', coalesce(nullif(body_text, ''), tpl.name),
                              'template', jsonb_build_object('name', tpl.name, 'language', tpl.language,
                                                             'components', given));
END
$$;
COMMENT ON FUNCTION ventros.prepare_template_message(uuid, text, text, jsonb) IS
    'Validates a template send (template exists for the channel and language, APPROVED, each component with as many parameters as the template has variables, media headers with a link or id) and returns {text, template} for send_message';

GRANT EXECUTE ON FUNCTION ventros.list_whatsapp_templates(uuid), ventros.template_placeholders(text),
    ventros.require_template_params(text, text, integer, jsonb), ventros.prepare_template_message(uuid, text, text, jsonb), ventros.template_sync_url(ventros.channels, text)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.upsert_whatsapp_template(uuid, text, text, text, jsonb, text, text, text),
    ventros.delete_whatsapp_template(uuid, integer), ventros.sync_whatsapp_templates(uuid) TO ventros_admin;

-- Direct writes of whatsapp_template by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('whatsapp_template', inserts => '{upsert_whatsapp_template,sync_whatsapp_templates}', updates => '{upsert_whatsapp_template}', deletes => '{delete_whatsapp_template}',
    direct => '{DELETE}');
