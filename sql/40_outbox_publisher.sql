-- The outbox publisher's side of ventros.outbox (the C worker is
-- src/outbox_worker.c): claiming, recording outcomes, dead letters and their
-- replay, pruning, and the status view.
--
-- Row states: pending -> published, or pending -> dead after
-- ventros.outbox_max_attempts failed attempts; replay puts dead rows back to
-- pending.  A pending row is claimed for a lease (claimed_until, claimed_by);
-- the claim counts an attempt.  Progress is this per-row state, never a
-- "last published seq": seq is assigned before commit, so a slow transaction
-- commits a lower seq after a higher one was published.
--
-- Order per aggregate: a row is claimable only when no earlier row of its
-- aggregate is dead, leased, or waiting for its retry time.  An earlier row
-- that is itself claimable sorts first (ORDER BY seq), so it is in the same
-- batch, ahead.  Claims (and replays) take one transaction-level advisory lock
-- first, so each claim's snapshot sees every earlier claim committed: two
-- claimers never take the same row, nor the next row of an aggregate whose
-- previous row the other one holds.  The claim transaction is short; the
-- network is used outside it.

CREATE FUNCTION ventros.outbox_claim(batch_size integer, lease interval,
                                     claimer integer DEFAULT pg_catalog.pg_backend_pid())
RETURNS TABLE (tenant_id text, seq bigint, event_id text, event_type text,
               aggregate_type text, aggregate_id text, attempts integer, body text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- The outbox swings between empty and a large backlog faster than its
-- statistics follow; a plan made while it looked empty (seq scan, sort of
-- every pending row) makes each claim read the whole backlog.  Walk the
-- partial indexes in seq order, always.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    -- 'tenant/aggregate' -> seq of the aggregate's first blocking row (dead,
    -- leased, or waiting to retry): few rows, from the partial index
    -- outbox_blocking.  A jsonb object keeps the lookup per candidate cheap
    -- whatever the planner thinks of its size.  Read under the claim lock, the
    -- set can only shrink before the next statement (publishes); never grow.
    blocked jsonb;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'outbox_claim: batch_size and lease must be positive'
            USING ERRCODE = '22023';
    END IF;
    -- 'vnob' 'clai': the claim lock, shared with replay_dead_events
    PERFORM pg_catalog.pg_advisory_xact_lock(1986948706, 1668047209);
    SELECT pg_catalog.jsonb_object_agg(b.tenant_id || '/' || b.aggregate_id::text, b.seq)
      INTO blocked
      FROM (SELECT o.tenant_id, o.aggregate_id, pg_catalog.min(o.seq) AS seq
              FROM ventros.outbox o
             WHERE (o.status = 'dead' OR (o.status = 'pending' AND (o.claimed_until IS NOT NULL
                                                                 OR o.next_attempt_at IS NOT NULL)))
               AND (o.status = 'dead'
                    OR o.claimed_until >= pg_catalog.now()
                    OR o.next_attempt_at > pg_catalog.now())
             GROUP BY o.tenant_id, o.aggregate_id) b;
    RETURN QUERY
    WITH candidates AS (
        SELECT o.tenant_id, o.seq
          FROM ventros.outbox o
         WHERE o.status = 'pending'
           AND (o.claimed_until IS NULL OR o.claimed_until < pg_catalog.now())
           AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= pg_catalog.now())
           AND (blocked IS NULL
                OR o.seq < COALESCE((blocked ->> (o.tenant_id || '/' || o.aggregate_id::text))::bigint,
                                    9223372036854775807))
         ORDER BY o.seq
         LIMIT batch_size
           FOR UPDATE OF o SKIP LOCKED
    ), claimed AS (
        UPDATE ventros.outbox o
           SET claimed_until = pg_catalog.now() + lease,
               claimed_by = claimer,
               attempts = o.attempts + 1
          FROM candidates c
         WHERE o.tenant_id = c.tenant_id AND o.seq = c.seq
        RETURNING o.*
    )
    SELECT c.tenant_id, c.seq, c.event_id::text, c.event_type, c.aggregate_type,
           c.aggregate_id::text, c.attempts,
           ventros.envelope(c::ventros.outbox)::text
      FROM claimed c
     ORDER BY c.seq;
END
$$;
COMMENT ON FUNCTION ventros.outbox_claim(integer, interval, integer) IS
    'Claims up to batch_size pending events for a lease, in order per aggregate, counting an attempt each; returns their CloudEvents envelopes (publisher use)';

CREATE FUNCTION ventros.outbox_published(tenants text[], seqs bigint[])
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        UPDATE ventros.outbox o
           SET status = 'published', published_at = pg_catalog.now(),
               claimed_until = NULL, claimed_by = NULL, next_attempt_at = NULL
          FROM unnest(tenants, seqs) AS u(tenant_id, seq)
         WHERE o.tenant_id = u.tenant_id AND o.seq = u.seq AND o.status = 'pending'
        RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM done
$$;
COMMENT ON FUNCTION ventros.outbox_published(text[], bigint[]) IS
    'Marks events published after the broker confirmed them (publisher use)';

CREATE FUNCTION ventros.outbox_failed(tenants text[], seqs bigint[], errors text[],
                                      max_attempts integer, backoff_min_ms integer,
                                      backoff_max_ms integer)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Retry after backoff_min * 2^(attempts-1), capped, with jitter in [50%, 100%];
    -- dead after max_attempts.  Returns the number of rows dead-lettered.
    WITH failed AS (
        UPDATE ventros.outbox o
           SET status = CASE WHEN o.attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
               last_error = u.error,
               claimed_until = NULL, claimed_by = NULL,
               next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs =>
                   LEAST(backoff_max_ms::float8,
                         backoff_min_ms * pg_catalog.power(2::float8, LEAST(o.attempts - 1, 30)))
                   * (0.5 + pg_catalog.random() / 2) / 1000.0)
          FROM unnest(tenants, seqs, errors) AS u(tenant_id, seq, error)
         WHERE o.tenant_id = u.tenant_id AND o.seq = u.seq AND o.status = 'pending'
        RETURNING o.status)
    SELECT pg_catalog.count(*) FILTER (WHERE status = 'dead')::integer FROM failed
$$;
COMMENT ON FUNCTION ventros.outbox_failed(text[], bigint[], text[], integer, integer, integer) IS
    'Records a failed publish attempt per event: retry after an exponential backoff with jitter, or dead letter after max_attempts (publisher use)';

CREATE FUNCTION ventros.outbox_release_leases(claimer integer DEFAULT pg_catalog.pg_backend_pid())
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A publisher that died left its leases behind: a restarted one frees those
    -- whose holder is no longer a live backend, instead of waiting them out.
    WITH freed AS (
        UPDATE ventros.outbox o
           SET claimed_until = NULL, claimed_by = NULL
         WHERE o.status = 'pending'
           AND o.claimed_until IS NOT NULL
           AND o.claimed_by IS DISTINCT FROM claimer
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = o.claimed_by)
        RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM freed
$$;
COMMENT ON FUNCTION ventros.outbox_release_leases(integer) IS
    'Frees the leases of publishers that are no longer running (publisher use, at start)';

CREATE FUNCTION ventros.outbox_prune(retention interval, max_rows integer DEFAULT 10000)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM ventros.outbox o
         WHERE (o.tenant_id, o.seq) IN (
                SELECT p.tenant_id, p.seq FROM ventros.outbox p
                 WHERE p.status = 'published' AND p.published_at < pg_catalog.now() - retention
                 LIMIT max_rows)
        RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION ventros.outbox_prune(interval, integer) IS
    'Deletes up to max_rows events published longer than retention ago (the publisher calls it with ventros.outbox_retention)';

CREATE FUNCTION ventros.outbox_wake() RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_outbox_wake';
COMMENT ON FUNCTION ventros.outbox_wake() IS
    'Wakes this database''s outbox publisher when the current transaction commits';

CREATE FUNCTION ventros.replay_dead_events(tenant text DEFAULT NULL, event_ids uuid[] DEFAULT NULL,
                                           event_type text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    -- the claim lock: a replay and a claim never interleave
    PERFORM pg_catalog.pg_advisory_xact_lock(1986948706, 1668047209);
    UPDATE ventros.outbox o
       SET status = 'pending', attempts = 0, next_attempt_at = NULL,
           claimed_until = NULL, claimed_by = NULL
     WHERE o.status = 'dead'
       AND (replay_dead_events.tenant IS NULL OR o.tenant_id = replay_dead_events.tenant)
       AND (replay_dead_events.event_ids IS NULL OR o.event_id = ANY (replay_dead_events.event_ids))
       AND (replay_dead_events.event_type IS NULL OR o.event_type = replay_dead_events.event_type);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM ventros.outbox_wake();
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.replay_dead_events(text, uuid[], text) IS
    'Puts dead-lettered events back to pending (all, or those of a tenant, of given ids, of an event type), with their attempts reset; returns how many';

CREATE FUNCTION ventros.outbox_worker_state(
    OUT database text, OUT pid integer, OUT connected boolean, OUT connected_since timestamptz,
    OUT published_total bigint, OUT failed_total bigint, OUT last_publish_at timestamptz,
    OUT last_error text, OUT last_error_at timestamptz)
RETURNS record
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'ventros_outbox_worker_state';
COMMENT ON FUNCTION ventros.outbox_worker_state() IS
    'The shared counters of this database''s outbox publisher (55000 when ventros is not preloaded)';

CREATE VIEW ventros.outbox_status AS
SELECT (SELECT pg_catalog.count(*) FROM ventros.outbox WHERE status = 'pending') AS pending,
       (SELECT pg_catalog.count(*) FROM ventros.outbox WHERE status = 'published') AS published,
       (SELECT pg_catalog.count(*) FROM ventros.outbox WHERE status = 'dead') AS dead,
       pg_catalog.now() - (SELECT pg_catalog.min(occurred_at) FROM ventros.outbox
                            WHERE status = 'pending') AS oldest_pending_age,
       w.last_publish_at,
       COALESCE(w.last_error,
                (SELECT o.last_error FROM ventros.outbox o
                  WHERE o.status <> 'published' AND o.last_error IS NOT NULL
                  ORDER BY o.seq DESC LIMIT 1)) AS last_error,
       w.last_error_at,
       w.connected AS worker_connected,
       w.pid AS worker_pid,
       w.connected_since,
       w.published_total,
       w.failed_total
  FROM ventros.outbox_worker_state() w;
COMMENT ON VIEW ventros.outbox_status IS
    'The outbox publisher at a glance: pending, published and dead counts, oldest pending age, last publish, last error, whether the worker is connected to the broker, and its counters since start';

GRANT SELECT ON ventros.outbox_status TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.outbox_worker_state() TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.replay_dead_events(text, uuid[], text) TO ventros_platform_admin;
