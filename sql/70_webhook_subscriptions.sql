-- Aggregate 20, WebhookSubscription (CRM): a tenant URL that receives the
-- selected domain events and contact timeline events.
--
-- SSRF: the URL must be http(s), carry no user info, and not name a literal
-- loopback, private, link-local, CGNAT, multicast or unspecified address, nor
-- localhost.  A host name that resolves to such an address cannot be seen
-- from SQL; the sender re-checks the resolved address at delivery time.
-- The operator allow-list ventros.http_allow_hosts (the dispatcher's, see
-- src/ssrf.c) also admits its hosts and literal addresses here: that is how
-- tests subscribe loopback receivers.
-- Subscriptions may not select webhook_subscription.* events: recording a
-- delivery changes the subscription, which would feed back into itself.
-- Events are names from the catalogue, "<aggregate>.*" or "*".
-- Deliveries, signatures and retries: sql/92_webhook_deliveries.sql.

CREATE FUNCTION ventros.is_public_http_url(url text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
    host text;
    address inet;
BEGIN
    parts := regexp_match(url, '^https?://([^/?#@\s]+)([/?#][^\s]*)?$', 'i');
    IF parts IS NULL OR length(url) > 2048 THEN
        RETURN false;           -- not http(s), user info, spaces, or too long
    END IF;
    host := lower(parts[1]);
    IF host ~ '^\[.*\](:[0-9]{1,5})?$' THEN
        host := substring(host FROM '^\[(.*)\]');
    ELSE
        host := regexp_replace(host, ':[0-9]{1,5}$', '');
        IF host ~ ':' THEN
            RETURN false;       -- a bad port
        END IF;
    END IF;
    host := rtrim(host, '.');
    IF host = '' OR host = 'localhost' OR host LIKE '%.localhost' OR host LIKE '%.local' OR host LIKE '%.internal' THEN
        RETURN false;
    END IF;
    -- Decimal, octal or hex single-number hosts reach loopback on many stacks.
    IF host ~ '^(0x[0-9a-f]+|[0-9]+)$' THEN
        RETURN false;
    END IF;
    IF host ~ '^[0-9.]+$' OR host ~ ':' THEN
        BEGIN
            address := host::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN false;
        END;
        IF family(address) = 6 AND address <<= '::ffff:0:0/96'::inet THEN
            address := regexp_replace(host(address), '^::ffff:', '')::inet;
        END IF;
        RETURN NOT (address <<= ANY (ARRAY['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8',
                                           '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.168.0.0/16',
                                           '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4',
                                           '::/128', '::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8']::inet[]));
    END IF;
    RETURN host ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$';
END
$$;
COMMENT ON FUNCTION ventros.is_public_http_url(text) IS
    'True for an http(s) URL without user info whose host is not localhost or a literal private, loopback or link-local address';

-- The literal host of the URL is named by the operator allow-list: a host
-- name (exact or "*.suffix") or an address inside one of its CIDRs.  Names
-- are not resolved here (the dispatcher checks resolved addresses).
CREATE FUNCTION ventros.is_allow_listed_url(url text) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
    host text;
    entry text;
    address inet;
BEGIN
    parts := regexp_match(url, '^https?://([^/?#@\s]+)([/?#][^\s]*)?$', 'i');
    IF parts IS NULL OR length(url) > 2048 THEN
        RETURN false;
    END IF;
    host := lower(parts[1]);
    IF host ~ '^\[.*\](:[0-9]{1,5})?$' THEN
        host := substring(host FROM '^\[(.*)\]');
    ELSE
        host := regexp_replace(host, ':[0-9]{1,5}$', '');
    END IF;
    host := rtrim(host, '.');
    IF host ~ '^[0-9.]+$' OR host ~ ':' THEN
        BEGIN
            address := host::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN false;
        END;
    END IF;
    FOR entry IN SELECT lower(btrim(x)) FROM unnest(string_to_array(current_setting('ventros.http_allow_hosts', true), ',')) x
                 WHERE btrim(x) <> '' LOOP
        IF entry ~ '^[0-9.]+(/[0-9]{1,2})?$' OR entry ~ '^[0-9a-f:]*:[0-9a-f:.]*(/[0-9]{1,3})?$' THEN
            IF address IS NOT NULL AND family(address) = family(entry::inet) AND address <<= entry::inet THEN
                RETURN true;
            END IF;
        ELSIF entry LIKE '*.%' THEN
            IF right(host, length(entry) - 1) = substr(entry, 2) AND length(host) > length(entry) - 1 THEN
                RETURN true;
            END IF;
        ELSIF host = rtrim(entry, '.') THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;
COMMENT ON FUNCTION ventros.is_allow_listed_url(text) IS
    'True when the URL''s literal host is named by the operator allow-list ventros.http_allow_hosts (host names or CIDRs)';

-- A subscription URL: https to a public host, or any http(s) URL whose host
-- the operator allow-listed (channels.md 6.3, rule 1).
CREATE FUNCTION ventros.is_webhook_url_allowed(url text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((url ~* '^https://' AND ventros.is_public_http_url(url)) OR ventros.is_allow_listed_url(url), false)
$$;
COMMENT ON FUNCTION ventros.is_webhook_url_allowed(text) IS
    'True for an https URL to a public host, or an http(s) URL whose host is in ventros.http_allow_hosts';

-- The one rule for which events a subscription's patterns select.
CREATE FUNCTION ventros.webhook_event_matches(patterns text[], event_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT event_type NOT LIKE 'webhook\_subscription.%'
       AND EXISTS (SELECT 1 FROM unnest(patterns) p
                    WHERE p = event_type OR p = '*' OR (p LIKE '%.*' AND starts_with(event_type, left(p, -1))))
$$;
COMMENT ON FUNCTION ventros.webhook_event_matches(text[], text) IS
    'True when an event type is selected by subscription patterns (exact names, "<aggregate>.*", "*"); never webhook_subscription.*';

CREATE TABLE ventros.webhook_subscriptions (
    id                       uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                text        NOT NULL,
    version                  integer     NOT NULL DEFAULT 1,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    deleted_at               timestamptz,
    user_id                  uuid,
    project_id               uuid        NOT NULL,
    name                     text        NOT NULL,
    url                      text        NOT NULL,
    events                   text[]      NOT NULL,
    subscribe_contact_events boolean     NOT NULL DEFAULT false,
    contact_event_types      text[]      NOT NULL DEFAULT '{}',
    contact_event_categories text[]      NOT NULL DEFAULT '{}',
    active                   boolean     NOT NULL DEFAULT true,
    secret                   text,
    previous_secret          text,
    previous_secret_expires_at timestamptz,
    headers                  jsonb       NOT NULL DEFAULT '{}',
    retry_count              integer     NOT NULL DEFAULT 7,
    timeout_seconds          integer     NOT NULL DEFAULT 10,
    last_triggered_at        timestamptz,
    last_success_at          timestamptz,
    last_failure_at          timestamptz,
    success_count            integer     NOT NULL DEFAULT 0,
    failure_count            integer     NOT NULL DEFAULT 0,
    failing_since            timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT webhook_subscriptions_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT webhook_subscriptions_events_present CHECK (cardinality(events) > 0 OR subscribe_contact_events),
    CONSTRAINT webhook_subscriptions_events_distinct CHECK (ventros.is_distinct_array(events)),
    CONSTRAINT webhook_subscriptions_no_self_events CHECK (NOT events && ARRAY['webhook_subscription.created',
        'webhook_subscription.updated', 'webhook_subscription.activated', 'webhook_subscription.deactivated',
        'webhook_subscription.deleted']),
    CONSTRAINT webhook_subscriptions_categories_known CHECK (contact_event_categories <@ ARRAY['general', 'status',
        'pipeline', 'assignment', 'tag', 'note', 'session', 'custom_field', 'system', 'notification', 'tracking']),
    CONSTRAINT webhook_subscriptions_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT webhook_subscriptions_retry_range CHECK (retry_count BETWEEN 0 AND 10),
    CONSTRAINT webhook_subscriptions_timeout_range CHECK (timeout_seconds BETWEEN 1 AND 60),
    CONSTRAINT webhook_subscriptions_secret_size CHECK (length(secret) BETWEEN 16 AND 256 AND length(previous_secret) BETWEEN 16 AND 256),
    CONSTRAINT webhook_subscriptions_counters CHECK (success_count >= 0 AND failure_count >= 0)
);
CREATE INDEX webhook_subscriptions_by_event ON ventros.webhook_subscriptions USING gin (events) WHERE active AND deleted_at IS NULL;
COMMENT ON TABLE ventros.webhook_subscriptions IS 'WebhookSubscription: an outbound webhook for selected events';

-- The URL rule is a trigger, not a CHECK: it depends on the allow-list, and a
-- row must stay updatable (counters, deletion) after the allow-list shrinks.
CREATE FUNCTION ventros.check_webhook_url() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ventros.is_webhook_url_allowed(NEW.url) THEN
        RAISE EXCEPTION 'webhook URL "%" is not a public https URL', left(NEW.url, 200)
            USING ERRCODE = '23514', CONSTRAINT = 'webhook_subscriptions_url_public',
                  DETAIL = 'Plain http, loopback, private, link-local and localhost addresses are refused, as are URLs with user info.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.check_webhook_url() IS
    'Trigger: a new or changed subscription URL must be public (SSRF rules) or named by ventros.http_allow_hosts (23514)';
CREATE TRIGGER webhook_subscriptions_url_public BEFORE INSERT ON ventros.webhook_subscriptions
    FOR EACH ROW EXECUTE FUNCTION ventros.check_webhook_url();
CREATE TRIGGER webhook_subscriptions_url_changed BEFORE UPDATE OF url ON ventros.webhook_subscriptions
    FOR EACH ROW WHEN (OLD.url IS DISTINCT FROM NEW.url) EXECUTE FUNCTION ventros.check_webhook_url();

SELECT ventros.register_aggregate('webhook_subscription', 'ventros.webhook_subscriptions', 'crm',
    state_column => 'active',
    transitions => '[
        {"from": null, "to": "true"},
        {"from": null, "to": "false"},
        {"from": "false", "to": "true", "event": "webhook_subscription.activated", "description": "A webhook subscription was activated."},
        {"from": "true", "to": "false", "event": "webhook_subscription.deactivated", "description": "A webhook subscription was deactivated."}
    ]',
    redacted_columns => '{secret, previous_secret, headers}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'An outbound webhook');

-- Delivery statistics are quiet columns: recording a delivery neither moves
-- the version nor emits an event.
SELECT ventros.register_quiet_columns('webhook_subscription', '{last_triggered_at,last_success_at,last_failure_at,success_count,failure_count,failing_since}');

-- Normalises and validates a change set of a subscription (URL and events).
CREATE FUNCTION ventros.check_webhook_changes(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    unknown text;
BEGIN
    IF jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN
        RETURN changes;
    END IF;
    IF changes ? 'url' AND NOT ventros.is_webhook_url_allowed(changes->>'url') THEN
        RAISE EXCEPTION 'webhook URL "%" is not a public https URL', left(changes->>'url', 200)
            USING ERRCODE = '22023',
                  DETAIL = 'Plain http, loopback, private, link-local and localhost addresses are refused, as are URLs with user info.',
                  HINT = 'Operators allow internal receivers with ventros.http_allow_hosts.';
    END IF;
    IF changes ? 'headers' AND jsonb_typeof(changes->'headers') = 'object' THEN
        SELECT h.key INTO unknown FROM jsonb_each(changes->'headers') h
         WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$'
            OR (h.value #>> '{}') ~ '[\r\n]' OR length(h.value #>> '{}') > 4096
            OR lower(h.key) IN ('content-type', 'content-length', 'user-agent', 'host', 'transfer-encoding',
                                'connection', 'expect') OR lower(h.key) LIKE 'x-ventros-%'
         LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'webhook header "%" is not allowed', left(unknown, 100)
                USING ERRCODE = '22023',
                      DETAIL = 'Custom headers are HTTP tokens with string values without line breaks; Content-Type, User-Agent, Host and X-Ventros-* are set by Ventros.';
        END IF;
    END IF;
    IF changes ? 'events' THEN
        IF jsonb_typeof(changes->'events') <> 'array' THEN
            RAISE EXCEPTION 'webhook events must be a JSON array of event types' USING ERRCODE = '22023';
        END IF;
        SELECT e INTO unknown FROM jsonb_array_elements_text(changes->'events') e
        WHERE NOT (e = '*' OR EXISTS (SELECT 1 FROM ventros.event_types t WHERE t.event_type = e)
                   OR (e ~ '^[a-z][a-z0-9_]*\.\*$'
                       AND EXISTS (SELECT 1 FROM ventros.event_types t WHERE t.aggregate = left(e, -2)))
                   -- the tenant's own events (ventros.emit_custom_event)
                   OR e = 'custom.*' OR e ~ '^custom\.[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$')
           OR e LIKE 'webhook\_subscription.%'
        LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'webhook cannot subscribe to "%"', left(unknown, 120)
                USING ERRCODE = '22023', HINT = 'Pick event types from ventros.list_webhook_event_types().';
        END IF;
    END IF;
    RETURN changes;
END
$$;
COMMENT ON FUNCTION ventros.check_webhook_changes(jsonb) IS
    'Validates the URL (SSRF rules) and the event types of a webhook subscription change set (22023)';

CREATE FUNCTION ventros.create_webhook_subscription(name text, url text, events text[],
                                                    project_id uuid DEFAULT NULL, secret text DEFAULT NULL,
                                                    headers jsonb DEFAULT '{}',
                                                    subscribe_contact_events boolean DEFAULT false,
                                                    contact_event_types text[] DEFAULT '{}',
                                                    contact_event_categories text[] DEFAULT '{}')
RETURNS ventros.webhook_subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_subscriptions;
BEGIN
    IF name IS NULL OR url IS NULL OR events IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % must not be null',
            CASE WHEN name IS NULL THEN 'name' WHEN url IS NULL THEN 'url' ELSE 'events' END USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.check_webhook_changes(jsonb_build_object('url', url, 'events', to_jsonb(events), 'headers', headers));
    IF cardinality(events) = 0 AND NOT coalesce(subscribe_contact_events, false) THEN
        RAISE EXCEPTION 'a webhook subscription needs at least one event' USING ERRCODE = '23514';
    END IF;
    INSERT INTO ventros.webhook_subscriptions (project_id, name, url, events, secret, headers, subscribe_contact_events,
                                               contact_event_types, contact_event_categories)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'webhook name'),
            url, ARRAY(SELECT DISTINCT e FROM unnest(events) e ORDER BY e),
            coalesce(secret, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')),
            coalesce(ventros.require_json(headers, 'object', 'webhook headers'), '{}'),
            coalesce(subscribe_contact_events, false), coalesce(contact_event_types, '{}'),
            coalesce(contact_event_categories, '{}'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_webhook_subscription(text, text, text[], uuid, text, jsonb, boolean, text[], text[]) IS
    'Creates an active subscription (public http(s) URL and known events: 22023); emits webhook_subscription.created';

CREATE FUNCTION ventros.update_webhook_subscription(webhook_subscription_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.webhook_subscriptions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.webhook_subscriptions, 'webhook_subscription', webhook_subscription_id,
        expected_version, ventros.check_webhook_changes(changes),
        ARRAY['name', 'url', 'events', 'subscribe_contact_events', 'contact_event_types', 'contact_event_categories',
              'secret', 'headers', 'retry_count', 'timeout_seconds', 'active'])
$$;
COMMENT ON FUNCTION ventros.update_webhook_subscription(uuid, integer, jsonb) IS
    'Changes a subscription (URL and events validated, 22023); emits webhook_subscription.updated, .activated or .deactivated';

CREATE FUNCTION ventros.set_webhook_subscription_active(webhook_subscription_id uuid, expected_version integer, active boolean)
RETURNS ventros.webhook_subscriptions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.webhook_subscriptions, 'webhook_subscription', webhook_subscription_id,
                              expected_version, jsonb_build_object('active', active))
$$;
COMMENT ON FUNCTION ventros.set_webhook_subscription_active(uuid, integer, boolean) IS
    'Activates or deactivates a subscription; emits webhook_subscription.activated or .deactivated';

CREATE FUNCTION ventros.delete_webhook_subscription(webhook_subscription_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.webhook_subscriptions', 'webhook_subscription', webhook_subscription_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_webhook_subscription(uuid, integer) IS 'Soft-deletes a subscription; emits webhook_subscription.deleted';

CREATE FUNCTION ventros.record_webhook_delivery(webhook_subscription_id uuid, succeeded boolean)
RETURNS ventros.webhook_subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_subscriptions;
BEGIN
    UPDATE ventros.webhook_subscriptions w
    SET last_triggered_at = now(),
        last_success_at = CASE WHEN succeeded THEN now() ELSE w.last_success_at END,
        last_failure_at = CASE WHEN succeeded THEN w.last_failure_at ELSE now() END,
        success_count = w.success_count + CASE WHEN succeeded THEN 1 ELSE 0 END,
        failure_count = w.failure_count + CASE WHEN succeeded THEN 0 ELSE 1 END,
        failing_since = CASE WHEN succeeded THEN NULL ELSE coalesce(w.failing_since, now()) END,
        version = w.version
    WHERE w.tenant_id = ventros.require_tenant() AND w.id = webhook_subscription_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_webhook_delivery(uuid, boolean) IS
    'Counts a finished delivery, success or failure (quiet columns: no version check, no event)';

-- Rotation: the old secret keeps signing (as a second v1) until the overlap ends.
CREATE FUNCTION ventros.rotate_webhook_secret(webhook_subscription_id uuid, expected_version integer,
                                              new_secret text DEFAULT NULL, overlap interval DEFAULT '24 hours')
RETURNS ventros.webhook_subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_subscriptions;
BEGIN
    IF expected_version IS NULL THEN
        RAISE EXCEPTION 'expected_version of webhook subscription % must not be null', webhook_subscription_id
            USING ERRCODE = '23502', HINT = 'Pass the version you read.';
    END IF;
    IF overlap IS NULL OR overlap < interval '0' OR overlap > interval '30 days' THEN
        RAISE EXCEPTION 'overlap must be between 0 and 30 days' USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.webhook_subscriptions w
    SET previous_secret = CASE WHEN overlap > interval '0' THEN w.secret END,
        previous_secret_expires_at = CASE WHEN overlap > interval '0' THEN now() + overlap END,
        secret = coalesce(new_secret, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')),
        version = expected_version
    WHERE w.tenant_id = ventros.require_tenant() AND w.id = webhook_subscription_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.rotate_webhook_secret(uuid, integer, text, interval) IS
    'Replaces the signing secret (random when not given); the previous one also signs (a second v1) until the overlap ends';

CREATE FUNCTION ventros.get_webhook_subscription(webhook_subscription_id uuid) RETURNS ventros.webhook_subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.webhook_subscriptions, 'webhook subscription', webhook_subscription_id) $$;
COMMENT ON FUNCTION ventros.get_webhook_subscription(uuid) IS 'A live webhook subscription, or P0002';

CREATE FUNCTION ventros.list_webhook_subscriptions(event_type text DEFAULT NULL, only_active boolean DEFAULT false)
RETURNS SETOF ventros.webhook_subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.* FROM ventros.webhook_subscriptions w
    WHERE w.tenant_id = ventros.require_tenant()
      AND (event_type IS NULL OR (w.active AND w.deleted_at IS NULL AND ventros.webhook_event_matches(w.events, event_type)))
      AND (NOT only_active OR w.active)
    ORDER BY w.created_at, w.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_webhook_subscriptions(text, boolean) IS
    'Subscriptions of the acting tenant; with event_type, the active ones that receive it';

CREATE FUNCTION ventros.list_webhook_event_types() RETURNS SETOF ventros.event_types
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ventros.event_types WHERE aggregate <> 'webhook_subscription' ORDER BY event_type $$;
COMMENT ON FUNCTION ventros.list_webhook_event_types() IS 'The event types a webhook may subscribe to (the catalogue)';

GRANT EXECUTE ON FUNCTION ventros.is_public_http_url(text), ventros.is_allow_listed_url(text), ventros.is_webhook_url_allowed(text)
    TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.webhook_event_matches(text[], text), ventros.check_webhook_url() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.get_webhook_subscription(uuid), ventros.list_webhook_subscriptions(text, boolean),
    ventros.list_webhook_event_types() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.check_webhook_changes(jsonb), ventros.record_webhook_delivery(uuid, boolean),
    ventros.create_webhook_subscription(text, text, text[], uuid, text, jsonb, boolean, text[], text[]),
    ventros.update_webhook_subscription(uuid, integer, jsonb), ventros.set_webhook_subscription_active(uuid, integer, boolean),
    ventros.delete_webhook_subscription(uuid, integer), ventros.rotate_webhook_secret(uuid, integer, text, interval)
    TO ventros_admin;

-- Direct writes of webhook_subscription by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('webhook_subscription', inserts => '{create_webhook_subscription}', updates => '{update_webhook_subscription,set_webhook_subscription_active,rotate_webhook_secret}', deletes => '{delete_webhook_subscription}',
    direct => '{DELETE}');
