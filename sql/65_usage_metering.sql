-- Usage metered as it happens, and the plan limits it is held to
-- (docs/billing.md).
--
-- The hot path never takes a shared row lock: a message, an enrichment or an
-- AI answer appends one delta row (ventros.usage_deltas, insert only, no
-- unique key and no foreign key another writer could meet), and
-- ventros.fold_usage() (a scheduled job, every minute, one tenant at a time)
-- moves the deltas into ventros.usage_totals (per metric, channel and UTC
-- day) and the quantities of the live usage meters (sql/65_usage_meters.sql).
-- Readers add the folded totals and the deltas not folded yet, so they are
-- exact at any moment.
--
-- Limits are data: ventros.billing_plans maps a plan (the Stripe price of
-- the tenant's current subscription, or "default" without one) to limits per
-- metric and period.  A command that would go over a limit is refused with
-- VN020 (402 over HTTP); the command that reaches a limit, or the fold that
-- finds it reached by usage no command refuses (inbound messages), emits
-- billing.limit_reached once per period and metric (ventros.usage_limit_hits).

-- The metrics metered.  active_contacts is counted when read (contacts with a
-- message in the period), never appended.
CREATE FUNCTION ventros.usage_metrics() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['messages_sent', 'messages_received', 'enrichments', 'ai_completions', 'ai_tokens', 'active_contacts'] $$;
COMMENT ON FUNCTION ventros.usage_metrics() IS
    'The usage metrics: messages_sent and messages_received (per channel), enrichments, ai_completions (chat completions answered: summaries, AI agent replies), ai_tokens (of both), active_contacts';

CREATE TABLE ventros.usage_deltas (
    tenant_id  text        NOT NULL,
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    metric     text        NOT NULL,
    channel_id uuid,
    quantity   bigint      NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT usage_deltas_metric_format CHECK (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT usage_deltas_quantity_positive CHECK (quantity > 0)
);
CREATE INDEX usage_deltas_by_metric ON ventros.usage_deltas (tenant_id, metric, at);
COMMENT ON TABLE ventros.usage_deltas IS
    'Usage counted since the last fold, one appended row per counted change (no row is ever updated, so writers never queue); folded by ventros.fold_usage';
ALTER TABLE ventros.usage_deltas ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.usage_deltas FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.usage_deltas FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.usage_deltas TO ventros_viewer;

CREATE TABLE ventros.usage_totals (
    tenant_id  text    NOT NULL,
    metric     text    NOT NULL,
    day        date    NOT NULL,
    -- the nil uuid: usage of no channel (enrichments, tokens)
    channel_id uuid    NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    quantity   bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, metric, day, channel_id),
    CONSTRAINT usage_totals_quantity_not_negative CHECK (quantity >= 0)
);
COMMENT ON TABLE ventros.usage_totals IS
    'Folded usage per metric, UTC day and channel (nil uuid: none); written only by ventros.fold_usage';
ALTER TABLE ventros.usage_totals ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.usage_totals FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.usage_totals FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.usage_totals TO ventros_viewer;

-- The plans and their limits: platform data, readable by every tenant.
CREATE TABLE ventros.billing_plans (
    plan    text PRIMARY KEY,
    name    text NOT NULL,
    product ventros.product NOT NULL DEFAULT 'crm',
    limits  jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT billing_plans_plan_format CHECK (plan = 'default' OR plan ~ '^price_[A-Za-z0-9]{1,200}$'),
    CONSTRAINT billing_plans_limits_shape CHECK (jsonb_typeof(limits) = 'object')
);
COMMENT ON TABLE ventros.billing_plans IS
    'Plans by Stripe price id ("default": tenants without a current subscription) and their limits per metric and billing period, e.g. {"messages_sent": 10000}';
ALTER TABLE ventros.billing_plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.billing_plans FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_catalog_read ON ventros.billing_plans FOR SELECT USING (true);
GRANT SELECT ON ventros.billing_plans TO ventros_viewer;

-- Limits reached, once per tenant, metric and period: the key that makes
-- billing.limit_reached an event of its own period only once.
CREATE TABLE ventros.usage_limit_hits (
    tenant_id    text        NOT NULL,
    metric       text        NOT NULL,
    period_start timestamptz NOT NULL,
    usage_limit  bigint      NOT NULL,
    reached_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, period_start)
);
COMMENT ON TABLE ventros.usage_limit_hits IS
    'The plan limits a tenant reached, one row per metric and period (billing.limit_reached is emitted with the row)';
ALTER TABLE ventros.usage_limit_hits ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.usage_limit_hits FORCE ROW LEVEL SECURITY;
CREATE POLICY ventros_tenant_select ON ventros.usage_limit_hits FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.usage_limit_hits TO ventros_viewer;

SELECT ventros.register_event_type('billing.limit_reached',
    'A tenant reached a limit of its plan in the current billing period (once per period and metric).');

-- ---- metering ----------------------------------------------------------------

-- meter_usage: appends usage of the acting tenant.  Internal: called by the
-- commands that count (messages, enrichments, chat completions), never
-- granted to a tenant.
CREATE FUNCTION ventros.meter_usage(metrics text[], quantities bigint[], channel_id uuid DEFAULT NULL,
                                    at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(metrics) m WHERE m IS NULL OR m <> ALL (ventros.usage_metrics())
                                                     OR m = 'active_contacts') THEN
        RAISE EXCEPTION 'unknown usage metric in %', metrics USING ERRCODE = '22023',
            HINT = 'Metered are messages_sent, messages_received, enrichments, ai_completions and ai_tokens.';
    END IF;
    INSERT INTO ventros.usage_deltas (tenant_id, metric, channel_id, quantity, at)
    SELECT tenant, u.metric, meter_usage.channel_id, u.quantity, coalesce(meter_usage.at, now())
    FROM unnest(metrics, quantities) u(metric, quantity)
    WHERE u.quantity > 0;
END
$$;
COMMENT ON FUNCTION ventros.meter_usage(text[], bigint[], uuid, timestamptz) IS
    'Appends usage of the acting tenant (one row per metric with a positive quantity; no row lock); internal';

-- ---- periods, plans and reading ---------------------------------------------

-- The acting tenant's billing period: its current subscription's (active,
-- trialing or past due), else the calendar month (UTC).
CREATE FUNCTION ventros.usage_period(OUT period_start timestamptz, OUT period_end timestamptz, OUT plan text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT s.current_period_start, s.current_period_end, s.stripe_price_id INTO period_start, period_end, plan
      FROM ventros.subscriptions s
     WHERE s.tenant_id = ventros.require_tenant() AND s.deleted_at IS NULL
       AND s.status IN ('active', 'trialing', 'past_due')
       AND s.current_period_start <= now() AND s.current_period_end > now()
     ORDER BY s.current_period_start DESC LIMIT 1;
    IF NOT FOUND THEN
        period_start := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        period_end := period_start + interval '1 month';
        plan := 'default';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.usage_period() IS
    'The acting tenant''s billing period and plan: its current subscription''s (price id), else the UTC calendar month and "default"';

-- The limits of the acting tenant's plan ({} when its plan has none).
CREATE FUNCTION ventros.plan_limits(plan text) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT p.limits FROM ventros.billing_plans p WHERE p.plan = plan_limits.plan), '{}') $$;
COMMENT ON FUNCTION ventros.plan_limits(text) IS 'The limits of a plan ({} for a plan without a row)';

-- Usage of one metric since an instant: folded days from that instant's day
-- (periods are counted in whole UTC days) plus the deltas not folded yet.
CREATE FUNCTION ventros.usage_since(metric text, since timestamptz) RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT sum(t.quantity) FROM ventros.usage_totals t
                      WHERE t.tenant_id = ventros.require_tenant() AND t.metric = usage_since.metric
                        AND t.day >= (since AT TIME ZONE 'UTC')::date), 0)::bigint
         + coalesce((SELECT sum(d.quantity) FROM ventros.usage_deltas d
                      WHERE d.tenant_id = ventros.require_tenant() AND d.metric = usage_since.metric
                        AND d.at >= date_trunc('day', since AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0)::bigint
$$;
COMMENT ON FUNCTION ventros.usage_since(text, timestamptz) IS
    'The acting tenant''s usage of a metric from the UTC day of an instant: folded totals plus deltas not folded yet';

-- Contacts with a message (either way) in the period.
CREATE FUNCTION ventros.active_contacts_since(since timestamptz) RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM ventros.contacts c
     WHERE c.tenant_id = ventros.require_tenant() AND c.deleted_at IS NULL AND c.last_interaction_at >= since
$$;
COMMENT ON FUNCTION ventros.active_contacts_since(timestamptz) IS
    'The acting tenant''s contacts with a message since an instant (their last interaction, kept to the minute)';

CREATE FUNCTION ventros.usage_status()
RETURNS TABLE (metric text, quantity bigint, usage_limit bigint, period_start timestamptz, period_end timestamptz,
               plan text, limit_reached boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p record := ventros.usage_period();
    limits jsonb := ventros.plan_limits(p.plan);
BEGIN
    RETURN QUERY
    SELECT m, q, (limits->>m)::bigint, p.period_start, p.period_end, p.plan, q >= (limits->>m)::bigint
    FROM unnest(ventros.usage_metrics()) m,
         LATERAL (SELECT CASE WHEN m = 'active_contacts' THEN ventros.active_contacts_since(p.period_start)
                              ELSE ventros.usage_since(m, p.period_start) END) x(q);
END
$$;
COMMENT ON FUNCTION ventros.usage_status() IS
    'The acting tenant''s usage in its current billing period, per metric, exact (folded + pending), with its plan''s limit and whether it is reached';

CREATE FUNCTION ventros.usage_by_channel(since timestamptz DEFAULT NULL)
RETURNS TABLE (channel_id uuid, messages_sent bigint, messages_received bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    start timestamptz := coalesce(since, (ventros.usage_period()).period_start);
BEGIN
    RETURN QUERY
    SELECT u.channel_id, sum(u.q) FILTER (WHERE u.metric = 'messages_sent')::bigint,
           sum(u.q) FILTER (WHERE u.metric = 'messages_received')::bigint
    FROM (SELECT t.channel_id, t.metric, t.quantity AS q FROM ventros.usage_totals t
           WHERE t.tenant_id = tenant AND t.day >= (start AT TIME ZONE 'UTC')::date
             AND t.metric IN ('messages_sent', 'messages_received')
          UNION ALL
          SELECT d.channel_id, d.metric, d.quantity FROM ventros.usage_deltas d
           WHERE d.tenant_id = tenant AND d.at >= date_trunc('day', start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
             AND d.metric IN ('messages_sent', 'messages_received')) u
    GROUP BY u.channel_id ORDER BY u.channel_id;
END
$$;
COMMENT ON FUNCTION ventros.usage_by_channel(timestamptz) IS
    'The acting tenant''s messages sent and received per channel since an instant (default: the start of the billing period), exact';

-- ---- limits --------------------------------------------------------------------

-- note_limit_reached: the row of a reached limit, and billing.limit_reached
-- with it the first time in the period (SECURITY DEFINER: the event belongs
-- to no table a tenant may change).
CREATE FUNCTION ventros.note_limit_reached(metric text, usage_limit bigint, used bigint,
                                           period_start timestamptz, period_end timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    account uuid;
BEGIN
    INSERT INTO ventros.usage_limit_hits (tenant_id, metric, period_start, usage_limit)
    VALUES (tenant, note_limit_reached.metric, note_limit_reached.period_start, usage_limit)
    ON CONFLICT ON CONSTRAINT usage_limit_hits_pkey DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT b.id INTO account FROM ventros.billing_accounts b
     WHERE b.tenant_id = tenant AND b.deleted_at IS NULL ORDER BY b.created_at LIMIT 1;
    PERFORM ventros.emit('billing.limit_reached', 'billing', coalesce(account, '00000000-0000-0000-0000-000000000000'),
        jsonb_build_object('metric', metric, 'limit', usage_limit, 'usage', used,
                           'period_start', period_start, 'period_end', period_end, 'billing_account_id', account));
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.note_limit_reached(text, bigint, bigint, timestamptz, timestamptz) IS
    'Records that the acting tenant reached a limit in a period and emits billing.limit_reached, once per metric and period; internal';

-- usage_against_limit: the acting tenant's plan limit of a metric in its
-- current period and what is used of it (usage_limit NULL: no limit, and
-- nothing read).  The one reading of a limit: check_usage_limit raises with
-- it, the AI gate (ventros.ai_request_refusal) refuses a provider request.
CREATE FUNCTION ventros.usage_against_limit(metric text, OUT usage_limit bigint, OUT used bigint,
                                            OUT period_start timestamptz, OUT period_end timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record := ventros.usage_period();
BEGIN
    period_start := p.period_start;
    period_end := p.period_end;
    usage_limit := (ventros.plan_limits(p.plan)->>metric)::bigint;
    IF usage_limit IS NOT NULL THEN
        used := ventros.usage_since(metric, p.period_start);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.usage_against_limit(text) IS
    'The acting tenant''s plan limit of a metric in its current period (NULL: none), what is used of it and the period; internal';

-- hold_to_limit: the one rule of a plan limit.  What would take used past
-- cap is refused (VN020); adding 0 (a command that may add, such as
-- create_contact) is refused once the limit is reached; the use that
-- reaches the limit exactly notes it (billing.limit_reached, once a period).
CREATE FUNCTION ventros.hold_to_limit(metric text, cap bigint, used bigint, adding bigint,
                                      period_start timestamptz, period_end timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF used + adding > cap OR (adding = 0 AND used >= cap) THEN
        RAISE EXCEPTION 'plan limit reached: % %', cap, replace(metric, '_', ' ')
            USING ERRCODE = 'VN020',
                  DETAIL = format('%s of %s used in the period from %s to %s; this needs %s more.', used, cap,
                                  period_start, period_end, greatest(adding, 1)),
                  HINT = 'Upgrade the plan, or wait for the next billing period.';
    END IF;
    IF adding > 0 AND used + adding = cap THEN
        PERFORM ventros.note_limit_reached(metric, cap, used + adding, period_start, period_end);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.hold_to_limit(text, bigint, bigint, bigint, timestamptz, timestamptz) IS
    'Raises VN020 when adding takes used past cap (or adding 0 once cap is reached); notes the limit reached when this use reaches it; internal';

-- check_usage_limit: refuses (VN020) what would take the acting tenant over
-- its plan's limit of a metric in the current period; notes the limit
-- reached when this use reaches it exactly.  Reads only (no lock) until a
-- limit is reached.
CREATE FUNCTION ventros.check_usage_limit(metric text, adding bigint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l record;
BEGIN
    -- SECURITY DEFINER: the acting tenant's limit only
    PERFORM ventros.require_tenant();
    IF coalesce(adding, 0) <= 0 THEN
        RETURN;
    END IF;
    l := ventros.usage_against_limit(metric);
    IF l.usage_limit IS NULL THEN
        RETURN;
    END IF;
    PERFORM ventros.hold_to_limit(metric, l.usage_limit, l.used, adding, l.period_start, l.period_end);
END
$$;
COMMENT ON FUNCTION ventros.check_usage_limit(text, bigint) IS
    'Raises VN020 when adding to a metric would take the acting tenant over its plan''s limit in the current period; emits billing.limit_reached when this use reaches it';

-- check_plan_limit: the limit check of the commands that start costly work,
-- for every metric.  A metered metric is check_usage_limit's.  Active
-- contacts are counted, not metered: adding is how many contacts the
-- command makes active in the period (a send to contacts without a message
-- in it), refused over the limit and noted when it reaches it; a command
-- that adds contacts which may become active (create_contact, an import)
-- passes 0 and is refused once the limit is reached.  For AI requests, whose
-- tokens are known only after the call, ai_tokens with 1: refused once the
-- tokens used reached the limit.
CREATE FUNCTION ventros.check_plan_limit(metric text, adding bigint DEFAULT 1)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p record;
    cap bigint;
    used bigint;
BEGIN
    IF metric IS DISTINCT FROM 'active_contacts' THEN
        PERFORM ventros.check_usage_limit(metric, adding);
        RETURN;
    END IF;
    p := ventros.usage_period();
    cap := (ventros.plan_limits(p.plan)->>'active_contacts')::bigint;
    IF cap IS NULL OR adding IS NULL OR adding < 0 THEN
        RETURN;
    END IF;
    used := ventros.active_contacts_since(p.period_start);
    PERFORM ventros.hold_to_limit('active_contacts', cap, used, adding, p.period_start, p.period_end);
END
$$;
COMMENT ON FUNCTION ventros.check_plan_limit(text, bigint) IS
    'Raises VN020 when a command would take the acting tenant over its plan''s limit of a metric in the period (metered metrics: ventros.check_usage_limit; active_contacts: counted, adding = contacts made active, 0 = refused once reached); emits billing.limit_reached when this use reaches it';
GRANT EXECUTE ON FUNCTION ventros.check_plan_limit(text, bigint) TO ventros_agent;

-- The active-contacts check of a send: the contacts it messages that have
-- no message in the period yet become active (ventros.check_plan_limit).
CREATE FUNCTION ventros.check_active_contacts_limit(contact_ids uuid[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record := ventros.usage_period();
    adding bigint;
BEGIN
    IF ventros.plan_limits(p.plan)->'active_contacts' IS NULL THEN
        RETURN;
    END IF;
    SELECT count(*) INTO adding FROM ventros.contacts c
     WHERE c.tenant_id = ventros.require_tenant() AND c.id = ANY (contact_ids) AND c.deleted_at IS NULL
       AND (c.last_interaction_at IS NULL OR c.last_interaction_at < p.period_start);
    IF adding > 0 THEN
        PERFORM ventros.check_plan_limit('active_contacts', adding);
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.check_active_contacts_limit(uuid[]) IS
    'Raises VN020 when messaging these contacts would make more of the acting tenant''s contacts active in the period than its plan allows; emits billing.limit_reached when it reaches the limit';
GRANT EXECUTE ON FUNCTION ventros.check_active_contacts_limit(uuid[]) TO ventros_agent;

-- The active-contacts limit of every insert of contacts by a tenant role:
-- create_contact, an import, and direct writes (POST /contacts, INSERT into
-- api.contacts or ventros.contacts), once per statement: refused (VN020,
-- 402 over HTTP) once the limit is reached, as ventros.check_plan_limit
-- with adding 0.  A contact the platform creates for an inbound delivery
-- (the webhook entry point and the inbox worker act as the extension's
-- owner, a superuser) is not: a provider's delivery cannot be refused, and
-- the fold notes the limit it reaches.
CREATE FUNCTION ventros.contacts_plan_limit() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        PERFORM ventros.check_plan_limit('active_contacts', 0);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.contacts_plan_limit() IS
    'Trigger: an insert of contacts by a tenant role (command or direct write) is refused with VN020 once the plan''s limit of active contacts is reached';
CREATE TRIGGER contacts_plan_limit BEFORE INSERT ON ventros.contacts
    FOR EACH STATEMENT EXECUTE FUNCTION ventros.contacts_plan_limit();

CREATE FUNCTION ventros.set_billing_plan(plan text, name text, limits jsonb DEFAULT '{}',
                                         product ventros.product DEFAULT 'crm')
RETURNS ventros.billing_plans
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.billing_plans;
BEGIN
    PERFORM ventros.require_platform_admin();
    IF jsonb_typeof(limits) IS DISTINCT FROM 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(limits) l
                   WHERE l.key <> ALL (ventros.usage_metrics()) OR jsonb_typeof(l.value) <> 'number'
                      OR (l.value #>> '{}')::numeric < 0 OR (l.value #>> '{}')::numeric <> trunc((l.value #>> '{}')::numeric)) THEN
        RAISE EXCEPTION 'plan limits are an object of metric to a whole number of zero or more' USING ERRCODE = '22023',
            DETAIL = format('Metrics: %s.', array_to_string(ventros.usage_metrics(), ', '));
    END IF;
    INSERT INTO ventros.billing_plans AS p (plan, name, product, limits)
    VALUES (set_billing_plan.plan, set_billing_plan.name, set_billing_plan.product, set_billing_plan.limits)
    ON CONFLICT ON CONSTRAINT billing_plans_pkey
    DO UPDATE SET name = EXCLUDED.name, product = EXCLUDED.product, limits = EXCLUDED.limits
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_billing_plan(text, text, jsonb, ventros.product) IS
    'Platform admins: declares a plan (a Stripe price id, or "default") with its limits per metric and period';

-- ---- the fold -------------------------------------------------------------------

-- fold_usage: moves the acting tenant's deltas into usage_totals, sets the
-- quantities of its live usage meters of the current period (each change a
-- usage_meter.updated of the engine) and notes limits reached
-- by usage no command refused.  Without a tenant (the scheduled job, a
-- platform administrator): every tenant with deltas, each on its own
-- (ventros.run_per_tenant).
CREATE FUNCTION ventros.fold_usage()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.current_tenant();
    folded integer;
    p record;
    lim record;
    used bigint;
BEGIN
    IF tenant IS NULL THEN
        PERFORM ventros.require_platform_admin();
        SELECT coalesce(sum((r.result #>> '{}')::integer), 0)::integer INTO folded
          FROM ventros.run_per_tenant('ventros-fold-usage', 'SELECT pg_catalog.to_jsonb(ventros.fold_usage())',
                   ARRAY(SELECT DISTINCT d.tenant_id FROM ventros.usage_deltas d ORDER BY 1)) r;
        RETURN folded;
    END IF;
    WITH gone AS (
        DELETE FROM ventros.usage_deltas d WHERE d.tenant_id = tenant RETURNING d.*),
    -- the channels' message counters (quiet columns: no version, no event),
    -- counted by these deltas only (sql/40_messages_counts.sql)
    counted AS (
        UPDATE ventros.channels ch
           SET messages_received = ch.messages_received + c.received,
               messages_sent = ch.messages_sent + c.sent,
               last_message_at = greatest(ch.last_message_at, c.last_at),
               version = ch.version
          FROM (SELECT g.channel_id, coalesce(sum(g.quantity) FILTER (WHERE g.metric = 'messages_received'), 0) AS received,
                       coalesce(sum(g.quantity) FILTER (WHERE g.metric = 'messages_sent'), 0) AS sent, max(g.at) AS last_at
                  FROM gone g WHERE g.metric IN ('messages_received', 'messages_sent') AND g.channel_id IS NOT NULL
                 GROUP BY 1) c
         WHERE ch.tenant_id = tenant AND ch.id = c.channel_id
        RETURNING 1),
    sums AS (
        INSERT INTO ventros.usage_totals AS t (tenant_id, metric, day, channel_id, quantity)
        SELECT g.tenant_id, g.metric, (g.at AT TIME ZONE 'UTC')::date,
               coalesce(g.channel_id, '00000000-0000-0000-0000-000000000000'), sum(g.quantity)
          FROM gone g GROUP BY 1, 2, 3, 4
        ON CONFLICT ON CONSTRAINT usage_totals_pkey DO UPDATE SET quantity = t.quantity + EXCLUDED.quantity
        RETURNING 1)
    SELECT count(*)::integer INTO folded FROM sums;
    -- the meters of the current period follow the totals
    UPDATE ventros.usage_meters m
       SET quantity = greatest(m.reported_quantity, x.q), version = m.version
      FROM (SELECT mm.id, CASE WHEN mm.metric_name = 'active_contacts' THEN ventros.active_contacts_since(mm.period_start)
                               ELSE ventros.usage_since(mm.metric_name, mm.period_start) END AS q
              FROM ventros.usage_meters mm
             WHERE mm.tenant_id = tenant AND mm.deleted_at IS NULL AND mm.metric_name = ANY (ventros.usage_metrics())
               AND mm.period_start <= now() AND mm.period_end > now()) x
     WHERE m.tenant_id = tenant AND m.id = x.id AND m.quantity IS DISTINCT FROM greatest(m.reported_quantity, x.q);
    -- limits reached by usage that nothing refuses (inbound messages)
    p := ventros.usage_period();
    FOR lim IN SELECT l.key AS metric, (l.value #>> '{}')::bigint AS cap
                 FROM jsonb_each(ventros.plan_limits(p.plan)) l
                WHERE NOT EXISTS (SELECT 1 FROM ventros.usage_limit_hits h
                                   WHERE h.tenant_id = tenant AND h.metric = l.key AND h.period_start = p.period_start)
    LOOP
        used := CASE WHEN lim.metric = 'active_contacts' THEN ventros.active_contacts_since(p.period_start)
                     ELSE ventros.usage_since(lim.metric, p.period_start) END;
        IF used >= lim.cap THEN
            PERFORM ventros.note_limit_reached(lim.metric, lim.cap, used, p.period_start, p.period_end);
        END IF;
    END LOOP;
    RETURN folded;
END
$$;
COMMENT ON FUNCTION ventros.fold_usage() IS
    'Folds usage deltas into usage_totals, the channels'' message counters (quiet) and the quantities of the current usage meters, and notes limits reached; per tenant (ventros.run_per_tenant) without one; returns the totals rows written';

GRANT EXECUTE ON FUNCTION ventros.usage_metrics(), ventros.usage_status(), ventros.usage_by_channel(timestamptz)
    TO ventros_viewer;
-- The commands that consume (send_messages) check as their caller.
GRANT EXECUTE ON FUNCTION ventros.check_usage_limit(text, bigint) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.set_billing_plan(text, text, jsonb, ventros.product), ventros.fold_usage()
    TO ventros_platform_admin;
