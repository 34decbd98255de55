-- Aggregate 19, Tracking (CRM): ad and campaign attribution of a contact
-- (Meta click-to-WhatsApp, UTM parameters), optionally enriched from the ad
-- platform (tracking_enrichments, 1:1, a child aggregate).  conversion_data
-- is encrypted like a credential (ventros.encrypt_secret) and redacted from
-- events.  A tracking from an ad also records contact.ad_conversion_tracked
-- on the contact.  The "invisible code" carries a tracking id inside
-- outbound text as zero-width characters (ventros.encode_tracking_code /
-- decode_tracking_code): each hex digit of the id becomes three ternary
-- digits (U+200B, U+200C, U+200D) between two U+2060 word joiners.

CREATE TABLE ventros.trackings (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    contact_id      uuid        NOT NULL,
    session_id      uuid,
    project_id      uuid        NOT NULL,
    source          text        NOT NULL,
    platform        text        NOT NULL,
    campaign        text,
    ad_id           text,
    ad_url          text,
    click_id        text,
    conversion_data bytea,
    utm_source      text,
    utm_medium      text,
    utm_campaign    text,
    utm_term        text,
    utm_content     text,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id) ON DELETE SET NULL (session_id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT trackings_source_known CHECK (source IN ('meta_ads', 'google_ads', 'tiktok_ads', 'linkedin', 'organic', 'direct',
                                                        'referral', 'other')),
    CONSTRAINT trackings_platform_known CHECK (platform IN ('instagram', 'facebook', 'google', 'tiktok', 'linkedin', 'whatsapp', 'other')),
    CONSTRAINT trackings_ad_url CHECK (ad_url ~ '^https?://[^\s]+$' AND length(ad_url) <= 2048),
    CONSTRAINT trackings_text_sizes CHECK (length(campaign) <= 200 AND length(ad_id) <= 200 AND length(click_id) <= 500
        AND length(utm_source) <= 200 AND length(utm_medium) <= 200 AND length(utm_campaign) <= 200
        AND length(utm_term) <= 200 AND length(utm_content) <= 200),
    CONSTRAINT trackings_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX trackings_unique_click ON ventros.trackings (tenant_id, click_id) WHERE click_id IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX trackings_by_contact ON ventros.trackings (tenant_id, contact_id, created_at);
CREATE INDEX trackings_by_campaign ON ventros.trackings (tenant_id, source, campaign) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.trackings IS 'Tracking: ad and campaign attribution of a contact';

CREATE TABLE ventros.tracking_enrichments (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    tracking_id      uuid        NOT NULL,
    source           text        NOT NULL,
    ad_account_id    text,
    ad_account_name  text,
    campaign_id      text,
    campaign_name    text,
    adset_id         text,
    adset_name       text,
    ad_id            text,
    ad_name          text,
    ad_creative_id   text,
    creative_type    text,
    creative_format  text,
    creative_body    text,
    creative_title   text,
    creative_url     text,
    targeting_data   jsonb,
    audience_name    text,
    impressions      bigint,
    clicks           bigint,
    spend            numeric,
    ctr              numeric,
    cpc              numeric,
    raw_api_data     jsonb,
    enriched_at      timestamptz NOT NULL DEFAULT now(),
    enrichment_type  text        NOT NULL DEFAULT 'automatic',
    api_version      text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, tracking_id) REFERENCES ventros.trackings (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT tracking_enrichments_creative_type CHECK (creative_type IN ('image', 'video', 'carousel', 'collection')),
    CONSTRAINT tracking_enrichments_creative_format CHECK (creative_format IN ('stories', 'feed', 'reels')),
    CONSTRAINT tracking_enrichments_type_known CHECK (enrichment_type IN ('automatic', 'manual', 'scheduled')),
    CONSTRAINT tracking_enrichments_metrics CHECK (impressions >= 0 AND clicks >= 0 AND spend >= 0 AND ctr >= 0 AND cpc >= 0)
);
CREATE UNIQUE INDEX tracking_enrichments_one ON ventros.tracking_enrichments (tenant_id, tracking_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.tracking_enrichments IS 'Ad-platform data of a tracking (1:1)';

SELECT ventros.register_aggregate('tracking', 'ventros.trackings', 'crm',
    redacted_columns => '{conversion_data}', description => 'Ad and campaign attribution of a contact');
SELECT ventros.register_aggregate('tracking_enrichment', 'ventros.tracking_enrichments', 'crm',
    redacted_columns => '{raw_api_data}', description => 'Ad-platform data of a tracking (child of tracking)');
SELECT ventros.register_event_type('tracking.enriched', 'A tracking was enriched with ad-platform data.');
SELECT ventros.register_event_type('contact.ad_conversion_tracked', 'A contact arrived from an ad (click-to-message referral).');

CREATE FUNCTION ventros.tracking_enums() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        "sources": ["meta_ads", "google_ads", "tiktok_ads", "linkedin", "organic", "direct", "referral", "other"],
        "platforms": ["instagram", "facebook", "google", "tiktok", "linkedin", "whatsapp", "other"],
        "utm_platforms": {"mkt-direto": {"sources": ["email", "sms", "whatsapp"], "mediums": ["direct", "crm"]},
                          "meta": {"sources": ["facebook", "instagram", "messenger", "whatsapp"], "mediums": ["cpc", "paid_social", "social"]},
                          "google": {"sources": ["google", "youtube"], "mediums": ["cpc", "display", "video"]},
                          "tiktok": {"sources": ["tiktok"], "mediums": ["cpc", "paid_social"]},
                          "linkedin": {"sources": ["linkedin"], "mediums": ["cpc", "paid_social"]},
                          "offline": {"sources": ["event", "print", "radio", "tv"], "mediums": ["offline"]},
                          "other": {"sources": [], "mediums": []}},
        "creative_types": ["image", "video", "carousel", "collection"],
        "creative_formats": ["stories", "feed", "reels"],
        "enrichment_types": ["automatic", "manual", "scheduled"]
    }'::jsonb
$$;
COMMENT ON FUNCTION ventros.tracking_enums() IS 'The tracking catalogue: sources, platforms, UTM platforms with their sources and mediums, creative kinds';

CREATE FUNCTION ventros.create_tracking(contact_id uuid, source text, platform text, campaign text DEFAULT NULL,
                                        ad_id text DEFAULT NULL, ad_url text DEFAULT NULL, click_id text DEFAULT NULL,
                                        utm jsonb DEFAULT '{}', session_id uuid DEFAULT NULL,
                                        conversion_data text DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS ventros.trackings
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.contacts := ventros.get_contact(contact_id);
    result ventros.trackings;
BEGIN
    PERFORM ventros.require_value(source, ARRAY(SELECT jsonb_array_elements_text(ventros.tracking_enums()->'sources')), 'tracking source');
    PERFORM ventros.require_value(platform, ARRAY(SELECT jsonb_array_elements_text(ventros.tracking_enums()->'platforms')), 'tracking platform');
    PERFORM ventros.require_json(utm, 'object', 'utm parameters');
    INSERT INTO ventros.trackings (contact_id, session_id, project_id, source, platform, campaign, ad_id, ad_url, click_id,
                                   conversion_data, utm_source, utm_medium, utm_campaign, utm_term, utm_content, metadata)
    VALUES (contact_id, session_id, c.project_id, source, platform, campaign, ad_id, ad_url, click_id,
            CASE WHEN conversion_data IS NOT NULL THEN ventros.encrypt_secret(conversion_data) END,
            utm->>'utm_source', utm->>'utm_medium', utm->>'utm_campaign', utm->>'utm_term', utm->>'utm_content',
            coalesce(ventros.require_json(metadata, 'object', 'tracking metadata'), '{}'))
    RETURNING * INTO result;
    IF source IN ('meta_ads', 'google_ads', 'tiktok_ads') THEN
        PERFORM ventros.emit('contact.ad_conversion_tracked', 'contact', contact_id,
            jsonb_build_object('tracking_id', result.id, 'source', source, 'platform', platform, 'campaign', campaign,
                               'ad_id', ad_id, 'click_id', click_id), c.version);
        PERFORM ventros.journey_converted(contact_id, 'tracking', NULL, now());
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'click id % is tracked already', click_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_tracking(uuid, text, text, text, text, text, text, jsonb, uuid, text, jsonb) IS
    'Records a contact''s attribution (click id unique, 23505); emits tracking.created and, from an ad, contact.ad_conversion_tracked (a conversion of the contact''s campaigns, ventros.journey_converted)';

CREATE FUNCTION ventros.update_tracking(tracking_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.trackings
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.trackings, 'tracking', tracking_id, expected_version, changes,
        ARRAY['session_id', 'campaign', 'ad_id', 'ad_url', 'click_id', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term',
              'utm_content', 'metadata'])
$$;
COMMENT ON FUNCTION ventros.update_tracking(uuid, integer, jsonb) IS 'Sets campaign, ad, click id, UTM, session or metadata; emits tracking.updated';

CREATE FUNCTION ventros.enrich_tracking(tracking_id uuid, source text, data jsonb, enrichment_type text DEFAULT 'automatic')
RETURNS ventros.tracking_enrichments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t ventros.trackings;
    existing ventros.tracking_enrichments;
    result ventros.tracking_enrichments;
    unknown text;
    fields CONSTANT text[] := ARRAY['ad_account_id', 'ad_account_name', 'campaign_id', 'campaign_name', 'adset_id', 'adset_name',
        'ad_id', 'ad_name', 'ad_creative_id', 'creative_type', 'creative_format', 'creative_body', 'creative_title',
        'creative_url', 'targeting_data', 'audience_name', 'impressions', 'clicks', 'spend', 'ctr', 'cpc', 'raw_api_data',
        'api_version'];
BEGIN
    SELECT * INTO t FROM ventros.trackings x WHERE x.tenant_id = ventros.require_tenant() AND x.id = tracking_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('tracking', tracking_id);
    END IF;
    PERFORM ventros.require_json(data, 'object', 'enrichment data');
    SELECT k INTO unknown FROM jsonb_object_keys(coalesce(data, '{}')) k WHERE NOT k = ANY (fields) LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown tracking enrichment field "%"', left(unknown, 64)
            USING ERRCODE = '22023', HINT = format('Fields: %s.', array_to_string(fields, ', '));
    END IF;
    SELECT * INTO existing FROM ventros.tracking_enrichments e WHERE e.tenant_id = t.tenant_id AND e.tracking_id = t.id;
    IF existing.id IS NULL THEN
        EXECUTE format('INSERT INTO ventros.tracking_enrichments (tracking_id, source, enrichment_type, %s) '
                       'SELECT $1, $2, $3, %s FROM jsonb_populate_record(NULL::ventros.tracking_enrichments, $4) r RETURNING *',
                       (SELECT string_agg(format('%I', f), ', ') FROM unnest(fields) f),
                       (SELECT string_agg(format('r.%I', f), ', ') FROM unnest(fields) f))
            INTO result USING t.id, source, coalesce(enrichment_type, 'automatic'), coalesce(data, '{}');
    ELSE
        result := ventros.apply_changes(NULL::ventros.tracking_enrichments, 'tracking enrichment', existing.id, existing.version,
            coalesce(data, '{}') || jsonb_build_object('enriched_at', now(), 'source', source,
                                                       'enrichment_type', coalesce(enrichment_type, 'automatic')),
            fields || ARRAY['enriched_at', 'source', 'enrichment_type']);
    END IF;
    PERFORM ventros.emit('tracking.enriched', 'tracking', t.id,
        jsonb_build_object('enrichment_id', result.id, 'source', source, 'campaign_name', result.campaign_name,
                           'ad_name', result.ad_name), t.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.enrich_tracking(uuid, text, jsonb, text) IS
    'Creates or refreshes the 1:1 ad-platform data of a tracking (unknown fields: 22023); emits tracking_enrichment.created / .updated and tracking.enriched';

CREATE FUNCTION ventros.encode_tracking_code(tracking_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.chr(8288) || pg_catalog.string_agg(
               pg_catalog.chr(8203 + (d / 9)) || pg_catalog.chr(8203 + (d / 3) % 3) || pg_catalog.chr(8203 + d % 3), '' ORDER BY i)
           || pg_catalog.chr(8288)
    FROM (SELECT i, ('x' || pg_catalog.substr(pg_catalog.replace(tracking_id::text, '-', ''), i, 1))::bit(4)::integer AS d
          FROM pg_catalog.generate_series(1, 32) i) digits
$$;
COMMENT ON FUNCTION ventros.encode_tracking_code(uuid) IS
    'The invisible code of a tracking id: 96 zero-width characters between two U+2060 word joiners, appended to outbound text';

CREATE FUNCTION ventros.decode_tracking_code(text text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    code text := substring(text FROM chr(8288) || '([' || chr(8203) || chr(8204) || chr(8205) || ']{96})' || chr(8288));
    hex text := '';
BEGIN
    IF code IS NULL THEN
        RETURN NULL;
    END IF;
    FOR i IN 0 .. 31 LOOP
        hex := hex || to_hex((ascii(substr(code, i * 3 + 1, 1)) - 8203) * 9 + (ascii(substr(code, i * 3 + 2, 1)) - 8203) * 3
                             + (ascii(substr(code, i * 3 + 3, 1)) - 8203));
    END LOOP;
    RETURN hex::uuid;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.decode_tracking_code(text) IS 'The tracking id hidden in a text by encode_tracking_code, or NULL';

CREATE FUNCTION ventros.get_tracking(tracking_id uuid) RETURNS ventros.trackings
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.trackings, 'tracking', tracking_id) $$;
COMMENT ON FUNCTION ventros.get_tracking(uuid) IS 'A live tracking, or P0002';

CREATE FUNCTION ventros.list_trackings(contact_id uuid DEFAULT NULL, session_id uuid DEFAULT NULL, source text DEFAULT NULL,
                                       campaign text DEFAULT NULL, click_id text DEFAULT NULL,
                                       after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.trackings
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.* FROM ventros.trackings t
    WHERE t.tenant_id = ventros.require_tenant()
      AND (list_trackings.contact_id IS NULL OR t.contact_id = list_trackings.contact_id)
      AND (list_trackings.session_id IS NULL OR t.session_id = list_trackings.session_id)
      AND (list_trackings.source IS NULL OR t.source = list_trackings.source)
      AND (list_trackings.campaign IS NULL OR t.campaign = list_trackings.campaign)
      AND (list_trackings.click_id IS NULL OR t.click_id = list_trackings.click_id)
      AND (after_id IS NULL OR t.id > after_id)
    ORDER BY t.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_trackings(uuid, uuid, text, text, text, uuid, integer) IS
    'Trackings by contact, session, source, campaign or click id; keyset paging on id';

GRANT EXECUTE ON FUNCTION ventros.tracking_enums(), ventros.encode_tracking_code(uuid), ventros.decode_tracking_code(text)
    TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.get_tracking(uuid), ventros.list_trackings(uuid, uuid, text, text, text, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.encrypt_secret(text) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.create_tracking(uuid, text, text, text, text, text, text, jsonb, uuid, text, jsonb),
    ventros.update_tracking(uuid, integer, jsonb), ventros.enrich_tracking(uuid, text, jsonb, text)
    TO ventros_agent;

-- Direct writes of tracking, tracking_enrichment by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('tracking', inserts => '{create_tracking}', updates => '{update_tracking}', deletes => '{}',
    direct => '{UPDATE}',
    update_columns => '{session_id,campaign,ad_id,ad_url,click_id,utm_source,utm_medium,utm_campaign,utm_term,utm_content,metadata}');
SELECT ventros.register_writes('tracking_enrichment', inserts => '{enrich_tracking}', updates => '{enrich_tracking}', deletes => '{}');
