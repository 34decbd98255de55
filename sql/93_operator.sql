-- The operator's surface: what a platform administrator runs the queues
-- with (docs/operations.md).  Three work queues carry everything Ventros
-- does after a commit: the outbox (events to RabbitMQ), the inbox (provider
-- webhooks into the CRM) and the HTTP dispatcher's requests (sends, webhook
-- deliveries, downloads, AI calls).  Here, for all three in one shape:
--   queue_status    depth, due, in flight, held, dead, oldest age, recent arrivals and completions
--   dead_letters    what gave up, filtered by queue, tenant, type and time
--   replay_dead_letters  puts them back (the outbox's replay_dead_events, the
--                   dispatcher's replay_http_request, the inbox's retry)
-- and the levers: pause_sends / resume_sends (a tenant's, a channel's or a
-- webhook subscription's outbound requests stay queued while paused:
-- ventros.send_pauses, sql/45_http_requests.sql), rotate_channel_secret and
-- rotate_subscription_secret.
--
-- Every function here is SECURITY DEFINER (it reads and writes across
-- tenants), checks ventros.require_platform_admin(), and is granted to
-- ventros_platform_admin only: tenant roles get 42501.  Every action is
-- audited as an event with its actor (ventros.actor(): the token's subject
-- over HTTP, else the login): on the channel or the webhook subscription it
-- concerns, or, for what concerns a whole tenant, on the tenant's first
-- project (the tenant's own aggregate).
-- ventros.metrics() gives ventros-http's GET /metrics the database's figures
-- in one call of bounded cost (counts over partial or BRIN indexes).

-- ---- indexes the figures use -------------------------------------------------

-- Dead letters of the inbox and the dispatcher are found without a scan of
-- everything they ever held; recent arrivals through BRIN indexes of the
-- arrival time (rows are appended in that order; next to nothing to keep).
CREATE INDEX inbox_dead ON ventros.inbox (received_at)
    WHERE status IN ('failed', 'unmatched') AND next_attempt_at IS NULL;
CREATE INDEX inbox_received ON ventros.inbox USING brin (received_at) WITH (autosummarize = on);
CREATE INDEX http_requests_dead ON ventros.http_requests (created_at) WHERE status IN ('dead', 'failed');
CREATE INDEX http_requests_created ON ventros.http_requests USING brin (created_at) WITH (autosummarize = on);
CREATE INDEX message_enrichments_created ON ventros.message_enrichments USING brin (created_at)
    WITH (autosummarize = on);

-- ---- queue figures ------------------------------------------------------------

-- queue_figures: the figures of the three queues, one row each (internal:
-- queue_status and metrics call it).  Completions are counted among what
-- arrived in the last hour (BRIN-bounded): work that waited longer is not
-- in done_last_5m.
CREATE FUNCTION ventros.queue_figures(
    OUT queue text, OUT depth bigint, OUT due bigint, OUT in_flight bigint, OUT held bigint,
    OUT dead bigint, OUT oldest_age interval, OUT arrived_last_5m bigint, OUT done_last_5m bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'outbox',
           (SELECT count(*) FROM ventros.outbox_queue q WHERE NOT q.dead),
           (SELECT count(*) FROM ventros.outbox_queue q
             WHERE NOT q.dead AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())),
           NULL::bigint, 0::bigint,
           (SELECT count(*) FROM ventros.outbox_queue q WHERE q.dead),
           now() - (SELECT o.occurred_at FROM ventros.outbox_queue q
                      JOIN ventros.outbox o ON o.tenant_id = q.tenant_id AND o.seq = q.seq
                     WHERE NOT q.dead ORDER BY q.seq LIMIT 1),
           (SELECT count(*) FROM ventros.outbox o WHERE o.occurred_at > now() - interval '5 minutes'),
           (SELECT count(*) FROM ventros.outbox o
             WHERE o.occurred_at > now() - interval '1 hour' AND o.status = 'published'
               AND o.published_at > now() - interval '5 minutes')
    UNION ALL
    SELECT 'inbox', x.depth, x.due, NULL::bigint, 0::bigint,
           (SELECT count(*) FROM ventros.inbox i
             WHERE i.status IN ('failed', 'unmatched') AND i.next_attempt_at IS NULL),
           now() - x.oldest,
           (SELECT count(*) FROM ventros.inbox i WHERE i.received_at > now() - interval '5 minutes'),
           (SELECT count(*) FROM ventros.inbox i
             WHERE i.received_at > now() - interval '1 hour' AND i.processed_at > now() - interval '5 minutes')
      FROM (SELECT count(*) AS depth, count(*) FILTER (WHERE i.next_attempt_at <= now()) AS due,
                   min(i.received_at) AS oldest
              FROM ventros.inbox i
             WHERE i.status IN ('received', 'failed', 'unmatched') AND i.next_attempt_at IS NOT NULL) x
    UNION ALL
    SELECT 'http', x.depth, x.due,
           (SELECT count(*) FROM ventros.http_requests r WHERE r.status = 'in_flight'),
           x.held,
           (SELECT count(*) FROM ventros.http_requests r WHERE r.status IN ('dead', 'failed')),
           now() - x.oldest,
           (SELECT count(*) FROM ventros.http_requests r WHERE r.created_at > now() - interval '5 minutes'),
           (SELECT count(*) FROM ventros.http_requests r
             WHERE r.created_at > now() - interval '1 hour' AND r.completed_at > now() - interval '5 minutes')
      FROM (SELECT count(*) AS depth, count(*) FILTER (WHERE r.next_attempt_at <= now()) AS due,
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ventros.send_pauses p WHERE p.tenant_id = r.tenant_id)
                                      AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id)) AS held,
                   min(r.created_at) AS oldest
              FROM ventros.http_requests r WHERE r.status = 'pending') x
$$;
COMMENT ON FUNCTION ventros.queue_figures() IS
    'Internal: the figures of the outbox, inbox and HTTP dispatcher queues (ventros.queue_status, ventros.metrics)';

CREATE FUNCTION ventros.queue_status(
    OUT queue text, OUT depth bigint, OUT due bigint, OUT in_flight bigint, OUT held bigint,
    OUT dead bigint, OUT oldest_age interval, OUT arrived_last_5m bigint, OUT done_last_5m bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    RETURN QUERY SELECT * FROM ventros.queue_figures();
END
$$;
COMMENT ON FUNCTION ventros.queue_status() IS
    'Platform admins: the outbox, inbox and HTTP dispatcher queues, one row each: depth (waiting), due now, in flight, held by a pause, dead letters, age of the oldest waiting item, arrivals and completions in the last 5 minutes';

-- ---- dead letters -------------------------------------------------------------

-- The queue argument: outbox, inbox, http or NULL (all three).
CREATE FUNCTION ventros.check_queue_name(queue text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF queue IS NOT NULL AND queue NOT IN ('outbox', 'inbox', 'http') THEN
        RAISE EXCEPTION 'unknown queue "%"', left(queue, 64)
            USING ERRCODE = '22023', HINT = 'Queues are outbox, inbox and http.';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.check_queue_name(text) IS
    'Raises 22023 unless the queue is outbox, inbox, http or NULL (all)';

-- What gave up: outbox events dead after their attempts, inbox items given
-- up (failed or unmatched with no retry left), requests dead (attempts spent)
-- or failed (refused for good).  type: the event type, the provider's event
-- name, the request's purpose; at: when it occurred, arrived, was queued.
CREATE FUNCTION ventros.dead_letter_rows(queue text, tenant text, type text, since timestamptz, until timestamptz)
RETURNS TABLE (queue_name text, tenant_id text, id uuid, item_type text, at timestamptz, attempts integer,
               last_error text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'outbox'::text, o.tenant_id, o.event_id, o.event_type, o.occurred_at, o.attempts, o.last_error
      FROM ventros.outbox_queue q
      JOIN ventros.outbox o ON o.tenant_id = q.tenant_id AND o.seq = q.seq
     WHERE q.dead AND coalesce(dead_letter_rows.queue, 'outbox') = 'outbox'
       AND (dead_letter_rows.tenant IS NULL OR q.tenant_id = dead_letter_rows.tenant)
       AND (dead_letter_rows.type IS NULL OR o.event_type = dead_letter_rows.type)
       AND (since IS NULL OR o.occurred_at >= since) AND (until IS NULL OR o.occurred_at < until)
    UNION ALL
    SELECT 'inbox', i.tenant_id, i.id, i.event, i.received_at, i.attempts, i.last_error
      FROM ventros.inbox i
     WHERE i.status IN ('failed', 'unmatched') AND i.next_attempt_at IS NULL
       AND coalesce(dead_letter_rows.queue, 'inbox') = 'inbox'
       AND (dead_letter_rows.tenant IS NULL OR i.tenant_id = dead_letter_rows.tenant)
       AND (dead_letter_rows.type IS NULL OR i.event = dead_letter_rows.type)
       AND (since IS NULL OR i.received_at >= since) AND (until IS NULL OR i.received_at < until)
    UNION ALL
    SELECT 'http', r.tenant_id, r.id, r.purpose, r.created_at, r.attempts, r.last_error
      FROM ventros.http_requests r
     WHERE r.status IN ('dead', 'failed') AND coalesce(dead_letter_rows.queue, 'http') = 'http'
       AND (dead_letter_rows.tenant IS NULL OR r.tenant_id = dead_letter_rows.tenant)
       AND (dead_letter_rows.type IS NULL OR r.purpose = dead_letter_rows.type)
       AND (since IS NULL OR r.created_at >= since) AND (until IS NULL OR r.created_at < until)
$$;
COMMENT ON FUNCTION ventros.dead_letter_rows(text, text, text, timestamptz, timestamptz) IS
    'Internal: the dead letters of ventros.dead_letters, unordered and unbounded (replay_dead_letters chooses from them)';

CREATE FUNCTION ventros.dead_letters(queue text DEFAULT NULL, tenant text DEFAULT NULL, type text DEFAULT NULL,
                                     since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
                                     max_rows integer DEFAULT 100)
RETURNS TABLE (queue_name text, tenant_id text, id uuid, item_type text, at timestamptz, attempts integer,
               last_error text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM ventros.check_queue_name(dead_letters.queue);
    RETURN QUERY
    SELECT d.* FROM ventros.dead_letter_rows(dead_letters.queue, dead_letters.tenant, dead_letters.type,
                                             since, until) d
    ORDER BY d.at DESC, d.id
    LIMIT ventros.check_page_size(max_rows);
END
$$;
COMMENT ON FUNCTION ventros.dead_letters(text, text, text, timestamptz, timestamptz, integer) IS
    'Platform admins: dead letters of the outbox, inbox and HTTP dispatcher (queue NULL: all), newest first, filtered by tenant, type (event type, provider event, request purpose) and time range [since, until); at most max_rows (ventros.max_page_size)';

-- ---- audit ----------------------------------------------------------------------

-- operator_emit: an operator action's event, in the tenant it concerns.
-- aggregate NULL: the tenant as a whole, on its first project (nothing is
-- emitted for a tenant without one: nothing of it exists to audit).
CREATE FUNCTION ventros.operator_emit(tenant text, event_type text, aggregate_type text, aggregate_id uuid,
                                      payload jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target uuid := aggregate_id;
BEGIN
    PERFORM set_config('ventros.tenant', tenant, true);
    IF aggregate_type = 'project' AND target IS NULL THEN
        SELECT p.id INTO target FROM ventros.projects p WHERE p.tenant_id = tenant
         ORDER BY p.created_at, p.id LIMIT 1;
        IF target IS NULL THEN
            RETURN;
        END IF;
    END IF;
    PERFORM ventros.emit(event_type, aggregate_type, target, payload);
END
$$;
COMMENT ON FUNCTION ventros.operator_emit(text, text, text, uuid, jsonb) IS
    'Internal: emits an operator action''s event in the tenant it concerns (a tenant-wide one on the tenant''s first project)';

SELECT ventros.register_event_type('project.sends_paused',
    'A platform administrator paused the outbound requests of the whole tenant (they stay queued).');
SELECT ventros.register_event_type('project.sends_resumed',
    'A platform administrator resumed the outbound requests of the whole tenant.');
SELECT ventros.register_event_type('project.dead_letters_replayed',
    'A platform administrator put dead letters of the tenant back in their queue.');
SELECT ventros.register_event_type('channel.sends_paused',
    'A platform administrator paused the outbound requests of a channel (they stay queued).');
SELECT ventros.register_event_type('channel.sends_resumed',
    'A platform administrator resumed the outbound requests of a channel.');
SELECT ventros.register_event_type('channel.secret_rotated',
    'A platform administrator replaced the webhook secret of a channel (the payload names the key, never the value).');
SELECT ventros.register_event_type('webhook_subscription.sends_paused',
    'A platform administrator paused the deliveries of a webhook subscription (they stay queued).');
SELECT ventros.register_event_type('webhook_subscription.sends_resumed',
    'A platform administrator resumed the deliveries of a webhook subscription.');
SELECT ventros.register_event_type('webhook_subscription.secret_rotated',
    'A platform administrator replaced the signing secret of a webhook subscription.');

-- ---- replay ---------------------------------------------------------------------

-- replay_dead_letters: dead letters back in their queue, chosen by ids
-- and/or tenant, type and time range (the filters of dead_letters).  The
-- outbox's are replayed by ventros.replay_dead_events, the dispatcher's by
-- ventros.replay_http_request (with a fresh ventros.http_max_attempts), the
-- inbox's made due again with their attempts reset (the processors take
-- them at their next poll).  One project.dead_letters_replayed event per
-- tenant touched.  Returns how many.
CREATE FUNCTION ventros.replay_dead_letters(queue text DEFAULT NULL, ids uuid[] DEFAULT NULL,
                                            tenant text DEFAULT NULL, type text DEFAULT NULL,
                                            since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the tenants chosen inside are forgotten when it returns
SET ventros.tenant = ''
AS $$
DECLARE
    t record;
    n bigint;
    total bigint := 0;
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM ventros.check_queue_name(replay_dead_letters.queue);
    FOR t IN
        SELECT d.queue_name AS queue, d.tenant_id, array_agg(d.id) AS ids
          FROM ventros.dead_letter_rows(replay_dead_letters.queue, replay_dead_letters.tenant,
                                        replay_dead_letters.type, since, until) d
         WHERE replay_dead_letters.ids IS NULL OR d.id = ANY (replay_dead_letters.ids)
         GROUP BY d.queue_name, d.tenant_id ORDER BY d.tenant_id, d.queue_name
    LOOP
        PERFORM set_config('ventros.tenant', t.tenant_id, true);
        IF t.queue = 'outbox' THEN
            n := ventros.replay_dead_events(t.tenant_id, t.ids, NULL);
        ELSIF t.queue = 'http' THEN
            PERFORM ventros.replay_http_request(x) FROM unnest(t.ids) x;
            n := cardinality(t.ids);
        ELSE
            UPDATE ventros.inbox i SET next_attempt_at = now(), attempts = 0
             WHERE i.tenant_id = t.tenant_id AND i.id = ANY (t.ids)
               AND i.status IN ('failed', 'unmatched') AND i.next_attempt_at IS NULL;
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
        PERFORM ventros.operator_emit(t.tenant_id, 'project.dead_letters_replayed', 'project', NULL,
            jsonb_build_object('queue', t.queue, 'count', n, 'ids', to_jsonb(t.ids),
                               'filters', jsonb_strip_nulls(jsonb_build_object(
                                   'type', replay_dead_letters.type, 'since', since, 'until', until))));
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION ventros.replay_dead_letters(text, uuid[], text, text, timestamptz, timestamptz) IS
    'Platform admins: puts dead letters back in their queue (queue NULL: all three), chosen by ids and/or tenant, type and time range [since, until); emits project.dead_letters_replayed per tenant; returns how many';

-- ---- pause and resume -----------------------------------------------------------

-- The scope of a pause from the ids given (none: the tenant), its target
-- checked to exist (P0002).
CREATE FUNCTION ventros.send_pause_target(tenant text, channel_id uuid, webhook_subscription_id uuid,
                                          OUT scope text, OUT target_id uuid)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tenant IS NULL OR NOT EXISTS (SELECT 1 FROM ventros.projects p WHERE p.tenant_id = tenant) THEN
        RAISE EXCEPTION 'tenant "%" not found', left(tenant, 128) USING ERRCODE = 'P0002';
    END IF;
    IF channel_id IS NOT NULL AND webhook_subscription_id IS NOT NULL THEN
        RAISE EXCEPTION 'name a channel or a webhook subscription, not both' USING ERRCODE = '22023',
            HINT = 'Without either, the pause covers the whole tenant.';
    END IF;
    IF channel_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.channels c
                        WHERE c.tenant_id = tenant AND c.id = channel_id AND c.deleted_at IS NULL) THEN
            PERFORM ventros.not_found('channel', channel_id);
        END IF;
        scope := 'channel';
        target_id := channel_id;
    ELSIF webhook_subscription_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.webhook_subscriptions w
                        WHERE w.tenant_id = tenant AND w.id = webhook_subscription_id AND w.deleted_at IS NULL) THEN
            PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
        END IF;
        scope := 'webhook_subscription';
        target_id := webhook_subscription_id;
    ELSE
        scope := 'tenant';
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.send_pause_target(text, uuid, uuid) IS
    'Internal: the scope and target of a pause (tenant, channel or webhook subscription), checked to exist (P0002)';

CREATE FUNCTION ventros.pause_sends(tenant text, channel_id uuid DEFAULT NULL,
                                    webhook_subscription_id uuid DEFAULT NULL, reason text DEFAULT NULL)
RETURNS ventros.send_pauses
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    target record;
    result ventros.send_pauses;
BEGIN
    PERFORM ventros.require_platform_admin();
    SELECT * INTO target FROM ventros.send_pause_target(tenant, channel_id, webhook_subscription_id);
    INSERT INTO ventros.send_pauses AS p (tenant_id, scope, target_id, paused_by, reason)
    VALUES (tenant, target.scope, target.target_id, ventros.actor(), ventros.check_length(reason, 500, 'reason'))
    ON CONFLICT ON CONSTRAINT send_pauses_once DO NOTHING
    RETURNING * INTO result;
    IF result IS NULL THEN
        RAISE EXCEPTION 'sends of % are already paused', coalesce(target.scope || ' ' || target.target_id, 'tenant ' || tenant)
            USING ERRCODE = '23505', HINT = 'ventros.resume_sends resumes them.';
    END IF;
    PERFORM ventros.operator_emit(tenant,
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END || '.sends_paused',
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END, target.target_id,
        jsonb_strip_nulls(jsonb_build_object('scope', target.scope, 'reason', reason)));
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.pause_sends(text, uuid, uuid, text) IS
    'Platform admins: pauses the outbound requests of a tenant, or of one of its channels or webhook subscriptions; they stay queued until resume_sends (23505 when already paused); emits <project|channel|webhook_subscription>.sends_paused';

CREATE FUNCTION ventros.resume_sends(tenant text, channel_id uuid DEFAULT NULL,
                                     webhook_subscription_id uuid DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    target record;
    held uuid[];
    released integer;
BEGIN
    PERFORM ventros.require_platform_admin();
    SELECT * INTO target FROM ventros.send_pause_target(tenant, channel_id, webhook_subscription_id);
    SELECT array_agg(r.id) INTO held FROM ventros.http_requests r
     WHERE r.tenant_id = tenant AND r.status = 'pending'
       AND ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id);
    DELETE FROM ventros.send_pauses p
     WHERE p.tenant_id = tenant AND p.scope = target.scope AND p.target_id IS NOT DISTINCT FROM target.target_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sends of % are not paused', coalesce(target.scope || ' ' || target.target_id, 'tenant ' || tenant)
            USING ERRCODE = 'P0002';
    END IF;
    -- The requests it held and no other pause holds are released: touched,
    -- which wakes the dispatcher at commit (ventros_http_wake), and counted.
    UPDATE ventros.http_requests r SET updated_at = now()
     WHERE r.tenant_id = tenant AND r.id = ANY (held) AND r.status = 'pending'
       AND NOT ventros.http_request_held(r.tenant_id, r.purpose, r.correlation_id);
    GET DIAGNOSTICS released = ROW_COUNT;
    PERFORM ventros.operator_emit(tenant,
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END || '.sends_resumed',
        CASE target.scope WHEN 'tenant' THEN 'project' ELSE target.scope END, target.target_id,
        jsonb_build_object('scope', target.scope));
    RETURN released;
END
$$;
COMMENT ON FUNCTION ventros.resume_sends(text, uuid, uuid) IS
    'Platform admins: resumes what pause_sends paused (P0002 when not paused); the held requests go out in their order; returns how many it released (those no other pause holds); emits <project|channel|webhook_subscription>.sends_resumed';

-- ---- secrets --------------------------------------------------------------------

-- A channel's webhook secret is one of its secrets (ventros.channel_secrets,
-- encrypted; sql/68_credentials_channels.sql): WAHA's webhook_secret, which
-- Ventros may choose (random when not given), or Meta's app_secret, which
-- Meta issues (new_secret required).  The previous value still verifies
-- deliveries until the overlap ends (deliveries the provider signed before
-- it switched, retries of older ones); a zero overlap drops it at once.
CREATE FUNCTION ventros.rotate_channel_secret(tenant text, channel_id uuid, new_secret text DEFAULT NULL,
                                              overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    c ventros.channels;
    which text;
    secret text;
    expires timestamptz;
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM set_config('ventros.tenant', tenant, true);
    SELECT * INTO c FROM ventros.channels ch
     WHERE ch.tenant_id = tenant AND ch.id = channel_id AND ch.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('channel', channel_id);
    END IF;
    which := CASE (SELECT p.provider FROM ventros.channel_providers p WHERE p.channel_type = c.type)
           WHEN 'waha' THEN 'webhook_secret' ELSE 'app_secret' END;
    IF new_secret IS NULL AND which = 'app_secret' THEN
        RAISE EXCEPTION 'a % channel''s app secret must be given', c.type USING ERRCODE = '22023',
            HINT = 'Meta issues the app secret: reset it in the app''s settings and pass it as new_secret.';
    END IF;
    IF length(new_secret) NOT BETWEEN 16 AND 256 THEN
        RAISE EXCEPTION 'a channel secret has 16 to 256 characters' USING ERRCODE = '22023';
    END IF;
    IF overlap IS NULL OR overlap < interval '0' OR overlap > interval '30 days' THEN
        RAISE EXCEPTION 'the overlap of a secret rotation is between 0 and 30 days' USING ERRCODE = '22023';
    END IF;
    secret := coalesce(new_secret, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
    -- no overlap when there was no previous value to keep
    expires := CASE WHEN overlap > interval '0' AND EXISTS (SELECT 1 FROM ventros.channel_secrets s
                                                             WHERE s.tenant_id = c.tenant_id AND s.channel_id = c.id
                                                               AND s.key = which)
                    THEN now() + overlap END;
    INSERT INTO ventros.channel_secrets AS s (tenant_id, channel_id, key, secret)
    VALUES (c.tenant_id, c.id, which, ventros.encrypt_secret(secret))
    ON CONFLICT ON CONSTRAINT channel_secrets_pkey DO UPDATE
        SET previous_secret = CASE WHEN expires IS NOT NULL THEN s.secret END, previous_expires_at = expires,
            secret = EXCLUDED.secret, updated_at = now();
    PERFORM ventros.operator_emit(tenant, 'channel.secret_rotated', 'channel', channel_id,
                                  jsonb_build_object('key', which, 'previous_secret_expires_at', expires));
    RETURN secret;
END
$$;
COMMENT ON FUNCTION ventros.rotate_channel_secret(text, uuid, text, interval) IS
    'Platform admins: replaces a channel''s webhook secret (WAHA webhook_secret, random when not given; Meta app_secret, given), stored encrypted; the previous one still verifies deliveries until the overlap (0 to 30 days, default 24 hours) ends; returns the new one once (the provider must be told); emits channel.secret_rotated (the key and when the previous one expires, never a value)';

CREATE FUNCTION ventros.rotate_subscription_secret(tenant text, webhook_subscription_id uuid,
                                                   new_secret text DEFAULT NULL,
                                                   overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    current_version integer;
    result ventros.webhook_subscriptions;
BEGIN
    PERFORM ventros.require_platform_admin();
    PERFORM set_config('ventros.tenant', tenant, true);
    SELECT w.version INTO current_version FROM ventros.webhook_subscriptions w
     WHERE w.tenant_id = tenant AND w.id = webhook_subscription_id AND w.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('webhook subscription', webhook_subscription_id);
    END IF;
    result := ventros.rotate_webhook_secret(webhook_subscription_id, current_version, new_secret, overlap);
    PERFORM ventros.operator_emit(tenant, 'webhook_subscription.secret_rotated', 'webhook_subscription',
                                  webhook_subscription_id,
                                  jsonb_build_object('previous_secret_expires_at', result.previous_secret_expires_at));
    RETURN result.secret;
END
$$;
COMMENT ON FUNCTION ventros.rotate_subscription_secret(text, uuid, text, interval) IS
    'Platform admins: replaces a webhook subscription''s signing secret (ventros.rotate_webhook_secret: the previous one also signs until the overlap ends); returns the new one; emits webhook_subscription.updated and webhook_subscription.secret_rotated';

-- ---- metrics --------------------------------------------------------------------

-- metrics: the database's side of GET /metrics (ventros-http), one row per
-- sample: metric name, type, help, labels (Prometheus text: k="v",...),
-- value.  Called once per scrape by the front's login (granted to
-- ventros_authenticator); its cost is bounded by the queues' depths (the
-- figures above) and this month's enrichments (a BRIN range).  No tenant
-- appears in a label: the series do not grow with tenants.
CREATE FUNCTION ventros.metrics(OUT metric text, OUT kind text, OUT help text, OUT labels text,
                                OUT value double precision)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q record;
    w record;
    o record;
    h record;
    preloaded boolean := true;
BEGIN
    FOR q IN SELECT * FROM ventros.queue_figures() LOOP
        labels := format('queue="%s"', q.queue);
        metric := 'ventros_queue_depth'; kind := 'gauge';
        help := 'Items waiting in the queue (due or not)'; value := q.depth; RETURN NEXT;
        metric := 'ventros_queue_due'; help := 'Items waiting whose time has come'; value := q.due; RETURN NEXT;
        metric := 'ventros_queue_held';
        help := 'Items a pause holds (http only; ventros.pause_sends)'; value := q.held; RETURN NEXT;
        IF q.in_flight IS NOT NULL THEN
            metric := 'ventros_queue_in_flight'; help := 'Items claimed by a worker, not yet finished';
            value := q.in_flight; RETURN NEXT;
        END IF;
        metric := 'ventros_queue_oldest_age_seconds'; help := 'Age of the oldest waiting item (0 when empty)';
        value := coalesce(extract(epoch FROM q.oldest_age), 0); RETURN NEXT;
        metric := 'ventros_dead_letters'; help := 'Dead letters of the queue (ventros.dead_letters)';
        value := q.dead; RETURN NEXT;
        metric := 'ventros_queue_arrived_last_5m'; help := 'Items that arrived in the last 5 minutes';
        value := q.arrived_last_5m; RETURN NEXT;
        metric := 'ventros_queue_done_last_5m';
        help := 'Items finished in the last 5 minutes (of those that arrived within the hour)';
        value := q.done_last_5m; RETURN NEXT;
    END LOOP;
    labels := '';
    metric := 'ventros_sends_paused'; kind := 'gauge';
    help := 'Pauses in force (ventros.send_pauses)';
    value := (SELECT count(*) FROM ventros.send_pauses); RETURN NEXT;
    metric := 'ventros_enrichment_spend_usd'; kind := 'gauge';
    help := 'What enrichments cost this month across tenants, in US dollars';
    value := (SELECT coalesce(sum(e.cost), 0) FROM ventros.message_enrichments e
               WHERE e.created_at >= date_trunc('month', now()) AND e.cost IS NOT NULL);
    RETURN NEXT;
    -- The workers' shared counters need ventros preloaded (55000 without:
    -- then no worker series at all).
    BEGIN
        SELECT * INTO o FROM ventros.outbox_worker_state();
        SELECT * INTO h FROM ventros.http_dispatcher_state();
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        preloaded := false;
    END;
    IF NOT preloaded THEN
        RETURN;
    END IF;
    metric := 'ventros_worker_up'; kind := 'gauge';
    help := 'A background worker slot is running (1) or not (0)';
    FOR w IN SELECT * FROM ventros.worker_status() LOOP
        labels := format('kind="%s",slot="%s"', w.kind, w.slot);
        value := CASE WHEN w.pid IS NOT NULL THEN 1 ELSE 0 END;
        RETURN NEXT;
    END LOOP;
    labels := '';
    metric := 'ventros_broker_connected'; kind := 'gauge';
    help := 'The outbox publisher is connected to RabbitMQ (1) or not (0)';
    value := CASE WHEN o.connected THEN 1 ELSE 0 END; RETURN NEXT;
    metric := 'ventros_events_published_total'; kind := 'counter';
    help := 'Events the outbox publisher published (since the worker started)';
    value := coalesce(o.published_total, 0); RETURN NEXT;
    metric := 'ventros_events_publish_failures_total';
    help := 'Failed publish attempts of the outbox publisher (since the worker started)';
    value := coalesce(o.failed_total, 0); RETURN NEXT;
    metric := 'ventros_dispatcher_attempts_total'; kind := 'counter';
    help := 'Attempts of the HTTP dispatcher by outcome (since the server started)';
    labels := 'outcome="succeeded"'; value := coalesce(h.succeeded, 0); RETURN NEXT;
    labels := 'outcome="failed"'; value := coalesce(h.failed_attempts, 0); RETURN NEXT;
    labels := 'outcome="refused"'; value := coalesce(h.refused, 0); RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ventros.metrics() IS
    'The database''s samples for GET /metrics (ventros-http): queue figures, workers, broker connection, events published, dispatcher attempts, pauses, enrichment spend; one row per sample, no tenant labels';

GRANT EXECUTE ON FUNCTION ventros.queue_status(), ventros.dead_letters(text, text, text, timestamptz, timestamptz, integer),
    ventros.replay_dead_letters(text, uuid[], text, text, timestamptz, timestamptz),
    ventros.pause_sends(text, uuid, uuid, text), ventros.resume_sends(text, uuid, uuid),
    ventros.rotate_channel_secret(text, uuid, text, interval),
    ventros.rotate_subscription_secret(text, uuid, text, interval)
    TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.metrics() TO ventros_authenticator, ventros_platform_admin;
