-- Aggregate 25, BillingAccount (core): the paying customer.  Its
-- payment_status machine is declared below; the invariant "an active account
-- has a payment method" is a CHECK, and suspended mirrors the status.
-- user_id names the owning user (sql/12_users.sql of the http part); it has
-- no foreign key here so billing loads without the users table.

CREATE TABLE ventros.billing_accounts (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    user_id            uuid        NOT NULL,
    name               text        NOT NULL,
    stripe_customer_id text,
    payment_status     text        NOT NULL DEFAULT 'pending',
    payment_methods    jsonb       NOT NULL DEFAULT '[]',
    billing_email      text        NOT NULL,
    suspended          boolean     NOT NULL DEFAULT false,
    suspended_at       timestamptz,
    suspension_reason  text,
    canceled_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT billing_accounts_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT billing_accounts_status_known CHECK (payment_status IN ('pending', 'active', 'suspended', 'canceled')),
    CONSTRAINT billing_accounts_email_valid CHECK (billing_email = lower(billing_email)
                                                   AND billing_email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT billing_accounts_methods_array CHECK (jsonb_typeof(payment_methods) = 'array'),
    CONSTRAINT billing_accounts_active_has_method CHECK (payment_status <> 'active' OR jsonb_array_length(payment_methods) > 0),
    CONSTRAINT billing_accounts_suspended_flag CHECK (suspended = (payment_status = 'suspended')),
    CONSTRAINT billing_accounts_stripe_id_format CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9]{1,200}$')
);
CREATE UNIQUE INDEX billing_accounts_unique_stripe ON ventros.billing_accounts (tenant_id, stripe_customer_id)
    WHERE deleted_at IS NULL AND stripe_customer_id IS NOT NULL;
CREATE INDEX billing_accounts_by_user ON ventros.billing_accounts (tenant_id, user_id) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.billing_accounts IS 'BillingAccount: the paying customer, its payment status and Stripe link';

SELECT ventros.register_aggregate('billing_account', 'ventros.billing_accounts', 'core',
    state_column => 'payment_status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": "pending", "to": "active", "event": "billing_account.payment_activated", "description": "A payment method was activated on a billing account."},
        {"from": "pending", "to": "suspended", "event": "billing_account.suspended", "description": "A billing account was suspended."},
        {"from": "active", "to": "suspended", "event": "billing_account.suspended"},
        {"from": "suspended", "to": "active", "event": "billing_account.reactivated", "description": "A suspended billing account was reactivated."},
        {"from": "pending", "to": "canceled", "event": "billing_account.canceled", "description": "A billing account was canceled."},
        {"from": "active", "to": "canceled", "event": "billing_account.canceled"},
        {"from": "suspended", "to": "canceled", "event": "billing_account.canceled"}
    ]',
    redacted_columns => '{payment_methods}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'The paying customer');
SELECT ventros.register_event_type('billing_account.stripe_customer_linked', 'A Stripe customer was linked to a billing account.');
-- the payment state and the Stripe link are the platform's word (below):
-- a tenant's admins, who may rename the account, may not announce them
SELECT ventros.reserve_event_type(t, 'ventros_platform_admin')
  FROM unnest(ARRAY['billing_account.payment_activated', 'billing_account.suspended', 'billing_account.reactivated',
                    'billing_account.canceled', 'billing_account.stripe_customer_linked']) t;

-- Invariant of the domain: a project is created (or moved) only under an
-- active, unsuspended billing account.  The account row is share-locked, so
-- a concurrent suspension waits for the project or the project sees it.
ALTER TABLE ventros.projects
    ADD CONSTRAINT projects_billing_account_fk FOREIGN KEY (tenant_id, billing_account_id)
        REFERENCES ventros.billing_accounts (tenant_id, id);

CREATE FUNCTION ventros.projects_require_active_billing() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    status text;
BEGIN
    IF NEW.billing_account_id IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.billing_account_id IS NOT DISTINCT FROM OLD.billing_account_id) THEN
        RETURN NEW;
    END IF;
    SELECT b.payment_status INTO status FROM ventros.billing_accounts b
    WHERE b.tenant_id = coalesce(NEW.tenant_id, ventros.require_tenant()) AND b.id = NEW.billing_account_id
    FOR SHARE;
    IF status IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'billing account % cannot create projects', NEW.billing_account_id
            USING ERRCODE = '23514', DETAIL = format('Its payment status is %s.', coalesce(status, 'unknown')),
                  HINT = 'Activate the account''s payment first.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.projects_require_active_billing() IS
    'Refuses a project under a billing account that is not active (23514)';
CREATE TRIGGER projects_require_active_billing BEFORE INSERT OR UPDATE OF billing_account_id ON ventros.projects
    FOR EACH ROW EXECUTE FUNCTION ventros.projects_require_active_billing();

CREATE FUNCTION ventros.create_billing_account(name text, billing_email text, user_id uuid, payment_methods jsonb DEFAULT '[]')
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.billing_accounts;
BEGIN
    IF name IS NULL OR billing_email IS NULL OR user_id IS NULL THEN
        RAISE EXCEPTION 'billing account % must not be null',
            CASE WHEN name IS NULL THEN 'name' WHEN billing_email IS NULL THEN 'billing_email' ELSE 'user_id' END
            USING ERRCODE = '23502';
    END IF;
    INSERT INTO ventros.billing_accounts (user_id, name, billing_email, payment_methods)
    VALUES (user_id, ventros.check_length(btrim(name), 200, 'billing account name'), ventros.normalize_email(billing_email),
            coalesce(ventros.require_json(payment_methods, 'array', 'payment methods'), '[]'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_billing_account(text, text, uuid, jsonb) IS
    'Creates a pending billing account (with the payment methods known at registration, if any); emits billing_account.created';

CREATE FUNCTION ventros.activate_billing_payment(billing_account_id uuid, expected_version integer, payment_method jsonb)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    IF payment_method IS NULL OR jsonb_typeof(payment_method) <> 'object' OR NOT payment_method ? 'id' THEN
        RAISE EXCEPTION 'payment method must be a JSON object with an id' USING ERRCODE = '22023',
            HINT = 'For example {"id": "pm_123", "type": "card"}.';
    END IF;
    IF current.payment_status <> 'pending' THEN
        RAISE EXCEPTION 'billing account % is %; payment activation needs a pending account', billing_account_id,
            current.payment_status
            USING ERRCODE = 'VN002', HINT = 'Reactivate a suspended account with ventros.reactivate_billing_account().';
    END IF;
    RETURN ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'active',
                           'payment_methods', current.payment_methods || jsonb_build_array(payment_method)));
END
$$;
COMMENT ON FUNCTION ventros.activate_billing_payment(uuid, integer, jsonb) IS
    'Adds a payment method and activates a pending account (VN002 when suspended or canceled); emits billing_account.payment_activated';

CREATE FUNCTION ventros.suspend_billing_account(billing_account_id uuid, expected_version integer, reason text)
RETURNS ventros.billing_accounts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'suspended', 'suspended', true, 'suspended_at', now(),
                           'suspension_reason', ventros.check_length(reason, 500, 'suspension reason')))
$$;
COMMENT ON FUNCTION ventros.suspend_billing_account(uuid, integer, text) IS
    'Suspends a pending or active account; emits billing_account.suspended';

CREATE FUNCTION ventros.reactivate_billing_account(billing_account_id uuid, expected_version integer)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
BEGIN
    IF current.payment_status <> 'suspended' THEN
        RAISE EXCEPTION 'billing account % is %, not suspended', billing_account_id, current.payment_status
            USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'active', 'suspended', false, 'suspended_at', NULL, 'suspension_reason', NULL));
END
$$;
COMMENT ON FUNCTION ventros.reactivate_billing_account(uuid, integer) IS
    'Reactivates a suspended account; needs a payment method (23514); emits billing_account.reactivated';

CREATE FUNCTION ventros.cancel_billing_account(billing_account_id uuid, expected_version integer)
RETURNS ventros.billing_accounts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id, expected_version,
        jsonb_build_object('payment_status', 'canceled', 'suspended', false, 'canceled_at', now()))
$$;
COMMENT ON FUNCTION ventros.cancel_billing_account(uuid, integer) IS
    'Cancels an account (terminal); emits billing_account.canceled';

CREATE FUNCTION ventros.update_billing_account(billing_account_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized jsonb := changes;
BEGIN
    IF jsonb_typeof(changes) = 'object' AND jsonb_typeof(changes->'billing_email') = 'string' THEN
        normalized := jsonb_set(normalized, '{billing_email}', to_jsonb(ventros.normalize_email(changes->>'billing_email')));
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.billing_accounts, 'billing_account', billing_account_id,
                                 expected_version, normalized, ARRAY['name', 'billing_email']);
END
$$;
COMMENT ON FUNCTION ventros.update_billing_account(uuid, integer, jsonb) IS
    'Changes the name or billing email of an account; emits billing_account.updated';

CREATE FUNCTION ventros.link_stripe_customer(billing_account_id uuid, expected_version integer, stripe_customer_id text)
RETURNS ventros.billing_accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.billing_accounts;
BEGIN
    IF stripe_customer_id IS NULL OR stripe_customer_id !~ '^cus_[A-Za-z0-9]{1,200}$' THEN
        RAISE EXCEPTION 'malformed Stripe customer id "%"', left(stripe_customer_id, 64)
            USING ERRCODE = '22P02', HINT = 'Stripe customer ids look like cus_NffrFeUfNV2Hib.';
    END IF;
    result := ventros.change_row(NULL::ventros.billing_accounts, 'billing_account', billing_account_id,
                                 expected_version, jsonb_build_object('stripe_customer_id', stripe_customer_id));
    PERFORM ventros.emit('billing_account.stripe_customer_linked', 'billing_account', result.id,
                         jsonb_build_object('stripe_customer_id', stripe_customer_id), result.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'Stripe customer % is linked to another billing account', stripe_customer_id
        USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.link_stripe_customer(uuid, integer, text) IS
    'Links the Stripe customer; emits billing_account.updated and billing_account.stripe_customer_linked';

CREATE FUNCTION ventros.get_billing_account(billing_account_id uuid) RETURNS ventros.billing_accounts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.billing_accounts, 'billing account', billing_account_id) $$;
COMMENT ON FUNCTION ventros.get_billing_account(uuid) IS 'A live billing account of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_billing_accounts(user_id uuid DEFAULT NULL, only_active boolean DEFAULT false)
RETURNS SETOF ventros.billing_accounts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.* FROM ventros.billing_accounts b
    WHERE b.tenant_id = ventros.require_tenant()
      AND (list_billing_accounts.user_id IS NULL OR b.user_id = list_billing_accounts.user_id)
      AND (NOT only_active OR b.payment_status = 'active')
    ORDER BY b.created_at, b.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_billing_accounts(uuid, boolean) IS
    'Billing accounts of the acting tenant, by user and optionally only active ones, oldest first';

GRANT EXECUTE ON FUNCTION ventros.get_billing_account(uuid), ventros.list_billing_accounts(uuid, boolean) TO ventros_viewer;
-- A tenant's admins name the account and its billing email; its payment
-- state and its Stripe customer are the platform's, set from Stripe
-- (sql/66_stripe_webhooks.sql) or by a platform admin: a tenant that could
-- activate its own account, or claim another's Stripe customer, would forge
-- what it paid (docs/billing.md).
GRANT EXECUTE ON FUNCTION ventros.create_billing_account(text, text, uuid, jsonb),
    ventros.update_billing_account(uuid, integer, jsonb)
    TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.activate_billing_payment(uuid, integer, jsonb), ventros.suspend_billing_account(uuid, integer, text),
    ventros.reactivate_billing_account(uuid, integer), ventros.cancel_billing_account(uuid, integer),
    ventros.link_stripe_customer(uuid, integer, text)
    TO ventros_platform_admin;

-- Direct writes of billing_account by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('billing_account', inserts => '{create_billing_account}', updates => '{update_billing_account}', deletes => '{}');
