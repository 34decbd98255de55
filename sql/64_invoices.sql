-- Aggregate 27, Invoice (core): a Stripe invoice mirrored locally.  Amounts
-- are minor units and never negative; amount_remaining is computed from the
-- other two, so it cannot disagree with them.

CREATE TABLE ventros.invoices (
    id                     uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL,
    version                integer     NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    billing_account_id     uuid        NOT NULL,
    subscription_id        uuid,
    stripe_invoice_id      text        NOT NULL,
    stripe_subscription_id text,
    amount_due             bigint      NOT NULL,
    amount_paid            bigint      NOT NULL DEFAULT 0,
    amount_remaining       bigint      GENERATED ALWAYS AS (amount_due - amount_paid) STORED,
    currency               text        NOT NULL,
    status                 text        NOT NULL DEFAULT 'draft',
    hosted_invoice_url     text,
    invoice_pdf            text,
    due_date               timestamptz,
    paid_at                timestamptz,
    payment_failures       integer     NOT NULL DEFAULT 0,
    last_payment_error     text,
    metadata               jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, billing_account_id) REFERENCES ventros.billing_accounts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES ventros.subscriptions (tenant_id, id) ON DELETE SET NULL (subscription_id),
    CONSTRAINT invoices_status_known CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    CONSTRAINT invoices_amounts_not_negative CHECK (amount_due >= 0 AND amount_paid >= 0 AND amount_paid <= amount_due),
    CONSTRAINT invoices_currency_iso CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT invoices_stripe_id CHECK (stripe_invoice_id ~ '^in_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT invoices_urls CHECK (hosted_invoice_url ~ '^https://' AND invoice_pdf ~ '^https://'),
    CONSTRAINT invoices_paid_complete CHECK (status <> 'paid' OR (amount_paid = amount_due AND paid_at IS NOT NULL)),
    CONSTRAINT invoices_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX invoices_unique_stripe ON ventros.invoices (tenant_id, stripe_invoice_id);
CREATE INDEX invoices_by_account ON ventros.invoices (tenant_id, billing_account_id, created_at);
CREATE INDEX invoices_open_due ON ventros.invoices (tenant_id, due_date) WHERE status = 'open';
COMMENT ON TABLE ventros.invoices IS 'Invoice: a Stripe invoice mirrored locally (amounts in minor units)';

SELECT ventros.register_aggregate('invoice', 'ventros.invoices', 'core',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": null, "to": "open"},
        {"from": "draft", "to": "open", "event": "invoice.finalized", "description": "A draft invoice was finalized and is open for payment."},
        {"from": "open", "to": "paid", "event": "invoice.paid", "description": "An invoice was paid."},
        {"from": "open", "to": "uncollectible", "event": "invoice.marked_uncollectible", "description": "An invoice was marked uncollectible."},
        {"from": "open", "to": "void", "event": "invoice.voided", "description": "An invoice was voided."},
        {"from": "uncollectible", "to": "paid", "event": "invoice.paid"},
        {"from": "uncollectible", "to": "void", "event": "invoice.voided"}
    ]',
    privileges => '{"ventros_viewer": ["SELECT"]}',
    description => 'A Stripe invoice');
-- Written by the platform only (Stripe's webhook, platform admins): a tenant
-- role with a write privilege here could also emit this aggregate's events
-- (ventros.emit's check), e.g. a forged invoice event (docs/billing.md).
GRANT INSERT, UPDATE, DELETE ON ventros.invoices TO ventros_platform_admin;
SELECT ventros.register_event_type('invoice.payment_failed', 'A payment of an open invoice failed; it stays open.');

CREATE FUNCTION ventros.create_invoice(
    billing_account_id uuid,
    stripe_invoice_id  text,
    amount_due         bigint,
    currency           text,
    status             text DEFAULT 'draft',
    subscription_id    uuid DEFAULT NULL,
    due_date           timestamptz DEFAULT NULL,
    metadata           jsonb DEFAULT '{}')
RETURNS ventros.invoices
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.invoices;
    sub ventros.subscriptions;
BEGIN
    PERFORM ventros.get_billing_account(billing_account_id);
    PERFORM ventros.require_value(status, ARRAY['draft', 'open'], 'initial invoice status');
    IF subscription_id IS NOT NULL THEN
        sub := ventros.get_subscription(subscription_id);
        IF sub.billing_account_id <> billing_account_id THEN
            RAISE EXCEPTION 'subscription % belongs to another billing account', subscription_id USING ERRCODE = '22023';
        END IF;
    END IF;
    INSERT INTO ventros.invoices (billing_account_id, subscription_id, stripe_invoice_id, stripe_subscription_id,
                                  amount_due, currency, status, due_date, metadata)
    VALUES (billing_account_id, subscription_id, stripe_invoice_id, sub.stripe_subscription_id, amount_due,
            lower(currency), status, due_date,
            coalesce(ventros.require_json(metadata, 'object', 'invoice metadata'), '{}'))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'Stripe invoice % exists already', stripe_invoice_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_invoice(uuid, text, bigint, text, text, uuid, timestamptz, jsonb) IS
    'Mirrors a Stripe invoice (draft or open; amounts >= 0, 23514); emits invoice.created';

CREATE FUNCTION ventros.finalize_invoice(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version, '{"status": "open"}') $$;
COMMENT ON FUNCTION ventros.finalize_invoice(uuid, integer) IS 'Opens a draft invoice for payment; emits invoice.finalized';

CREATE FUNCTION ventros.pay_invoice(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.invoices := ventros.get_invoice(invoice_id);
BEGIN
    RETURN ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version,
        jsonb_build_object('status', 'paid', 'amount_paid', current.amount_due, 'paid_at', now()));
END
$$;
COMMENT ON FUNCTION ventros.pay_invoice(uuid, integer) IS
    'Marks an open or uncollectible invoice paid in full; emits invoice.paid';

CREATE FUNCTION ventros.record_invoice_payment_failure(invoice_id uuid, expected_version integer, error text)
RETURNS ventros.invoices
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.invoices := ventros.get_invoice(invoice_id);
    result ventros.invoices;
BEGIN
    IF current.status <> 'open' THEN
        RAISE EXCEPTION 'invoice % is %, not open', invoice_id, current.status
            USING ERRCODE = 'VN002', HINT = 'Only open invoices have payment attempts.';
    END IF;
    result := ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version,
        jsonb_build_object('payment_failures', current.payment_failures + 1,
                           'last_payment_error', ventros.check_length(error, 1000, 'payment error')));
    PERFORM ventros.emit('invoice.payment_failed', 'invoice', result.id,
        jsonb_build_object('error', result.last_payment_error, 'payment_failures', result.payment_failures,
                           'amount_remaining', result.amount_remaining), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.record_invoice_payment_failure(uuid, integer, text) IS
    'Records a failed payment of an open invoice (VN002 otherwise), which stays open; emits invoice.updated and invoice.payment_failed';

CREATE FUNCTION ventros.mark_invoice_uncollectible(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version, '{"status": "uncollectible"}') $$;
COMMENT ON FUNCTION ventros.mark_invoice_uncollectible(uuid, integer) IS 'Marks an open invoice uncollectible; emits invoice.marked_uncollectible';

CREATE FUNCTION ventros.void_invoice(invoice_id uuid, expected_version integer)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version, '{"status": "void"}') $$;
COMMENT ON FUNCTION ventros.void_invoice(uuid, integer) IS 'Voids an open or uncollectible invoice; emits invoice.voided';

CREATE FUNCTION ventros.set_invoice_links(invoice_id uuid, expected_version integer, hosted_invoice_url text,
                                          invoice_pdf text, due_date timestamptz)
RETURNS ventros.invoices
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.invoices, 'invoice', invoice_id, expected_version,
        jsonb_build_object('hosted_invoice_url', hosted_invoice_url, 'invoice_pdf', invoice_pdf, 'due_date', due_date))
$$;
COMMENT ON FUNCTION ventros.set_invoice_links(uuid, integer, text, text, timestamptz) IS
    'Sets the hosted and PDF URLs (https, 23514) and the due date; emits invoice.updated';

CREATE FUNCTION ventros.get_invoice(invoice_id uuid) RETURNS ventros.invoices
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.invoices, 'invoice', invoice_id) $$;
COMMENT ON FUNCTION ventros.get_invoice(uuid) IS 'A live invoice of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_invoices(billing_account_id uuid DEFAULT NULL, status text DEFAULT NULL,
                                      subscription_id uuid DEFAULT NULL, overdue boolean DEFAULT false,
                                      due_from timestamptz DEFAULT NULL, due_to timestamptz DEFAULT NULL)
RETURNS SETOF ventros.invoices
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.* FROM ventros.invoices i
    WHERE i.tenant_id = ventros.require_tenant()
      AND (list_invoices.billing_account_id IS NULL OR i.billing_account_id = list_invoices.billing_account_id)
      AND (list_invoices.status IS NULL OR i.status = list_invoices.status)
      AND (list_invoices.subscription_id IS NULL OR i.subscription_id = list_invoices.subscription_id)
      AND (NOT overdue OR (i.status = 'open' AND i.due_date < now()))
      AND (due_from IS NULL OR i.due_date >= due_from)
      AND (due_to IS NULL OR i.due_date < due_to)
    ORDER BY i.created_at, i.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_invoices(uuid, text, uuid, boolean, timestamptz, timestamptz) IS
    'Invoices by account, status, subscription, overdue, or due in [due_from, due_to)';

GRANT EXECUTE ON FUNCTION ventros.get_invoice(uuid), ventros.list_invoices(uuid, text, uuid, boolean, timestamptz, timestamptz)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_invoice(uuid, text, bigint, text, text, uuid, timestamptz, jsonb),
    ventros.finalize_invoice(uuid, integer), ventros.pay_invoice(uuid, integer),
    ventros.record_invoice_payment_failure(uuid, integer, text), ventros.mark_invoice_uncollectible(uuid, integer),
    ventros.void_invoice(uuid, integer), ventros.set_invoice_links(uuid, integer, text, text, timestamptz)
    TO ventros_platform_admin;   -- Stripe's states, not the tenant's to set (docs/billing.md)

-- Direct writes of invoice by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('invoice', inserts => '{}', updates => '{}', deletes => '{}');
