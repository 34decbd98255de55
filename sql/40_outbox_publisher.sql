-- The outbox publisher's side of ventros.outbox (the C worker is
-- src/outbox_worker.c): claiming, recording outcomes, dead letters and their
-- replay, pruning, and the status view.
--
-- Row states: pending -> published, or pending -> dead after
-- ventros.outbox_max_attempts failed attempts; replay puts dead rows back to
-- pending.  Progress is this per-row state, never a "last published seq": seq
-- is assigned before commit, so a slow transaction commits a lower seq after
-- a higher one was published.
--
-- Pending and dead rows are found through ventros.outbox_queue
-- (sql/03_outbox.sql), which holds a row per event not yet published; the
-- functions here keep it in step with ventros.outbox.status.  The claim
-- writes nothing.  An event is written once when it is published
-- (outbox_published: its queue row deleted, its outbox row updated HOT), and
-- once per failed attempt (outbox_failed, which counts it).  What keeps two publishers from publishing a row at once is
-- the publisher lock: a session lock that the claim takes and the publisher
-- holds for as long as it runs, so there is one publisher per database at a
-- time and a second one claims nothing.  It is of a lock class no SQL
-- function can take (src/locks.c): no other login can hold it or queue for it.  It is released when
-- the publisher's session ends, however it ends.  The rows a publisher has
-- in flight (published, not yet recorded) it keeps in memory and passes to
-- each claim, which skips their aggregates.
--
-- Order per aggregate: a row is claimable only when no earlier row of its
-- aggregate is dead, waiting for its retry time, or in flight.  An earlier row
-- that is itself claimable sorts first (ORDER BY seq), so it is in the same
-- batch, ahead.  Rows of one aggregate commit in seq order (sql/03_outbox.sql),
-- so a claim that sees a row sees every earlier row of its aggregate.
-- The order check runs per row only when some row may block (the first
-- NOT EXISTS, evaluated once per claim, in the same snapshot): usually none.

CREATE FUNCTION ventros.outbox_claim(batch_size integer, in_flight uuid[] DEFAULT '{}')
RETURNS TABLE (tenant_id text, seq bigint, event_id uuid, event_type text,
               aggregate_type text, aggregate_id uuid, aggregate_version integer,
               payload jsonb, actor text, occurred_at timestamptz, attempts integer,
               outbox_row tid, queue_row tid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- The queue swings between empty and a large backlog faster than its
-- statistics follow; a plan made while it looked empty (seq scan, sort of
-- every pending row, a scan of the whole outbox per queue row) makes each
-- claim read the whole backlog.  Walk the queue's seq index in seq order
-- and fetch each event by its key, always (the LATERAL subquery with
-- OFFSET 0 is planned on its own, for one key at a time; the key is the
-- whole (tenant_id, aggregate_id, seq), so that either index of the outbox
-- finds the row in one descent: with seq alone after tenant_id,
-- outbox_aggregate would be read across the whole tenant).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'outbox_claim: batch_size must be positive'
            USING ERRCODE = '22023';
    END IF;
    -- the publisher lock, for the rest of this session; held by another
    -- session: nothing to claim
    IF NOT ventros.outbox_publisher_lock() THEN
        RETURN;
    END IF;
    -- Few aggregates in flight (a publisher keeping up, the usual case): a
    -- cached plan, each candidate compared with each of them.  Many (a
    -- backlog in full flow): a plan for the values at hand, where in_flight
    -- is a hashed set; planning it costs less than the comparisons.
    IF pg_catalog.cardinality(in_flight) > 64 THEN
        RETURN QUERY EXECUTE $q$
        SELECT o.tenant_id, o.seq, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id,
               o.aggregate_version, o.payload, o.actor, o.occurred_at, o.attempts, o.outbox_row, q.ctid
          FROM ventros.outbox_queue q
          CROSS JOIN LATERAL (SELECT o.ctid AS outbox_row, o.* FROM ventros.outbox o
                               WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
         WHERE NOT q.dead
           AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= pg_catalog.now())
           AND q.aggregate_id <> ALL ($2)
           AND (NOT EXISTS (SELECT FROM ventros.outbox_queue x WHERE x.dead OR x.next_attempt_at IS NOT NULL)
                OR NOT EXISTS (SELECT FROM ventros.outbox_queue b
                                WHERE b.tenant_id = q.tenant_id AND b.aggregate_id = q.aggregate_id
                                  AND b.seq < q.seq
                                  AND (b.dead OR b.next_attempt_at IS NOT NULL)
                                  AND (b.dead OR b.next_attempt_at > pg_catalog.now())))
         ORDER BY q.seq
         LIMIT $1 $q$ USING batch_size, in_flight;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT o.tenant_id, o.seq, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id,
           o.aggregate_version, o.payload, o.actor, o.occurred_at, o.attempts, o.outbox_row, q.ctid
      FROM ventros.outbox_queue q
      CROSS JOIN LATERAL (SELECT o.ctid AS outbox_row, o.* FROM ventros.outbox o
                           WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
     WHERE NOT q.dead
       AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= pg_catalog.now())
       AND q.aggregate_id <> ALL (COALESCE(in_flight, '{}'))
       AND (NOT EXISTS (SELECT FROM ventros.outbox_queue x WHERE x.dead OR x.next_attempt_at IS NOT NULL)
            OR NOT EXISTS (SELECT FROM ventros.outbox_queue b
                            WHERE b.tenant_id = q.tenant_id AND b.aggregate_id = q.aggregate_id
                              AND b.seq < q.seq
                              AND (b.dead OR b.next_attempt_at IS NOT NULL)
                              AND (b.dead OR b.next_attempt_at > pg_catalog.now())))
     ORDER BY q.seq
     LIMIT batch_size;
END
$$;
COMMENT ON FUNCTION ventros.outbox_claim(integer, uuid[]) IS
    'Takes the publisher lock and returns up to batch_size publishable events in seq order, skipping aggregates with an earlier event dead, waiting to retry, or in flight (in_flight: their aggregate ids), with the row addresses of each event in ventros.outbox and ventros.outbox_queue (for ventros.outbox_published); writes nothing (publisher use)';

CREATE FUNCTION ventros.outbox_publisher_lock() RETURNS boolean
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_outbox_publisher_lock';
COMMENT ON FUNCTION ventros.outbox_publisher_lock() IS
    'Takes the publisher lock of this database for the rest of the session, without waiting (a session lock of Ventros'' own class, src/locks.c, that pg_advisory_lock cannot take); whether this session holds it (publisher use)';

CREATE FUNCTION ventros.outbox_release_publisher() RETURNS boolean
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_outbox_release_publisher';
COMMENT ON FUNCTION ventros.outbox_release_publisher() IS
    'Releases the publisher lock this session holds (taken by ventros.outbox_claim); false when it held none';

-- Recording deletes the events' queue rows (found by seq, unique: one
-- sequence for all tenants) and updates their outbox rows one by one
-- through the primary key: a join, planned while the tables looked empty,
-- could scan the whole outbox for every row.  The outbox updates are HOT
-- (no index covers the columns they change).  The publisher uses the
-- faster variant below; this one is its fallback (and the tests').
-- An event whose queue row is gone marked published in the outbox, through
-- its primary key (both ways of recording below come here by key).
CREATE FUNCTION ventros.outbox_mark_published(tenant text, aggregate uuid, event_seq bigint,
                                               event_position bigint DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH marked AS (
        UPDATE ventros.outbox o
           SET status = 'published', published_at = pg_catalog.now(), next_attempt_at = NULL,
               position = COALESCE(event_position, pg_catalog.nextval('ventros.outbox_position'))
         WHERE o.tenant_id = tenant AND o.aggregate_id = aggregate AND o.seq = event_seq AND o.status = 'pending'
        RETURNING o.tenant_id, o.position, o.seq)
    INSERT INTO ventros.outbox_positions (tenant_id, position, seq)
    SELECT m.tenant_id, m.position, m.seq FROM marked m
$$;
COMMENT ON FUNCTION ventros.outbox_mark_published(text, uuid, bigint, bigint) IS
    'Marks one pending event published by its key (tenant, aggregate, seq) at its publish position (a new one from ventros.outbox_position when NULL); its queue row is already deleted (publisher use)';

-- positions: the publish position of each event (ventros.outbox_log_in_flight
-- gave them when it was claimed), in the order of seqs; NULL (tests, a
-- manual recording): new ones, in seq order.
CREATE FUNCTION ventros.outbox_published(seqs bigint[], positions bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN WITH gone AS (DELETE FROM ventros.outbox_queue q
                            WHERE q.seq = ANY (seqs) AND NOT q.dead
                           RETURNING q.tenant_id, q.aggregate_id, q.seq)
             SELECT g.* FROM gone g ORDER BY g.seq LOOP
        PERFORM ventros.outbox_mark_published(r.tenant_id, r.aggregate_id, r.seq,
                                              positions[pg_catalog.array_position(seqs, r.seq)]);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.outbox_published(bigint[], bigint[]) IS
    'Marks events published after the broker confirmed them, at their publish positions (new ones when NULL): their queue rows go (publisher use)';

-- The publisher's way: the same, finding the rows by the addresses its claim
-- returned (outbox_row, queue_row), without an index probe.  A row updated
-- since its claim (its address is then that of a dead version: no match) is
-- found by its key instead.
CREATE FUNCTION ventros.outbox_published(seqs bigint[], outbox_rows tid[], queue_rows tid[],
                                         positions bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- row addresses only: whatever the statistics say, a TID scan per row
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_indexscan = off
SET enable_indexonlyscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    ndone integer;
    gone_tenants text[];
    gone_aggregates uuid[];
    gone_seqs bigint[];
    gone_positions bigint[];
BEGIN
    IF positions IS NULL THEN
        positions := ARRAY(SELECT pg_catalog.nextval('ventros.outbox_position')
                             FROM pg_catalog.generate_series(1, pg_catalog.cardinality(seqs)));
    END IF;
    WITH gone AS (
        DELETE FROM ventros.outbox_queue q
         USING unnest(seqs, outbox_rows, queue_rows, positions) AS u(seq, outbox_row, queue_row, position)
         WHERE q.ctid = u.queue_row AND q.seq = u.seq AND NOT q.dead
        RETURNING q.tenant_id, q.aggregate_id, q.seq, u.outbox_row, u.position),
    done AS (
        UPDATE ventros.outbox o
           SET status = 'published', published_at = pg_catalog.now(), next_attempt_at = NULL,
               position = g.position
          FROM gone g
         WHERE o.ctid = g.outbox_row AND o.tenant_id = g.tenant_id AND o.seq = g.seq
        RETURNING o.tenant_id, o.position, o.seq),
    indexed AS (
        INSERT INTO ventros.outbox_positions (tenant_id, position, seq)
        SELECT d.tenant_id, d.position, d.seq FROM done d
        RETURNING 1)
    SELECT (SELECT pg_catalog.count(*)::integer FROM indexed),
           (SELECT pg_catalog.array_agg(g.tenant_id) FROM gone g),
           (SELECT pg_catalog.array_agg(g.aggregate_id) FROM gone g),
           (SELECT pg_catalog.array_agg(g.seq) FROM gone g),
           (SELECT pg_catalog.array_agg(g.position) FROM gone g)
      INTO ndone, gone_tenants, gone_aggregates, gone_seqs, gone_positions;
    IF ndone < COALESCE(pg_catalog.cardinality(gone_seqs), 0) THEN
        -- queue rows gone whose outbox rows moved: by the primary key
        -- (marks only the ones still pending)
        PERFORM ventros.outbox_mark_published(g.tenant_id, g.aggregate_id, g.seq, g.position)
           FROM unnest(gone_tenants, gone_aggregates, gone_seqs, gone_positions) AS g(tenant_id, aggregate_id, seq, position);
    END IF;
    IF COALESCE(pg_catalog.cardinality(gone_seqs), 0) < pg_catalog.cardinality(seqs) THEN
        -- queue rows that moved (or are not pending any more): by seq
        RETURN COALESCE(pg_catalog.cardinality(gone_seqs), 0) + ventros.outbox_published(seqs, positions);
    END IF;
    RETURN COALESCE(pg_catalog.cardinality(gone_seqs), 0);
END
$$;
COMMENT ON FUNCTION ventros.outbox_published(bigint[], tid[], tid[], bigint[]) IS
    'Marks events published after the broker confirmed them, at their publish positions (new ones when NULL), found by the row addresses ventros.outbox_claim returned (by seq when they moved) (publisher use)';

CREATE FUNCTION ventros.outbox_failed(seqs bigint[], errors text[],
                                      max_attempts integer, backoff_min_ms integer,
                                      backoff_max_ms integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
-- Counts the attempt; retry after backoff_min * 2^(attempts-1), capped,
-- with jitter in [50%, 100%]; dead at max_attempts.  Returns the number of
-- rows dead-lettered.  The queue row gets the same retry time and state (it
-- is what the claim reads).  Row by row through the primary keys, as
-- outbox_published: failures are few, and no plan can go wrong.
DECLARE
    r record;
    st text;
    retry timestamptz;
    ndead integer := 0;
BEGIN
    FOR r IN SELECT u.seq, u.error, q.tenant_id, q.aggregate_id
               FROM unnest(seqs, errors) AS u(seq, error)
              CROSS JOIN LATERAL (SELECT q.tenant_id, q.aggregate_id FROM ventros.outbox_queue q
                                   WHERE q.seq = u.seq AND NOT q.dead OFFSET 0) q LOOP
        UPDATE ventros.outbox o
           SET attempts = o.attempts + 1,
               status = CASE WHEN o.attempts + 1 >= max_attempts THEN 'dead' ELSE 'pending' END,
               last_error = r.error,
               next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs =>
                   LEAST(backoff_max_ms::float8,
                         backoff_min_ms * pg_catalog.power(2::float8, LEAST(o.attempts, 30)))
                   * (0.5 + pg_catalog.random() / 2) / 1000.0)
         WHERE o.tenant_id = r.tenant_id AND o.aggregate_id = r.aggregate_id AND o.seq = r.seq
           AND o.status = 'pending'
        RETURNING o.status, o.next_attempt_at INTO st, retry;
        CONTINUE WHEN NOT FOUND;
        UPDATE ventros.outbox_queue q
           SET dead = st = 'dead', next_attempt_at = retry
         WHERE q.seq = r.seq;
        IF st = 'dead' THEN
            ndead := ndead + 1;
        END IF;
    END LOOP;
    RETURN ndead;
END
$$;
COMMENT ON FUNCTION ventros.outbox_failed(bigint[], text[], integer, integer, integer) IS
    'Records a failed publish attempt per event: counts it, then retry after an exponential backoff with jitter, or dead letter at max_attempts (publisher use)';

-- The batches a publisher has sent and not yet recorded, one row per batch
-- (not per event: one insert when claimed, one delete when recorded, in the
-- same transactions as the claim and the record).  A publisher that dies
-- without recording (a crash; SIGTERM drains and records) leaves its rows;
-- the next one counts a failed attempt for their events before it claims,
-- so an event that keeps killing the publisher is dead-lettered after
-- ventros.outbox_max_attempts instead of retried without end.
CREATE TABLE ventros.outbox_in_flight (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seqs      bigint[] NOT NULL,
    positions bigint[]
);
COMMENT ON TABLE ventros.outbox_in_flight IS
    'Batches the outbox publisher has sent but not recorded yet (seqs, and the publish position of each); left over only by a publisher that crashed';
ALTER TABLE ventros.outbox_in_flight ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.outbox_in_flight FORCE ROW LEVEL SECURITY;
-- the publisher runs as a superuser; nobody else reads or writes it
REVOKE ALL ON ventros.outbox_in_flight FROM PUBLIC;

-- A claimed batch is logged with a publish position per event, taken here
-- from ventros.outbox_position in the order of seqs (the order the
-- publisher sends them).  Only the publisher, holding the publisher lock,
-- takes positions, and it publishes each batch after the transaction that
-- logged it committed, in the order it logged them: positions grow in
-- publish order, across publishers too (a sequence never goes back, and the
-- commit made its advance durable before any message carried it).
CREATE FUNCTION ventros.outbox_log_in_flight(seqs bigint[], OUT id bigint, OUT positions bigint[])
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ventros.outbox_in_flight (seqs, positions)
    VALUES (seqs, ARRAY(SELECT pg_catalog.nextval('ventros.outbox_position')
                          FROM pg_catalog.generate_series(1, pg_catalog.cardinality(seqs)) AS g(i)))
    RETURNING id, positions
$$;
COMMENT ON FUNCTION ventros.outbox_log_in_flight(bigint[]) IS
    'Logs a claimed batch in ventros.outbox_in_flight with a new publish position per event (ventros.outbox_position, in the order of seqs); returns its id and the positions (publisher use)';

CREATE FUNCTION ventros.outbox_recover_in_flight(max_attempts integer, backoff_min_ms integer, backoff_max_ms integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    left_behind bigint[];
BEGIN
    -- One failed attempt for every event of the batches a dead publisher
    -- left (outbox_failed touches only the ones still pending).
    WITH gone AS (DELETE FROM ventros.outbox_in_flight f RETURNING f.seqs)
    SELECT array_agg(DISTINCT s.seq) INTO left_behind FROM gone g, unnest(g.seqs) AS s(seq);
    IF left_behind IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM ventros.outbox_failed(left_behind,
                                  array_fill('the publisher stopped before these events were confirmed (a crash)'::text,
                                             ARRAY[cardinality(left_behind)]),
                                  max_attempts, backoff_min_ms, backoff_max_ms);
    RETURN cardinality(left_behind);
END
$$;
COMMENT ON FUNCTION ventros.outbox_recover_in_flight(integer, integer, integer) IS
    'Publisher start: counts a failed attempt (dead letter at max_attempts) for the pending events of batches a crashed publisher left in ventros.outbox_in_flight; returns how many';

CREATE FUNCTION ventros.outbox_prune(retention interval, max_rows integer DEFAULT 10000)
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM ventros.outbox o
         WHERE (o.tenant_id, o.seq) IN (
                SELECT p.tenant_id, p.seq FROM ventros.outbox p
                 WHERE p.occurred_at < pg_catalog.now() - retention   -- outbox_occurred
                   AND p.status = 'published' AND p.published_at < pg_catalog.now() - retention
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
    r record;
    n bigint := 0;
BEGIN
    -- Dead rows are never in flight, and a claim that still sees them dead
    -- holds back their aggregates: replay needs no lock of the publisher's.
    -- Dead rows are found through the queue (outbox_queue_blocking), each
    -- event by its primary key.
    FOR r IN SELECT q.tenant_id, q.aggregate_id, q.seq FROM ventros.outbox_queue q WHERE q.dead LOOP
        UPDATE ventros.outbox o
           SET status = 'pending', attempts = 0, next_attempt_at = NULL
         WHERE o.tenant_id = r.tenant_id AND o.aggregate_id = r.aggregate_id AND o.seq = r.seq
           AND o.status = 'dead'
           AND (replay_dead_events.tenant IS NULL OR o.tenant_id = replay_dead_events.tenant)
           AND (replay_dead_events.event_ids IS NULL OR o.event_id = ANY (replay_dead_events.event_ids))
           AND (replay_dead_events.event_type IS NULL OR o.event_type = replay_dead_events.event_type);
        CONTINUE WHEN NOT FOUND;
        UPDATE ventros.outbox_queue q SET dead = false, next_attempt_at = NULL WHERE q.seq = r.seq;
        n := n + 1;
    END LOOP;
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
SELECT (SELECT pg_catalog.count(*) FROM ventros.outbox_queue WHERE NOT dead) AS pending,
       (SELECT pg_catalog.count(*) FROM ventros.outbox WHERE status = 'published') AS published,
       (SELECT pg_catalog.count(*) FROM ventros.outbox_queue WHERE dead) AS dead,
       pg_catalog.now() - (SELECT pg_catalog.min(o.occurred_at)
                             FROM ventros.outbox_queue q
                             CROSS JOIN LATERAL (SELECT o.occurred_at FROM ventros.outbox o
                                                  WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
                            WHERE NOT q.dead) AS oldest_pending_age,
       w.last_publish_at,
       COALESCE(w.last_error,
                (SELECT o.last_error
                   FROM ventros.outbox_queue q
                   CROSS JOIN LATERAL (SELECT o.last_error FROM ventros.outbox o
                                        WHERE o.tenant_id = q.tenant_id AND o.aggregate_id = q.aggregate_id AND o.seq = q.seq OFFSET 0) o
                  WHERE o.last_error IS NOT NULL
                  ORDER BY q.seq DESC LIMIT 1)) AS last_error,
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
