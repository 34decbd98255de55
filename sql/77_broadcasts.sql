-- Aggregate 23, Broadcast (automation): a one-off, rate-limited mass send of a
-- message template to a contact list, now or at a scheduled time.
--   draft -> scheduled (a future time); draft | scheduled -> running ->
--   completed; scheduled | running -> failed; draft | scheduled | running ->
--   cancelled.  Name, template and rate limit change only in draft.
-- Executing expands the list into broadcast_executions (one per contact,
-- unique), skipping contacts who opted out of the channel.  Execution
-- machine: pending -> sending -> sent | failed; sent -> failed; pending ->
-- skipped.  ventros.tick_broadcasts starts due scheduled broadcasts and sends
-- up to rate_limit pending executions per call (one call a minute) as one set
-- through ventros.send_messages (source broadcast, its system agent; one
-- statement per table for the batch; send_message is its one-contact case).
-- An execution is sending while its message waits for the provider: the
-- message's outcome moves it (a trigger on messages, whatever path changed
-- the message: the dispatcher's answer, a status webhook,
-- confirm_message_status), to sent
-- when the provider accepted the message, to failed with the provider's
-- error when it refused it or reported it failed later.  A send refused
-- before any request (opt-out, no recipient) fails at once.  A broadcast
-- completes when nothing is pending or sending.  Counters (sent, failed,
-- pending) are quiet columns, kept with the executions under the
-- broadcast's row lock.

CREATE TABLE ventros.broadcasts (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    project_id       uuid        NOT NULL,
    name             text        NOT NULL,
    list_id          uuid        NOT NULL,
    channel_id       uuid        NOT NULL,
    message_template jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'draft',
    scheduled_for    timestamptz,
    started_at       timestamptz,
    completed_at     timestamptz,
    failure_reason   text,
    total_contacts   integer     NOT NULL DEFAULT 0,
    sent_count       integer     NOT NULL DEFAULT 0,
    failed_count     integer     NOT NULL DEFAULT 0,
    pending_count    integer     NOT NULL DEFAULT 0,
    rate_limit       integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, list_id) REFERENCES ventros.contact_lists (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    CONSTRAINT broadcasts_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT broadcasts_status_known CHECK (status IN ('draft', 'scheduled', 'running', 'completed', 'failed', 'cancelled')),
    CONSTRAINT broadcasts_template CHECK (jsonb_typeof(message_template) = 'object' AND message_template ? 'type'
                                          AND (message_template ? 'content' OR message_template ? 'template_id')),
    CONSTRAINT broadcasts_counts CHECK (total_contacts >= 0 AND sent_count >= 0 AND failed_count >= 0 AND pending_count >= 0),
    CONSTRAINT broadcasts_rate_limit CHECK (rate_limit >= 0),
    CONSTRAINT broadcasts_scheduled_time CHECK (status <> 'scheduled' OR scheduled_for IS NOT NULL)
);
CREATE INDEX broadcasts_due ON ventros.broadcasts (tenant_id, scheduled_for) WHERE status = 'scheduled' AND deleted_at IS NULL;
COMMENT ON TABLE ventros.broadcasts IS 'Broadcast: a rate-limited mass send of a template to a contact list';

CREATE TABLE ventros.broadcast_executions (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    text        NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    broadcast_id uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending',
    message_id   uuid,
    error        text,
    sent_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, broadcast_id) REFERENCES ventros.broadcasts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES ventros.messages (tenant_id, id),
    CONSTRAINT broadcast_executions_status_known CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    CONSTRAINT broadcast_executions_sent_message CHECK (status <> 'sent' OR message_id IS NOT NULL),
    CONSTRAINT broadcast_executions_error_size CHECK (length(error) <= 1000)
);
CREATE UNIQUE INDEX broadcast_executions_unique ON ventros.broadcast_executions (tenant_id, broadcast_id, contact_id);
-- The batch order (created_at, id): a batch reads its executions off the
-- index (one list's executions share created_at; without id a batch would
-- read and sort every pending one).
CREATE INDEX broadcast_executions_pending ON ventros.broadcast_executions (tenant_id, broadcast_id, created_at, id)
    WHERE status = 'pending';
CREATE INDEX broadcast_executions_by_message ON ventros.broadcast_executions (tenant_id, message_id)
    WHERE message_id IS NOT NULL;
COMMENT ON TABLE ventros.broadcast_executions IS 'The send of a broadcast to one contact';

SELECT ventros.register_aggregate('broadcast', 'ventros.broadcasts', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": "draft", "to": "scheduled", "event": "broadcast.scheduled", "description": "A broadcast was scheduled."},
        {"from": "draft", "to": "running", "event": "broadcast.started", "description": "A broadcast started sending."},
        {"from": "scheduled", "to": "running", "event": "broadcast.started"},
        {"from": "running", "to": "completed", "event": "broadcast.completed", "description": "A broadcast sent to every contact."},
        {"from": "scheduled", "to": "failed", "event": "broadcast.failed", "description": "A broadcast failed."},
        {"from": "running", "to": "failed", "event": "broadcast.failed"},
        {"from": "draft", "to": "cancelled", "event": "broadcast.cancelled", "description": "A broadcast was cancelled."},
        {"from": "scheduled", "to": "cancelled", "event": "broadcast.cancelled"},
        {"from": "running", "to": "cancelled", "event": "broadcast.cancelled"}
    ]',
    description => 'A rate-limited mass send to a contact list');
SELECT ventros.register_quiet_columns('broadcast', '{total_contacts,sent_count,failed_count,pending_count}');
SELECT ventros.register_aggregate('broadcast_execution', 'ventros.broadcast_executions', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "pending"},
        {"from": null, "to": "skipped"},
        {"from": "pending", "to": "sending"},
        {"from": "sending", "to": "sent"},
        {"from": "sending", "to": "failed"},
        {"from": "sent", "to": "failed"},
        {"from": "pending", "to": "skipped"}
    ]',
    description => 'The send of a broadcast to one contact (child of broadcast)');

CREATE FUNCTION ventros.get_broadcast(broadcast_id uuid, for_update boolean DEFAULT false) RETURNS ventros.broadcasts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id)
                ELSE ventros.get_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id) END
$$;
COMMENT ON FUNCTION ventros.get_broadcast(uuid, boolean) IS 'A live broadcast (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_broadcast(name text, list_id uuid, channel_id uuid, message_template jsonb,
                                         rate_limit integer DEFAULT 0, project_id uuid DEFAULT NULL)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.broadcasts;
BEGIN
    IF name IS NULL OR message_template IS NULL THEN
        RAISE EXCEPTION 'broadcast % must not be null', CASE WHEN name IS NULL THEN 'name' ELSE 'message_template' END
            USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.get_contact_list(list_id);
    PERFORM ventros.get_channel(channel_id);
    INSERT INTO ventros.broadcasts (project_id, name, list_id, channel_id, message_template, rate_limit)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'broadcast name'),
            list_id, channel_id, ventros.require_json(message_template, 'object', 'message template'), coalesce(rate_limit, 0))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_broadcast(text, uuid, uuid, jsonb, integer, uuid) IS
    'Creates a draft broadcast of a template (type and content or template_id, 23514) to a list on a channel; emits broadcast.created';

CREATE FUNCTION ventros.update_broadcast(broadcast_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id);
BEGIN
    IF b.status <> 'draft' THEN
        RAISE EXCEPTION 'broadcast % is %; it changes only in draft', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.apply_changes(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version, changes,
                                 ARRAY['name', 'message_template', 'rate_limit', 'list_id', 'channel_id']);
END
$$;
COMMENT ON FUNCTION ventros.update_broadcast(uuid, integer, jsonb) IS
    'Changes name, template, rate limit, list or channel of a draft broadcast (VN002 otherwise); emits broadcast.updated';

CREATE FUNCTION ventros.delete_broadcast(broadcast_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.broadcasts', 'broadcast', broadcast_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_broadcast(uuid, integer) IS 'Soft-deletes a broadcast; emits broadcast.deleted';

CREATE FUNCTION ventros.schedule_broadcast(broadcast_id uuid, expected_version integer, scheduled_for timestamptz)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF scheduled_for IS NULL OR scheduled_for <= now() THEN
        RAISE EXCEPTION 'a broadcast is scheduled for a future time' USING ERRCODE = '22023';
    END IF;
    RETURN ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version,
                              jsonb_build_object('status', 'scheduled', 'scheduled_for', scheduled_for));
END
$$;
COMMENT ON FUNCTION ventros.schedule_broadcast(uuid, integer, timestamptz) IS
    'Schedules a draft broadcast for a future time (22023 otherwise); emits broadcast.scheduled';

-- execute_broadcast: expands the list into executions and starts sending.
CREATE FUNCTION ventros.execute_broadcast(broadcast_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    total integer;
    pending integer;
    result ventros.broadcasts;
BEGIN
    result := ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, coalesce(expected_version, b.version),
                                 jsonb_build_object('status', 'running', 'started_at', now()));
    EXECUTE format('INSERT INTO ventros.broadcast_executions (broadcast_id, contact_id, status) '
                   'SELECT $1, c.id, CASE WHEN ventros.may_message(c.id, $2) THEN ''pending'' ELSE ''skipped'' END '
                   'FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() AND (%s) '
                   'ON CONFLICT (tenant_id, broadcast_id, contact_id) DO NOTHING',
                   ventros.contact_list_predicate(b.list_id))
        USING b.id, b.channel_id;
    SELECT count(*), count(*) FILTER (WHERE e.status = 'pending') INTO total, pending
    FROM ventros.broadcast_executions e WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id;
    UPDATE ventros.broadcasts x SET total_contacts = total, pending_count = pending, version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.execute_broadcast(uuid, integer) IS
    'Starts a draft or scheduled broadcast: one execution per contact of its list (opted-out contacts skipped); emits broadcast.started and broadcast_execution.created per contact';

CREATE FUNCTION ventros.cancel_broadcast(broadcast_id uuid, expected_version integer)
RETURNS ventros.broadcasts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.broadcasts;
BEGIN
    result := ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version,
                                 jsonb_build_object('status', 'cancelled', 'completed_at', now()));
    UPDATE ventros.broadcast_executions e SET status = 'skipped', error = 'broadcast cancelled', version = e.version
    WHERE e.tenant_id = result.tenant_id AND e.broadcast_id = result.id AND e.status = 'pending';
    UPDATE ventros.broadcasts x SET pending_count = 0, version = x.version
    WHERE x.tenant_id = result.tenant_id AND x.id = result.id RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.cancel_broadcast(uuid, integer) IS
    'Cancels a draft, scheduled or running broadcast; pending sends are skipped; emits broadcast.cancelled';

CREATE FUNCTION ventros.fail_broadcast(broadcast_id uuid, expected_version integer, reason text)
RETURNS ventros.broadcasts
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id, expected_version,
        jsonb_build_object('status', 'failed', 'completed_at', now(),
                           'failure_reason', ventros.check_length(coalesce(reason, 'unknown'), 1000, 'failure reason')))
$$;
COMMENT ON FUNCTION ventros.fail_broadcast(uuid, integer, text) IS 'Marks a scheduled or running broadcast failed; emits broadcast.failed';

-- send_broadcast_executions: pending executions of one broadcast sent as a
-- set (the step of the journey engine, ventros.journey_sends, source
-- broadcast: one statement per table for the whole set).  Each becomes
-- sending with its message until the message's outcome
-- (broadcast_message_outcome), or sending then failed at once with its
-- refusal (opted out, no address on the provider).  A failure of the set as a
-- whole (the template, the system agent, anything unexpected) is retried
-- contact by contact, so that it fails only the sends it concerns.  The
-- caller holds the executions' row locks and counts.
CREATE FUNCTION ventros.send_broadcast_executions(b ventros.broadcasts, es ventros.broadcast_executions[], metadata jsonb)
RETURNS SETOF ventros.broadcast_executions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    meta jsonb := jsonb_build_object('broadcast_id', b.id, 'template', b.message_template) || coalesce(metadata, '{}');
    ids uuid[] := ARRAY(SELECT e.id FROM unnest(es) e WHERE e.status = 'pending');
    contacts uuid[] := ARRAY(SELECT e.contact_id FROM unnest(es) e WHERE e.status = 'pending' ORDER BY e.contact_id);
    sends ventros.message_send[];
    one ventros.message_send[];
    contact uuid;
    failure text;
    outcome jsonb;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(es));
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    BEGIN
        sends := ARRAY(SELECT s FROM ventros.journey_sends(b.channel_id, contacts, b.message_template, 'broadcast', meta) s);
    EXCEPTION WHEN OTHERS THEN
        sends := '{}';
        FOREACH contact IN ARRAY contacts LOOP
            BEGIN
                one := ARRAY(SELECT s FROM ventros.journey_sends(b.channel_id, ARRAY[contact], b.message_template,
                                                                   'broadcast', meta) s);
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS failure = MESSAGE_TEXT;
                one := ARRAY[ROW(contact, NULL, NULL, 'XX000', failure, NULL, NULL)::ventros.message_send];
            END;
            sends := sends || one;
        END LOOP;
    END;
    -- Each execution's outcome by its contact (a map: no join of two sets).
    SELECT coalesce(jsonb_object_agg(s.contact_id, jsonb_build_object('message_id', (s.message).id, 'error', s.error)), '{}')
    INTO outcome FROM unnest(sends) s;
    -- pending -> sending, with the message queued for it
    UPDATE ventros.broadcast_executions x
    SET status = 'sending', message_id = (outcome->(x.contact_id::text)->>'message_id')::uuid, version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = ANY (ids) AND x.status = 'pending';
    -- sending -> failed, with the refusal (a send with no answer at all fails too, never left hanging)
    UPDATE ventros.broadcast_executions x
    SET status = 'failed', error = left(coalesce(outcome->(x.contact_id::text)->>'error', 'the message was not sent'), 1000),
        version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = ANY (ids) AND x.status = 'sending' AND x.message_id IS NULL;
    RETURN QUERY SELECT x.* FROM ventros.broadcast_executions x WHERE x.tenant_id = b.tenant_id AND x.id = ANY (ids)
                 ORDER BY x.created_at, x.id;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_executions(ventros.broadcasts, ventros.broadcast_executions[], jsonb) IS
    'Sends pending executions of a broadcast as one set through journey_sends (source broadcast): each sending with its message until the provider''s outcome, or failed with its refusal (opt-out, no recipient)';

-- send_broadcast_execution: the one-execution case.
CREATE FUNCTION ventros.send_broadcast_execution(b ventros.broadcasts, e ventros.broadcast_executions, metadata jsonb)
RETURNS ventros.broadcast_executions
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x FROM ventros.send_broadcast_executions(b, ARRAY[e], metadata) x
$$;
COMMENT ON FUNCTION ventros.send_broadcast_execution(ventros.broadcasts, ventros.broadcast_executions, jsonb) IS
    'Sends one pending broadcast execution through journey_send (source broadcast): sending with its message until the provider''s outcome, or failed with the error';

-- broadcast_to_contact: a campaign's broadcast step: the broadcast's message
-- to one contact, once per broadcast and contact (its execution), counted on
-- the broadcast (sent when the provider accepts it, as every execution);
-- an opted-out contact is skipped.  Returns the execution.
CREATE FUNCTION ventros.broadcast_to_contact(broadcast_id uuid, contact_id uuid, metadata jsonb DEFAULT NULL)
RETURNS ventros.broadcast_executions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    e ventros.broadcast_executions;
BEGIN
    IF b.status IN ('cancelled', 'failed') THEN
        RAISE EXCEPTION 'broadcast % is %', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    INSERT INTO ventros.broadcast_executions (broadcast_id, contact_id, status)
    VALUES (b.id, contact_id, CASE WHEN ventros.may_message(contact_id, b.channel_id) THEN 'pending' ELSE 'skipped' END)
    ON CONFLICT (tenant_id, broadcast_id, contact_id) DO NOTHING
    RETURNING * INTO e;
    IF e.id IS NULL THEN
        SELECT * INTO e FROM ventros.broadcast_executions x
        WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.contact_id = broadcast_to_contact.contact_id;
        RETURN e;   -- sent (or tried) once already
    END IF;
    IF e.status = 'pending' THEN
        e := ventros.send_broadcast_execution(b, e, metadata);
    END IF;
    UPDATE ventros.broadcasts x
    SET total_contacts = x.total_contacts + 1, failed_count = x.failed_count + (e.status = 'failed')::integer,
        version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.broadcast_to_contact(uuid, uuid, jsonb) IS
    'A campaign''s broadcast step: sends a broadcast''s template to one contact, once per broadcast and contact (opted out: skipped), counted on the broadcast; VN002 for a cancelled or failed broadcast';

-- finish_broadcast: a running broadcast whose every execution has its
-- outcome (none pending or sending) completes.  Called under the broadcast's
-- row lock, so the last of two concurrent outcomes sees the other's.
CREATE FUNCTION ventros.finish_broadcast(b ventros.broadcasts) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.broadcasts x SET status = 'completed', completed_at = now(), version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id AND x.status = 'running'
      AND NOT EXISTS (SELECT 1 FROM ventros.broadcast_executions e
                      WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status IN ('pending', 'sending'))
$$;
COMMENT ON FUNCTION ventros.finish_broadcast(ventros.broadcasts) IS
    'Completes a running broadcast once no execution is pending or sending (broadcast.completed); call it holding the broadcast''s row lock';

-- send_broadcast_batch: up to limit pending sends of one running broadcast,
-- as one set (send_broadcast_executions).  Each send queues its message (and
-- its provider request); the execution stays sending until the message's
-- outcome (broadcast_message_outcome).
CREATE FUNCTION ventros.send_broadcast_batch(broadcast_id uuid, batch integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b ventros.broadcasts := ventros.get_broadcast(broadcast_id, true);
    es ventros.broadcast_executions[];
    n integer;
    failed integer;
BEGIN
    IF b.status <> 'running' THEN
        RAISE EXCEPTION 'broadcast % is %, not running', broadcast_id, b.status USING ERRCODE = 'VN002';
    END IF;
    es := ARRAY(SELECT x FROM ventros.broadcast_executions x
                WHERE x.tenant_id = b.tenant_id AND x.broadcast_id = b.id AND x.status = 'pending'
                ORDER BY x.created_at, x.id
                LIMIT coalesce(batch, nullif(b.rate_limit, 0), 1000)
                FOR UPDATE SKIP LOCKED);
    SELECT count(*), count(*) FILTER (WHERE x.status = 'failed') INTO n, failed
    FROM ventros.send_broadcast_executions(b, es, NULL) x;
    UPDATE ventros.broadcasts x
    SET failed_count = x.failed_count + failed, pending_count = greatest(x.pending_count - n, 0), version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    PERFORM ventros.finish_broadcast(b);
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.send_broadcast_batch(uuid, integer) IS
    'Sends up to batch (default: the rate limit) pending executions of a running broadcast as one set through send_messages (source broadcast): each stays sending until its message is sent or failed by the provider; a send refused at once (opt-out, no recipient) fails its execution; completes the broadcast when nothing is pending or sending (broadcast.completed)';

-- broadcast_message_outcome: the provider's outcome of a broadcast message
-- becomes its execution's.  A trigger, so that every path that moves a
-- message (the dispatcher's completion handler, a status webhook,
-- confirm_message_status) counts the same.  SECURITY DEFINER: whoever moved
-- the message may not write broadcasts (a webhook's processor, an agent);
-- it acts on the message's own tenant and rows only.
CREATE FUNCTION ventros.broadcast_message_outcome() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    outcome text := CASE WHEN NEW.status = 'failed' THEN 'failed' ELSE 'sent' END;
    e ventros.broadcast_executions;
    b ventros.broadcasts;
BEGIN
    SELECT * INTO e FROM ventros.broadcast_executions x WHERE x.tenant_id = NEW.tenant_id AND x.message_id = NEW.id;
    IF NOT FOUND OR e.status = outcome OR e.status NOT IN ('sending', 'sent') THEN
        RETURN NULL;    -- not a broadcast's send, or its outcome is known
    END IF;
    -- The broadcast's row lock first, as send_broadcast_batch takes it.
    SELECT * INTO b FROM ventros.broadcasts x WHERE x.tenant_id = e.tenant_id AND x.id = e.broadcast_id FOR UPDATE;
    UPDATE ventros.broadcast_executions x
    SET status = outcome,
        sent_at = CASE WHEN outcome = 'sent' THEN coalesce(NEW.sent_at, now()) ELSE x.sent_at END,
        error = CASE WHEN outcome = 'failed' THEN left(coalesce(NEW.error, 'the provider did not send the message'), 1000) END,
        version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.id;
    UPDATE ventros.broadcasts x
    SET sent_count = x.sent_count + CASE WHEN outcome = 'sent' THEN 1 WHEN e.status = 'sent' THEN -1 ELSE 0 END,
        failed_count = x.failed_count + (outcome = 'failed')::integer, version = x.version
    WHERE x.tenant_id = b.tenant_id AND x.id = b.id;
    PERFORM ventros.finish_broadcast(b);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.broadcast_message_outcome() IS
    'Trigger on broadcast messages: sent (or further) makes the execution sent, failed makes it failed with the message''s error (a sent one too); keeps the broadcast''s counts and completes it when nothing is pending or sending';
-- Named to fire after messages_inbox_rematch (triggers fire in name order):
-- that one may wait for an inbox processor, which may need this broadcast's
-- row for another of its messages; holding it while waiting would deadlock.
CREATE TRIGGER messages_settle_broadcast AFTER UPDATE OF status ON ventros.messages
    FOR EACH ROW WHEN (NEW.from_me AND NEW.source = 'broadcast' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION ventros.broadcast_message_outcome();

CREATE FUNCTION ventros.tick_broadcasts(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    n integer := 0;
BEGIN
    FOR b IN SELECT x.id FROM ventros.broadcasts x
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'scheduled' AND x.scheduled_for <= tick_broadcasts.now
             FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.execute_broadcast(b.id);
    END LOOP;
    FOR b IN SELECT x.id FROM ventros.broadcasts x
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'running'
             FOR UPDATE SKIP LOCKED
    LOOP
        n := n + ventros.send_broadcast_batch(b.id);
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_broadcasts(timestamptz) IS
    'Starts due scheduled broadcasts and sends one rate-limited batch of each running one (call once a minute); returns sends attempted';

-- One snapshot for the broadcast's row and its executions' counts: the row
-- is read by get_row (STABLE), not get_broadcast (VOLATILE: it would read
-- with a newer snapshot than the counts, and a caller could see the
-- broadcast completed, counted, while its executions still look sending).
CREATE FUNCTION ventros.broadcast_stats(broadcast_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('broadcast_id', b.id, 'status', b.status, 'total_contacts', b.total_contacts,
                              'sent', b.sent_count, 'failed', b.failed_count, 'pending', b.pending_count,
                              'sending', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'sending'),
                              'skipped', (SELECT count(*) FROM ventros.broadcast_executions e
                                          WHERE e.tenant_id = b.tenant_id AND e.broadcast_id = b.id AND e.status = 'skipped'))
    FROM ventros.get_row(NULL::ventros.broadcasts, 'broadcast', broadcast_id) b
$$;
COMMENT ON FUNCTION ventros.broadcast_stats(uuid) IS
    'Counts of a broadcast''s sends: sent (accepted by the provider), failed (refused, or reported failed by the provider), sending (waiting for the provider), pending (not sent yet), skipped';

CREATE FUNCTION ventros.list_broadcasts(status text DEFAULT NULL, due_before timestamptz DEFAULT NULL)
RETURNS SETOF ventros.broadcasts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.* FROM ventros.broadcasts b
    WHERE b.tenant_id = ventros.require_tenant()
      AND (list_broadcasts.status IS NULL OR b.status = list_broadcasts.status)
      AND (due_before IS NULL OR (b.status = 'scheduled' AND b.scheduled_for <= due_before))
    ORDER BY b.created_at, b.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_broadcasts(text, timestamptz) IS 'Broadcasts by status, or the scheduled ones due before a time';

GRANT EXECUTE ON FUNCTION ventros.get_broadcast(uuid, boolean), ventros.broadcast_stats(uuid),
    ventros.list_broadcasts(text, timestamptz) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_broadcast(text, uuid, uuid, jsonb, integer, uuid),
    ventros.update_broadcast(uuid, integer, jsonb), ventros.schedule_broadcast(uuid, integer, timestamptz),
    ventros.execute_broadcast(uuid, integer), ventros.cancel_broadcast(uuid, integer), ventros.fail_broadcast(uuid, integer, text),
    ventros.send_broadcast_batch(uuid, integer), ventros.finish_broadcast(ventros.broadcasts),
    ventros.send_broadcast_execution(ventros.broadcasts, ventros.broadcast_executions, jsonb),
    ventros.send_broadcast_executions(ventros.broadcasts, ventros.broadcast_executions[], jsonb),
    ventros.broadcast_to_contact(uuid, uuid, jsonb)
    TO ventros_agent;
-- The scheduler's (pg_cron runs it as a platform administrator), never a tenant's:
-- its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_broadcasts(timestamptz) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.delete_broadcast(uuid, integer) TO ventros_admin;

-- Direct writes of broadcast, broadcast_execution by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('broadcast', inserts => '{create_broadcast}', updates => '{update_broadcast,schedule_broadcast,execute_broadcast,cancel_broadcast}', deletes => '{delete_broadcast}',
    direct => '{DELETE}');
SELECT ventros.register_writes('broadcast_execution', inserts => '{execute_broadcast}', updates => '{cancel_broadcast}', deletes => '{}');
