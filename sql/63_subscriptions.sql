-- Aggregate 26, Subscription (core): a Stripe subscription of a billing
-- account to a price.  The status machine is Stripe's; at most one active or
-- trialing subscription per account is a partial unique index.

CREATE TABLE ventros.subscriptions (
    id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL,
    version                integer     NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    billing_account_id     uuid        NOT NULL,
    stripe_subscription_id text        NOT NULL,
    stripe_price_id        text        NOT NULL,
    status                 text        NOT NULL,
    current_period_start   timestamptz NOT NULL,
    current_period_end     timestamptz NOT NULL,
    trial_start            timestamptz,
    trial_end              timestamptz,
    cancel_at              timestamptz,
    canceled_at            timestamptz,
    cancel_at_period_end   boolean     NOT NULL DEFAULT false,
    product                ventros.product NOT NULL DEFAULT 'crm',
    metadata               jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, billing_account_id) REFERENCES ventros.billing_accounts (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT subscriptions_status_known CHECK (status IN ('trialing', 'active', 'incomplete', 'incomplete_expired',
                                                            'past_due', 'canceled', 'unpaid', 'paused')),
    CONSTRAINT subscriptions_period_order CHECK (current_period_end > current_period_start),
    CONSTRAINT subscriptions_trial_order CHECK (trial_end > trial_start),
    CONSTRAINT subscriptions_stripe_ids CHECK (stripe_subscription_id ~ '^sub_[A-Za-z0-9]{1,200}$'
                                               AND stripe_price_id ~ '^price_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT subscriptions_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX subscriptions_unique_stripe ON ventros.subscriptions (tenant_id, stripe_subscription_id);
CREATE UNIQUE INDEX subscriptions_one_current ON ventros.subscriptions (tenant_id, billing_account_id)
    WHERE status IN ('active', 'trialing') AND deleted_at IS NULL;
CREATE INDEX subscriptions_trial_end ON ventros.subscriptions (tenant_id, trial_end) WHERE status = 'trialing';
COMMENT ON TABLE ventros.subscriptions IS 'Subscription: a Stripe subscription of a billing account to a price';

SELECT ventros.register_aggregate('subscription', 'ventros.subscriptions', 'core',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "incomplete"},
        {"from": null, "to": "trialing"},
        {"from": null, "to": "active"},
        {"from": "incomplete", "to": "active", "event": "subscription.status_changed", "description": "The status of a subscription changed."},
        {"from": "incomplete", "to": "incomplete_expired", "event": "subscription.status_changed"},
        {"from": "trialing", "to": "active", "event": "subscription.status_changed"},
        {"from": "trialing", "to": "past_due", "event": "subscription.status_changed"},
        {"from": "trialing", "to": "canceled", "event": "subscription.canceled", "description": "A subscription was canceled."},
        {"from": "active", "to": "past_due", "event": "subscription.status_changed"},
        {"from": "active", "to": "unpaid", "event": "subscription.status_changed"},
        {"from": "active", "to": "paused", "event": "subscription.status_changed"},
        {"from": "active", "to": "canceled", "event": "subscription.canceled"},
        {"from": "past_due", "to": "active", "event": "subscription.status_changed"},
        {"from": "past_due", "to": "unpaid", "event": "subscription.status_changed"},
        {"from": "past_due", "to": "canceled", "event": "subscription.canceled"},
        {"from": "unpaid", "to": "active", "event": "subscription.status_changed"},
        {"from": "unpaid", "to": "canceled", "event": "subscription.canceled"},
        {"from": "paused", "to": "active", "event": "subscription.status_changed"},
        {"from": "paused", "to": "canceled", "event": "subscription.canceled"},
        {"from": "canceled", "to": "active", "event": "subscription.reactivated", "description": "A canceled subscription was reactivated."}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"]}',
    description => 'A Stripe subscription of a billing account');
-- Written by the platform only (Stripe's webhook, platform admins): a tenant
-- role with a write privilege here could also emit this aggregate's events
-- (ventros.emit's check), e.g. a forged subscription event (docs/billing.md).
GRANT INSERT, UPDATE, DELETE ON ventros.subscriptions TO ventros_platform_admin;
SELECT ventros.register_event_type('subscription.trial_started', 'A subscription started a trial.');
SELECT ventros.register_event_type('subscription.period_updated', 'The billing period of a subscription moved.');
SELECT ventros.register_event_type('subscription.price_changed', 'The price of a subscription changed.');
SELECT ventros.register_event_type('subscription.cancellation_scheduled', 'A subscription was set to cancel at the end of its period.');

CREATE FUNCTION ventros.create_subscription(
    billing_account_id     uuid,
    stripe_subscription_id text,
    stripe_price_id        text,
    status                 text,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    trial_end              timestamptz DEFAULT NULL,
    product                ventros.product DEFAULT 'crm',
    metadata               jsonb DEFAULT '{}')
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.subscriptions;
    constraint_name text;
BEGIN
    PERFORM ventros.get_billing_account(billing_account_id);
    PERFORM ventros.require_value(status, ARRAY['incomplete', 'trialing', 'active'], 'initial subscription status');
    IF status = 'trialing' AND trial_end IS NULL THEN
        RAISE EXCEPTION 'a trialing subscription needs trial_end' USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.subscriptions (billing_account_id, stripe_subscription_id, stripe_price_id, status,
        current_period_start, current_period_end, trial_start, trial_end, product, metadata)
    VALUES (billing_account_id, stripe_subscription_id, stripe_price_id, status, current_period_start,
        current_period_end, CASE WHEN trial_end IS NOT NULL THEN current_period_start END, trial_end,
        coalesce(product, 'crm'), coalesce(ventros.require_json(metadata, 'object', 'subscription metadata'), '{}'))
    RETURNING * INTO result;
    IF result.status = 'trialing' THEN
        PERFORM ventros.emit('subscription.trial_started', 'subscription', result.id,
                             jsonb_build_object('trial_start', result.trial_start, 'trial_end', result.trial_end),
                             result.version);
    END IF;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
    RAISE EXCEPTION '%', CASE constraint_name
            WHEN 'subscriptions_one_current' THEN 'billing account already has an active or trialing subscription'
            ELSE format('Stripe subscription %s exists already', stripe_subscription_id) END
        USING ERRCODE = '23505', CONSTRAINT = constraint_name;
END
$$;
COMMENT ON FUNCTION ventros.create_subscription(uuid, text, text, text, timestamptz, timestamptz, timestamptz, ventros.product, jsonb) IS
    'Creates a subscription (incomplete, trialing or active); emits subscription.created and, for a trial, subscription.trial_started';

CREATE FUNCTION ventros.set_subscription_status(subscription_id uuid, expected_version integer, status text)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_value(status, ARRAY['trialing', 'active', 'incomplete', 'incomplete_expired',
                                                'past_due', 'canceled', 'unpaid', 'paused'], 'subscription status');
    RETURN ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('status', status)
        || CASE WHEN status = 'canceled' THEN jsonb_build_object('canceled_at', now()) ELSE '{}' END);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'billing account already has an active or trialing subscription' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.set_subscription_status(uuid, integer, text) IS
    'Moves a subscription along Stripe''s machine (VN002 otherwise); emits subscription.status_changed, .canceled or .reactivated';

CREATE FUNCTION ventros.update_subscription_period(subscription_id uuid, expected_version integer,
                                                   period_start timestamptz, period_end timestamptz)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.subscriptions;
BEGIN
    result := ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('current_period_start', period_start, 'current_period_end', period_end));
    PERFORM ventros.emit('subscription.period_updated', 'subscription', result.id,
        jsonb_build_object('current_period_start', period_start, 'current_period_end', period_end), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_subscription_period(uuid, integer, timestamptz, timestamptz) IS
    'Moves the billing period (end after start, 23514); emits subscription.updated and subscription.period_updated';

CREATE FUNCTION ventros.change_subscription_price(subscription_id uuid, expected_version integer, stripe_price_id text)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous ventros.subscriptions := ventros.get_subscription(subscription_id);
    result ventros.subscriptions;
BEGIN
    result := ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('stripe_price_id', stripe_price_id));
    PERFORM ventros.emit('subscription.price_changed', 'subscription', result.id,
        jsonb_build_object('stripe_price_id', stripe_price_id, 'previous_price_id', previous.stripe_price_id), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.change_subscription_price(uuid, integer, text) IS
    'Changes the price; emits subscription.updated and subscription.price_changed';

CREATE FUNCTION ventros.schedule_subscription_cancellation(subscription_id uuid, expected_version integer)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.subscriptions := ventros.get_subscription(subscription_id);
    result ventros.subscriptions;
BEGIN
    IF current.status IN ('canceled', 'incomplete_expired') THEN
        RAISE EXCEPTION 'subscription % is %', subscription_id, current.status
            USING ERRCODE = 'VN002', HINT = 'Only a live subscription can be set to cancel.';
    END IF;
    result := ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        jsonb_build_object('cancel_at_period_end', true, 'cancel_at', current.current_period_end));
    PERFORM ventros.emit('subscription.cancellation_scheduled', 'subscription', result.id,
        jsonb_build_object('cancel_at', result.cancel_at), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.schedule_subscription_cancellation(uuid, integer) IS
    'Sets a subscription to cancel at its period end (VN002 when canceled); emits subscription.updated and subscription.cancellation_scheduled';

CREATE FUNCTION ventros.cancel_subscription(subscription_id uuid, expected_version integer)
RETURNS ventros.subscriptions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.set_subscription_status(subscription_id, expected_version, 'canceled') $$;
COMMENT ON FUNCTION ventros.cancel_subscription(uuid, integer) IS 'Cancels now; emits subscription.canceled';

CREATE FUNCTION ventros.reactivate_subscription(subscription_id uuid, expected_version integer)
RETURNS ventros.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.change_row(NULL::ventros.subscriptions, 'subscription', subscription_id, expected_version,
        '{"status": "active", "canceled_at": null, "cancel_at": null, "cancel_at_period_end": false}');
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'billing account already has an active or trialing subscription' USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.reactivate_subscription(uuid, integer) IS
    'Reactivates a canceled subscription; emits subscription.reactivated';

CREATE FUNCTION ventros.get_subscription(subscription_id uuid) RETURNS ventros.subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.subscriptions, 'subscription', subscription_id) $$;
COMMENT ON FUNCTION ventros.get_subscription(uuid) IS 'A live subscription of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_subscriptions(billing_account_id uuid DEFAULT NULL, status text DEFAULT NULL,
                                           stripe_subscription_id text DEFAULT NULL, trial_ends_before timestamptz DEFAULT NULL)
RETURNS SETOF ventros.subscriptions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.subscriptions s
    WHERE s.tenant_id = ventros.require_tenant()
      AND (list_subscriptions.billing_account_id IS NULL OR s.billing_account_id = list_subscriptions.billing_account_id)
      AND (list_subscriptions.status IS NULL OR s.status = list_subscriptions.status)
      AND (list_subscriptions.stripe_subscription_id IS NULL OR s.stripe_subscription_id = list_subscriptions.stripe_subscription_id)
      AND (trial_ends_before IS NULL OR (s.status = 'trialing' AND s.trial_end < trial_ends_before))
    ORDER BY s.created_at, s.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_subscriptions(uuid, text, text, timestamptz) IS
    'Subscriptions by account, status, Stripe id, or trials ending before a time';

GRANT EXECUTE ON FUNCTION ventros.get_subscription(uuid), ventros.list_subscriptions(uuid, text, text, timestamptz)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION
    ventros.create_subscription(uuid, text, text, text, timestamptz, timestamptz, timestamptz, ventros.product, jsonb),
    ventros.set_subscription_status(uuid, integer, text),
    ventros.update_subscription_period(uuid, integer, timestamptz, timestamptz),
    ventros.change_subscription_price(uuid, integer, text), ventros.schedule_subscription_cancellation(uuid, integer),
    ventros.cancel_subscription(uuid, integer), ventros.reactivate_subscription(uuid, integer)
    TO ventros_platform_admin;   -- Stripe's states, not the tenant's to set (docs/billing.md)

-- Direct writes of subscription by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('subscription', inserts => '{}', updates => '{}', deletes => '{}');
