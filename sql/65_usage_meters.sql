-- Aggregate 28, UsageMeter (core): a metered-usage counter for one metric and
-- billing period, reported to Stripe.  Increments are commutative and take no
-- expected version: two concurrent increments both count.

CREATE TABLE ventros.usage_meters (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    billing_account_id uuid        NOT NULL,
    stripe_customer_id text        NOT NULL,
    stripe_meter_id    text        NOT NULL,
    metric_name        varchar(100) NOT NULL,
    event_name         varchar(100) NOT NULL,
    quantity           bigint      NOT NULL DEFAULT 0,
    reported_quantity  bigint      NOT NULL DEFAULT 0,
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    last_reported_at   timestamptz,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, billing_account_id) REFERENCES ventros.billing_accounts (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT usage_meters_period_order CHECK (period_end > period_start),
    CONSTRAINT usage_meters_quantity_not_negative CHECK (quantity >= 0 AND reported_quantity BETWEEN 0 AND quantity),
    CONSTRAINT usage_meters_metric_format CHECK (metric_name ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT usage_meters_event_name_format CHECK (event_name ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    CONSTRAINT usage_meters_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX usage_meters_unique_period ON ventros.usage_meters (tenant_id, billing_account_id, metric_name, period_start)
    WHERE deleted_at IS NULL;
CREATE INDEX usage_meters_by_event ON ventros.usage_meters (tenant_id, event_name, period_end) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.usage_meters IS 'UsageMeter: metered usage of one metric in one billing period';

SELECT ventros.register_aggregate('usage_meter', 'ventros.usage_meters', 'core',
    privileges => '{"ventros_viewer": ["SELECT"]}',
    description => 'A metered-usage counter for one metric and period');
-- Written by the platform only (Stripe's webhook, platform admins): a tenant
-- role with a write privilege here could also emit this aggregate's events
-- (ventros.emit's check), e.g. a forged usage_meter event (docs/billing.md).
GRANT INSERT, UPDATE, DELETE ON ventros.usage_meters TO ventros_platform_admin;
SELECT ventros.register_event_type('usage_meter.incremented', 'Usage of a metric was counted.');
SELECT ventros.register_event_type('usage_meter.reported', 'Usage of a metric was reported to Stripe.');
SELECT ventros.register_event_type('usage_meter.period_reset', 'A usage meter started a new period at zero.');

CREATE FUNCTION ventros.create_usage_meter(billing_account_id uuid, metric_name text, event_name text,
                                           stripe_meter_id text, period_start timestamptz, period_end timestamptz)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    account ventros.billing_accounts := ventros.get_billing_account(billing_account_id);
    result ventros.usage_meters;
BEGIN
    IF account.stripe_customer_id IS NULL THEN
        RAISE EXCEPTION 'billing account % has no Stripe customer', billing_account_id
            USING ERRCODE = '23502', HINT = 'Link one with ventros.link_stripe_customer() first.';
    END IF;
    INSERT INTO ventros.usage_meters (billing_account_id, stripe_customer_id, stripe_meter_id, metric_name,
                                      event_name, period_start, period_end)
    VALUES (billing_account_id, account.stripe_customer_id, stripe_meter_id, metric_name, event_name,
            period_start, period_end)
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a usage meter for % in the period starting % exists already', metric_name, period_start
        USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.create_usage_meter(uuid, text, text, text, timestamptz, timestamptz) IS
    'Creates a meter for one metric and period (unique per account, metric and start); emits usage_meter.created';

CREATE FUNCTION ventros.increment_usage(usage_meter_id uuid, quantity bigint DEFAULT 1)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.usage_meters;
BEGIN
    IF quantity IS NULL OR quantity < 0 THEN
        RAISE EXCEPTION 'usage quantity must be zero or more' USING ERRCODE = '22023';
    END IF;
    UPDATE ventros.usage_meters m SET quantity = m.quantity + increment_usage.quantity, version = m.version
    WHERE m.tenant_id = ventros.require_tenant() AND m.id = usage_meter_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('usage meter', usage_meter_id);
    END IF;
    PERFORM ventros.emit('usage_meter.incremented', 'usage_meter', result.id,
        jsonb_build_object('metric_name', result.metric_name, 'increment', quantity, 'quantity', result.quantity),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.increment_usage(uuid, bigint) IS
    'Adds quantity (>= 0, 22023) to a meter without a version check; emits usage_meter.updated and usage_meter.incremented';

CREATE FUNCTION ventros.report_usage(usage_meter_id uuid, expected_version integer)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.usage_meters := ventros.get_usage_meter(usage_meter_id);
    result ventros.usage_meters;
BEGIN
    result := ventros.change_row(NULL::ventros.usage_meters, 'usage_meter', usage_meter_id, expected_version,
        jsonb_build_object('reported_quantity', current.quantity, 'last_reported_at', now()));
    PERFORM ventros.emit('usage_meter.reported', 'usage_meter', result.id,
        jsonb_build_object('metric_name', result.metric_name, 'stripe_meter_id', result.stripe_meter_id,
                           'quantity', result.quantity, 'delta', result.quantity - current.reported_quantity),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.report_usage(uuid, integer) IS
    'Marks the current quantity reported to Stripe; emits usage_meter.updated and usage_meter.reported';

CREATE FUNCTION ventros.reset_usage_period(usage_meter_id uuid, expected_version integer,
                                           period_start timestamptz, period_end timestamptz)
RETURNS ventros.usage_meters
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.usage_meters;
BEGIN
    result := ventros.change_row(NULL::ventros.usage_meters, 'usage_meter', usage_meter_id, expected_version,
        jsonb_build_object('quantity', 0, 'reported_quantity', 0, 'period_start', period_start,
                           'period_end', period_end, 'last_reported_at', NULL));
    PERFORM ventros.emit('usage_meter.period_reset', 'usage_meter', result.id,
        jsonb_build_object('period_start', period_start, 'period_end', period_end), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.reset_usage_period(uuid, integer, timestamptz, timestamptz) IS
    'Starts a new period at zero; emits usage_meter.updated and usage_meter.period_reset';

CREATE FUNCTION ventros.get_usage_meter(usage_meter_id uuid) RETURNS ventros.usage_meters
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.usage_meters, 'usage meter', usage_meter_id) $$;
COMMENT ON FUNCTION ventros.get_usage_meter(uuid) IS 'A live usage meter of the acting tenant, or P0002';

CREATE FUNCTION ventros.list_usage_meters(billing_account_id uuid DEFAULT NULL, metric_name text DEFAULT NULL,
                                          current_only boolean DEFAULT false, pending_report boolean DEFAULT false)
RETURNS SETOF ventros.usage_meters
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.usage_meters m
    WHERE m.tenant_id = ventros.require_tenant()
      AND (list_usage_meters.billing_account_id IS NULL OR m.billing_account_id = list_usage_meters.billing_account_id)
      AND (list_usage_meters.metric_name IS NULL OR m.metric_name = list_usage_meters.metric_name)
      AND (NOT current_only OR now() >= m.period_start AND now() < m.period_end)
      AND (NOT pending_report OR m.quantity > m.reported_quantity)
    ORDER BY m.period_start, m.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_usage_meters(uuid, text, boolean, boolean) IS
    'Usage meters by account and metric; the current period only, or only those with unreported usage';

GRANT EXECUTE ON FUNCTION ventros.get_usage_meter(uuid), ventros.list_usage_meters(uuid, text, boolean, boolean) TO ventros_viewer;
-- Usage is counted by the platform, never by the tenant it bills (docs/billing.md).
GRANT EXECUTE ON FUNCTION ventros.increment_usage(uuid, bigint),
    ventros.create_usage_meter(uuid, text, text, text, timestamptz, timestamptz),
    ventros.report_usage(uuid, integer), ventros.reset_usage_period(uuid, integer, timestamptz, timestamptz)
    TO ventros_platform_admin;

-- Direct writes of usage_meter by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('usage_meter', inserts => '{}', updates => '{}', deletes => '{}');
