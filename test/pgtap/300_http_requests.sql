-- The outbound HTTP queue: enqueue validation, tenancy, and the dispatcher's
-- SQL side (claim with a lease, outcome recording, backoff, Retry-After,
-- dead letters, replay), exercised without the network.
BEGIN;
SELECT plan(55);

SELECT has_table('ventros', 'http_requests', 'the queue exists');
SELECT ok((SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'ventros.http_requests'::regclass),
          'row-level security is enabled and forced');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.aggregates WHERE table_name = 'ventros.http_requests'::regclass),
          'the queue is not an aggregate (no versions, no events)');

SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/')$$, '42501', NULL,
                 'enqueueing needs an acting tenant');

SET LOCAL ventros.tenant = 'http_t1';
SELECT throws_ok($$SELECT ventros.enqueue_http_request('ftp://example.com/')$$, '22023', NULL, 'only http and https URLs');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https:///nohost')$$, '22023', NULL, 'a URL needs a host');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/', 'POST', '{"X-A": 1}')$$, '22023', NULL,
                 'header values must be strings');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/', 'POST', '{"Bad Name": "x"}')$$, '22023', NULL,
                 'header names must be tokens');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/', 'POST', jsonb_build_object('X-A', E'v\r\nX-Injected: 1'))$$,
                 '22023', NULL, 'header values cannot carry line breaks');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/', 'TRACE')$$, '23514', NULL, 'unknown methods are refused');
SELECT throws_ok($$SELECT ventros.enqueue_http_request('https://example.com/', max_attempts => 0)$$, '23514', NULL,
                 'max_attempts is at least 1');

SELECT lives_ok($$SELECT ventros.enqueue_http_request('https://example.com/a', 'post', '{"Content-Type": "application/json"}',
                  convert_to('{"a":1}', 'UTF8'), 'webhook.delivery', '00000000-0000-4000-8000-000000000001', 4)$$,
                'a request is queued');
SELECT results_eq($$SELECT tenant_id, method, status, attempts, max_attempts, purpose, body FROM ventros.http_requests
                    WHERE url = 'https://example.com/a'$$,
                  $$VALUES ('http_t1', 'POST', 'pending', 0, 4, 'webhook.delivery', convert_to('{"a":1}', 'UTF8'))$$,
                  'queued for the acting tenant, method upper-cased');

-- tenancy: another tenant (through a non-superuser role) does not see it
SET LOCAL ventros.tenant = 'http_t2';
SET LOCAL ROLE ventros_admin;
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE url = 'https://example.com/a'), 0,
          'another tenant does not see the request');
SELECT throws_ok($$INSERT INTO ventros.http_requests (tenant_id, url, max_attempts) VALUES ('http_t1', 'https://x.test/', 1)$$,
                 '42501', NULL, 'nobody inserts for another tenant');
SET LOCAL ventros.tenant = 'http_t1';
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE url = 'https://example.com/a'), 1,
          'its tenant''s administrator sees it');
RESET ROLE;
SET LOCAL ROLE ventros_agent;
SELECT throws_ok($$SELECT count(*) FROM ventros.http_requests$$, '42501', NULL,
                 'agents cannot read requests (their headers hold credentials)');
RESET ROLE;

-- the dispatcher's side: claim
SELECT is((SELECT count(*)::int FROM ventros.http_claim(100, '1 minute') WHERE url = 'https://example.com/a'), 1,
          'a due request is claimed');
SELECT results_eq($$SELECT status, attempts, claimed_by = pg_backend_pid(), lease_until > now() FROM ventros.http_requests
                    WHERE url = 'https://example.com/a'$$,
                  $$VALUES ('in_flight', 1, true, true)$$, 'claimed: in flight, attempt counted, leased');
SELECT is((SELECT count(*)::int FROM ventros.http_claim(100, '1 minute') WHERE url = 'https://example.com/a'), 0,
          'a leased request is not claimed twice');

-- a stale attempt number is ignored
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/a'),
          7, true, false, NULL, 200, NULL, NULL, false, NULL), NULL, 'an outcome for another attempt is ignored');

-- a retryable failure with Retry-After: back to pending, not before it
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/a'),
          1, false, true, 30000, 429, E'Retry-After: 30\r\nContent-Type: text/plain\r\n', convert_to('slow down', 'UTF8'), false, 'HTTP 429'),
          'pending', 'a 429 is retried');
SELECT results_eq($$SELECT status, next_attempt_at >= clock_timestamp() + interval '29 seconds', response_status,
                           response_headers, last_error, lease_until IS NULL
                      FROM ventros.http_requests WHERE url = 'https://example.com/a'$$,
                  $$VALUES ('pending', true, 429, '{"retry-after": "30", "content-type": "text/plain"}'::jsonb, 'HTTP 429', true)$$,
                  'the retry waits for Retry-After; the answer and its headers are kept');
SELECT is((SELECT count(*)::int FROM ventros.http_claim(100, '1 minute') WHERE url = 'https://example.com/a'), 0,
          'a request waiting for its retry is not due');

-- exhaust the attempts: dead
UPDATE ventros.http_requests SET next_attempt_at = now() - interval '1 second' WHERE url = 'https://example.com/a';
SELECT is((SELECT attempts FROM ventros.http_claim(100, '1 minute') WHERE url = 'https://example.com/a'), 2, 'second attempt');
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/a'),
          2, false, true, NULL, NULL, NULL, NULL, false, 'Timeout was reached'), 'pending', 'a timeout is retried');
UPDATE ventros.http_requests SET next_attempt_at = now() - interval '1 second', attempts = 3 WHERE url = 'https://example.com/a';
SELECT is((SELECT attempts FROM ventros.http_claim(100, '1 minute') WHERE url = 'https://example.com/a'), 4, 'last attempt');
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/a'),
          4, false, true, NULL, 503, '', NULL, false, 'HTTP 503'), 'dead', 'the last failed attempt makes it dead');
SELECT ok((SELECT completed_at IS NOT NULL FROM ventros.http_requests WHERE url = 'https://example.com/a'), 'dead is final, with a completion time');

-- replay
SELECT lives_ok($$SELECT ventros.replay_http_request((SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/a'), 2)$$,
                'a dead request is replayed');
SELECT results_eq($$SELECT status, max_attempts, completed_at IS NULL FROM ventros.http_requests WHERE url = 'https://example.com/a'$$,
                  $$VALUES ('pending', 6, true)$$, 'replay gives it more attempts');
SELECT throws_ok($$SELECT ventros.replay_http_request((SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/a'))$$,
                 'P0002', NULL, 'only failed or dead requests are replayed');

-- success and final failure
SELECT ventros.enqueue_http_request('https://example.com/b');
SELECT is((SELECT max_attempts FROM ventros.http_requests WHERE url = 'https://example.com/b'),
          current_setting('ventros.http_max_attempts')::int, 'max_attempts defaults to ventros.http_max_attempts');
SELECT ventros.enqueue_http_request('https://example.com/c');
SELECT is((SELECT count(*)::int FROM ventros.http_claim(100, '1 minute') WHERE url IN ('https://example.com/b', 'https://example.com/c')), 2,
          'both claimed');
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/b'),
          1, true, false, NULL, 200, E'X-Id: 9\r\n', convert_to('ok', 'UTF8'), false, NULL), 'succeeded', 'a 2xx succeeds');
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/c'),
          1, false, false, NULL, NULL, NULL, NULL, false, 'refused by the SSRF guard: x'), 'failed', 'a refusal fails for good');
SELECT results_eq($$SELECT status, last_error FROM ventros.http_requests WHERE url = 'https://example.com/c'$$,
                  $$VALUES ('failed', 'refused by the SSRF guard: x')$$, 'the refusal is the last error');

-- pruning finished requests (time is a parameter)
SELECT is(ventros.prune_http_requests(clock_timestamp() - interval '1 hour'), 0, 'nothing finished an hour ago');
SELECT is(ventros.prune_http_requests(clock_timestamp() + interval '1 second'), 2,
          'the succeeded and the failed request are pruned');
SELECT is((SELECT count(*)::int FROM ventros.http_requests WHERE url LIKE 'https://example.com/%'), 1,
          'the pending request stays');

-- completion handlers: declared per purpose, run once the outcome is final,
-- as the request's tenant; a failing handler keeps its error, not the outcome
CREATE TABLE pg_temp.handled (tenant text, purpose text, status text, response_status integer);
CREATE FUNCTION pg_temp.note_outcome(r ventros.http_requests) RETURNS void LANGUAGE sql AS
    $f$INSERT INTO pg_temp.handled VALUES (ventros.current_tenant(), r.purpose, r.status, r.response_status)$f$;
CREATE FUNCTION pg_temp.fail_outcome(r ventros.http_requests) RETURNS void LANGUAGE plpgsql AS
    $f$BEGIN INSERT INTO pg_temp.handled VALUES ('never', r.purpose, r.status, NULL); RAISE EXCEPTION 'handler broke'; END$f$;
CREATE FUNCTION pg_temp.wrong_shape(x integer) RETURNS void LANGUAGE sql AS $f$SELECT$f$;
SELECT throws_ok($$SELECT ventros.register_http_request_handler('test.wrong', 'pg_temp.wrong_shape(integer)')$$, '22023', NULL,
                 'a handler takes the request row');
SELECT ventros.register_http_request_handler('test.note', 'pg_temp.note_outcome(ventros.http_requests)');
SELECT ventros.register_http_request_handler('test.fail', 'pg_temp.fail_outcome(ventros.http_requests)');
SET LOCAL ventros.tenant = 'http_t1';
SELECT ventros.enqueue_http_request('https://example.com/h1', purpose => 'test.note', max_attempts => 2);
SELECT ventros.enqueue_http_request('https://example.com/h2', purpose => 'test.fail');
SET LOCAL ventros.tenant = '';
SELECT is((SELECT count(*)::int FROM ventros.http_claim(100, '1 minute') WHERE url IN ('https://example.com/h1', 'https://example.com/h2')), 2,
          'handler requests claimed');
SELECT ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/h1'),
       1, false, true, NULL, 500, NULL, NULL, false, 'HTTP 500');
SELECT is((SELECT count(*)::int FROM pg_temp.handled), 0, 'a retry is not an outcome: no handler yet');
UPDATE ventros.http_requests SET next_attempt_at = now() - interval '1 second' WHERE url = 'https://example.com/h1';
SELECT is((SELECT attempts FROM ventros.http_claim(100, '1 minute') WHERE url = 'https://example.com/h1'), 2, 'claimed again');
SELECT ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/h1'),
       2, true, false, NULL, 201, NULL, NULL, false, NULL);
SELECT results_eq($$SELECT tenant, purpose, status, response_status FROM pg_temp.handled$$,
                  $$VALUES ('http_t1', 'test.note', 'succeeded', 201)$$,
                  'the handler saw the final row, as the request''s tenant');
SELECT is(ventros.http_record_attempt('http_t1', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/h2'),
          1, false, false, NULL, 400, NULL, NULL, false, 'HTTP 400'), 'failed', 'a failing handler does not undo the outcome');
SELECT results_eq($$SELECT status, handler_error FROM ventros.http_requests WHERE url = 'https://example.com/h2'$$,
                  $$VALUES ('failed', 'P0001: handler broke')$$, 'its error is kept on the request');
SELECT is((SELECT count(*)::int FROM pg_temp.handled WHERE tenant = 'never'), 0, 'and its work was rolled back');
-- once the handler is fixed, the tenant's administrator runs it again
SELECT ventros.register_http_request_handler('test.fail', 'pg_temp.note_outcome(ventros.http_requests)');
SET LOCAL ventros.tenant = 'http_t2';
SET LOCAL ROLE ventros_admin;
SELECT throws_ok(format('SELECT ventros.rerun_http_request_handler(%L)', (SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/h2')),
                 'P0002', NULL, 'another tenant cannot rerun it');
SET LOCAL ventros.tenant = 'http_t1';
SELECT is(ventros.rerun_http_request_handler((SELECT id FROM ventros.http_requests WHERE url = 'https://example.com/h2')), true,
          'the tenant''s administrator reruns the fixed handler');
RESET ROLE;
SELECT results_eq($$SELECT handler_error FROM ventros.http_requests WHERE url = 'https://example.com/h2'$$,
                  $$VALUES (NULL::text)$$, 'its error is cleared');
SELECT results_eq($$SELECT tenant, status FROM pg_temp.handled WHERE purpose = 'test.fail'$$,
                  $$VALUES ('http_t1', 'failed')$$, 'the handler saw the request as its tenant');
SET LOCAL ventros.tenant = '';

-- backoff: exponential from the base, capped, +-10 % (default settings:
-- base 5 s, cap 10 h)
SELECT ok((SELECT bool_and(ventros.http_backoff(1) BETWEEN interval '4.5 s' AND interval '5.5 s') FROM generate_series(1, 50)),
          'the first delay is the base, +-10 %');
SELECT ok((SELECT bool_and(ventros.http_backoff(3) BETWEEN interval '18 s' AND interval '22 s') FROM generate_series(1, 50)),
          'each failure doubles the delay');
SELECT ok((SELECT bool_and(ventros.http_backoff(30) BETWEEN interval '9 h' AND interval '11 h') FROM generate_series(1, 50)),
          'the delay is capped by ventros.http_backoff_max');

SELECT * FROM finish();
ROLLBACK;
