-- Stripe webhooks: POST /webhooks/stripe (docs/billing.md).
--
-- The platform's Stripe account sends every tenant's billing events to one
-- endpoint.  A delivery is applied in the webhook's own transaction:
--   1. verified: Stripe-Signature "t=<unix>,v1=<hex>[,v1=...]" is the
--      HMAC-SHA256 of "<t>.<raw body>" under one of the endpoint's signing
--      secrets (several while a secret is rolled), compared in constant time,
--      with t within the tolerance of now (replays of old deliveries fail);
--   2. recorded once: ventros.stripe_events, keyed by Stripe's event id, is
--      the processed-events table of this consumer (Stripe's ids are text and
--      arrive before the tenant is known, so not ventros.processed_events);
--      a redelivery answers "duplicate" and changes nothing;
--   3. matched to its tenant by the Stripe customer: exactly one live billing
--      account of all tenants must carry it (ventros.link_stripe_customer),
--      else the event is kept as "unmatched" for an operator;
--   4. applied in state order: an event older than the last one applied to
--      the same Stripe object is "stale" (Stripe does not deliver in order);
--      otherwise the object's status is reached through the allowed
--      transitions of its aggregate (ventros.transition_path), each with its
--      event, by the same commands an operator would call.
-- A failure of the application itself is kept as "failed" with its reason
-- and answered 200 (Stripe's retries would fail the same way); a transient
-- one (serialization, deadlock, lock timeout) is raised, so the front
-- answers 503 and Stripe retries.

-- ---- platform webhooks: endpoints of the platform, not of a channel ----------

-- What a webhook entry point answers: the HTTP status and a JSON body.
CREATE TYPE ventros.webhook_answer AS (
    http_status integer,
    response    jsonb
);
COMMENT ON TYPE ventros.webhook_answer IS 'The answer of a webhook entry point: HTTP status and JSON body';

-- POST /webhooks/<name> (one segment): webhooks of the platform itself, not
-- of a tenant's channel (those are ventros.inbound_providers').  Adding one
-- is a row (ventros.register_platform_webhook) and its accept function.
CREATE TABLE ventros.platform_webhooks (
    name   text PRIMARY KEY,
    accept regprocedure NOT NULL,
    CONSTRAINT platform_webhooks_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,14}$')
);
COMMENT ON TABLE ventros.platform_webhooks IS
    'Webhook endpoints of the platform (POST /webhooks/<name>): accept(headers jsonb, body bytea) -> ventros.webhook_answer, run as the extension owner';
ALTER TABLE ventros.platform_webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.platform_webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.platform_webhooks FOR SELECT USING (true);
GRANT SELECT ON ventros.platform_webhooks TO ventros_viewer;

CREATE FUNCTION ventros.register_platform_webhook(name text, accept regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_function_shape(accept, ARRAY['jsonb', 'bytea']::regtype[], 'ventros.webhook_answer', 'accept');
    INSERT INTO ventros.platform_webhooks AS w (name, accept)
    VALUES (register_platform_webhook.name, register_platform_webhook.accept)
    ON CONFLICT ON CONSTRAINT platform_webhooks_pkey DO UPDATE SET accept = EXCLUDED.accept;
END
$$;
COMMENT ON FUNCTION ventros.register_platform_webhook(text, regprocedure) IS
    'Registers the accept function of a platform webhook endpoint POST /webhooks/<name> (see ventros.platform_webhooks)';

-- A webhook's headers as the front hands them over ({"Name": "value"}), with
-- lower-case names and only string values: what every verifier reads.
CREATE FUNCTION ventros.webhook_headers(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(lower(h.key), h.value), '{}')
              FROM jsonb_each(CASE WHEN jsonb_typeof(headers) = 'object' THEN headers ELSE '{}' END) h
             WHERE jsonb_typeof(h.value) = 'string');
END
$$;
COMMENT ON FUNCTION ventros.webhook_headers(jsonb) IS
    'A webhook''s headers with lower-case names and only string values (non-objects: {})';

-- The front's entry: the endpoint's answer, or 404 for a name not registered.
CREATE FUNCTION ventros.accept_platform_webhook(name text, headers jsonb, body bytea)
RETURNS TABLE (http_status integer, response jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    fn regprocedure := (SELECT w.accept FROM ventros.platform_webhooks w WHERE w.name = lower(accept_platform_webhook.name));
    answer ventros.webhook_answer;
BEGIN
    IF fn IS NULL THEN
        -- (the answer of every unknown webhook path: nothing tells names apart)
        RETURN QUERY SELECT 404, '{"error":"channel_not_found"}'::jsonb;
        RETURN;
    END IF;
    EXECUTE format('SELECT * FROM %s($1, $2)', fn::regproc) INTO answer
        USING ventros.webhook_headers(headers), coalesce(body, ''::bytea);
    RETURN QUERY SELECT answer.http_status, answer.response;
END
$$;
COMMENT ON FUNCTION ventros.accept_platform_webhook(text, jsonb, bytea) IS
    'Anonymous entry of POST /webhooks/<name>: the registered endpoint''s answer (ventros.platform_webhooks), 404 for another name';

-- ---- the signing secrets -------------------------------------------------------

-- The endpoint's signing secrets (whsec_...), encrypted with
-- ventros.secret_key.  Rolling a secret in Stripe keeps the old one valid
-- for a while: add the new one and give the old one an expiry.  Only the
-- extension owner reads this table (no policy); platform admins manage it
-- through the functions below, which never return a secret.
CREATE TABLE ventros.stripe_webhook_secrets (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    secret     bytea       NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
COMMENT ON TABLE ventros.stripe_webhook_secrets IS
    'Signing secrets of the Stripe webhook endpoint (encrypted); several while one is rolled; read by accept_stripe_webhook only';
ALTER TABLE ventros.stripe_webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.stripe_webhook_secrets FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.stripe_webhook_secrets FROM PUBLIC;

CREATE FUNCTION ventros.add_stripe_webhook_secret(secret text, expire_others_in interval DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result uuid;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF secret IS NULL OR secret !~ '^whsec_[A-Za-z0-9+/=_-]{8,200}$' THEN
        RAISE EXCEPTION 'a Stripe webhook signing secret looks like whsec_...' USING ERRCODE = '22023',
            HINT = 'Copy it from the endpoint''s page in the Stripe dashboard (Signing secret).';
    END IF;
    IF expire_others_in IS NOT NULL THEN
        UPDATE ventros.stripe_webhook_secrets s SET expires_at = least(coalesce(s.expires_at, 'infinity'), now() + expire_others_in);
    END IF;
    INSERT INTO ventros.stripe_webhook_secrets (secret) VALUES (ventros.encrypt_secret(secret)) RETURNING id INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.add_stripe_webhook_secret(text, interval) IS
    'Platform admins: adds a signing secret of the Stripe endpoint (whsec_..., 22023 otherwise); expire_others_in gives the others an expiry (rolling a secret); returns its id';

CREATE FUNCTION ventros.remove_stripe_webhook_secret(secret_id uuid) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    DELETE FROM ventros.stripe_webhook_secrets s WHERE s.id = secret_id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION ventros.remove_stripe_webhook_secret(uuid) IS
    'Platform admins: removes a signing secret of the Stripe endpoint; false when there was none';

CREATE FUNCTION ventros.stripe_webhook_secrets()
RETURNS TABLE (id uuid, added_at timestamptz, expires_at timestamptz, active boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    RETURN QUERY SELECT s.id, s.added_at, s.expires_at, coalesce(s.expires_at > now(), true)
                 FROM ventros.stripe_webhook_secrets s ORDER BY s.added_at, s.id;
END
$$;
COMMENT ON FUNCTION ventros.stripe_webhook_secrets() IS
    'Platform admins: the Stripe endpoint''s signing secrets, without the secrets: when added, when they expire, whether they still verify';

-- ---- the signature ---------------------------------------------------------------

-- NULL when header signs body under one of secrets at a time within
-- tolerance seconds of now; else missing_signature, malformed_signature,
-- timestamp_outside_tolerance or invalid_signature.  Every v1 (at most 8)
-- is compared with every secret's HMAC in constant time
-- (ventros.timing_safe_equal).
CREATE FUNCTION ventros.verify_stripe_signature(header text, body bytea, secrets text[], now timestamptz,
                                                tolerance integer DEFAULT 300)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item text;
    t text;
    given bytea[] := '{}';
    signed bytea;
    secret text;
    matched boolean := false;
BEGIN
    IF header IS NULL OR btrim(header) = '' THEN
        RETURN 'missing_signature';
    END IF;
    FOREACH item IN ARRAY string_to_array(left(header, 4096), ',') LOOP
        item := btrim(item);
        IF item ~ '^t=[0-9]{1,12}$' AND t IS NULL THEN
            t := substr(item, 3);
        ELSIF item LIKE 'v1=%' THEN
            given := given || ventros.decode_hex_signature(substr(item, 4), 32);
        END IF;
    END LOOP;
    -- (Stripe sends one v1 per secret of the endpoint: a few.  More would
    -- make an anonymous caller buy many HMACs of the body for one request.)
    IF t IS NULL OR cardinality(given) NOT BETWEEN 1 AND 8 OR array_position(given, NULL) IS NOT NULL THEN
        RETURN 'malformed_signature';
    END IF;
    IF abs(extract(epoch FROM now) - t::bigint) > tolerance THEN
        RETURN 'timestamp_outside_tolerance';
    END IF;
    signed := convert_to(t || '.', 'UTF8') || body;
    FOREACH secret IN ARRAY coalesce(secrets, '{}') LOOP
        FOR i IN 1 .. cardinality(given) LOOP
            matched := ventros.timing_safe_equal(ventros.webhook_hmac(signed, secret, 'sha256'), given[i]) OR matched;
        END LOOP;
    END LOOP;
    RETURN CASE WHEN matched THEN NULL ELSE 'invalid_signature' END;
END
$$;
COMMENT ON FUNCTION ventros.verify_stripe_signature(text, bytea, text[], timestamptz, integer) IS
    'NULL when a Stripe-Signature header (t=..., v1=...) signs the body under one of the secrets within tolerance seconds (default 300) of now; else missing_signature, malformed_signature, timestamp_outside_tolerance or invalid_signature';

-- ---- the events received -------------------------------------------------------

-- A platform table: an event is received before its tenant is known (and
-- some never have one), so its key is Stripe's id alone and the tenant is
-- what the customer matched (matched_tenant).  A tenant's admins read their
-- own events with ventros.list_stripe_events().
CREATE TABLE ventros.stripe_events (
    id             text        PRIMARY KEY,
    matched_tenant text,
    type        text        NOT NULL,
    object_id   text,
    created     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome     text        NOT NULL DEFAULT 'received',
    detail      text,
    CONSTRAINT stripe_events_id_format CHECK (id ~ '^evt_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT stripe_events_outcome_known CHECK (outcome IN ('received', 'applied', 'ignored', 'stale', 'unmatched', 'failed'))
);
CREATE INDEX stripe_events_by_object ON ventros.stripe_events (object_id, created) WHERE outcome = 'applied';
CREATE INDEX stripe_events_by_tenant ON ventros.stripe_events (matched_tenant, received_at);
COMMENT ON TABLE ventros.stripe_events IS
    'Stripe events received, once each (the id is the idempotency key): type, object, Stripe''s creation time, the tenant matched and the outcome (applied, ignored, stale, unmatched, failed)';
ALTER TABLE ventros.stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.stripe_events FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.stripe_events FROM PUBLIC;

CREATE FUNCTION ventros.list_stripe_events(received_before timestamptz DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS TABLE (id text, type text, object_id text, created timestamptz, received_at timestamptz, outcome text, detail text)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.type, e.object_id, e.created, e.received_at, e.outcome, e.detail
    FROM ventros.stripe_events e
    WHERE e.matched_tenant = ventros.require_tenant()
      AND (received_before IS NULL OR e.received_at < received_before)
    ORDER BY e.received_at DESC, e.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_stripe_events(timestamptz, integer) IS
    'The acting tenant''s Stripe events, newest first (received before a time): type, object, Stripe''s time, outcome and reason';
GRANT EXECUTE ON FUNCTION ventros.list_stripe_events(timestamptz, integer) TO ventros_admin;

-- ---- state order -----------------------------------------------------------------

-- The shortest walk of allowed transitions of an aggregate from one state to
-- another (the states after from, in order; '{}' when equal; NULL when no
-- walk exists).  Stripe reports where an object is now; this says which
-- transitions, each with its event, lead there.
CREATE FUNCTION ventros.transition_path(aggregate text, from_state text, to_state text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE walk (state, path) AS (
        SELECT from_state, ARRAY[]::text[]
        UNION ALL
        SELECT t.to_state, w.path || t.to_state
        FROM walk w JOIN ventros.aggregate_transitions t ON t.aggregate = transition_path.aggregate AND t.from_state = w.state
        WHERE NOT t.to_state = ANY (w.path) AND t.to_state <> from_state AND cardinality(w.path) < 10
    )
    SELECT w.path FROM walk w WHERE w.state = to_state ORDER BY cardinality(w.path) LIMIT 1
$$;
COMMENT ON FUNCTION ventros.transition_path(text, text, text) IS
    'The shortest walk of declared transitions of an aggregate from one state to another (states after from; {} when equal; NULL when none)';

-- ---- applying each kind of event ----------------------------------------------

CREATE FUNCTION ventros.stripe_time(value jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN jsonb_typeof(value) = 'number' THEN to_timestamp((value #>> '{}')::double precision) END $$;
COMMENT ON FUNCTION ventros.stripe_time(jsonb) IS 'A Stripe timestamp (Unix seconds) as timestamptz; NULL when absent';

-- checkout.session.completed: the account has a payment method now.
CREATE FUNCTION ventros.apply_stripe_checkout(b ventros.billing_accounts, obj jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF b.payment_status <> 'pending' THEN
        RETURN 'ignored';
    END IF;
    PERFORM ventros.activate_billing_payment(b.id, b.version,
        jsonb_build_object('id', obj->>'id', 'type', 'stripe_checkout', 'subscription', obj->>'subscription'));
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_checkout(ventros.billing_accounts, jsonb) IS
    'checkout.session.completed: a pending billing account gets the checkout as its payment method (billing_account.payment_activated)';

-- customer.updated: the account's name and billing email follow Stripe's.
CREATE FUNCTION ventros.apply_stripe_customer(b ventros.billing_accounts, obj jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changes jsonb := '{}';
BEGIN
    IF nullif(obj->>'email', '') IS NOT NULL AND lower(obj->>'email') <> b.billing_email THEN
        changes := changes || jsonb_build_object('billing_email', obj->>'email');
    END IF;
    IF nullif(obj->>'name', '') IS NOT NULL AND obj->>'name' <> b.name THEN
        changes := changes || jsonb_build_object('name', obj->>'name');
    END IF;
    IF changes = '{}' THEN
        RETURN 'ignored';
    END IF;
    PERFORM ventros.update_billing_account(b.id, b.version, changes);
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_customer(ventros.billing_accounts, jsonb) IS
    'customer.updated: the billing account''s name and email follow the Stripe customer''s';

-- customer.subscription.created / updated / deleted: the subscription is
-- mirrored (created when new), walked to Stripe's status, and its period,
-- price and scheduled cancellation follow.  Newer API versions keep the
-- period on the items.
CREATE FUNCTION ventros.apply_stripe_subscription(b ventros.billing_accounts, obj jsonb, deleted boolean) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.subscriptions;
    target text := CASE WHEN deleted THEN 'canceled' ELSE obj->>'status' END;
    item jsonb := obj #> '{items,data,0}';
    price text := coalesce(item #>> '{price,id}', obj #>> '{plan,id}');
    period_start timestamptz := ventros.stripe_time(coalesce(obj->'current_period_start', item->'current_period_start'));
    period_end timestamptz := ventros.stripe_time(coalesce(obj->'current_period_end', item->'current_period_end'));
    walk text[];
    state text;
BEGIN
    SELECT * INTO s FROM ventros.subscriptions x
    WHERE x.tenant_id = b.tenant_id AND x.stripe_subscription_id = obj->>'id' AND x.deleted_at IS NULL FOR UPDATE;
    IF s.id IS NULL THEN
        s := ventros.create_subscription(b.id, obj->>'id', price,
                 CASE WHEN target IN ('trialing', 'active') THEN target ELSE 'incomplete' END,
                 period_start, period_end, ventros.stripe_time(obj->'trial_end'),
                 metadata => jsonb_build_object('stripe_customer', obj->>'customer'));
    END IF;
    walk := ventros.transition_path('subscription', s.status, target);
    IF walk IS NULL THEN
        RAISE EXCEPTION 'subscription % cannot go from % to %', s.id, s.status, target USING ERRCODE = 'VN002';
    END IF;
    FOREACH state IN ARRAY walk LOOP
        s := ventros.set_subscription_status(s.id, s.version, state);
    END LOOP;
    IF period_start IS NOT NULL AND period_end IS NOT NULL
       AND (period_start, period_end) IS DISTINCT FROM (s.current_period_start, s.current_period_end) THEN
        s := ventros.update_subscription_period(s.id, s.version, period_start, period_end);
    END IF;
    IF price IS NOT NULL AND price <> s.stripe_price_id THEN
        s := ventros.change_subscription_price(s.id, s.version, price);
    END IF;
    IF obj->'cancel_at_period_end' = 'true'::jsonb AND NOT s.cancel_at_period_end AND s.status <> 'canceled' THEN
        s := ventros.schedule_subscription_cancellation(s.id, s.version);
    END IF;
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_subscription(ventros.billing_accounts, jsonb, boolean) IS
    'customer.subscription.created/updated/deleted: the subscription mirrored (created when new), walked through its allowed transitions to Stripe''s status, with its period, price and scheduled cancellation';

-- invoice.finalized / paid / payment_failed (and the other invoice events):
-- the invoice is mirrored (created when new), walked to Stripe's status; a
-- failed payment is recorded on the open invoice.
CREATE FUNCTION ventros.apply_stripe_invoice(b ventros.billing_accounts, obj jsonb, event_type text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i ventros.invoices;
    sub uuid;
    target text := obj->>'status';
    state text;
BEGIN
    SELECT * INTO i FROM ventros.invoices x
    WHERE x.tenant_id = b.tenant_id AND x.stripe_invoice_id = obj->>'id' AND x.deleted_at IS NULL FOR UPDATE;
    IF i.id IS NULL THEN
        SELECT x.id INTO sub FROM ventros.subscriptions x
        WHERE x.tenant_id = b.tenant_id AND x.stripe_subscription_id = obj->>'subscription' AND x.deleted_at IS NULL;
        i := ventros.create_invoice(b.id, obj->>'id', (obj->>'amount_due')::bigint, obj->>'currency', 'draft', sub,
                                    ventros.stripe_time(obj->'due_date'));
    END IF;
    FOREACH state IN ARRAY coalesce(ventros.transition_path('invoice', i.status, target), ARRAY['(none)']) LOOP
        i := CASE state WHEN 'open' THEN ventros.finalize_invoice(i.id, i.version)
                        WHEN 'paid' THEN ventros.pay_invoice(i.id, i.version)
                        WHEN 'uncollectible' THEN ventros.mark_invoice_uncollectible(i.id, i.version)
                        WHEN 'void' THEN ventros.void_invoice(i.id, i.version) END;
        IF i.id IS NULL THEN
            RAISE EXCEPTION 'invoice % cannot become %', obj->>'id', target USING ERRCODE = 'VN002';
        END IF;
    END LOOP;
    IF event_type = 'invoice.payment_failed' AND i.status = 'open' THEN
        i := ventros.record_invoice_payment_failure(i.id, i.version,
                 coalesce(obj #>> '{last_finalization_error,message}', 'the payment failed at Stripe'));
    END IF;
    IF (obj->>'hosted_invoice_url', obj->>'invoice_pdf') IS DISTINCT FROM (i.hosted_invoice_url, i.invoice_pdf)
       AND obj->>'hosted_invoice_url' LIKE 'https://%' AND obj->>'invoice_pdf' LIKE 'https://%' THEN
        i := ventros.set_invoice_links(i.id, i.version, obj->>'hosted_invoice_url', obj->>'invoice_pdf',
                                       coalesce(ventros.stripe_time(obj->'due_date'), i.due_date));
    END IF;
    RETURN 'applied';
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_invoice(ventros.billing_accounts, jsonb, text) IS
    'invoice.*: the invoice mirrored (created when new) and walked through its allowed transitions to Stripe''s status (finalized, paid, uncollectible, void); a failed payment recorded on the open invoice; links kept';

-- ---- the endpoint ------------------------------------------------------------------

-- The billing account of a Stripe customer: the one live account of all
-- tenants that carries it, or NULL (none, or more than one).
CREATE FUNCTION ventros.stripe_customer_account(customer text) RETURNS ventros.billing_accounts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) = 1 THEN (array_agg(b))[1] END
    FROM ventros.billing_accounts b
    WHERE b.stripe_customer_id = customer AND b.deleted_at IS NULL
$$;
COMMENT ON FUNCTION ventros.stripe_customer_account(text) IS
    'The one live billing account (any tenant) linked to a Stripe customer; NULL when none or several claim it';

-- Records the outcome of an event on its row, with the tenant matched.
CREATE FUNCTION ventros.stripe_answer(event_id text, tenant text, outcome text, detail text) RETURNS ventros.webhook_answer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.stripe_events e SET matched_tenant = tenant, outcome = stripe_answer.outcome, detail = left(stripe_answer.detail, 1000)
    WHERE e.id = event_id;
    RETURN ROW(200, jsonb_build_object('received', true, 'outcome', outcome))::ventros.webhook_answer;
END
$$;
COMMENT ON FUNCTION ventros.stripe_answer(text, text, text, text) IS
    'Keeps an event''s outcome (and tenant) on ventros.stripe_events and answers Stripe 200 with it';

CREATE FUNCTION ventros.apply_stripe_event(b ventros.billing_accounts, event_type text, obj jsonb) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE
        WHEN event_type = 'checkout.session.completed' THEN ventros.apply_stripe_checkout(b, obj)
        WHEN event_type = 'customer.updated' THEN ventros.apply_stripe_customer(b, obj)
        WHEN event_type IN ('customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted')
            THEN ventros.apply_stripe_subscription(b, obj, event_type = 'customer.subscription.deleted')
        WHEN event_type LIKE 'invoice.%' AND obj->>'object' = 'invoice' THEN ventros.apply_stripe_invoice(b, obj, event_type)
        ELSE 'ignored' END;
END
$$;
COMMENT ON FUNCTION ventros.apply_stripe_event(ventros.billing_accounts, text, jsonb) IS
    'Applies a Stripe event to a tenant''s billing: checkout.session.completed, customer.updated, customer.subscription.*, invoice.*; other types are ignored';

CREATE FUNCTION ventros.accept_stripe_webhook(headers jsonb, body bytea) RETURNS ventros.webhook_answer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    secrets text[] := ARRAY(SELECT ventros.decrypt_secret(s.secret) FROM ventros.stripe_webhook_secrets s
                            WHERE s.expires_at IS NULL OR s.expires_at > now());
    failure text;
    doc jsonb;
    obj jsonb;
    event_at timestamptz;
    b ventros.billing_accounts;
    outcome text;
    state text;
    message text;
BEGIN
    IF cardinality(secrets) = 0 THEN
        -- not configured yet: Stripe keeps retrying for days
        RETURN ROW(503, '{"error":"not_configured"}')::ventros.webhook_answer;
    END IF;
    failure := ventros.verify_stripe_signature(headers->>'stripe-signature', body, secrets, now());
    IF failure IS NOT NULL THEN
        RETURN ROW(400, jsonb_build_object('error', failure))::ventros.webhook_answer;
    END IF;
    BEGIN
        doc := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN data_exception OR invalid_text_representation OR character_not_in_repertoire THEN
        doc := NULL;
    END;
    obj := doc #> '{data,object}';
    event_at := ventros.stripe_time(doc->'created');
    IF jsonb_typeof(obj) IS DISTINCT FROM 'object' OR coalesce(doc->>'id', '') !~ '^evt_[A-Za-z0-9]{1,200}$'
       OR jsonb_typeof(doc->'type') IS DISTINCT FROM 'string' OR event_at IS NULL THEN
        RETURN ROW(400, '{"error":"malformed_event"}')::ventros.webhook_answer;
    END IF;
    INSERT INTO ventros.stripe_events AS e (id, type, object_id, created)
    VALUES (doc->>'id', left(doc->>'type', 200), left(obj->>'id', 255), event_at)
    ON CONFLICT ON CONSTRAINT stripe_events_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN ROW(200, '{"received":true,"duplicate":true}')::ventros.webhook_answer;
    END IF;

    b := ventros.stripe_customer_account(CASE WHEN obj->>'object' = 'customer' THEN obj->>'id' ELSE obj->>'customer' END);
    IF b.id IS NULL THEN
        RETURN ventros.stripe_answer(doc->>'id', NULL, 'unmatched', 'no single billing account is linked to this customer');
    END IF;
    PERFORM set_config('ventros.tenant', b.tenant_id, true);
    IF EXISTS (SELECT 1 FROM ventros.stripe_events e
               WHERE e.object_id = obj->>'id' AND e.outcome = 'applied' AND e.created > event_at) THEN
        RETURN ventros.stripe_answer(doc->>'id', b.tenant_id, 'stale', 'a newer event of this object was applied');
    END IF;
    BEGIN
        outcome := ventros.apply_stripe_event(b, doc->>'type', obj);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        IF state IN ('40001', '40P01', '55P03', '57014') THEN
            RAISE;  -- transient: the front answers 503 and Stripe retries
        END IF;
        RETURN ventros.stripe_answer(doc->>'id', b.tenant_id, 'failed', state || ': ' || message);
    END;
    RETURN ventros.stripe_answer(doc->>'id', b.tenant_id, outcome, NULL);
END
$$;
COMMENT ON FUNCTION ventros.accept_stripe_webhook(jsonb, bytea) IS
    'POST /webhooks/stripe: a signed Stripe event (Stripe-Signature, the endpoint''s secrets), recorded once, matched to its tenant by the customer and applied in state order to billing accounts, subscriptions and invoices; 400 unsigned or malformed, 503 when no secret is configured, else 200 with the outcome';

SELECT ventros.register_platform_webhook('stripe', 'ventros.accept_stripe_webhook(jsonb, bytea)');

GRANT EXECUTE ON FUNCTION ventros.accept_platform_webhook(text, jsonb, bytea) TO ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.add_stripe_webhook_secret(text, interval), ventros.remove_stripe_webhook_secret(uuid),
    ventros.stripe_webhook_secrets() TO ventros_platform_admin;
