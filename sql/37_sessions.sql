-- Aggregate 2, Session (CRM): a conversation window between a contact and the
-- business on one channel.
--
-- Invariant: at most one active session per (tenant, contact, channel), held
-- by the partial unique index sessions_one_active, not by a check that could
-- race.  start_or_continue_session() inserts with ON CONFLICT DO NOTHING on
-- that index: of two transactions starting a session for the same pair at
-- once, the second waits for the first and then continues its session.
--
-- Timeout at creation: the channel's pipeline's session_timeout_minutes, else
-- the channel's, else the project's, else 30 minutes.  expires_at =
-- last_activity_at + timeout is kept with every message, and
-- ventros.tick_sessions(now) expires what has passed it.
--
-- The counters and response metrics are quiet columns (see engine.c): a
-- message changes them under the session's row lock without bumping the
-- session's version; the message's own event and session.message_recorded
-- carry the fact.

CREATE TABLE ventros.sessions (
    id                          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                   text        NOT NULL,
    version                     integer     NOT NULL DEFAULT 1,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz,
    project_id                  uuid        NOT NULL,
    contact_id                  uuid        NOT NULL,
    channel_id                  uuid        NOT NULL,
    channel_type_id             integer,
    pipeline_id                 uuid,
    team_id                     uuid,
    assigned_agent_id           uuid,
    started_at                  timestamptz NOT NULL DEFAULT now(),
    ended_at                    timestamptz,
    status                      text        NOT NULL DEFAULT 'active',
    end_reason                  text,
    timeout_seconds             integer     NOT NULL DEFAULT 1800,
    last_activity_at            timestamptz NOT NULL DEFAULT now(),
    expires_at                  timestamptz NOT NULL DEFAULT now() + interval '30 minutes',
    message_count               integer     NOT NULL DEFAULT 0,
    messages_from_contact       integer     NOT NULL DEFAULT 0,
    messages_from_agent         integer     NOT NULL DEFAULT 0,
    duration_seconds            integer     NOT NULL DEFAULT 0,
    first_contact_message_at    timestamptz,
    first_agent_response_at     timestamptz,
    agent_response_time_seconds integer,
    contact_wait_time_seconds   integer,
    agent_ids                   uuid[]      NOT NULL DEFAULT '{}',
    agent_transfers             integer     NOT NULL DEFAULT 0,
    summary                     text,
    sentiment                   text,
    sentiment_score             numeric,
    topics                      jsonb,
    next_steps                  jsonb,
    key_entities                jsonb,
    outcome_tags                jsonb,
    resolved                    boolean     NOT NULL DEFAULT false,
    escalated                   boolean     NOT NULL DEFAULT false,
    converted                   boolean     NOT NULL DEFAULT false,
    assigned_at                 timestamptz,
    snoozed_until               timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES ventros.channels (tenant_id, id),
    FOREIGN KEY (tenant_id, pipeline_id) REFERENCES ventros.pipelines (tenant_id, id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES ventros.teams (tenant_id, id),
    FOREIGN KEY (tenant_id, assigned_agent_id) REFERENCES ventros.agents (tenant_id, id),
    CONSTRAINT sessions_status_known CHECK (status IN ('active', 'snoozed', 'ended', 'expired', 'manually_closed')),
    CONSTRAINT sessions_end_reason_known CHECK (end_reason IN ('inactivity_timeout', 'manual_close', 'contact_request',
                                                               'agent_close', 'system_close', 'saga_rollback')),
    CONSTRAINT sessions_ended_consistent CHECK ((status IN ('active', 'snoozed')) = (ended_at IS NULL)
                                                AND (status IN ('active', 'snoozed')) = (end_reason IS NULL)),
    CONSTRAINT sessions_snoozed_until_set CHECK ((status = 'snoozed') = (snoozed_until IS NOT NULL)),
    CONSTRAINT sessions_ended_after_start CHECK (ended_at >= started_at),
    CONSTRAINT sessions_timeout_range CHECK (timeout_seconds BETWEEN 60 AND 86400),
    CONSTRAINT sessions_resolved_after_end CHECK (NOT resolved OR status NOT IN ('active', 'snoozed')),
    CONSTRAINT sessions_sentiment_known CHECK (sentiment IN ('positive', 'neutral', 'negative', 'mixed')),
    CONSTRAINT sessions_counters_positive CHECK (message_count >= 0 AND messages_from_contact >= 0
                                                 AND messages_from_agent >= 0 AND agent_transfers >= 0)
);
CREATE UNIQUE INDEX sessions_one_active ON ventros.sessions (tenant_id, contact_id, channel_id)
    WHERE status IN ('active', 'snoozed') AND deleted_at IS NULL;
CREATE INDEX sessions_snoozed ON ventros.sessions (snoozed_until) WHERE status = 'snoozed' AND deleted_at IS NULL;
CREATE INDEX sessions_expiry ON ventros.sessions (expires_at) WHERE status = 'active' AND deleted_at IS NULL;
CREATE INDEX sessions_by_contact ON ventros.sessions (tenant_id, contact_id, started_at DESC, id DESC);
-- The inbox's order (the console's conversation list): by last activity.
CREATE INDEX sessions_by_activity ON ventros.sessions (tenant_id, last_activity_at DESC, id DESC);
CREATE INDEX sessions_open_by_agent ON ventros.sessions (tenant_id, assigned_agent_id, channel_id, last_activity_at DESC, id DESC)
    WHERE status = 'active' AND deleted_at IS NULL;
COMMENT ON TABLE ventros.sessions IS 'Session: a conversation window between a contact and the business on one channel';

SELECT ventros.register_aggregate('session', 'ventros.sessions', 'crm',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "active", "event": "session.started", "description": "A session started."},
        {"from": "active", "to": "ended", "event": "session.ended", "description": "A session ended (status ended, expired or manually_closed; see end_reason)."},
        {"from": "active", "to": "expired", "event": "session.ended"},
        {"from": "active", "to": "manually_closed", "event": "session.ended"},
        {"from": "active", "to": "snoozed", "event": "session.snoozed", "description": "A session was snoozed until an instant (snoozed_until)."},
        {"from": "snoozed", "to": "active", "event": "session.unsnoozed", "description": "A snoozed session woke up: its time came (tick_sessions), a message arrived, or it was woken by hand."},
        {"from": "snoozed", "to": "ended", "event": "session.ended"},
        {"from": "snoozed", "to": "expired", "event": "session.ended"},
        {"from": "snoozed", "to": "manually_closed", "event": "session.ended"}
    ]',
    description => 'A conversation window between a contact and the business on one channel');
SELECT ventros.register_quiet_columns('session', '{last_activity_at,expires_at,message_count,messages_from_contact,messages_from_agent,duration_seconds,first_contact_message_at,first_agent_response_at,agent_response_time_seconds,contact_wait_time_seconds}');
SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('session.message_recorded', 'A message was recorded on a session.'),
    ('session.agent_assigned', 'An agent was assigned to a session (also on a transfer).'),
    ('session.resolved', 'A session was marked resolved.'),
    ('session.escalated', 'A session was escalated.'),
    ('session.summarized', 'A summary was set on a session.'),
    ('session.abandoned', 'A session expired with the contact waiting for a first response.'),
    ('session.consolidated', 'Sessions of one contact and channel were merged into this one after a history import.')) v(e, d);

-- A status change written directly (not through close_session) still ends
-- the session consistently: ended_at, end_reason and duration are filled in.
CREATE FUNCTION ventros.complete_session_end() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status <> 'snoozed' THEN
        NEW.snoozed_until := NULL;
    END IF;
    IF OLD.status IN ('active', 'snoozed') AND NEW.status NOT IN ('active', 'snoozed') THEN
        NEW.ended_at := coalesce(NEW.ended_at, greatest(now(), NEW.started_at));
        NEW.end_reason := coalesce(NEW.end_reason, CASE NEW.status WHEN 'expired' THEN 'inactivity_timeout'
                                                                   WHEN 'manually_closed' THEN 'manual_close'
                                                                   ELSE 'system_close' END);
        NEW.duration_seconds := extract(epoch FROM NEW.ended_at - NEW.started_at)::integer;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.complete_session_end() IS
    'Trigger: a session ending (leaving active or snoozed) gets ended_at, end_reason (by status) and duration when the writer did not set them; one not snoozed has no snoozed_until';
CREATE TRIGGER sessions_complete_end BEFORE UPDATE OF status ON ventros.sessions
    FOR EACH ROW EXECUTE FUNCTION ventros.complete_session_end();

CREATE TABLE ventros.session_custom_fields (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    session_id  uuid        NOT NULL,
    field_key   text        NOT NULL,
    field_type  text        NOT NULL,
    field_value jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES ventros.sessions (tenant_id, id),
    CONSTRAINT session_custom_fields_key_format CHECK (field_key ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT session_custom_fields_type_known CHECK (field_type IN ('text', 'number', 'boolean', 'date', 'json', 'url',
        'email', 'phone', 'select', 'multi_select', 'label'))
);
CREATE UNIQUE INDEX session_custom_fields_unique ON ventros.session_custom_fields (tenant_id, session_id, field_key)
    WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.session_custom_fields IS 'A custom field value of a session';

SELECT ventros.register_aggregate('session_custom_field', 'ventros.session_custom_fields', 'crm',
    description => 'A custom field value of a session');

-- Timeout of a new session on a channel, in seconds.
CREATE FUNCTION ventros.session_timeout_seconds(channel_id uuid) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 60 * coalesce(pl.session_timeout_minutes, c.session_timeout_minutes, p.session_timeout_minutes, 30)
    FROM ventros.channels c
    JOIN ventros.projects p ON p.tenant_id = c.tenant_id AND p.id = c.project_id
    LEFT JOIN ventros.pipelines pl ON pl.tenant_id = c.tenant_id AND pl.id = c.pipeline_id
    WHERE c.tenant_id = ventros.require_tenant() AND c.id = session_timeout_seconds.channel_id
$$;
COMMENT ON FUNCTION ventros.session_timeout_seconds(uuid) IS
    'Session timeout for a channel: its pipeline''s, else its own, else its project''s, else 30 minutes (in seconds)';

-- end_reason -> status
CREATE FUNCTION ventros.session_status_for(end_reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE end_reason WHEN 'inactivity_timeout' THEN 'expired'
                           WHEN 'manual_close' THEN 'manually_closed'
                           WHEN 'agent_close' THEN 'manually_closed'
                           ELSE 'ended' END
$$;
COMMENT ON FUNCTION ventros.session_status_for(text) IS
    'The status a session ends in for an end reason: expired (inactivity_timeout), manually_closed (manual_close, agent_close), else ended';

-- Ends one active session; the caller holds its row lock.
CREATE FUNCTION ventros.finish_session(s ventros.sessions, end_reason text, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
    ended timestamptz := greatest(at, s.started_at);
BEGIN
    UPDATE ventros.sessions t
    SET status = ventros.session_status_for(finish_session.end_reason), end_reason = finish_session.end_reason,
        ended_at = ended, duration_seconds = extract(epoch FROM ended - t.started_at)::integer, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    -- The handling agent's running metrics (quiet columns of the agent).
    IF s.assigned_agent_id IS NOT NULL THEN
        UPDATE ventros.agents a
        SET sessions_handled = a.sessions_handled + 1,
            average_response_ms = CASE WHEN s.agent_response_time_seconds IS NULL THEN a.average_response_ms
                                       ELSE ((a.average_response_ms::bigint * a.sessions_handled
                                              + s.agent_response_time_seconds::bigint * 1000) / (a.sessions_handled + 1))::integer END,
            last_activity_at = greatest(a.last_activity_at, ended), version = a.version
        WHERE a.tenant_id = s.tenant_id AND a.id = s.assigned_agent_id;
    END IF;
    IF finish_session.end_reason = 'inactivity_timeout' AND s.first_contact_message_at IS NOT NULL
       AND s.first_agent_response_at IS NULL THEN
        PERFORM ventros.emit('session.abandoned', 'session', s.id,
                             jsonb_build_object('contact_id', s.contact_id, 'channel_id', s.channel_id,
                                                'waiting_since', s.first_contact_message_at), result.version);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.finish_session(ventros.sessions, text, timestamptz) IS
    'Ends a locked active session with an end reason (internal); emits session.ended (and session.abandoned)';

-- wake_session: a locked snoozed session active again at an instant (its
-- time came, a message arrived, or by hand); it expires no earlier than a
-- full timeout after waking.  The engine emits session.unsnoozed.
CREATE FUNCTION ventros.wake_session(s ventros.sessions, at timestamptz)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions;
BEGIN
    UPDATE ventros.sessions t
    SET status = 'active', snoozed_until = NULL,
        expires_at = greatest(t.expires_at, at + make_interval(secs => t.timeout_seconds)), version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.wake_session(ventros.sessions, timestamptz) IS
    'Makes a locked snoozed session active again at an instant, expiring no earlier than a timeout later (internal); emits session.unsnoozed';

-- start_or_continue_sessions: the active session of each (contact, channel),
-- or a new one.  A snoozed one wakes up; an active session past its expiry is
-- expired first.  Race-free: the insert arbitrates on sessions_one_active; a
-- contact whose session another transaction started meanwhile continues
-- that one on the next round.  Set-based (one statement per table for the
-- whole set, in contact order so that two callers lock in the same order):
-- a broadcast starts a batch's sessions at once.  The one-contact case is
-- ventros.start_or_continue_session.
CREATE FUNCTION ventros.start_or_continue_sessions(contact_ids uuid[], channel_id uuid, at timestamptz DEFAULT now())
RETURNS SETOF ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    tenant text := ventros.require_tenant();
    todo uuid[] := ARRAY(SELECT DISTINCT x FROM unnest(contact_ids) x ORDER BY 1);
    kept uuid[];
    started ventros.sessions[];
    s ventros.sessions;
    ch ventros.channels;
    timeout integer;
    type_id integer;
BEGIN
    PERFORM ventros.plan_for_set(cardinality(contact_ids));
    at := coalesce(at, now());
    FOR attempt IN 1..3 LOOP
        kept := '{}';
        FOR s IN SELECT * FROM ventros.sessions x
                 WHERE x.tenant_id = tenant AND x.contact_id = ANY (todo)
                   AND x.channel_id = start_or_continue_sessions.channel_id AND x.status IN ('active', 'snoozed')
                   AND x.deleted_at IS NULL
                 ORDER BY x.contact_id
                 FOR UPDATE
        LOOP
            IF s.status = 'snoozed' THEN
                s := ventros.wake_session(s, at);     -- a message wakes it
            END IF;
            IF at <= s.expires_at THEN
                kept := kept || s.contact_id;
                RETURN NEXT s;
            ELSE
                PERFORM ventros.finish_session(s, 'inactivity_timeout', s.expires_at);
            END IF;
        END LOOP;
        todo := ARRAY(SELECT d.x FROM (SELECT unnest(todo) EXCEPT SELECT unnest(kept)) d(x) ORDER BY 1);
        IF cardinality(todo) = 0 THEN
            RETURN;
        END IF;
        IF ch.id IS NULL THEN
            SELECT * INTO ch FROM ventros.channels c WHERE c.tenant_id = tenant AND c.id = start_or_continue_sessions.channel_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'channel % not found', channel_id USING ERRCODE = 'P0002';
            END IF;
            timeout := ventros.session_timeout_seconds(ch.id);
            type_id := ventros.channel_type_id(ch.type);
        END IF;
        WITH inserted AS (
            INSERT INTO ventros.sessions (project_id, contact_id, channel_id, channel_type_id, pipeline_id, started_at,
                                          last_activity_at, timeout_seconds, expires_at)
            SELECT ch.project_id, x, ch.id, type_id, ch.pipeline_id, at, at,
                   timeout, at + make_interval(secs => timeout)
            FROM unnest(todo) x ORDER BY x
            ON CONFLICT (tenant_id, contact_id, channel_id) WHERE status IN ('active', 'snoozed') AND deleted_at IS NULL
            DO NOTHING
            RETURNING *)
        SELECT coalesce(array_agg(i), '{}') INTO started FROM inserted i;
        RETURN QUERY SELECT * FROM unnest(started);
        -- Those another transaction started first: continue theirs next round.
        todo := ARRAY(SELECT d.x FROM (SELECT unnest(todo) EXCEPT SELECT i.contact_id FROM unnest(started) i) d(x) ORDER BY 1);
        IF cardinality(todo) = 0 THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'could not start or continue a session for contact % on channel %', todo[1], channel_id
        USING ERRCODE = '40001';
EXCEPTION WHEN foreign_key_violation THEN
    RAISE EXCEPTION 'contact % not found', CASE WHEN cardinality(contact_ids) = 1 THEN contact_ids[1]::text
                                                 ELSE 'of ' || cardinality(contact_ids) END
        USING ERRCODE = 'P0002';
END
$$;
COMMENT ON FUNCTION ventros.start_or_continue_sessions(uuid[], uuid, timestamptz) IS
    'The active session of each contact on a channel, started if there is none or it expired, woken if snoozed (race-free on sessions_one_active; set-based, locked in contact order); emits session.started, session.unsnoozed, and session.ended for an expired one';

-- start_or_continue_session: the one-contact case.
CREATE FUNCTION ventros.start_or_continue_session(contact_id uuid, channel_id uuid, at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
BEGIN
    SELECT * INTO s FROM ventros.start_or_continue_sessions(ARRAY[contact_id], channel_id, at);
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.start_or_continue_session(uuid, uuid, timestamptz) IS
    'The active session of a contact on a channel, started if there is none or it expired, woken if snoozed (race-free on sessions_one_active); emits session.started, session.unsnoozed, and session.ended for an expired one';

-- record_session_messages: counters, response metrics, last activity, for
-- one message on each of a set of sessions (parallel arrays: session, from_me,
-- instant, message; a session at most once).  Internal: called by the
-- messages' insert trigger (record_new_messages, as the owner) and no
-- tenant role's, so counters follow the messages written, never a caller's
-- word.  The writer holds the sessions' row locks (start_or_continue_sessions).
-- One UPDATE for the set.
CREATE FUNCTION ventros.record_session_messages(sessions ventros.sessions[], from_me boolean[], ats timestamptz[],
                                                message_ids uuid[])
RETURNS SETOF ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    session_ids uuid[] := ARRAY(SELECT s.id FROM unnest(sessions) s);
    bad ventros.sessions;
    recorded ventros.sessions[];
BEGIN
    PERFORM ventros.plan_for_set(cardinality(sessions));
    IF (SELECT count(DISTINCT x) <> count(*) FROM unnest(session_ids) x) THEN
        RAISE EXCEPTION 'a session is recorded at most once per call' USING ERRCODE = '22023';
    END IF;
    SELECT s.* INTO bad FROM unnest(sessions) s WHERE s.status IS DISTINCT FROM 'active' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'session % is %', bad.id, bad.status USING ERRCODE = 'VN002',
            DETAIL = 'Messages are recorded on active sessions only.';
    END IF;
    WITH m AS (SELECT * FROM unnest(session_ids, from_me, ats, message_ids) AS m(session_id, from_me, at, message_id)),
    updated AS (
        UPDATE ventros.sessions t
        SET message_count = t.message_count + 1,
            messages_from_contact = t.messages_from_contact + (NOT m.from_me)::integer,
            messages_from_agent = t.messages_from_agent + m.from_me::integer,
            last_activity_at = greatest(t.last_activity_at, m.at),
            expires_at = greatest(t.last_activity_at, m.at) + make_interval(secs => t.timeout_seconds),
            duration_seconds = extract(epoch FROM greatest(t.last_activity_at, m.at) - t.started_at)::integer,
            first_contact_message_at = CASE WHEN NOT m.from_me THEN coalesce(t.first_contact_message_at, m.at)
                                            ELSE t.first_contact_message_at END,
            first_agent_response_at = CASE WHEN m.from_me AND t.first_contact_message_at IS NOT NULL
                                           THEN coalesce(t.first_agent_response_at, m.at) ELSE t.first_agent_response_at END,
            agent_response_time_seconds = CASE WHEN m.from_me AND t.first_contact_message_at IS NOT NULL
                                                AND t.first_agent_response_at IS NULL
                                               THEN greatest(0, extract(epoch FROM m.at - t.first_contact_message_at))::integer
                                               ELSE t.agent_response_time_seconds END,
            contact_wait_time_seconds = CASE WHEN m.from_me AND t.first_contact_message_at IS NOT NULL
                                              AND t.first_agent_response_at IS NULL
                                             THEN greatest(0, extract(epoch FROM m.at - t.first_contact_message_at))::integer
                                             ELSE t.contact_wait_time_seconds END,
            version = t.version
        FROM m
        WHERE t.tenant_id = tenant AND t.id = m.session_id
        RETURNING t, m.message_id, m.from_me, m.at)
    SELECT coalesce(array_agg(u.t ORDER BY (u.t).id), '{}') INTO recorded
    FROM updated u
    CROSS JOIN LATERAL ventros.emit('session.message_recorded', 'session', (u.t).id,
                                    jsonb_build_object('message_id', u.message_id, 'from_me', u.from_me, 'at', u.at,
                                                       'message_count', (u.t).message_count), (u.t).version) e;
    RETURN QUERY SELECT * FROM unnest(recorded);
END
$$;
COMMENT ON FUNCTION ventros.record_session_messages(ventros.sessions[], boolean[], timestamptz[], uuid[]) IS
    'Records one message on each of a set of locked active sessions (internal; VN002 for one that is not active): counters, first response, last activity, expiry; emits session.message_recorded per session';

CREATE FUNCTION ventros.lock_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sessions := ventros.lock_row(NULL::ventros.sessions, 'session', session_id);
BEGIN
    PERFORM ventros.require_version('session', session_id, expected_version, result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.lock_session(uuid, integer) IS
    'Locks a session for a command: P0002 when absent, VN001 when expected_version is stale';

CREATE FUNCTION ventros.close_session(session_id uuid, expected_version integer DEFAULT NULL,
                                      end_reason text DEFAULT 'manual_close', at timestamptz DEFAULT now())
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
BEGIN
    IF end_reason IS NULL OR end_reason NOT IN ('inactivity_timeout', 'manual_close', 'contact_request', 'agent_close',
                                                'system_close', 'saga_rollback') THEN
        RAISE EXCEPTION 'unknown end reason "%"', left(end_reason, 32) USING ERRCODE = '22023',
            HINT = 'Use manual_close, agent_close, contact_request, system_close, inactivity_timeout or saga_rollback.';
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    IF s.status NOT IN ('active', 'snoozed') THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "%"', session_id, s.status,
            ventros.session_status_for(end_reason)
            USING ERRCODE = 'VN002', DETAIL = 'Only an active or snoozed session can end.';
    END IF;
    RETURN ventros.finish_session(s, end_reason, coalesce(at, now()));
END
$$;
COMMENT ON FUNCTION ventros.close_session(uuid, integer, text, timestamptz) IS
    'Ends an active or snoozed session with a reason: expired, manually_closed or ended (VN002 otherwise); emits session.ended';

-- snooze_session: an active session put aside until an instant; tick_sessions
-- wakes it then, and any message on it (either way) wakes it before.  A
-- snoozed session does not expire.
CREATE FUNCTION ventros.snooze_session(session_id uuid, until timestamptz, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    result ventros.sessions;
BEGIN
    IF until IS NULL OR until <= now() THEN
        RAISE EXCEPTION 'a session is snoozed until a later instant' USING ERRCODE = '22023',
            DETAIL = format('until %s is not after now (%s).', until, now());
    END IF;
    s := ventros.lock_session(session_id, expected_version);
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "snoozed"', session_id, s.status
            USING ERRCODE = 'VN002', DETAIL = 'Only an active session can be snoozed.';
    END IF;
    UPDATE ventros.sessions t SET status = 'snoozed', snoozed_until = until, version = s.version
    WHERE t.tenant_id = s.tenant_id AND t.id = s.id
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.snooze_session(uuid, timestamptz, integer) IS
    'Snoozes an active session until a later instant (22023 otherwise; VN002 unless active); tick_sessions or a message wakes it; emits session.snoozed';

CREATE FUNCTION ventros.unsnooze_session(session_id uuid, expected_version integer DEFAULT NULL)
RETURNS ventros.sessions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions := ventros.lock_session(session_id, expected_version);
BEGIN
    IF s.status <> 'snoozed' THEN
        RAISE EXCEPTION 'session % cannot change status from "%" to "active"', session_id, s.status
            USING ERRCODE = 'VN002', DETAIL = 'Only a snoozed session can be woken.';
    END IF;
    RETURN ventros.wake_session(s, now());
END
$$;
COMMENT ON FUNCTION ventros.unsnooze_session(uuid, integer) IS
    'Wakes a snoozed session before its time (VN002 unless snoozed); emits session.unsnoozed';

-- tick_sessions: expire every active session of the acting tenant (or, for a
-- session without a tenant, such as pg_cron's superuser, of every tenant)
-- whose expiry has passed.  Returns how many ended.
CREATE FUNCTION ventros.tick_sessions(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sessions;
    tenant text := ventros.current_tenant();
    n integer := 0;
BEGIN
    -- Snoozed sessions whose time came wake up first (and expire no earlier
    -- than a timeout later).
    FOR s IN
        SELECT * FROM ventros.sessions t
        WHERE t.status = 'snoozed' AND t.deleted_at IS NULL AND t.snoozed_until <= tick_sessions.now
          AND (tenant IS NULL OR t.tenant_id = tenant)
        ORDER BY t.snoozed_until
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.wake_session(s, s.snoozed_until);
        n := n + 1;
    END LOOP;
    FOR s IN
        SELECT * FROM ventros.sessions t
        WHERE t.status = 'active' AND t.deleted_at IS NULL AND t.expires_at < tick_sessions.now
          AND (tenant IS NULL OR t.tenant_id = tenant)
        ORDER BY t.expires_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM ventros.finish_session(s, 'inactivity_timeout', s.expires_at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_sessions(timestamptz, integer) IS
    'Wakes snoozed sessions whose snoozed_until is at or before now (session.unsnoozed), then expires active sessions whose last activity + timeout is before now (end_reason inactivity_timeout, ended_at = the expiry; session.ended); returns how many it woke or ended';

-- consolidate_sessions: after a history import, the ended sessions of one
-- contact on one channel whose gap (next start - previous last activity) is
-- at most the earlier one's timeout are merged: their messages move to the
-- earliest session of each run, its counters and end are recomputed, and the
-- emptied sessions are soft-deleted.  Active sessions are left alone.
CREATE FUNCTION ventros.consolidate_sessions(contact_id uuid, channel_id uuid)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ended ventros.sessions[];
    s ventros.sessions;
    keep ventros.sessions;
    recounted ventros.sessions;
    merged uuid[] := '{}';
    run_merged uuid[] := '{}';
    total integer := 0;
BEGIN
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = consolidate_sessions.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    ended := ARRAY(SELECT x FROM ventros.sessions x
                   WHERE x.tenant_id = tenant AND x.contact_id = consolidate_sessions.contact_id
                     AND x.channel_id = consolidate_sessions.channel_id AND x.status <> 'active' AND x.deleted_at IS NULL
                   ORDER BY x.started_at, x.id
                   FOR UPDATE);
    -- One step past the last session (s is NULL there) closes the last run.
    FOR i IN 1..cardinality(ended) + 1 LOOP
        s := ended[i];
        IF s.id IS NOT NULL AND keep.id IS NOT NULL AND s.started_at - keep.last_activity_at <= make_interval(secs => keep.timeout_seconds) THEN
            UPDATE ventros.messages m SET session_id = keep.id, version = m.version
            WHERE m.tenant_id = tenant AND m.session_id = s.id;
            UPDATE ventros.notes n SET session_id = keep.id, version = n.version
            WHERE n.tenant_id = tenant AND n.session_id = s.id;
            DELETE FROM ventros.sessions x WHERE x.tenant_id = tenant AND x.id = s.id;
            keep.last_activity_at := greatest(keep.last_activity_at, s.last_activity_at);
            keep.ended_at := greatest(keep.ended_at, s.ended_at);
            run_merged := run_merged || s.id;
            CONTINUE;
        END IF;
        IF cardinality(run_merged) > 0 THEN
            -- The kept session's counters and end, recomputed from its messages.
            UPDATE ventros.sessions t
            SET (message_count, messages_from_contact, messages_from_agent, first_contact_message_at, last_activity_at) =
                    (SELECT count(*), count(*) FILTER (WHERE NOT m.from_me), count(*) FILTER (WHERE m.from_me),
                            min(m."timestamp") FILTER (WHERE NOT m.from_me), greatest(t.started_at, max(m."timestamp"))
                     FROM ventros.messages m WHERE m.tenant_id = t.tenant_id AND m.session_id = t.id),
                ended_at = keep.ended_at,
                duration_seconds = extract(epoch FROM keep.ended_at - t.started_at)::integer,
                version = t.version
            WHERE t.tenant_id = tenant AND t.id = keep.id
            RETURNING * INTO recounted;
            PERFORM ventros.emit('session.consolidated', 'session', keep.id,
                                 jsonb_build_object('merged_session_ids', to_jsonb(run_merged),
                                                    'message_count', recounted.message_count), recounted.version);
            merged := merged || run_merged;
        END IF;
        keep := s;
        run_merged := '{}';
    END LOOP;
    RETURN cardinality(merged);
END
$$;
COMMENT ON FUNCTION ventros.consolidate_sessions(uuid, uuid) IS
    'Merges a contact''s ended sessions on a channel whose gaps are within the timeout (history import); returns how many were merged away; emits message.updated per moved message, session.deleted per emptied session, session.updated and session.consolidated for each kept one';

CREATE FUNCTION ventros.get_session(session_id uuid) RETURNS ventros.sessions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.sessions, 'session', session_id) $$;
COMMENT ON FUNCTION ventros.get_session(uuid) IS 'A session of the acting tenant, or P0002';

GRANT EXECUTE ON FUNCTION ventros.session_timeout_seconds(uuid), ventros.session_status_for(text),
    ventros.get_session(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.finish_session(ventros.sessions, text, timestamptz),
    ventros.start_or_continue_session(uuid, uuid, timestamptz), ventros.start_or_continue_sessions(uuid[], uuid, timestamptz),
    ventros.lock_session(uuid, integer),
    ventros.close_session(uuid, integer, text, timestamptz), ventros.wake_session(ventros.sessions, timestamptz),
    ventros.snooze_session(uuid, timestamptz, integer), ventros.unsnooze_session(uuid, integer) TO ventros_agent;
-- The scheduler's (pg_cron runs it as a platform administrator), never a tenant's:
-- its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_sessions(timestamptz, integer) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.consolidate_sessions(uuid, uuid) TO ventros_admin;
