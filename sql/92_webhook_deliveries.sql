-- Webhook deliveries (design channels.md section 6): every committed event
-- that matches an active subscription of its tenant becomes exactly one
-- delivery, a signed CloudEvents POST retried on the section 6.2 schedule.
--
-- Fan-out: src/webhook_fanout.c, called by the emitter for every event,
-- answers "may a subscription of this tenant want it?" from a backend-local
-- cache and only then calls ventros.webhook_fanout() below, in the event's
-- transaction: the delivery commits or rolls back with the event, and no
-- broker is involved.  The cache is dropped by the triggers at the end of
-- this file whenever a subscription changes what it receives.
--
-- A delivery is one row here and one request of the HTTP queue
-- (ventros.http_requests, purpose webhook.delivery, correlation_id = the
-- delivery's id) which the dispatcher sends, retries and records.  The
-- request carries the CloudEvents body and the fixed headers; the signature
-- (X-Ventros-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>),
-- the attempt number and the subscription's custom headers are added when
-- each attempt is claimed (ventros.webhook_attempt_headers, a declared
-- preparer), so the secret never sits on the queue and every attempt is
-- signed afresh.  When the request is final, ventros.webhook_delivery_completed
-- counts it on the subscription and disables the subscription on 410 Gone
-- or after 5 days of nothing but failures (also checked by the hourly
-- ventros.tick_webhooks, sql/98_webhook_jobs.sql).  A deactivated or
-- deleted subscription stops its deliveries still waiting for an attempt.
--
-- A redelivery (ventros.redeliver_webhook) is a new delivery of the same
-- event (same CloudEvents id and body) with its own attempts, pointing at
-- the one it repeats.

-- pgcrypto's HMAC, reached through its schema whatever it is.
DO $pgcrypto$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.hmac_sha256_hex(key text, message bytea) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
        AS 'SELECT pg_catalog.encode(%1$I.hmac(message, pg_catalog.convert_to(key, ''UTF8''), ''sha256''), ''hex'')'$f$, s);
END
$pgcrypto$;
COMMENT ON FUNCTION ventros.hmac_sha256_hex(text, bytea) IS 'Lowercase hex HMAC-SHA256 of a message under a UTF-8 key (pgcrypto)';

CREATE FUNCTION ventros.webhook_signature(secret text, body bytea, signed_at timestamptz DEFAULT now(),
                                          previous_secret text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 't=' || t || ',v1=' || ventros.hmac_sha256_hex(secret, convert_to(t || '.', 'UTF8') || coalesce(body, ''::bytea))
           || coalesce(',v1=' || ventros.hmac_sha256_hex(previous_secret, convert_to(t || '.', 'UTF8') || coalesce(body, ''::bytea)), '')
      FROM (SELECT floor(extract(epoch FROM signed_at))::bigint::text AS t) s
$$;
COMMENT ON FUNCTION ventros.webhook_signature(text, bytea, timestamptz, text) IS
    'X-Ventros-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>, and a second v1 for the previous secret while rotating';

-- ventros.webhook_retry_schedule (a GUC of src/webhook_fanout.c, checked
-- there, so this never fails) as intervals.
CREATE FUNCTION ventros.webhook_retry_schedule() RETURNS interval[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(make_interval(secs => m[1]::float8 * CASE m[2] WHEN 'ms' THEN 0.001 WHEN 's' THEN 1
                                                                  WHEN 'min' THEN 60 WHEN 'h' THEN 3600 ELSE 86400 END)
                              ORDER BY x.n), '{}')
      FROM unnest(string_to_array(current_setting('ventros.webhook_retry_schedule'), ',')) WITH ORDINALITY AS x(item, n),
           LATERAL regexp_match(x.item, '^\s*([0-9]*\.?[0-9]*)\s*([a-z]+)\s*$') AS m
$$;
COMMENT ON FUNCTION ventros.webhook_retry_schedule() IS
    'The delays between attempts of a new webhook delivery (ventros.webhook_retry_schedule), without jitter';

CREATE TABLE ventros.webhook_deliveries (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    subscription_id uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    request_id      uuid        NOT NULL,
    redelivery_of   uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES ventros.webhook_subscriptions (tenant_id, id),
    -- pruning the HTTP queue (ventros.prune_http_requests) prunes the log
    FOREIGN KEY (tenant_id, request_id) REFERENCES ventros.http_requests (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, redelivery_of) REFERENCES ventros.webhook_deliveries (tenant_id, id)
        ON DELETE SET NULL (redelivery_of)
);
-- The fan-out writes one delivery per (subscription, event); redeliveries add more.
CREATE UNIQUE INDEX webhook_deliveries_once ON ventros.webhook_deliveries (tenant_id, subscription_id, event_id)
    WHERE redelivery_of IS NULL;
CREATE INDEX webhook_deliveries_by_subscription ON ventros.webhook_deliveries
    (tenant_id, subscription_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_by_event ON ventros.webhook_deliveries (tenant_id, event_id);
CREATE INDEX webhook_deliveries_by_request ON ventros.webhook_deliveries (tenant_id, request_id);
CREATE INDEX webhook_deliveries_redelivery ON ventros.webhook_deliveries (tenant_id, redelivery_of)
    WHERE redelivery_of IS NOT NULL;
COMMENT ON TABLE ventros.webhook_deliveries IS
    'One delivery of an event to a webhook subscription; its attempts are the HTTP request request_id';
COMMENT ON COLUMN ventros.webhook_deliveries.event_id IS 'The outbox event id: the CloudEvents id, the same on every attempt and redelivery';
COMMENT ON COLUMN ventros.webhook_deliveries.request_id IS 'The ventros.http_requests row that carries the attempts';
COMMENT ON COLUMN ventros.webhook_deliveries.redelivery_of IS 'For a manual redelivery: the delivery it repeats';

ALTER TABLE ventros.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.webhook_deliveries FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
CREATE POLICY ventros_tenant_insert ON ventros.webhook_deliveries FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()));
-- Like the HTTP queue, the log is for tenant administrators.
GRANT SELECT, INSERT ON ventros.webhook_deliveries TO ventros_admin;

-- The delivery log: a delivery with the state of its attempts.
CREATE VIEW ventros.webhook_delivery_log WITH (security_invoker = true) AS
    SELECT d.tenant_id, d.id, d.subscription_id, d.event_id, d.event_type, d.aggregate_type, d.aggregate_id,
           d.redelivery_of, d.request_id, q.url,
           CASE q.status WHEN 'in_flight' THEN 'pending' WHEN 'dead' THEN 'failed' ELSE q.status END AS status,
           q.status AS request_status, q.attempts, q.max_attempts, q.last_attempt_at,
           CASE WHEN q.status = 'pending' THEN q.next_attempt_at END AS next_attempt_at,
           q.response_status, q.last_error, q.response_body, q.response_truncated, q.completed_at, d.created_at
      FROM ventros.webhook_deliveries d
      JOIN ventros.http_requests q ON q.tenant_id = d.tenant_id AND q.id = d.request_id;
COMMENT ON VIEW ventros.webhook_delivery_log IS
    'Webhook deliveries with their status (pending, succeeded, failed), attempts, last answer or error and next attempt';
GRANT SELECT ON ventros.webhook_delivery_log TO ventros_admin;

-- The CloudEvents 1.0 structured-mode body of an event (channels.md 6.1).
CREATE FUNCTION ventros.webhook_cloudevent(tenant_id text, event_id uuid, event_type text, aggregate_type text,
                                           aggregate_id uuid, payload jsonb, occurred_at timestamptz,
                                           aggregate_version integer DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- compact JSON in the order of the specification (jsonb would reorder it)
    SELECT '{"specversion":"1.0","id":' || to_json($2::text)
        || ',"source":' || to_json('/ventros/tenants/' || $1)
        || ',"type":' || to_json('com.ventros.' || $3)
        || ',"subject":' || to_json(coalesce((SELECT c.relname::text FROM ventros.aggregates a
                                               JOIN pg_class c ON c.oid = a.table_name
                                              WHERE a.aggregate = $4), $4) || '/' || $5)
        || ',"time":' || to_json(to_char($7 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
        || ',"datacontenttype":"application/json","tenantid":' || to_json($1)
        || coalesce(',"aggregateversion":' || $8, '')
        || ',"data":' || coalesce($6::text, 'null') || '}'
$$;
COMMENT ON FUNCTION ventros.webhook_cloudevent(text, uuid, text, text, uuid, jsonb, timestamptz, integer) IS
    'The CloudEvents 1.0 JSON body of a webhook delivery: id = event id, type com.ventros.<event>, source /ventros/tenants/<tenant>, extensions tenantid and aggregateversion';

-- The headers stored on the request; the rest are added per attempt.
CREATE FUNCTION ventros.webhook_request_headers(event_id uuid, delivery_id uuid) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('Content-Type', 'application/cloudevents+json; charset=utf-8',
                              'User-Agent', 'Ventros-Webhooks/1.0',
                              'X-Ventros-Event-Id', event_id::text,
                              'X-Ventros-Delivery-Id', delivery_id::text)
$$;
COMMENT ON FUNCTION ventros.webhook_request_headers(uuid, uuid) IS
    'The fixed headers of a webhook delivery (content type, user agent, event and delivery ids)';

-- Called by src/webhook_fanout.c for an event some active subscription of
-- its tenant may want, as the owner of the tables (no row security), in the
-- event's transaction.  Matches exactly and writes one delivery and one
-- request per matching subscription.  Returns how many.
CREATE FUNCTION ventros.webhook_fanout(event_tenant text, event_id uuid, event_type text, aggregate_type text,
                                       aggregate_id uuid, aggregate_version integer, payload jsonb,
                                       occurred_at timestamptz)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH subs AS MATERIALIZED (
        SELECT w.id, w.url, w.retry_count, w.timeout_seconds, gen_random_uuid() AS delivery_id
          FROM ventros.webhook_subscriptions w
         WHERE w.tenant_id = $1 AND w.active AND w.deleted_at IS NULL
           AND (ventros.webhook_event_matches(w.events, $3)
                OR (w.subscribe_contact_events AND $3 = 'contact_event.created'
                    AND (cardinality(w.contact_event_types) = 0 OR $7->>'event_type' = ANY (w.contact_event_types))
                    AND (cardinality(w.contact_event_categories) = 0
                         OR $7->>'category' = ANY (w.contact_event_categories))))),
    body AS MATERIALIZED (
        SELECT convert_to(ventros.webhook_cloudevent($1, $2, $3, $4, $5, $7, $8, $6), 'UTF8') AS bytes,
               ventros.webhook_retry_schedule() AS schedule
         WHERE EXISTS (SELECT 1 FROM subs)),
    requests AS (
        INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                           retry_policy, retry_schedule, max_attempts, timeout_ms)
        SELECT $1, gen_random_uuid(), 'POST', s.url, ventros.webhook_request_headers($2, s.delivery_id), b.bytes,
               'webhook.delivery', s.delivery_id, 'any', b.schedule,
               1 + least(s.retry_count, cardinality(b.schedule)), s.timeout_seconds * 1000
          FROM subs s, body b
        RETURNING id, correlation_id),
    deliveries AS (
        INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                                aggregate_id, request_id)
        SELECT $1, s.delivery_id, s.id, $2, $3, $4, $5, r.id
          FROM subs s JOIN requests r ON r.correlation_id = s.delivery_id
        RETURNING 1)
    SELECT count(*)::integer FROM deliveries
$$;
COMMENT ON FUNCTION ventros.webhook_fanout(text, uuid, text, text, uuid, integer, jsonb, timestamptz) IS
    'Internal (the emitter, as table owner): one delivery per active subscription of the tenant that selects the event';

-- The preparer of webhook.delivery requests: the headers of one attempt.
-- Custom headers and secrets are the subscription's current ones; Ventros'
-- own headers win over custom ones.
CREATE FUNCTION ventros.webhook_attempt_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT jsonb_object_agg(h.key, h.value) FROM jsonb_each(w.headers) h
                      WHERE jsonb_typeof(h.value) = 'string'
                        AND lower(h.key) NOT IN ('content-type', 'content-length', 'user-agent', 'host',
                                                 'transfer-encoding', 'connection', 'expect')
                        AND lower(h.key) NOT LIKE 'x-ventros-%'), '{}')
           || r.headers
           || jsonb_build_object('X-Ventros-Attempt', r.attempts::text,
                                 'X-Ventros-Signature',
                                 ventros.webhook_signature(w.secret, r.body, now(),
                                     CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END))
      FROM ventros.webhook_deliveries d
      JOIN ventros.webhook_subscriptions w ON w.tenant_id = d.tenant_id AND w.id = d.subscription_id
     WHERE d.tenant_id = r.tenant_id AND d.id = r.correlation_id AND w.secret IS NOT NULL
$$;
COMMENT ON FUNCTION ventros.webhook_attempt_headers(ventros.http_requests) IS
    'Dispatcher (preparer of webhook.delivery): stored headers + custom headers + X-Ventros-Attempt + a fresh X-Ventros-Signature';

-- A subscription deactivated or deleted (by hand, on 410, after 5 days of
-- failures) stops its deliveries still waiting for an attempt; an attempt
-- already in flight finishes.
CREATE FUNCTION ventros.webhook_subscription_stopped() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.http_requests q
       SET status = 'failed', completed_at = now(), updated_at = now(),
           last_error = CASE WHEN NEW.deleted_at IS NOT NULL THEN 'not sent: the subscription was deleted'
                             ELSE 'not sent: the subscription was deactivated' END
      FROM ventros.webhook_deliveries d
     WHERE d.tenant_id = NEW.tenant_id AND d.subscription_id = NEW.id
       AND q.tenant_id = d.tenant_id AND q.id = d.request_id AND q.status = 'pending';
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.webhook_subscription_stopped() IS
    'Trigger: a deactivated or deleted subscription''s deliveries waiting for an attempt fail without being sent';

-- Deactivates a subscription (emits webhook_subscription.deactivated).
CREATE FUNCTION ventros.disable_webhook_subscription(webhook_subscription_id uuid, reason text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    UPDATE ventros.webhook_subscriptions w SET active = false, version = w.version
     WHERE w.tenant_id = tenant AND w.id = webhook_subscription_id AND w.active AND w.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    RAISE LOG 'webhook subscription % of tenant % disabled: %', webhook_subscription_id, tenant, reason;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.disable_webhook_subscription(uuid, text) IS
    'Deactivates a subscription (webhook_subscription.deactivated), logging why; false when it was not active';

-- Time is a parameter: subscriptions of the acting tenant whose deliveries
-- have all failed since before now - failing_for are disabled.
CREATE FUNCTION ventros.disable_failing_webhook_subscriptions(now timestamptz DEFAULT now(),
                                                              failing_for interval DEFAULT '5 days')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    sub uuid;
BEGIN
    FOR sub IN SELECT w.id FROM ventros.webhook_subscriptions w
                WHERE w.tenant_id = ventros.require_tenant() AND w.active AND w.deleted_at IS NULL
                  AND w.failing_since <= disable_failing_webhook_subscriptions.now - failing_for
                ORDER BY w.id LOOP
        IF ventros.disable_webhook_subscription(sub, format('every delivery failed since %s', failing_for)) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.disable_failing_webhook_subscriptions(timestamptz, interval) IS
    'Disables the acting tenant''s subscriptions whose deliveries have all failed for failing_for (default 5 days) at now; returns how many';

-- One tick for every tenant, for a scheduler (pg_cron): platform admins.
CREATE FUNCTION ventros.tick_webhooks(now timestamptz DEFAULT now(), failing_for interval DEFAULT '5 days')
RETURNS TABLE (tenant_id text, disabled integer, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    -- the tenants with a subscription due, each through ventros.run_per_tenant
    RETURN QUERY
    SELECT r.tenant_id, (r.result #>> '{}')::integer, r.error
      FROM ventros.run_per_tenant('ventros-tick-webhooks',
               $s$SELECT pg_catalog.to_jsonb(ventros.disable_failing_webhook_subscriptions($1, ($2->>'failing_for')::interval))$s$,
               ARRAY(SELECT DISTINCT w.tenant_id FROM ventros.webhook_subscriptions w
                      WHERE w.active AND w.deleted_at IS NULL AND w.failing_since <= tick_webhooks.now - failing_for
                      ORDER BY 1),
               tick_webhooks.now, pg_catalog.jsonb_build_object('failing_for', failing_for)) r;
END
$$;
COMMENT ON FUNCTION ventros.tick_webhooks(timestamptz, interval) IS
    'Disables, in every tenant, subscriptions failing every delivery for failing_for (default 5 days); platform administrators only (42501)';

-- The completion handler of webhook.delivery requests (run by the
-- dispatcher as the request's tenant when the request is final).
CREATE FUNCTION ventros.webhook_delivery_completed(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub uuid;
    gone boolean;
BEGIN
    SELECT d.subscription_id, w.deleted_at IS NOT NULL INTO sub, gone
      FROM ventros.webhook_deliveries d
      JOIN ventros.webhook_subscriptions w ON w.tenant_id = d.tenant_id AND w.id = d.subscription_id
     WHERE d.tenant_id = r.tenant_id AND d.id = r.correlation_id;
    IF sub IS NULL THEN
        RAISE EXCEPTION 'webhook delivery % not found', r.correlation_id USING ERRCODE = 'P0002';
    END IF;
    IF gone THEN
        RETURN;                 -- a deleted subscription keeps its last counters
    END IF;
    PERFORM ventros.record_webhook_delivery(sub, r.status = 'succeeded');
    IF r.status = 'failed' AND r.response_status = 410 THEN
        PERFORM ventros.disable_webhook_subscription(sub, 'the receiver answered 410 Gone');
    ELSIF r.status <> 'succeeded' THEN
        PERFORM ventros.disable_failing_webhook_subscriptions(now());
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.webhook_delivery_completed(ventros.http_requests) IS
    'Handler of webhook.delivery: counts the outcome on the subscription; 410 Gone or 5 days of failures disable it';

SELECT ventros.register_http_request_handler('webhook.delivery',
    'ventros.webhook_delivery_completed(ventros.http_requests)');
SELECT ventros.register_http_request_preparer('webhook.delivery',
    'ventros.webhook_attempt_headers(ventros.http_requests)');

-- ---- commands and queries ----------------------------------------------

CREATE FUNCTION ventros.redeliver_webhook(delivery_id uuid) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    d ventros.webhook_deliveries;
    q ventros.http_requests;
    w ventros.webhook_subscriptions;
    schedule interval[] := ventros.webhook_retry_schedule();
    new_id uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
BEGIN
    SELECT * INTO d FROM ventros.webhook_deliveries x WHERE x.tenant_id = tenant AND x.id = delivery_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook delivery % not found', delivery_id USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO q FROM ventros.http_requests x WHERE x.tenant_id = tenant AND x.id = d.request_id;
    IF q.status NOT IN ('succeeded', 'failed', 'dead') THEN
        RAISE EXCEPTION 'webhook delivery % is still being delivered', delivery_id
            USING ERRCODE = '55000', HINT = 'Redeliver once it has succeeded or failed.';
    END IF;
    SELECT * INTO w FROM ventros.webhook_subscriptions x WHERE x.tenant_id = tenant AND x.id = d.subscription_id;
    IF NOT w.active OR w.deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'webhook subscription % is not active', d.subscription_id
            USING ERRCODE = '55000', HINT = 'Activate the subscription before redelivering.';
    END IF;
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (tenant, request, 'POST', w.url, ventros.webhook_request_headers(d.event_id, new_id), q.body,
            'webhook.delivery', new_id, 'any', schedule, 1 + least(w.retry_count, cardinality(schedule)),
            w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id, redelivery_of)
    VALUES (tenant, new_id, d.subscription_id, d.event_id, d.event_type, d.aggregate_type, d.aggregate_id, request,
            d.id);
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.redeliver_webhook(uuid) IS
    'Sends a finished delivery''s event again (same CloudEvents id and body) as a new delivery with its own attempts; returns its id';

CREATE FUNCTION ventros.get_webhook_delivery(delivery_id uuid) RETURNS ventros.webhook_delivery_log
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.webhook_delivery_log;
BEGIN
    SELECT * INTO result FROM ventros.webhook_delivery_log l
     WHERE l.tenant_id = ventros.require_tenant() AND l.id = delivery_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook delivery % not found', delivery_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.get_webhook_delivery(uuid) IS 'One delivery with its attempts'' state, or P0002';

-- Newest first; pass the last row's created_at and id for the next page.
CREATE FUNCTION ventros.list_webhook_deliveries(
    webhook_subscription_id uuid        DEFAULT NULL,
    status                  text        DEFAULT NULL,
    event_id                uuid        DEFAULT NULL,
    before_created_at       timestamptz DEFAULT NULL,
    before_id               uuid        DEFAULT NULL,
    page_size               integer     DEFAULT 50)
RETURNS SETOF ventros.webhook_delivery_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM ventros.webhook_delivery_log l
     WHERE l.tenant_id = ventros.require_tenant()
       AND (list_webhook_deliveries.webhook_subscription_id IS NULL
            OR l.subscription_id = list_webhook_deliveries.webhook_subscription_id)
       AND (list_webhook_deliveries.status IS NULL
            OR l.status = ventros.require_value(list_webhook_deliveries.status, ARRAY['pending', 'succeeded', 'failed'],
                                                'webhook delivery status'))
       AND (list_webhook_deliveries.event_id IS NULL OR l.event_id = list_webhook_deliveries.event_id)
       AND (before_id IS NULL OR (l.created_at, l.id) < (before_created_at, before_id))
     ORDER BY l.created_at DESC, l.id DESC
     LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_webhook_deliveries(uuid, text, uuid, timestamptz, uuid, integer) IS
    'Deliveries of the acting tenant (of one subscription, status or event), newest first, one keyset page at a time';

-- ---- the fan-out cache's invalidation -----------------------------------

CREATE FUNCTION ventros.webhook_subscriptions_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_webhook_subscriptions_changed';
COMMENT ON FUNCTION ventros.webhook_subscriptions_changed() IS
    'Trigger: every backend drops its cache of which tenants subscribe to which events (src/webhook_fanout.c)';
CREATE TRIGGER ventros_webhook_fanout_changed AFTER INSERT OR DELETE OR TRUNCATE ON ventros.webhook_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.webhook_subscriptions_changed();
-- Only changes of what a subscription receives: not its delivery counters.
CREATE TRIGGER ventros_webhook_fanout_updated AFTER UPDATE ON ventros.webhook_subscriptions
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.active, OLD.deleted_at, OLD.events, OLD.subscribe_contact_events)
          IS DISTINCT FROM (NEW.tenant_id, NEW.active, NEW.deleted_at, NEW.events, NEW.subscribe_contact_events))
    EXECUTE FUNCTION ventros.webhook_subscriptions_changed();

CREATE TRIGGER ventros_webhook_stopped AFTER UPDATE ON ventros.webhook_subscriptions
    FOR EACH ROW
    WHEN ((OLD.active AND NOT NEW.active) OR (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL))
    EXECUTE FUNCTION ventros.webhook_subscription_stopped();

GRANT EXECUTE ON FUNCTION ventros.webhook_subscriptions_changed(), ventros.webhook_subscription_stopped() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.webhook_retry_schedule(),
    ventros.webhook_signature(text, bytea, timestamptz, text), ventros.hmac_sha256_hex(text, bytea),
    ventros.webhook_request_headers(uuid, uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.redeliver_webhook(uuid), ventros.get_webhook_delivery(uuid),
    ventros.list_webhook_deliveries(uuid, text, uuid, timestamptz, uuid, integer),
    ventros.disable_webhook_subscription(uuid, text)
    TO ventros_admin;
-- Maintenance with a clock of its own, for the scheduler and platform administrators.
GRANT EXECUTE ON FUNCTION ventros.disable_failing_webhook_subscriptions(timestamptz, interval) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.tick_webhooks(timestamptz, interval) TO ventros_platform_admin;
