-- Channel secrets as credentials (sql/68_credentials_channels.sql): the
-- secret keys of a channel's config are stored encrypted, out of the config,
-- never in an event, readable by no tenant role; a client rewriting the config
-- it read keeps them; a rotation (sql/93_operator.sql) keeps the previous
-- webhook secret valid for its overlap window and no longer, checked at
-- chosen instants.
BEGIN;
SELECT plan(30);

SELECT ventros.create_tenant('cs_a', 'Channel secrets A');
SET LOCAL ventros.tenant = 'cs_a';
CREATE TEMP TABLE k (name text PRIMARY KEY, id uuid);
INSERT INTO k VALUES
    ('waha', (ventros.create_channel('WAHA', 'waha', config => '{"session": "s1", "base_url": "http://waha:3000",
        "webhook_secret": "waha-secret-one-0123456789", "webhook_token": "waha-token-0123456789",
        "api_key": "waha-api-key-0123456789"}')).id),
    ('wa', (ventros.create_channel('Cloud', 'whatsapp', config => '{"phone_number_id": "1001",
        "app_secret": "meta-secret-one-0123456789", "access_token": "meta-token-0123456789"}')).id);
CREATE FUNCTION pg_temp.k(n text) RETURNS uuid LANGUAGE sql AS $$ SELECT id FROM k WHERE name = n $$;
GRANT SELECT ON k TO PUBLIC;
CREATE FUNCTION pg_temp.ch(n text) RETURNS ventros.channels LANGUAGE sql AS $$
    SELECT * FROM ventros.channels WHERE id = pg_temp.k(n) $$;
-- A WAHA delivery signed with a secret (HMAC-SHA512 of the body, hex) and the token.
CREATE FUNCTION pg_temp.waha_headers(secret text, body bytea) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('X-Webhook-Hmac', encode(ventros.webhook_hmac(body, secret, 'sha512'), 'hex'),
                              'X-Ventros-Token', 'waha-token-0123456789') $$;
CREATE FUNCTION pg_temp.body(n integer) RETURNS bytea LANGUAGE sql AS $$
    SELECT convert_to(jsonb_build_object('event', 'session.status', 'session', 's1', 'id', 'evt-' || n,
                                         'payload', jsonb_build_object('status', 'WORKING'))::text, 'UTF8') $$;
CREATE FUNCTION pg_temp.post(secret text, n integer) RETURNS integer LANGUAGE sql AS $$
    SELECT split_part(ventros_test.post_webhook('waha', pg_temp.k('waha'), pg_temp.body(n),
                                                pg_temp.waha_headers(secret, pg_temp.body(n))), ' ', 1)::integer $$;
CREATE FUNCTION pg_temp.verify(secret text, at timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT ventros.verify_channel_webhook('waha', pg_temp.ch('waha'),
                                          ventros.webhook_headers(pg_temp.waha_headers(secret, pg_temp.body(0))),
                                          pg_temp.body(0), at) $$;

-- ---- stored encrypted, out of the config ----
SELECT is((SELECT config FROM ventros.channels WHERE id = pg_temp.k('waha')),
          '{"session": "s1", "base_url": "http://waha:3000"}', 'the stored config keeps no secret');
SELECT is((SELECT config FROM ventros.channels WHERE id = pg_temp.k('wa')), '{"phone_number_id": "1001"}',
          'nor a Meta channel''s');
SELECT is((SELECT array_agg(key ORDER BY key) FROM ventros.channel_secrets WHERE channel_id = pg_temp.k('waha')),
          '{api_key,webhook_secret,webhook_token}', 'the secrets are kept by key');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.channel_secrets
                      WHERE position(convert_to('0123456789', 'UTF8') IN secret) > 0),
          'encrypted: no stored value holds its plaintext');
SELECT is((ventros.channel_with_secrets(pg_temp.ch('wa'))).config,
          '{"phone_number_id": "1001", "app_secret": "meta-secret-one-0123456789", "access_token": "meta-token-0123456789"}',
          'the provider functions read them decrypted into config');

-- ---- what a client writes back ----
SELECT ventros.update_channel(pg_temp.k('waha'), 1, '{"config": {"session": "s2", "base_url": "http://waha:3000"}}');
SELECT is((ventros.channel_with_secrets(pg_temp.ch('waha'))).config->>'api_key', 'waha-api-key-0123456789',
          'a config rewritten without the secrets keeps them');
SELECT ventros.update_channel(pg_temp.k('waha'), 2,
    '{"config": {"session": "s1", "base_url": "http://waha:3000", "api_key": null, "webhook_secret": "waha-secret-two-0123456789"}}');
SELECT is((SELECT array_agg(key ORDER BY key) FROM ventros.channel_secrets WHERE channel_id = pg_temp.k('waha')),
          '{webhook_secret,webhook_token}', 'a secret given as null is removed');
SELECT ok((SELECT previous_secret IS NULL FROM ventros.channel_secrets
            WHERE channel_id = pg_temp.k('waha') AND key = 'webhook_secret'),
          'one replaced by a config write has no overlap');
SELECT is((SELECT config FROM ventros.channels WHERE id = pg_temp.k('waha')),
          '{"session": "s1", "base_url": "http://waha:3000"}', 'and the config still holds none');
SELECT throws_ok($$SELECT ventros.update_channel(pg_temp.k('waha'), 3, '{"config": {"api_key": 42}}')$$, '22023', NULL,
                 'a secret that is not a string is refused');

-- ---- nothing returns them ----
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.outbox
                      WHERE payload::text ~ '(waha|meta)-(secret|token|api-key)'),
          'no event carries a secret');
SET LOCAL ROLE ventros_admin;
SELECT throws_ok($$SELECT * FROM ventros.channel_secrets$$, '42501', NULL, 'a tenant admin may not read the secrets table');
SELECT throws_ok($$SELECT ventros.channel_with_secrets(c) FROM ventros.channels c$$, '42501', NULL,
                 'nor call the function that decrypts them');
SELECT throws_ok($$SELECT ventros.verify_channel_webhook('waha', c, '{}', '') FROM ventros.channels c$$, '42501', NULL,
                 'nor the verification that reads them');
SELECT ok(NOT EXISTS (SELECT 1 FROM ventros.channels c WHERE c::text ~ '(waha|meta)-(secret|token|api-key)'),
          'the channel rows a tenant reads hold none');
SELECT ok(NOT EXISTS (SELECT 1 FROM api.channels c WHERE to_jsonb(c)::text ~ '(waha|meta)-(secret|token|api-key)'),
          'nor does the API''s view');
RESET ROLE;

-- ---- the webhook with the current secret ----
SELECT is(pg_temp.post('waha-secret-two-0123456789', 1), 200, 'a delivery signed with the current secret is accepted');
SELECT is(pg_temp.post('waha-secret-one-0123456789', 2), 401, 'one signed with a replaced secret (no overlap) is refused');

-- ---- rotation with an overlap ----
RESET ventros.tenant;
SELECT is(ventros.rotate_channel_secret('cs_a', pg_temp.k('waha'), 'waha-secret-three-0123456789', interval '1 hour'),
          'waha-secret-three-0123456789', 'a platform admin rotates the secret with a one-hour overlap');
SET LOCAL ventros.tenant = 'cs_a';
SELECT is((SELECT previous_expires_at FROM ventros.channel_secrets WHERE channel_id = pg_temp.k('waha') AND key = 'webhook_secret'),
          now() + interval '1 hour', 'the previous secret expires when the overlap ends');
SELECT is((SELECT (payload->>'previous_secret_expires_at')::timestamptz FROM ventros.outbox
            WHERE event_type = 'channel.secret_rotated' AND aggregate_id = pg_temp.k('waha')),
          now() + interval '1 hour', 'the audit event says when, never a value');
SELECT is(pg_temp.post('waha-secret-three-0123456789', 3), 200, 'the new secret verifies');
SELECT is(pg_temp.post('waha-secret-two-0123456789', 4), 200, 'a delivery signed with the previous one, inside the window, too');
SELECT is(pg_temp.verify('waha-secret-two-0123456789', now() + interval '59 minutes 59 seconds'), NULL,
          'the previous secret at the last second of the window: accepted');
SELECT is(pg_temp.verify('waha-secret-two-0123456789', now() + interval '1 hour'), 'invalid_signature',
          'at the instant the window ends: refused');
SELECT is(pg_temp.verify('waha-secret-three-0123456789', now() + interval '2 days'), NULL,
          'the current one has no end');
SELECT is(pg_temp.verify('waha-secret-one-0123456789', now()), 'invalid_signature',
          'an older secret than the previous one never verifies');
-- the window ended: the previous expiry moved into the past (as if an hour had passed)
UPDATE ventros.channel_secrets SET previous_expires_at = now() - interval '1 second'
 WHERE channel_id = pg_temp.k('waha') AND key = 'webhook_secret';
SELECT is(pg_temp.post('waha-secret-two-0123456789', 5), 401, 'after the window, the previous secret is refused');

-- ---- a rotation without overlap ----
RESET ventros.tenant;
SELECT ventros.rotate_channel_secret('cs_a', pg_temp.k('waha'), 'waha-secret-four-0123456789', interval '0');
SET LOCAL ventros.tenant = 'cs_a';
SELECT is(pg_temp.verify('waha-secret-three-0123456789', now()), 'invalid_signature',
          'a zero overlap drops the previous secret at once');
SELECT throws_ok($$SELECT ventros.rotate_channel_secret('cs_a', pg_temp.k('waha'), NULL, interval '-1 hour')$$, '22023', NULL,
                 'a negative overlap is refused');

SELECT * FROM finish();
ROLLBACK;
