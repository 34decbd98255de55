-- Channel tokens on the wire, never on the row (the send mechanism:
-- sql/90_channel_send.sql).
-- A request to a provider stored in ventros.http_requests (readable and
-- writable by the tenant's administrators) names the channel secret it
-- needs instead of carrying it: a header value holds a reference,
-- {channel_secret:<channel id>:<key>} (ventros.channel_secret_ref), which
-- the dispatcher replaces by the secret for each attempt, at send time
-- (ventros.channel_request_headers, the preparer of every purpose that
-- calls a provider with a channel's token: message.send, media.lookup,
-- media.download, template.sync, contact.profile).  As Stripe's key
-- (ventros.stripe_request_headers).  The reference is no secret; since an
-- administrator may write a request (or change its URL), a secret is put
-- only into a request to its channel's own provider: a URL whose origin is
-- the channel's WAHA base_url, or for Meta channels its Graph root or
-- Meta's media host (lookaside.fbsbx.com, the Cloud API media URLs);
-- elsewhere the reference is sent empty.  A rotated token applies to the
-- requests already queued.

CREATE FUNCTION ventros.channel_secret_ref(ch ventros.channels, key text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '{channel_secret:' || ch.id || ':' || key || '}'
$$;
COMMENT ON FUNCTION ventros.channel_secret_ref(ventros.channels, text) IS
    'The reference a stored provider request holds instead of a channel secret ({channel_secret:<channel id>:<key>}); the dispatcher puts the secret in its place per attempt (ventros.channel_request_headers)';
-- no secret: the providers' request builders (granted, as ventros.graph_headers) call it
GRANT EXECUTE ON FUNCTION ventros.channel_secret_ref(ventros.channels, text) TO ventros_viewer;

-- The origins a channel's secrets may be sent to.
CREATE FUNCTION ventros.channel_secret_origins(ch ventros.channels) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT p.provider FROM ventros.channel_providers p WHERE p.channel_type = ch.type) = 'waha' THEN
        RETURN ARRAY[lower(substring(ch.config->>'base_url' FROM '^https?://[^/?#]+'))];
    END IF;
    RETURN ARRAY[lower(substring(ventros.graph_base(ch) FROM '^https?://[^/?#]+')), 'https://lookaside.fbsbx.com'];
END
$$;
COMMENT ON FUNCTION ventros.channel_secret_origins(ventros.channels) IS
    'The URL origins a channel''s secrets may be sent to: its WAHA base_url, or its Graph root and Meta''s media host';

CREATE FUNCTION ventros.channel_request_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
    ref text[];
    ch ventros.channels;
    secret text;
    value text;
    result jsonb := r.headers;
    origin text := lower(substring(r.url FROM '^https?://[^/?#]+'));
BEGIN
    FOR h IN SELECT x.key, x.value FROM jsonb_each_text(r.headers) x WHERE x.value LIKE '%{channel\_secret:%' LOOP
        value := h.value;
        FOR ref IN SELECT regexp_matches(h.value, '\{channel_secret:([0-9a-f-]{36}):([a-z_]+)\}', 'g') LOOP
            secret := NULL;
            SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = r.tenant_id AND c.id = ref[1]::uuid;
            IF FOUND AND ref[2] = ANY (ventros.channel_secret_keys()) AND origin = ANY (ventros.channel_secret_origins(ch)) THEN
                secret := (ventros.channel_with_secrets(ch)).config->>ref[2];
            END IF;
            value := replace(value, '{channel_secret:' || ref[1] || ':' || ref[2] || '}', coalesce(secret, ''));
        END LOOP;
        result := result || jsonb_build_object(h.key, value);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.channel_request_headers(ventros.http_requests) IS
    'Dispatcher: the headers of an attempt of a provider request, each channel secret reference replaced by the secret when the URL is on the channel''s provider (ventros.channel_secret_origins), else by nothing; the stored row never holds the secret';
REVOKE EXECUTE ON FUNCTION ventros.channel_request_headers(ventros.http_requests) FROM PUBLIC;

SELECT ventros.register_http_request_preparer(p, 'ventros.channel_request_headers(ventros.http_requests)')
  FROM unnest(ARRAY['message.send', 'media.lookup', 'media.download', 'template.sync', 'contact.profile']) p;
