-- The HTTP dispatcher's outcomes (continued from 45_http_requests.sql, which
-- holds the queue and the claim): retry classifiers, completion handlers, the
-- record of an attempt, the SSRF guard and the dispatcher's status, and the
-- grants of both files.

-- ---- Retry classifiers ------------------------------------------------------
-- Whether a failed answer is worth another attempt is decided by the HTTP
-- status (retry_policy transient or any), unless the request names another
-- policy: then the function declared for it reads the answer (Meta's Graph
-- API, for one, answers 400 to throttling and says so only in its body).

CREATE TABLE ventros.http_retry_classifiers (
    policy text PRIMARY KEY,
    classifier regprocedure NOT NULL,
    CONSTRAINT http_retry_classifiers_policy_name CHECK (policy ~ '^[a-z][a-z0-9_]{0,62}$'
                                                         AND policy NOT IN ('transient', 'any'))
);
COMMENT ON TABLE ventros.http_retry_classifiers IS
    'Retry policies besides transient and any (http_requests.retry_policy): per policy, f(response_status integer, response_body bytea, retryable boolean) RETURNS boolean: whether a failed attempt is retried (retryable is the dispatcher''s own verdict by status)';
ALTER TABLE ventros.http_retry_classifiers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_retry_classifiers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.http_retry_classifiers FOR SELECT USING (true);

CREATE FUNCTION ventros.register_http_retry_classifier(policy text, classifier regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(classifier, ARRAY['integer', 'bytea', 'boolean']::regtype[], 'boolean',
                                           'classifier');
    INSERT INTO ventros.http_retry_classifiers AS c (policy, classifier)
    VALUES (register_http_retry_classifier.policy, register_http_retry_classifier.classifier)
    ON CONFLICT ON CONSTRAINT http_retry_classifiers_pkey DO UPDATE SET classifier = EXCLUDED.classifier;
END
$$;
COMMENT ON FUNCTION ventros.register_http_retry_classifier(text, regprocedure) IS
    'Registers the function that decides whether failed answers of requests with this retry_policy are retried';

-- ---- Completion handlers ----------------------------------------------------
-- What a finished request means is the business of whoever queued it: a
-- channel send marks its message sent or failed, a webhook delivery updates
-- its subscription's counters.  Each purpose declares its handler here (one
-- row, no new dispatcher code); it runs in the transaction that records the
-- final outcome, as the request's tenant.  A handler that fails does not lose
-- the outcome: the error is kept on the request (handler_error) and
-- ventros.rerun_http_request_handler() runs it again.

CREATE TABLE ventros.http_request_handlers (
    purpose text PRIMARY KEY,
    handler regprocedure NOT NULL,
    CONSTRAINT http_request_handlers_purpose_not_blank CHECK (btrim(purpose) <> '' AND length(purpose) <= 100)
);
COMMENT ON TABLE ventros.http_request_handlers IS
    'Per purpose, the function called with the request row (ventros.http_requests) when it succeeded, failed or died';

-- Readable by all tenant roles (nothing secret), written by the owner only.
ALTER TABLE ventros.http_request_handlers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.http_request_handlers FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.http_request_handlers FOR SELECT USING (true);
GRANT SELECT ON ventros.http_request_handlers TO ventros_viewer;

CREATE FUNCTION ventros.register_http_request_handler(purpose text, handler regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(handler, ARRAY['ventros.http_requests']::regtype[], NULL, 'handler');
    INSERT INTO ventros.http_request_handlers AS h (purpose, handler)
    VALUES (register_http_request_handler.purpose, register_http_request_handler.handler)
    ON CONFLICT ON CONSTRAINT http_request_handlers_pkey DO UPDATE SET handler = EXCLUDED.handler;
END
$$;
COMMENT ON FUNCTION ventros.register_http_request_handler(text, regprocedure) IS
    'Registers the function that handles the final outcome of requests of one purpose';

CREATE FUNCTION ventros.run_http_request_handler(r ventros.http_requests) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
    failure text;
BEGIN
    SELECT h.handler INTO fn FROM ventros.http_request_handlers h WHERE h.purpose = r.purpose;
    IF fn IS NULL THEN
        RETURN true;
    END IF;
    failure := (ventros.call_for_request(fn, r)).failure;
    UPDATE ventros.http_requests q SET handler_error = failure
     WHERE q.tenant_id = r.tenant_id AND q.id = r.id AND q.handler_error IS DISTINCT FROM failure;
    RETURN failure IS NULL;
END
$$;
COMMENT ON FUNCTION ventros.run_http_request_handler(ventros.http_requests) IS
    'Runs the declared handler of a finished request as its tenant; a failure is kept in handler_error, never raised';

-- SECURITY DEFINER: the handler runs as it does for the dispatcher (as the
-- owner), for the caller's tenant only (require_tenant below).
CREATE FUNCTION ventros.rerun_http_request_handler(request_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.http_requests;
BEGIN
    SELECT * INTO r FROM ventros.http_requests q
     WHERE q.tenant_id = ventros.require_tenant() AND q.id = request_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'http request % not found', request_id USING ERRCODE = 'P0002';
    END IF;
    IF r.status NOT IN ('succeeded', 'failed', 'dead') THEN
        RAISE EXCEPTION 'http request % is still %', request_id, r.status USING ERRCODE = '55000',
            HINT = 'Handlers run once a request has succeeded, failed or died.';
    END IF;
    RETURN ventros.run_http_request_handler(r);
END
$$;
COMMENT ON FUNCTION ventros.rerun_http_request_handler(uuid) IS
    'Runs a finished request''s handler again (after its handler_error was fixed); true when it succeeded';

-- Records one attempt's outcome.  Ignored unless the row is still in flight
-- with this attempt number (a lease taken over by another dispatcher wins).
CREATE FUNCTION ventros.http_record_attempt(
    p_tenant_id text, p_id uuid, p_attempt integer,
    p_succeeded boolean, p_retryable boolean, p_retry_after_ms bigint,
    p_response_status integer, p_response_headers text, p_response_body bytea,
    p_response_truncated boolean, p_error text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.http_requests;
    new_status text;
    delay interval;
    hdrs jsonb;
    classify text;
BEGIN
    SELECT * INTO r FROM ventros.http_requests
     WHERE tenant_id = p_tenant_id AND id = p_id AND status = 'in_flight' AND attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_response_headers IS NOT NULL THEN
        SELECT coalesce(jsonb_object_agg(lower(btrim(split_part(l, ':', 1))),
                                         btrim(substr(l, strpos(l, ':') + 1))), '{}')
          INTO hdrs
          FROM regexp_split_to_table(p_response_headers, E'\r?\n') AS l
         WHERE strpos(l, ':') > 1;
    END IF;
    IF NOT p_succeeded AND r.retry_policy NOT IN ('transient', 'any') THEN
        SELECT format('SELECT %s($1, $2, $3)', c.classifier::regproc) INTO classify
          FROM ventros.http_retry_classifiers c WHERE c.policy = r.retry_policy;
        IF classify IS NOT NULL THEN
            EXECUTE classify INTO p_retryable USING p_response_status, p_response_body, p_retryable;
        END IF;
    END IF;
    IF p_succeeded THEN
        new_status := 'succeeded';
    ELSIF NOT p_retryable THEN
        new_status := 'failed';
    ELSIF r.attempts >= r.max_attempts THEN
        new_status := 'dead';
    ELSE
        new_status := 'pending';
        delay := CASE WHEN cardinality(r.retry_schedule) > 0
                      THEN r.retry_schedule[least(r.attempts, cardinality(r.retry_schedule))] * (0.9 + random() * 0.2)
                      ELSE ventros.http_backoff(r.attempts) END;
        IF p_retry_after_ms IS NOT NULL THEN
            delay := greatest(delay, make_interval(secs => least(p_retry_after_ms / 1000.0,
                                         ventros.setting_number('ventros.http_retry_after_max')::float8)));
        END IF;
    END IF;
    UPDATE ventros.http_requests
       SET status = new_status,
           next_attempt_at = CASE WHEN new_status = 'pending' THEN clock_timestamp() + delay ELSE next_attempt_at END,
           lease_until = NULL, claimed_by = NULL,
           response_status = p_response_status,
           response_headers = hdrs,
           response_body = p_response_body,
           response_truncated = coalesce(p_response_truncated, false),
           last_error = CASE WHEN p_succeeded THEN NULL ELSE p_error END,
           completed_at = CASE WHEN new_status IN ('succeeded', 'failed', 'dead') THEN clock_timestamp() END,
           updated_at = now()
     WHERE tenant_id = p_tenant_id AND id = p_id
    RETURNING * INTO r;
    IF new_status <> 'pending' THEN
        PERFORM ventros.run_http_request_handler(r);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION ventros.http_record_attempt(text, uuid, integer, boolean, boolean, bigint, integer, text, bytea, boolean, text) IS
    'Dispatcher: stores an attempt''s answer and decides succeeded, failed, dead or a retry after backoff (Retry-After honoured)';

-- ---- SSRF guard and status --------------------------------------------------

CREATE FUNCTION ventros.check_url(url text) RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'ventros_check_url';
COMMENT ON FUNCTION ventros.check_url(text) IS
    'SSRF guard: NULL when the dispatcher may call this URL, else why not (scheme, userinfo, name, or a resolved address in a refused range)';

CREATE FUNCTION ventros.http_dispatcher_state(
    OUT pid integer, OUT database text, OUT started_at timestamptz, OUT in_flight integer,
    OUT succeeded bigint, OUT failed_attempts bigint, OUT refused bigint, OUT last_activity_at timestamptz,
    OUT last_error_at timestamptz, OUT last_error text)
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_http_dispatcher_state';
COMMENT ON FUNCTION ventros.http_dispatcher_state() IS
    'The HTTP dispatcher''s shared-memory counters (since server start)';

CREATE VIEW ventros.http_dispatcher_status AS
    SELECT s.pid, s.database, s.started_at, s.in_flight, s.succeeded, s.failed_attempts, s.refused,
           s.last_activity_at, s.last_error_at, s.last_error,
           q.pending, q.due, q.leased, q.oldest_due_at, q.dead, q.failed
      FROM ventros.http_dispatcher_state() s,
           LATERAL (SELECT count(*) FILTER (WHERE r.status = 'pending') AS pending,
                           count(*) FILTER (WHERE r.status = 'pending' AND r.next_attempt_at <= now()) AS due,
                           count(*) FILTER (WHERE r.status = 'in_flight') AS leased,
                           min(r.next_attempt_at) FILTER (WHERE r.status = 'pending') AS oldest_due_at,
                           count(*) FILTER (WHERE r.status = 'dead') AS dead,
                           count(*) FILTER (WHERE r.status = 'failed') AS failed
                      FROM ventros.http_requests r) q;
COMMENT ON VIEW ventros.http_dispatcher_status IS
    'The HTTP dispatcher: its process, counters since start, last error, and the queue across all tenants';

GRANT SELECT ON ventros.http_dispatcher_status TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer),
    ventros.enqueue_http_requests(text[], text[], jsonb[], bytea[], uuid[], text, integer, integer, timestamptz, text, integer)
    TO ventros_admin;
GRANT SELECT ON ventros.http_retry_classifiers TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.replay_http_request(uuid, integer) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.rerun_http_request_handler(uuid) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.prune_http_requests(timestamptz, integer) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.check_url(text) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.http_requests_wake() TO ventros_viewer;
