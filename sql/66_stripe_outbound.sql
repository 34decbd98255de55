-- Calls to Stripe's API (docs/billing.md): the customer of a new tenant,
-- subscriptions created and changed, usage reported as meter events.
--
-- Every call is a row of the HTTP dispatcher's queue (sql/45_http_requests.sql),
-- written in the transaction that decided it, of the tenant it bills:
--   - form-encoded as Stripe's API takes it (ventros.stripe_form), with an
--     Idempotency-Key chosen once per intent and kept on the row, so a retry
--     of the dispatcher (a timeout after Stripe acted, say) is answered by
--     Stripe with the first answer instead of a second customer or charge;
--   - the platform's secret key is added per attempt by the purposes'
--     preparer (ventros.stripe_request_headers): it is stored encrypted in
--     ventros.stripe_settings and never on the row a tenant's admin may read;
--   - Stripe's answer is applied by the purpose's handler through the
--     platform-only commands (link_stripe_customer, the webhook's
--     apply_stripe_subscription, the usage meter's report).
-- Until a key is configured (ventros.configure_stripe) nothing is queued:
-- a platform without Stripe keeps working, its accounts pending.

CREATE TABLE ventros.stripe_settings (
    id         boolean     PRIMARY KEY DEFAULT true,
    api_key    bytea       NOT NULL,
    api_base   text        NOT NULL DEFAULT 'https://api.stripe.com',
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stripe_settings_one_row CHECK (id),
    CONSTRAINT stripe_settings_api_base_http CHECK (api_base ~* '^https?://[^/?#]+$')
);
COMMENT ON TABLE ventros.stripe_settings IS
    'The platform''s Stripe API key (encrypted with ventros.secret_key) and API base URL; one row; read by the dispatcher''s preparer only';
ALTER TABLE ventros.stripe_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.stripe_settings FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.stripe_settings FROM PUBLIC;

CREATE FUNCTION ventros.configure_stripe(api_key text, api_base text DEFAULT 'https://api.stripe.com')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    IF api_key IS NULL OR api_key !~ '^(sk|rk)_(test|live)_[A-Za-z0-9]{8,247}$' THEN
        RAISE EXCEPTION 'a Stripe secret key looks like sk_live_... or rk_live_...' USING ERRCODE = '22023',
            HINT = 'Copy a secret or restricted key from the Stripe dashboard (Developers, API keys).';
    END IF;
    IF api_base IS NULL OR api_base !~* '^https?://[^/?#]+$' THEN
        RAISE EXCEPTION 'the Stripe API base is a URL without a path, like https://api.stripe.com' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.stripe_settings AS s (id, api_key, api_base)
    VALUES (true, ventros.encrypt_secret(api_key), api_base)
    ON CONFLICT ON CONSTRAINT stripe_settings_pkey
    DO UPDATE SET api_key = EXCLUDED.api_key, api_base = EXCLUDED.api_base, updated_at = now();
END
$$;
COMMENT ON FUNCTION ventros.configure_stripe(text, text) IS
    'Platform admins: stores the Stripe secret key (encrypted) and API base URL the outbound calls use';

-- application/x-www-form-urlencoded as Stripe reads it: nested objects and
-- arrays as bracketed keys (items[0][price]=price_1), values percent-encoded.
CREATE FUNCTION ventros.stripe_form_encode(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(CASE WHEN b ~ '^[A-Za-z0-9_.~-]$' THEN b ELSE upper(regexp_replace(encode(convert_to(b, 'UTF8'), 'hex'), '(..)', '%\1', 'g')) END, '' ORDER BY n)
    FROM regexp_split_to_table(value, '') WITH ORDINALITY x(b, n)
$$;
COMMENT ON FUNCTION ventros.stripe_form_encode(text) IS 'Percent-encodes a form value (UTF-8; unreserved characters kept)';

CREATE FUNCTION ventros.stripe_form(params jsonb, prefix text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := '{}';
    k text;
    v jsonb;
BEGIN
    FOR k, v IN
        SELECT CASE WHEN prefix IS NULL THEN e.key ELSE prefix || '[' || e.key || ']' END, e.value
          FROM jsonb_each(CASE WHEN jsonb_typeof(params) = 'object' THEN params ELSE '{}' END) e
        UNION ALL
        SELECT prefix || '[' || (a.n - 1) || ']', a.value
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(params) = 'array' THEN params ELSE '[]' END)
               WITH ORDINALITY a(value, n)
    LOOP
        IF jsonb_typeof(v) IN ('object', 'array') THEN
            parts := parts || nullif(ventros.stripe_form(v, k), '');
        ELSIF jsonb_typeof(v) <> 'null' THEN
            parts := parts || (k || '=' || ventros.stripe_form_encode(v #>> '{}'));
        END IF;
    END LOOP;
    RETURN array_to_string(parts, '&');
END
$$;
COMMENT ON FUNCTION ventros.stripe_form(jsonb, text) IS
    'A JSON object as a Stripe form body: nested keys in brackets (metadata[tenant]=x, items[0][price]=y), nulls left out';

-- stripe_call: queues one call to Stripe for the acting tenant; NULL when
-- Stripe is not configured.  Internal (the commands below and api.register).
CREATE FUNCTION ventros.stripe_call(purpose text, method text, path text, params jsonb, idempotency_key text,
                                    correlation_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base text := (SELECT s.api_base FROM ventros.stripe_settings s);
BEGIN
    IF base IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN ventros.enqueue_http_request(base || path, method,
        jsonb_build_object('Content-Type', 'application/x-www-form-urlencoded', 'Idempotency-Key', idempotency_key),
        convert_to(ventros.stripe_form(params), 'UTF8'), purpose, correlation_id);
END
$$;
COMMENT ON FUNCTION ventros.stripe_call(text, text, text, jsonb, text, uuid) IS
    'Queues a form-encoded call to Stripe with an Idempotency-Key for the acting tenant (the key is added per attempt); NULL when Stripe is not configured; internal';

-- The preparer of every stripe.* purpose: the stored headers plus the key.
CREATE FUNCTION ventros.stripe_request_headers(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.stripe_settings := (SELECT x FROM ventros.stripe_settings x);
BEGIN
    -- The key goes only to the configured Stripe origin (api_base has no
    -- path: a URL that starts with it and a slash is on that origin).
    IF s.api_key IS NULL OR NOT starts_with(r.url, s.api_base || '/') THEN
        RETURN r.headers;
    END IF;
    RETURN r.headers || jsonb_build_object('Authorization', 'Bearer ' || ventros.decrypt_secret(s.api_key));
END
$$;
COMMENT ON FUNCTION ventros.stripe_request_headers(ventros.http_requests) IS
    'Dispatcher: the headers of an attempt to Stripe, with the platform''s secret key (never stored on the request) when the URL is on the configured Stripe origin';

-- Tenant roles can neither queue nor change a stripe.* request: the
-- policies of ventros.http_requests (sql/45_http_requests.sql).

-- Stripe's answer as JSON (NULL unless the request succeeded with an object).
CREATE FUNCTION ventros.stripe_answer_object(r ventros.http_requests) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb;
BEGIN
    IF r.status <> 'succeeded' OR r.response_body IS NULL THEN
        RETURN NULL;
    END IF;
    doc := convert_from(r.response_body, 'UTF8')::jsonb;
    RETURN CASE WHEN jsonb_typeof(doc) = 'object' THEN doc END;
EXCEPTION WHEN data_exception OR invalid_text_representation OR character_not_in_repertoire THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.stripe_answer_object(ventros.http_requests) IS
    'The JSON object Stripe answered a succeeded request with; NULL otherwise';

-- ---- customers ---------------------------------------------------------------

CREATE FUNCTION ventros.stripe_customer_request(b ventros.billing_accounts) RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.stripe_call('stripe.customer', 'POST', '/v1/customers',
        jsonb_build_object('email', b.billing_email, 'name', b.name,
                           'metadata', jsonb_build_object('tenant_id', b.tenant_id, 'billing_account_id', b.id)),
        'ventros-customer-' || b.id, b.id)
$$;
COMMENT ON FUNCTION ventros.stripe_customer_request(ventros.billing_accounts) IS
    'Queues the creation of the Stripe customer of a billing account (Idempotency-Key from the account: never two customers); internal';

CREATE FUNCTION ventros.request_stripe_customer(billing_account_id uuid) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    PERFORM ventros.require_platform_admin();
    IF b.stripe_customer_id IS NOT NULL THEN
        RAISE EXCEPTION 'billing account % has Stripe customer % already', b.id, b.stripe_customer_id
            USING ERRCODE = '23505';
    END IF;
    RETURN ventros.stripe_customer_request(b);
END
$$;
COMMENT ON FUNCTION ventros.request_stripe_customer(uuid) IS
    'Platform admins: queues the creation of a billing account''s Stripe customer (23505 when it has one); NULL when Stripe is not configured';

-- Handler of stripe.customer: the answer's customer is linked to the account.
CREATE FUNCTION ventros.stripe_customer_answered(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj jsonb := ventros.stripe_answer_object(r);
    b ventros.billing_accounts;
BEGIN
    IF obj IS NULL THEN
        RETURN;   -- refused or dead: the request keeps Stripe's answer for an operator
    END IF;
    b := ventros.get_billing_account(r.correlation_id);
    IF b.stripe_customer_id IS DISTINCT FROM obj->>'id' THEN
        PERFORM ventros.link_stripe_customer(b.id, b.version, obj->>'id');
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.stripe_customer_answered(ventros.http_requests) IS
    'Handler of stripe.customer: links the customer Stripe created to the billing account (link_stripe_customer)';

-- ---- subscriptions -------------------------------------------------------------

CREATE FUNCTION ventros.request_stripe_subscription(billing_account_id uuid, price_id text) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    PERFORM ventros.require_platform_admin();
    IF price_id IS NULL OR price_id !~ '^price_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe price id "%"', left(price_id, 64) USING ERRCODE = '22P02';
    END IF;
    IF b.stripe_customer_id IS NULL THEN
        RAISE EXCEPTION 'billing account % has no Stripe customer', b.id USING ERRCODE = '23502',
            HINT = 'Its customer is created at sign-up (ventros.request_stripe_customer).';
    END IF;
    RETURN ventros.stripe_call('stripe.subscription', 'POST', '/v1/subscriptions',
        jsonb_build_object('customer', b.stripe_customer_id, 'items', jsonb_build_array(jsonb_build_object('price', price_id)),
                           'metadata', jsonb_build_object('tenant_id', b.tenant_id, 'billing_account_id', b.id)),
        'ventros-subscription-' || gen_random_uuid(), b.id);
END
$$;
COMMENT ON FUNCTION ventros.request_stripe_subscription(uuid, text) IS
    'Platform admins: queues a Stripe subscription of a billing account''s customer to a price; Stripe''s answer creates the mirrored subscription';

CREATE FUNCTION ventros.request_stripe_subscription_change(subscription_id uuid, price_id text DEFAULT NULL,
                                                           cancel_at_period_end boolean DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.subscriptions := ventros.get_subscription(subscription_id);
BEGIN
    PERFORM ventros.require_platform_admin();
    IF price_id IS NOT NULL AND price_id !~ '^price_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe price id "%"', left(price_id, 64) USING ERRCODE = '22P02';
    END IF;
    IF price_id IS NULL AND cancel_at_period_end IS NULL THEN
        RAISE EXCEPTION 'nothing to change: give a price or cancel_at_period_end' USING ERRCODE = '22023';
    END IF;
    IF price_id IS NOT NULL AND s.metadata->>'stripe_item_id' IS NULL THEN
        RAISE EXCEPTION 'subscription % has no known Stripe item to change', s.id USING ERRCODE = '55000',
            HINT = 'Its item is learnt from Stripe''s answer when Ventros created it.';
    END IF;
    RETURN ventros.stripe_call('stripe.subscription', 'POST', '/v1/subscriptions/' || s.stripe_subscription_id,
        jsonb_build_object('items', CASE WHEN price_id IS NOT NULL THEN
                               jsonb_build_array(jsonb_build_object('id', s.metadata->>'stripe_item_id', 'price', price_id)) END,
                           'proration_behavior', CASE WHEN price_id IS NOT NULL THEN 'create_prorations' END,
                           'cancel_at_period_end', cancel_at_period_end),
        'ventros-subscription-' || gen_random_uuid(), s.billing_account_id);
END
$$;
COMMENT ON FUNCTION ventros.request_stripe_subscription_change(uuid, text, boolean) IS
    'Platform admins: queues a change of a Stripe subscription (its price, with prorations; cancellation at period end); Stripe''s answer updates the mirror';

-- Handler of stripe.subscription: the answer is applied as the webhook
-- applies customer.subscription.updated, and the item id kept for changes.
CREATE FUNCTION ventros.stripe_subscription_answered(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj jsonb := ventros.stripe_answer_object(r);
    s ventros.subscriptions;
    item text;
BEGIN
    IF obj IS NULL OR obj->>'object' IS DISTINCT FROM 'subscription' THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM ventros.apply_stripe_subscription(ventros.get_billing_account(r.correlation_id), obj, false);
    EXCEPTION WHEN unique_violation THEN
        -- Stripe's webhook of the same subscription mirrored it meanwhile:
        -- it is committed now, so this applies to it
        PERFORM ventros.apply_stripe_subscription(ventros.get_billing_account(r.correlation_id), obj, false);
    END;
    item := obj #>> '{items,data,0,id}';
    SELECT * INTO s FROM ventros.subscriptions x
     WHERE x.tenant_id = r.tenant_id AND x.stripe_subscription_id = obj->>'id' AND x.deleted_at IS NULL;
    IF item IS NOT NULL AND s.metadata->>'stripe_item_id' IS DISTINCT FROM item THEN
        PERFORM ventros.change_row(NULL::ventros.subscriptions, 'subscription', s.id, s.version,
                                   jsonb_build_object('metadata', s.metadata || jsonb_build_object('stripe_item_id', item)));
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.stripe_subscription_answered(ventros.http_requests) IS
    'Handler of stripe.subscription: applies Stripe''s subscription as customer.subscription.updated would, keeping its item id';

-- ---- usage -------------------------------------------------------------------

-- report_usage_to_stripe: one meter event per live meter with usage not
-- reported yet, for the difference.  Its identifier (and Idempotency-Key)
-- is the meter and the quantity reached: the same report twice is one event
-- for Stripe.  Without a tenant: every tenant with such meters.
CREATE FUNCTION ventros.report_usage_to_stripe() RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    queued integer := 0;
    m ventros.usage_meters;
    ident text;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF tenant IS NULL THEN
        SELECT coalesce(sum((r.result #>> '{}')::integer), 0)::integer INTO queued
          FROM ventros.run_per_tenant('ventros-report-usage', 'SELECT pg_catalog.to_jsonb(ventros.report_usage_to_stripe())',
                   ARRAY(SELECT DISTINCT u.tenant_id FROM ventros.usage_meters u
                          WHERE u.deleted_at IS NULL AND u.quantity > u.reported_quantity ORDER BY 1)) r;
        RETURN queued;
    END IF;
    FOR m IN SELECT * FROM ventros.usage_meters u
              WHERE u.tenant_id = tenant AND u.deleted_at IS NULL AND u.quantity > u.reported_quantity
                AND NOT EXISTS (SELECT 1 FROM ventros.http_requests q
                                 WHERE q.tenant_id = tenant AND q.correlation_id = u.id AND q.purpose = 'stripe.meter_event'
                                   AND q.status IN ('pending', 'in_flight'))
              ORDER BY u.id
    LOOP
        ident := 'usage-' || m.id || '-' || m.quantity;
        IF ventros.stripe_call('stripe.meter_event', 'POST', '/v1/billing/meter_events',
               jsonb_build_object('event_name', m.event_name, 'identifier', ident,
                                  'timestamp', extract(epoch FROM least(now(), m.period_end - interval '1 second'))::bigint,
                                  'payload', jsonb_build_object('stripe_customer_id', m.stripe_customer_id,
                                                                'value', m.quantity - m.reported_quantity)),
               ident, m.id) IS NOT NULL THEN
            queued := queued + 1;
        END IF;
    END LOOP;
    RETURN queued;
END
$$;
COMMENT ON FUNCTION ventros.report_usage_to_stripe() IS
    'Platform admins and the scheduled job: queues a Stripe meter event for the unreported usage of each live meter (identifier and Idempotency-Key: meter and quantity); per tenant without one; returns the events queued';

-- Handler of stripe.meter_event: the quantity Stripe accepted is reported.
CREATE FUNCTION ventros.stripe_meter_event_answered(r ventros.http_requests) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m ventros.usage_meters;
    upto bigint := substring(r.headers->>'Idempotency-Key' FROM '-([0-9]+)$')::bigint;
    before bigint;
BEGIN
    IF r.status <> 'succeeded' OR upto IS NULL THEN
        RETURN;
    END IF;
    m := ventros.get_usage_meter(r.correlation_id);
    before := m.reported_quantity;
    IF before >= upto THEN
        RETURN;
    END IF;
    m := ventros.change_row(NULL::ventros.usage_meters, 'usage_meter', m.id, m.version,
                            jsonb_build_object('reported_quantity', least(upto, m.quantity), 'last_reported_at', now()));
    PERFORM ventros.emit('usage_meter.reported', 'usage_meter', m.id,
        jsonb_build_object('metric_name', m.metric_name, 'stripe_meter_id', m.stripe_meter_id,
                           'quantity', m.reported_quantity, 'delta', m.reported_quantity - before),
        m.version);
END
$$;
COMMENT ON FUNCTION ventros.stripe_meter_event_answered(ventros.http_requests) IS
    'Handler of stripe.meter_event: marks the quantity Stripe accepted as reported on the meter; emits usage_meter.updated and usage_meter.reported';

-- ---- checkout -------------------------------------------------------------------

-- A tenant's administrator pays on Stripe's hosted page: a Checkout Session
-- (mode subscription, one price) for the account's customer, created
-- through the dispatcher with an Idempotency-Key of its own (a retry after
-- a timeout gets the first session back, never a second), whose URL
-- ventros.stripe_checkout_session reads from Stripe's answer.  Its
-- completion comes back as checkout.session.completed on /webhooks/stripe
-- (ventros.apply_stripe_checkout), which activates the account.
CREATE FUNCTION ventros.create_stripe_checkout(billing_account_id uuid, price_id text, success_url text,
                                               cancel_url text)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    b ventros.billing_accounts;
    request uuid;
BEGIN
    -- SECURITY DEFINER: queues a call with the platform's key for the acting tenant's account
    SELECT * INTO b FROM ventros.billing_accounts x
     WHERE x.tenant_id = tenant AND x.id = billing_account_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('billing account', billing_account_id);
    END IF;
    IF price_id IS NULL OR price_id !~ '^price_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe price id "%"', left(price_id, 64) USING ERRCODE = '22P02';
    END IF;
    IF success_url IS NULL OR success_url !~* '^https?://\S+$' OR length(success_url) > 2048
       OR cancel_url IS NULL OR cancel_url !~* '^https?://\S+$' OR length(cancel_url) > 2048 THEN
        RAISE EXCEPTION 'success_url and cancel_url are http(s) URLs' USING ERRCODE = '22023';
    END IF;
    IF b.stripe_customer_id IS NULL THEN
        RAISE EXCEPTION 'billing account % has no Stripe customer yet', b.id USING ERRCODE = '55000',
            HINT = 'Its customer is created at sign-up; try again once it is linked.';
    END IF;
    request := ventros.stripe_call('stripe.checkout', 'POST', '/v1/checkout/sessions',
        jsonb_build_object('customer', b.stripe_customer_id, 'mode', 'subscription',
                           'line_items', jsonb_build_array(jsonb_build_object('price', price_id, 'quantity', 1)),
                           'success_url', success_url, 'cancel_url', cancel_url, 'client_reference_id', b.id,
                           'metadata', jsonb_build_object('tenant_id', b.tenant_id, 'billing_account_id', b.id)),
        'ventros-checkout-' || gen_random_uuid(), b.id);
    IF request IS NULL THEN
        RAISE EXCEPTION 'Stripe is not configured on this platform' USING ERRCODE = '55000',
            HINT = 'A platform administrator sets the key with ventros.configure_stripe.';
    END IF;
    RETURN request;
END
$$;
COMMENT ON FUNCTION ventros.create_stripe_checkout(uuid, text, text, text) IS
    'Creates a Stripe Checkout Session (subscription to a price) for a billing account of the acting tenant through the dispatcher, with an Idempotency-Key; returns the request id, whose session URL ventros.stripe_checkout_session gives once Stripe answered; 55000 without a Stripe customer or configuration';

CREATE FUNCTION ventros.stripe_checkout_session(request_id uuid)
RETURNS TABLE (status text, session_id text, url text, error text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    r ventros.http_requests;
    obj jsonb;
BEGIN
    SELECT * INTO r FROM ventros.http_requests x
     WHERE x.tenant_id = tenant AND x.id = request_id AND x.purpose = 'stripe.checkout';
    IF NOT FOUND THEN
        PERFORM ventros.not_found('checkout request', request_id);
    END IF;
    obj := ventros.stripe_answer_object(r);
    RETURN QUERY SELECT r.status, obj->>'id', obj->>'url', CASE WHEN r.status IN ('failed', 'dead') THEN r.last_error END;
END
$$;
COMMENT ON FUNCTION ventros.stripe_checkout_session(uuid) IS
    'The Checkout Session a create_stripe_checkout request made: the request''s status, and once Stripe answered the session id and the URL to send the payer to (or why it failed)';

SELECT ventros.register_http_request_preparer(p, 'ventros.stripe_request_headers(ventros.http_requests)')
  FROM unnest(ARRAY['stripe.customer', 'stripe.subscription', 'stripe.meter_event', 'stripe.checkout']) p;
SELECT ventros.register_http_request_handler('stripe.customer', 'ventros.stripe_customer_answered(ventros.http_requests)');
SELECT ventros.register_http_request_handler('stripe.subscription', 'ventros.stripe_subscription_answered(ventros.http_requests)');
SELECT ventros.register_http_request_handler('stripe.meter_event', 'ventros.stripe_meter_event_answered(ventros.http_requests)');

GRANT EXECUTE ON FUNCTION ventros.configure_stripe(text, text), ventros.request_stripe_customer(uuid),
    ventros.request_stripe_subscription(uuid, text), ventros.request_stripe_subscription_change(uuid, text, boolean),
    ventros.report_usage_to_stripe()
    TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.create_stripe_checkout(uuid, text, text, text), ventros.stripe_checkout_session(uuid)
    TO ventros_admin;
