-- Durations and sizes of the dispatcher, the inbox processors and media carry
-- their units ('5s', '64MB'); ventros.http_backoff_base is now
-- ventros.http_backoff_min, as the outbox's; SQL reads them in base units
-- through ventros.setting_number().

-- A numeric ventros.* setting in its base unit (ms, s or bytes): durations
-- and sizes are declared with units, so current_setting() shows '5s'.
CREATE FUNCTION ventros.setting_number(name text) RETURNS bigint
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'ventros_setting_number';
COMMENT ON FUNCTION ventros.setting_number(text) IS
    'A numeric ventros.* setting in its base unit (milliseconds, seconds or bytes, as declared), for SQL that computes with it';
GRANT EXECUTE ON FUNCTION ventros.setting_number(text) TO ventros_viewer, ventros_anon;

CREATE OR REPLACE FUNCTION ventros.http_backoff(failed_attempts integer) RETURNS interval
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

CREATE OR REPLACE FUNCTION ventros.http_record_attempt(
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

CREATE OR REPLACE FUNCTION ventros.media_download_cap(req jsonb) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN req->>'step' = 'lookup' THEN NULL ELSE ventros.setting_number('ventros.media_max_size')::integer END
$$;
COMMENT ON FUNCTION ventros.media_download_cap(jsonb) IS
    'ventros.media_max_size for a media download request, NULL (the dispatcher''s default cap) for a Cloud API media lookup';

CREATE OR REPLACE FUNCTION ventros.handle_media_lookup(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb := ventros.json_body(r.response_body);
BEGIN
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.fail_media_download(r, ventros.provider_error_text(r));
    ELSIF coalesce(answer->>'url', '') !~* '^https?://' THEN
        PERFORM ventros.fail_media_download(r, 'the media lookup answer has no url');
    ELSE
        UPDATE ventros.message_media mm
           SET content_type = coalesce(answer->>'mime_type', mm.content_type),
               expected_sha256 = coalesce(answer->>'sha256', mm.expected_sha256)
         WHERE mm.tenant_id = r.tenant_id AND mm.message_id = r.correlation_id;
        PERFORM ventros.enqueue_http_request(answer->>'url', 'GET', r.headers, NULL, 'media.download', r.correlation_id,
                                             retry_policy => r.retry_policy,
                                             max_response_size => ventros.setting_number('ventros.media_max_size')::integer);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_media_lookup(ventros.http_requests) IS
    'Completion handler of media.lookup (Cloud API step 1): queues the download of the returned URL with the same headers, keeping mime_type and sha256';

CREATE OR REPLACE FUNCTION ventros.handle_media_download(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mm ventros.message_media;
    bytes bytea := coalesce(r.response_body, '');
    digest bytea;
BEGIN
    SELECT * INTO mm FROM ventros.message_media x
     WHERE x.tenant_id = r.tenant_id AND x.message_id = r.correlation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    digest := sha256(bytes);
    IF r.status <> 'succeeded' THEN
        PERFORM ventros.fail_media_download(r, ventros.provider_error_text(r));
    ELSIF r.response_truncated THEN
        PERFORM ventros.fail_media_download(r, format('the media is larger than %s bytes (ventros.media_max_size)',
                                                      coalesce(r.max_response_size, ventros.setting_number('ventros.http_max_response_size')::integer)));
    ELSIF mm.expected_sha256 IS NOT NULL AND lower(mm.expected_sha256) <> encode(digest, 'hex')
          AND mm.expected_sha256 <> encode(digest, 'base64') THEN
        PERFORM ventros.fail_media_download(r, format('sha256 mismatch: expected %s, got %s', mm.expected_sha256,
                                                      encode(digest, 'hex')));
    ELSE
        UPDATE ventros.message_media x
           SET status = 'downloaded', data = bytes, size = length(bytes), sha256 = encode(digest, 'hex'), error = NULL,
               content_type = coalesce(nullif(split_part(r.response_headers->>'content-type', ';', 1), ''), x.content_type),
               downloaded_at = now()
         WHERE x.tenant_id = mm.tenant_id AND x.message_id = mm.message_id
        RETURNING * INTO mm;
        PERFORM ventros.finish_media_download(mm);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.handle_media_download(ventros.http_requests) IS
    'Completion handler of media.download: stores the bytes in ventros.message_media with content type, size and sha256 (checked against the provider''s when known), or the failure; then metadata.media_download on the message';

