-- One verb for declaring things to the catalog: register_* (as
-- register_aggregate, register_event_type).  The declare_* functions of 0.1.0
-- are dropped and their register_* successors created; the rows they wrote
-- stay.
DROP FUNCTION ventros.declare_quiet_columns(text, name[]);
DROP FUNCTION ventros.declare_http_request_preparer(text, regprocedure);
DROP FUNCTION ventros.declare_http_retry_classifier(text, regprocedure);
DROP FUNCTION ventros.declare_http_request_handler(text, regprocedure);
DROP FUNCTION ventros.declare_channel_provider(text, text, regprocedure, regprocedure, regprocedure, text, integer);
-- (its successor, register_channel_provider, takes two more arguments: 71_inbound_registry.sql)

CREATE OR REPLACE FUNCTION ventros.register_quiet_columns(aggregate text, columns name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
    missing name;
BEGIN
    SELECT a.table_name INTO target FROM ventros.aggregates a WHERE a.aggregate = register_quiet_columns.aggregate;
    IF target IS NULL THEN
        RAISE EXCEPTION 'aggregate "%" is not registered', aggregate USING ERRCODE = '22023';
    END IF;
    SELECT c INTO missing FROM unnest(columns) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute
                      WHERE attrelid = target AND attname = c AND attnum > 0 AND NOT attisdropped)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'aggregate table % has no column %', target, missing USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.aggregates a SET quiet_columns = coalesce(columns, '{}')
    WHERE a.aggregate = register_quiet_columns.aggregate;
END
$$;
COMMENT ON FUNCTION ventros.register_quiet_columns(text, name[]) IS
    'Registers the columns whose changes alone neither bump an aggregate''s version nor emit events';

GRANT EXECUTE ON FUNCTION ventros.register_quiet_columns(text, name[]) TO ventros_platform_admin;

CREATE OR REPLACE FUNCTION ventros.register_http_request_preparer(purpose text, preparer regprocedure) RETURNS void
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

CREATE OR REPLACE FUNCTION ventros.register_http_retry_classifier(policy text, classifier regprocedure) RETURNS void
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

CREATE OR REPLACE FUNCTION ventros.register_http_request_handler(purpose text, handler regprocedure) RETURNS void
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

-- its hint names the classifier registration
CREATE OR REPLACE FUNCTION ventros.enqueue_http_request(
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
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    new_id uuid;
BEGIN
    IF url IS NULL OR url !~* '^https?://[^/?#]' THEN
        RAISE EXCEPTION 'url must be an http or https URL'
            USING ERRCODE = '22023', DETAIL = format('Got %s.', coalesce(quote_literal(left(url, 200)), 'NULL'));
    END IF;
    IF headers IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_each(headers) h
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
    INSERT INTO ventros.http_requests AS r
        (tenant_id, method, url, headers, body, purpose, correlation_id, retry_policy, max_attempts,
         timeout_ms, next_attempt_at, max_response_size)
    VALUES (tenant, upper(method), url, coalesce(headers, '{}'), body, coalesce(purpose, 'generic'),
            correlation_id, coalesce(retry_policy, 'transient'),
            coalesce(max_attempts, current_setting('ventros.http_max_attempts')::integer),
            timeout_ms, coalesce(not_before, now()), max_response_size)
    RETURNING r.id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION ventros.enqueue_http_request(text, text, jsonb, bytea, text, uuid, integer, integer, timestamptz, text, integer) IS
    'Queues an outbound HTTP call for the acting tenant; the dispatcher sends it after commit. Returns its id';

