-- The outbound HTTP queue: every call Ventros makes to the outside world
-- (channel sends, webhook deliveries, media downloads, AI providers) is a row
-- here, written in the transaction that decided to make it, and delivered at
-- least once by the HTTP dispatcher (src/http_worker.c).
--
-- Not an aggregate: rows carry no version and no domain events; they are a
-- work queue like ventros.outbox, updated by the dispatcher on every attempt.
-- Row-level security is enabled and forced here, with the tenant policies.
--
-- Status:
--   pending    waiting for next_attempt_at (first attempt or a retry)
--   in_flight  claimed by the dispatcher until lease_until
--   succeeded  a 2xx answer was received (final)
--   failed     refused for good: SSRF guard, bad URL, 3xx or 4xx (final)
--   dead       every allowed attempt failed with a transient error (final)

CREATE TABLE ventros.http_requests (
    tenant_id          text        NOT NULL DEFAULT ventros.current_tenant(),
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    method             text        NOT NULL DEFAULT 'POST',
    url                text        NOT NULL,
    headers            jsonb       NOT NULL DEFAULT '{}',
    body               bytea,
    purpose            text        NOT NULL DEFAULT 'generic',
    correlation_id     uuid,
    retry_policy       text        NOT NULL DEFAULT 'transient',
    retry_schedule     interval[],
    status             text        NOT NULL DEFAULT 'pending',
    attempts           integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL,
    timeout_ms         integer,
    max_response_size  integer,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    lease_until        timestamptz,
    claimed_by         integer,
    last_attempt_at    timestamptz,
    response_status    integer,
    response_headers   jsonb,
    response_body      bytea,
    response_truncated boolean     NOT NULL DEFAULT false,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    completed_at       timestamptz,
    handler_error      text,
    body_form          jsonb,
    media_id   uuid,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT http_requests_method_known CHECK (method IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')),
    CONSTRAINT http_requests_url_http CHECK (url ~* '^https?://' AND length(url) <= 8192),
    CONSTRAINT http_requests_headers_object CHECK (jsonb_typeof(headers) = 'object'),
    CONSTRAINT http_requests_purpose_not_blank CHECK (btrim(purpose) <> '' AND length(purpose) <= 100),
    CONSTRAINT http_requests_retry_policy_known CHECK (retry_policy ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT http_requests_status_known CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed', 'dead')),
    CONSTRAINT http_requests_attempts_range CHECK (attempts >= 0 AND max_attempts BETWEEN 1 AND 100),
    CONSTRAINT http_requests_timeout_range CHECK (timeout_ms BETWEEN 100 AND 600000),
    CONSTRAINT http_requests_max_response_size_range CHECK (max_response_size BETWEEN 0 AND 268435456),
    CONSTRAINT http_requests_body_form_shape CHECK (body_form IS NULL
        OR (media_id IS NOT NULL
            AND (jsonb_typeof(body_form->'multipart') = 'array' OR jsonb_typeof(body_form->'inline_base64') = 'string')))
);
-- The dispatcher's two claims: due rows, and leases of a dead dispatcher.
CREATE INDEX http_requests_due ON ventros.http_requests (next_attempt_at) WHERE status = 'pending';
CREATE INDEX http_requests_leased ON ventros.http_requests (lease_until) WHERE status = 'in_flight';
CREATE INDEX http_requests_correlation ON ventros.http_requests (tenant_id, correlation_id)
    WHERE correlation_id IS NOT NULL;
COMMENT ON TABLE ventros.http_requests IS
    'Outbound HTTP calls, delivered at least once by the HTTP dispatcher with retries, an SSRF guard and response capture';
COMMENT ON COLUMN ventros.http_requests.purpose IS 'What the call is for (message.send, webhook.delivery, media.download, ...)';
COMMENT ON COLUMN ventros.http_requests.correlation_id IS 'The row the call serves: a message id, a webhook delivery id, ...';
COMMENT ON COLUMN ventros.http_requests.retry_policy IS
    'transient: retry network errors, timeouts, 408, 425, 429 and 5xx only; any: retry every non-2xx answer except 410';
COMMENT ON COLUMN ventros.http_requests.retry_schedule IS
    'Delays before attempts 2, 3, ... (+-10 % jitter; the last repeats); NULL: exponential backoff (ventros.http_backoff)';
COMMENT ON COLUMN ventros.http_requests.status IS 'pending, in_flight, succeeded, failed (refused for good) or dead (attempts exhausted)';
COMMENT ON COLUMN ventros.http_requests.attempts IS 'Attempts started, counted when claimed';
COMMENT ON COLUMN ventros.http_requests.max_response_size IS
    'Bytes of the answer''s body kept (the transfer stops beyond, response_truncated); NULL: ventros.http_max_response_size. Media downloads ask for ventros.media_max_size';
COMMENT ON COLUMN ventros.http_requests.timeout_ms IS 'Total time limit of one attempt; NULL: ventros.http_timeout';
COMMENT ON COLUMN ventros.http_requests.lease_until IS 'While in_flight: when another dispatcher may take the row back';
COMMENT ON COLUMN ventros.http_requests.response_body IS 'The last answer''s body, at most ventros.http_max_response_size bytes';
COMMENT ON COLUMN ventros.http_requests.handler_error IS
    'Why the purpose''s completion handler failed (NULL: it ran, or there is none); see rerun_http_request_handler';
COMMENT ON COLUMN ventros.http_requests.body_form IS
    'NULL: body is sent as is. {"multipart": [{name, value} | {name, media: true, filename, content_type}]}: a multipart/form-data body whose media part is the message''s downloaded media; {"inline_base64": marker}: body with marker replaced by the media''s base64. Built by the dispatcher at each attempt';
COMMENT ON COLUMN ventros.http_requests.media_id IS
    'Whose downloaded media the body_form streams: a message (ventros.message_media) or an enrichment (ventros.enrichment_media, e.g. a profile picture); never copied into the row';
COMMENT ON COLUMN ventros.http_requests.response_truncated IS 'The last answer''s body was longer than what was kept';

ALTER TABLE ventros.http_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.http_requests FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
-- Requests to Stripe (stripe.*) are the platform's, queued by its own code
-- (sql/66_stripe_outbound.sql): a tenant administrator, who may queue and change
-- the tenant's own requests, can neither queue one nor change one (nor turn one of
-- its own into one): their preparer adds the platform's key and their answer
-- handlers apply what the answer says.
CREATE POLICY ventros_tenant_insert ON ventros.http_requests FOR INSERT
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()) AND NOT starts_with(purpose, 'stripe.'));
CREATE POLICY ventros_tenant_update ON ventros.http_requests FOR UPDATE
    USING (tenant_id = (SELECT ventros.current_tenant()) AND NOT starts_with(purpose, 'stripe.'))
    WITH CHECK (tenant_id = (SELECT ventros.current_tenant()) AND NOT starts_with(purpose, 'stripe.'));
-- Requests carry credentials in their headers: only tenant administrators see them.
GRANT SELECT, INSERT, UPDATE ON ventros.http_requests TO ventros_admin;

-- Any insert or update of the queue wakes the dispatcher when it commits.
CREATE FUNCTION ventros.http_requests_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ventros_http_requests_wake';
COMMENT ON FUNCTION ventros.http_requests_wake() IS
    'Statement trigger: wakes the HTTP dispatcher when the transaction commits';
CREATE TRIGGER ventros_http_wake AFTER INSERT OR UPDATE ON ventros.http_requests
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.http_requests_wake();

-- enqueue_http_requests: a set of calls queued in one INSERT (parallel
-- arrays: url, method, headers, body, correlation id; the rest shared), as a
-- broadcast queues a batch's provider requests.  The one-call case is
-- enqueue_http_request.
CREATE FUNCTION ventros.enqueue_http_requests(
    urls text[],
    methods text[],
    headers jsonb[],
    bodies bytea[],
    correlation_ids uuid[],
    purpose text DEFAULT 'generic',
    max_attempts integer DEFAULT NULL,
    timeout_ms integer DEFAULT NULL,
    not_before timestamptz DEFAULT NULL,
    retry_policy text DEFAULT 'transient',
    max_response_size integer DEFAULT NULL)
RETURNS TABLE (id uuid, correlation_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    bad text;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(urls));
    IF cardinality(urls) IS DISTINCT FROM cardinality(methods) OR cardinality(urls) IS DISTINCT FROM cardinality(headers)
       OR cardinality(urls) IS DISTINCT FROM cardinality(bodies)
       OR cardinality(urls) IS DISTINCT FROM cardinality(correlation_ids) THEN
        RAISE EXCEPTION 'urls, methods, headers, bodies and correlation_ids must have one element per call'
            USING ERRCODE = '22023';
    END IF;
    SELECT coalesce(quote_literal(left(u, 200)), 'NULL') INTO bad FROM unnest(urls) u
    WHERE u IS NULL OR u !~* '^https?://[^/?#]' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'url must be an http or https URL'
            USING ERRCODE = '22023', DETAIL = format('Got %s.', bad);
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(headers) x, jsonb_each(x) h
                WHERE jsonb_typeof(h.value) <> 'string' OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
                   OR (h.value #>> '{}') ~ '[\r\n]') THEN
        RAISE EXCEPTION 'headers must be an object of header names to string values'
            USING ERRCODE = '22023',
                  DETAIL = 'Names are HTTP tokens; values are strings without line breaks.';
    END IF;
    IF retry_policy IS NOT NULL AND retry_policy NOT IN ('transient', 'any')
       AND NOT EXISTS (SELECT 1 FROM ventros.http_retry_classifiers c WHERE c.policy = retry_policy) THEN
        RAISE EXCEPTION 'unknown retry policy "%"', left(retry_policy, 64) USING ERRCODE = '22023',
            HINT = 'Use transient, any, or a policy registered with ventros.register_http_retry_classifier.';
    END IF;
    RETURN QUERY
    INSERT INTO ventros.http_requests AS r
        (tenant_id, method, url, headers, body, purpose, correlation_id, retry_policy, max_attempts,
         timeout_ms, next_attempt_at, max_response_size)
    SELECT tenant, upper(coalesce(c.method, 'POST')), c.url, coalesce(c.headers, '{}'), c.body,
           coalesce(enqueue_http_requests.purpose, 'generic'), c.correlation_id,
           coalesce(enqueue_http_requests.retry_policy, 'transient'),
           coalesce(enqueue_http_requests.max_attempts, current_setting('ventros.http_max_attempts')::integer),
           enqueue_http_requests.timeout_ms, coalesce(not_before, now()), enqueue_http_requests.max_response_size
    FROM unnest(urls, methods, headers, bodies, correlation_ids) AS c(url, method, headers, body, correlation_id)
    RETURNING r.id, r.correlation_id;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_http_requests(text[], text[], jsonb[], bytea[], uuid[], text, integer, integer, timestamptz, text, integer) IS
    'Queues a set of outbound HTTP calls for the acting tenant in one INSERT (one element per call in each array; the other arguments shared); the dispatcher sends them after commit. Returns each id with its correlation id';

CREATE FUNCTION ventros.enqueue_http_request(
    url text,
    method text DEFAULT 'POST',
    headers jsonb DEFAULT '{}',
    body bytea DEFAULT NULL,
    purpose text DEFAULT 'generic',
    correlation_id uuid DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout_ms integer DEFAULT NULL,
    not_before timestamptz DEFAULT NULL,
    retry_policy text DEFAULT 'transient',
    max_response_size integer DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.id FROM ventros.enqueue_http_requests(ARRAY[url], ARRAY[method], ARRAY[headers], ARRAY[body], ARRAY[correlation_id],
                                                   purpose, max_attempts, timeout_ms, not_before, retry_policy,
                                                   max_response_size) r
$$;
COMMENT ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer) IS
    'Queues an outbound HTTP call for the acting tenant; the dispatcher sends it after commit. Returns its id';

CREATE FUNCTION ventros.replay_http_request(request_id uuid, max_attempts integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    UPDATE ventros.http_requests r
       SET status = 'pending', next_attempt_at = now(), lease_until = NULL, claimed_by = NULL,
           max_attempts = r.attempts + coalesce(replay_http_request.max_attempts,
                                                current_setting('ventros.http_max_attempts')::integer),
           completed_at = NULL, updated_at = now()
     WHERE r.tenant_id = tenant AND r.id = request_id AND r.status IN ('failed', 'dead');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'http request % not found or not finished unsuccessfully', request_id
            USING ERRCODE = 'P0002',
                  HINT = 'Only failed and dead requests of the acting tenant can be replayed.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.replay_http_request(uuid, integer) IS
    'Puts a failed or dead request back in the queue with max_attempts more attempts (default ventros.http_max_attempts)';

-- Time is a parameter: pg_cron calls this with now() - a retention period.
CREATE FUNCTION ventros.prune_http_requests(completed_before timestamptz, batch_size integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    -- SECURITY DEFINER: across tenants; the caller must be a platform admin
    PERFORM ventros.require_platform_admin();
    WITH gone AS (
        DELETE FROM ventros.http_requests r
         WHERE (r.tenant_id, r.id) IN (SELECT x.tenant_id, x.id FROM ventros.http_requests x
                                        WHERE x.status IN ('succeeded', 'failed', 'dead')
                                          AND x.completed_at < completed_before
                                        LIMIT batch_size)
        RETURNING 1)
    SELECT count(*)::integer INTO n FROM gone;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.prune_http_requests(timestamptz, integer) IS
    'Platform admins: deletes up to batch_size finished requests completed before the given time; returns how many';

-- ---- the dispatcher's side (called by src/http_worker.c as superuser) -------

-- The dispatcher's extension points (preparers, retry classifiers,
-- completion handlers) are functions named in a table; these two helpers
-- check a declared function's shape and call one for a request.

-- require_function_shape: 22023 unless fn takes exactly argtypes and returns
-- rettype (any return type when rettype is NULL).
CREATE FUNCTION ventros.require_function_shape(fn regprocedure, argtypes regtype[], rettype regtype, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_proc p
                    -- (oidvector subscripts start at 0: compare the lists, not the arrays)
                    WHERE p.oid = fn AND array_to_string(p.proargtypes::oid[], ',') = array_to_string(argtypes::oid[], ',')
                      AND (rettype IS NULL OR p.prorettype = rettype)) THEN
        RAISE EXCEPTION '% % must be f(%)%', what, fn, array_to_string(argtypes, ', '),
                        CASE WHEN rettype IS NULL THEN '' ELSE ' RETURNS ' || rettype::text END
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.require_function_shape(regprocedure, regtype[], regtype, text) IS
    'Raises 22023 unless a declared function takes exactly the given argument types and returns the given type';

-- call_for_request: fn(r) as the request's tenant, in a subtransaction: its
-- result as text, or why it failed (its work then undone).  The caller
-- decides what a failure means.
CREATE FUNCTION ventros.call_for_request(fn regprocedure, r ventros.http_requests, OUT result text, OUT failure text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous_tenant text := current_setting('ventros.tenant', true);
BEGIN
    -- only the dispatcher (no tenant) switches; an administrator's rerun
    -- already acts for the request's tenant
    IF ventros.current_tenant() IS DISTINCT FROM r.tenant_id THEN
        PERFORM set_config('ventros.tenant', r.tenant_id, true);
    END IF;
    BEGIN
        EXECUTE format('SELECT %s($1)::text', fn::regproc) INTO result USING r;
    EXCEPTION WHEN OTHERS THEN
        failure := format('%s: %s', SQLSTATE, SQLERRM);
    END;
    IF current_setting('ventros.tenant', true) IS DISTINCT FROM coalesce(previous_tenant, '') THEN
        PERFORM set_config('ventros.tenant', coalesce(previous_tenant, ''), true);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.call_for_request(regprocedure, ventros.http_requests) IS
    'Calls a declared function with a request, as its tenant, catching its error: (result as text, failure)';

-- Per purpose, an optional preparer f(r ventros.http_requests) RETURNS jsonb
-- gives the headers of each attempt when it is claimed (a webhook delivery
-- is signed anew per attempt with a secret that is not stored on the row).
CREATE TABLE ventros.http_request_preparers (
    purpose  text PRIMARY KEY,
    preparer regprocedure NOT NULL
);
COMMENT ON TABLE ventros.http_request_preparers IS
    'Per purpose, the function that gives the headers of each attempt when it is claimed (e.g. a fresh signature)';
ALTER TABLE ventros.http_request_preparers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_request_preparers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.http_request_preparers FOR SELECT USING (true);
GRANT SELECT ON ventros.http_request_preparers TO ventros_viewer;

CREATE FUNCTION ventros.register_http_request_preparer(purpose text, preparer regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(preparer, ARRAY['ventros.http_requests']::regtype[], 'jsonb', 'preparer');
    INSERT INTO ventros.http_request_preparers AS h (purpose, preparer)
    VALUES (register_http_request_preparer.purpose, register_http_request_preparer.preparer)
    ON CONFLICT ON CONSTRAINT http_request_preparers_pkey DO UPDATE SET preparer = EXCLUDED.preparer;
END
$$;
COMMENT ON FUNCTION ventros.register_http_request_preparer(text, regprocedure) IS
    'Registers the function that computes the headers of each attempt of requests of one purpose';

-- The headers of the attempt just claimed (attempts already counted): the
-- purpose's preparer, run as the request's tenant, or the stored headers.
-- A failing preparer must not stop the dispatcher's claim: the stored
-- headers are sent (the receiver refuses them) and a warning is logged.
CREATE FUNCTION ventros.http_attempt_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
    prepared record;
BEGIN
    SELECT h.preparer INTO fn FROM ventros.http_request_preparers h WHERE h.purpose = r.purpose;
    IF fn IS NULL THEN
        RETURN r.headers;
    END IF;
    prepared := ventros.call_for_request(fn, r);
    IF prepared.failure IS NOT NULL THEN
        RAISE WARNING 'preparer of http request % (%) failed: %', r.id, r.purpose, prepared.failure;
    END IF;
    RETURN coalesce(prepared.result::jsonb, r.headers);
END
$$;
COMMENT ON FUNCTION ventros.http_attempt_headers(ventros.http_requests) IS
    'Dispatcher: the headers of a claimed attempt (the purpose''s preparer, else the stored headers)';

-- The bytes a body_form streams: a message's media as its download stored
-- it (sql/90_channel_send_media.sql), or an enrichment's own download (a
-- profile picture, sql/98_enrichment_chain.sql).  plpgsql, so those tables may come later.
CREATE FUNCTION ventros.http_request_media(tenant_id text, media_id uuid) RETURNS bytea
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN coalesce((SELECT mm.data FROM ventros.message_media mm
                      WHERE mm.tenant_id = http_request_media.tenant_id AND mm.message_id = http_request_media.media_id
                        AND mm.status = 'downloaded'),
                    (SELECT em.data FROM ventros.enrichment_media em
                      WHERE em.tenant_id = http_request_media.tenant_id AND em.enrichment_id = http_request_media.media_id
                        AND em.status = 'downloaded'));
END
$$;
COMMENT ON FUNCTION ventros.http_request_media(text, uuid) IS
    'Dispatcher: the downloaded media of a message or of an enrichment (NULL when it is not downloaded), streamed by a request''s body_form';

-- ---- held sends --------------------------------------------------------------

-- A platform administrator pauses the sends of a tenant, of a channel or of
-- a webhook subscription (sql/93_operator.sql): a row here.  Paused requests
-- stay pending in the queue, untouched; the claim passes them over while a
-- pause covers them, and takes them when it is gone (resume), so nothing is
-- lost or sent twice.  A request already in flight finishes its attempt.
-- What a pause covers: scope tenant, every request of the tenant; channel,
-- the requests serving a message of the channel (correlation_id = message
-- id: sends, media downloads); webhook_subscription, its deliveries
-- (correlation_id = the delivery, ventros.webhook_deliveries).
CREATE TABLE ventros.send_pauses (
    tenant_id  text        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    scope      text        NOT NULL,
    target_id  uuid,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text,
    reason     text,
    CONSTRAINT send_pauses_scope_known CHECK (scope IN ('tenant', 'channel', 'webhook_subscription')),
    CONSTRAINT send_pauses_target CHECK ((scope = 'tenant') = (target_id IS NULL)),
    CONSTRAINT send_pauses_reason_size CHECK (length(reason) <= 500),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT send_pauses_once UNIQUE NULLS NOT DISTINCT (tenant_id, scope, target_id)
);
COMMENT ON TABLE ventros.send_pauses IS
    'Paused sends: while a row covers a request (a tenant''s, a channel''s, a webhook subscription''s), the HTTP dispatcher leaves it queued (ventros.pause_sends, resume_sends)';
ALTER TABLE ventros.send_pauses ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.send_pauses FORCE ROW LEVEL SECURITY;
-- Tenants see their own pauses; only the operator functions write.
CREATE POLICY ventros_tenant_read ON ventros.send_pauses FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.send_pauses TO ventros_viewer;

-- http_request_held: does a pause cover this request?  plpgsql: the tables
-- it asks (messages, webhook_deliveries) are resolved when it runs.  The
-- claim calls it only for tenants that have a pause.
CREATE FUNCTION ventros.http_request_held(tenant text, purpose text, correlation uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM ventros.send_pauses p
         WHERE p.tenant_id = tenant
           AND (p.scope = 'tenant'
                OR (p.scope = 'channel' AND correlation IS NOT NULL
                    AND EXISTS (SELECT 1 FROM ventros.messages m
                                 WHERE m.tenant_id = tenant AND m.id = correlation AND m.channel_id = p.target_id))
                OR (p.scope = 'webhook_subscription' AND purpose = 'webhook.delivery' AND correlation IS NOT NULL
                    AND EXISTS (SELECT 1 FROM ventros.webhook_deliveries d
                                 WHERE d.tenant_id = tenant AND d.id = correlation
                                   AND d.subscription_id = p.target_id))));
END
$$;
COMMENT ON FUNCTION ventros.http_request_held(text, text, uuid) IS
    'Dispatcher: whether a pause (ventros.send_pauses) covers a request of this tenant, purpose and correlation id';

-- Claims up to batch_size due rows: SKIP LOCKED, one attempt counted, a lease.
-- Rows whose lease expired (a dispatcher died mid-flight) are due again.
-- Rows a pause covers are passed over (they stay pending).
CREATE FUNCTION ventros.http_claim(batch_size integer, lease interval)
RETURNS TABLE (tenant_id text, id uuid, method text, url text, headers jsonb, body bytea,
               attempts integer, timeout_ms integer, retry_policy text, max_response_size integer,
               body_form jsonb, media bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due_now AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'pending' AND r.next_attempt_at <= now()
           AND NOT (EXISTS (SELECT 1 FROM ventros.send_pauses p WHERE p.tenant_id = r.tenant_id)
                    AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id))
         ORDER BY r.next_attempt_at LIMIT batch_size FOR UPDATE SKIP LOCKED),
    lease_expired AS (
        SELECT r.tenant_id, r.id FROM ventros.http_requests r
         WHERE r.status = 'in_flight' AND r.lease_until < now()
         ORDER BY r.lease_until LIMIT batch_size FOR UPDATE SKIP LOCKED),
    due AS (
        SELECT * FROM due_now UNION ALL SELECT * FROM lease_expired LIMIT batch_size)
    UPDATE ventros.http_requests r
       SET status = 'in_flight', attempts = r.attempts + 1, lease_until = now() + lease,
           claimed_by = pg_backend_pid(), last_attempt_at = now(), updated_at = now()
      FROM due
     WHERE r.tenant_id = due.tenant_id AND r.id = due.id
    RETURNING r.tenant_id, r.id, r.method, r.url,
              CASE WHEN EXISTS (SELECT 1 FROM ventros.http_request_preparers p WHERE p.purpose = r.purpose)
                   THEN ventros.http_attempt_headers(r) ELSE r.headers END,
              r.body, r.attempts, r.timeout_ms, r.retry_policy, r.max_response_size, r.body_form,
              -- the media a body_form streams, as the media download stored it
              CASE WHEN r.body_form IS NOT NULL THEN ventros.http_request_media(r.tenant_id, r.media_id) END
$$;
COMMENT ON FUNCTION ventros.http_claim(integer, interval) IS
    'Dispatcher: claims due requests not held by a pause (and requests whose lease expired) with a lease, counting an attempt; with the media a body_form streams';

-- When the dispatcher should look again: the earliest pending request no
-- pause holds (a held one, due long ago, would have it claim in a loop).
CREATE FUNCTION ventros.http_next_due() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT min(r.next_attempt_at) FROM ventros.http_requests r
     WHERE r.status = 'pending'
       AND NOT (EXISTS (SELECT 1 FROM ventros.send_pauses p WHERE p.tenant_id = r.tenant_id)
                AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id))
$$;
COMMENT ON FUNCTION ventros.http_next_due() IS
    'Dispatcher: the earliest next_attempt_at of the pending requests no pause holds (NULL: none), to sleep until';

-- Frees the rows a previous dispatcher process left in flight (it died).
CREATE FUNCTION ventros.http_release_orphans() RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH freed AS (
        UPDATE ventros.http_requests r
           SET status = 'pending', lease_until = NULL, claimed_by = NULL, next_attempt_at = now(),
               last_error = coalesce(r.last_error, 'dispatcher stopped during the attempt'), updated_at = now()
         WHERE r.status = 'in_flight' AND r.claimed_by IS DISTINCT FROM pg_backend_pid()
        RETURNING 1)
    SELECT count(*)::integer FROM freed
$$;
COMMENT ON FUNCTION ventros.http_release_orphans() IS
    'Dispatcher, at start: puts requests a dead dispatcher left in flight back in the queue';

-- The delay before attempt n+1 after n failed attempts: base * 2^(n-1), at most
-- ventros.http_backoff_max, with +-10 % jitter.
CREATE FUNCTION ventros.http_backoff(failed_attempts integer) RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => least(ventros.setting_number('ventros.http_backoff_min')::float8
                                       * power(2::float8, least(greatest(failed_attempts, 1) - 1, 40)),
                                       ventros.setting_number('ventros.http_backoff_max')::float8)
                                 * (0.9 + random() * 0.2) / 1000.0)
$$;
COMMENT ON FUNCTION ventros.http_backoff(integer) IS
    'Retry delay after n failed attempts: exponential from ventros.http_backoff_min up to ventros.http_backoff_max, +-10 % jitter';
