-- Enrollments: a contact's way through a campaign or a sequence.
--
-- Campaigns and sequences enroll contacts the same way: an enrollment row
-- (<parent>_enrollments, with <parent>_id, contact_id, status, exited_at,
-- exit_reason, next_scheduled_at) whose status follows one machine —
-- active <-> paused, then completed or exited — and whose changes are told
-- as business events on the parent (<parent>.contact_enrolled,
-- <parent>.enrollment_advanced / _paused / _resumed / _completed / _exited),
-- so a consumer of campaign.* or sequence.* sees its whole story in order.
-- This file is that one mechanism; a parent declares itself with
-- ventros.register_enrollment and its commands call the functions below.
-- At its end: what a contact's own doings (a reply, a conversion, a pipeline
-- status reached, a tag added, a consent withdrawn) do to its enrollments,
-- in the same transaction.

-- register_enrollment: the enrollment aggregate of a parent and its events.
CREATE FUNCTION ventros.register_enrollment(parent text, enrollment_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.register_aggregate(parent || '_enrollment', enrollment_table, 'automation',
        state_column => 'status',
        transitions => '[
            {"from": null, "to": "active"},
            {"from": "active", "to": "paused"},
            {"from": "paused", "to": "active"},
            {"from": "active", "to": "completed"},
            {"from": "active", "to": "exited"},
            {"from": "paused", "to": "exited"}
        ]',
        description => format('A contact''s enrollment in a %s (child of %s; events on the %s)', parent, parent, parent));
    PERFORM ventros.register_event_type(parent || '.contact_enrolled', format('A contact was enrolled in a %s.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_advanced',
                                        format('An enrollment moved to the next step of a %s.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_paused', format('A %s enrollment was paused.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_resumed', format('A %s enrollment was resumed.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_completed', format('A contact completed a %s.', parent));
    PERFORM ventros.register_event_type(parent || '.enrollment_exited',
                                        format('A contact left a %s before its end.', parent));
END
$$;
COMMENT ON FUNCTION ventros.register_enrollment(text, regclass) IS
    'Declares <parent>_enrollment (the enrollment state machine) and the parent''s six enrollment events';

-- emit_enrollment_event: tells a status change of an enrollment on its parent.
CREATE FUNCTION ventros.emit_enrollment_event(parent text, enrollment anyelement)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e jsonb := to_jsonb(enrollment);
BEGIN
    PERFORM ventros.emit(parent || '.enrollment_' || CASE e->>'status' WHEN 'paused' THEN 'paused'
                                                                       WHEN 'active' THEN 'resumed'
                                                                       WHEN 'completed' THEN 'completed'
                                                                       ELSE 'exited' END,
        parent, (e->>(parent || '_id'))::uuid,
        jsonb_build_object('enrollment_id', e->'id', 'contact_id', e->'contact_id', 'exit_reason', e->'exit_reason'), NULL);
END
$$;
COMMENT ON FUNCTION ventros.emit_enrollment_event(text, anyelement) IS
    'Emits <parent>.enrollment_paused, _resumed, _completed or _exited for an enrollment row, on its parent';

-- set_enrollment_status: pause, resume or exit one enrollment (the machine
-- refuses the rest with VN002).  Returns the enrollment as it was before and
-- after, so a parent can keep its own counters.
CREATE FUNCTION ventros.set_enrollment_status(row_type anyelement, parent text, enrollment_id uuid,
                                              expected_version integer, status text, exit_reason text,
                                              OUT before anyelement, OUT after anyelement)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := parent || ' enrollment';
BEGIN
    PERFORM ventros.require_value(status, ARRAY['active', 'paused', 'exited'], 'enrollment status');
    before := ventros.get_row(row_type, what, enrollment_id);
    after := ventros.change_row(row_type, what, enrollment_id, expected_version,
        jsonb_build_object('status', status)
        || CASE WHEN status = 'exited' THEN jsonb_build_object('exited_at', now(), 'exit_reason',
                                                               ventros.check_length(coalesce(exit_reason, 'manual'), 500, 'exit reason'))
                WHEN status = 'active' THEN jsonb_build_object('next_scheduled_at', now()) ELSE '{}' END);
    PERFORM ventros.emit_enrollment_event(parent, after);
END
$$;
COMMENT ON FUNCTION ventros.set_enrollment_status(anyelement, text, uuid, integer, text, text) IS
    'Pauses, resumes (due now) or exits (with a reason, default manual) an enrollment; emits <enrollment>.updated and the parent''s enrollment event';

-- lock_draft: a campaign or a sequence changes its steps only in draft; the
-- row of the acting tenant, locked, and a draft (VN002 otherwise).
CREATE FUNCTION ventros.lock_draft(row_type anyelement, aggregate text, row_id uuid)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ALIAS FOR $0;
BEGIN
    r := ventros.lock_row(row_type, aggregate, row_id);
    IF r.status <> 'draft' THEN
        RAISE EXCEPTION '% % is %; steps change only in draft', aggregate, row_id, r.status USING ERRCODE = 'VN002';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION ventros.lock_draft(anyelement, text, uuid) IS
    'Locks a campaign or sequence of the acting tenant (P0002 when absent) and checks it is a draft (VN002 otherwise)';

-- lock_active_enrollment: the start of a step of an enrollment: the row of
-- the acting tenant, locked, and active (VN002 otherwise).
CREATE FUNCTION ventros.lock_active_enrollment(row_type anyelement, parent text, enrollment_id uuid)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ALIAS FOR $0;
BEGIN
    e := ventros.lock_row(row_type, parent || ' enrollment', enrollment_id);
    IF e.status <> 'active' THEN
        RAISE EXCEPTION '% enrollment % is %; only active enrollments advance', parent, e.id, e.status USING ERRCODE = 'VN002';
    END IF;
    RETURN e;
END
$$;
COMMENT ON FUNCTION ventros.lock_active_enrollment(anyelement, text, uuid) IS
    'Locks an enrollment of the acting tenant (P0002 when absent) and checks it is active (VN002 otherwise)';

GRANT EXECUTE ON FUNCTION ventros.emit_enrollment_event(text, anyelement),
    ventros.set_enrollment_status(anyelement, text, uuid, integer, text, text),
    ventros.lock_draft(anyelement, text, uuid), ventros.lock_active_enrollment(anyelement, text, uuid) TO ventros_agent;

-- ---- the step engine: enrolling, due steps, exits, windows, conditions --------
--
-- Sequences, campaigns and broadcasts walk contacts through steps the same
-- way: an enrollment (a broadcast's execution is a one-step enrollment) is
-- made by enroll_contact, found due by tick_enrollments, which locks the
-- contact before the enrollment (the order every writer of an enrollment
-- keeps: an inbound reply does too, ventros.journey_reply), advanced by the
-- parent's advance_<parent>_enrollment, moved on by set_enrollment_due and
-- ended by finish_enrollment.  Steps send through journey_send; their
-- conditions are the rule conditions of the automation executor, evaluated
-- on the contact (journey_conditions_hold).

-- enroll_contact: a contact's enrollment in a parent, due at a time; counts
-- it with the parent's counters (an SQL assignment list, or NULL) and emits
-- <parent>.contact_enrolled.  One current enrollment per contact (23505).
CREATE FUNCTION ventros.enroll_contact(row_type anyelement, parent text, parent_id uuid, parent_version integer,
                                       contact_id uuid, due timestamptz, counters text)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    PERFORM ventros.get_contact(contact_id);
    EXECUTE format('INSERT INTO %s (%I, contact_id, next_scheduled_at) VALUES ($1, $2, $3) RETURNING *',
                   pg_typeof(row_type)::text::regclass, parent || '_id')
        INTO result USING parent_id, contact_id, due;
    IF counters IS NOT NULL THEN
        EXECUTE format('UPDATE ventros.%I x SET %s, version = x.version WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1',
                       parent || 's', counters)
            USING parent_id;
    END IF;
    PERFORM ventros.emit(parent || '.contact_enrolled', parent, parent_id,
        jsonb_build_object('enrollment_id', (to_jsonb(result))->'id', 'contact_id', contact_id), parent_version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is enrolled in % % already', contact_id, parent, parent_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.enroll_contact(anyelement, text, uuid, integer, uuid, timestamptz, text) IS
    'Enrolls a contact in a campaign or sequence (once at a time, 23505), due at a time; keeps the parent''s counters; emits <parent>_enrollment.created and <parent>.contact_enrolled';

-- set_enrollment_due: an active enrollment done with a step, due again at a time.
CREATE FUNCTION ventros.set_enrollment_due(row_type anyelement, parent text, enrollment_id uuid, step_order integer,
                                            due timestamptz)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    EXECUTE format('UPDATE %s x SET current_step_order = coalesce($2, x.current_step_order), next_scheduled_at = $3, '
                   'version = x.version WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1 RETURNING *',
                   pg_typeof(row_type)::text::regclass)
        INTO result USING enrollment_id, step_order, due;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.set_enrollment_due(anyelement, text, uuid, integer, timestamptz) IS
    'Records the step an enrollment reached (NULL: unchanged) and when it is due again';

-- finish_enrollment: an active enrollment completed or exited (with a reason)
-- at an instant; emits the parent's enrollment event.
CREATE FUNCTION ventros.finish_enrollment(row_type anyelement, parent text, enrollment_id uuid, status text,
                                          exit_reason text, at timestamptz)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    PERFORM ventros.require_value(status, ARRAY['completed', 'exited'], 'enrollment end');
    EXECUTE format('UPDATE %s x SET status = $2, next_scheduled_at = NULL, '
                   'completed_at = CASE $2 WHEN ''completed'' THEN $4 END, exited_at = CASE $2 WHEN ''exited'' THEN $4 END, '
                   'exit_reason = CASE $2 WHEN ''exited'' THEN $3 END, version = x.version '
                   'WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1 RETURNING *',
                   pg_typeof(row_type)::text::regclass)
        INTO result USING enrollment_id, status, left(exit_reason, 500), at;
    PERFORM ventros.emit_enrollment_event(parent, result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.finish_enrollment(anyelement, text, uuid, text, text, timestamptz) IS
    'Completes or exits (with a reason) an enrollment at an instant; emits <enrollment>.updated and the parent''s enrollment_completed or _exited';

-- next_step: the first step of a parent after an order (NULL fields: none).
CREATE FUNCTION ventros.next_step(row_type anyelement, parent text, parent_id uuid, after_order integer)
RETURNS anyelement
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ALIAS FOR $0;
BEGIN
    EXECUTE format('SELECT * FROM %s x WHERE x.tenant_id = ventros.require_tenant() AND %I = $1 AND x."order" > $2 '
                   'AND x.deleted_at IS NULL ORDER BY x."order" LIMIT 1',
                   pg_typeof(row_type)::text::regclass, parent || '_id')
        INTO result USING parent_id, after_order;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.next_step(anyelement, text, uuid, integer) IS
    'The first live step of a campaign or sequence after an order (all NULL when none)';

-- tick_enrollments: the due active enrollments of active parents, each
-- advanced by ventros.advance_<parent>_enrollment(id, now).  The contact is
-- locked first (FOR SHARE, the lock a send takes), then the enrollment, both
-- SKIP LOCKED: a contact or enrollment being written (a reply exiting it)
-- waits for the next tick, and a reply and a step never deadlock.
CREATE FUNCTION ventros.tick_enrollments(parent text, now timestamptz, batch_size integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    n integer := 0;
    got uuid;
BEGIN
    FOR e IN EXECUTE format('SELECT x.id, x.contact_id FROM ventros.%I x '
                            'JOIN ventros.%I p ON p.tenant_id = x.tenant_id AND p.id = x.%I AND p.status = ''active'' '
                            'WHERE x.tenant_id = ventros.require_tenant() AND x.status = ''active'' AND x.next_scheduled_at <= $1 '
                            'ORDER BY x.next_scheduled_at LIMIT $2',
                            parent || '_enrollments', parent || 's', parent || '_id')
             USING now, batch_size
    LOOP
        got := NULL;
        SELECT c.id INTO got FROM ventros.contacts c
        WHERE c.tenant_id = ventros.require_tenant() AND c.id = e.contact_id FOR SHARE SKIP LOCKED;
        CONTINUE WHEN got IS NULL;
        got := NULL;
        EXECUTE format('SELECT x.id FROM ventros.%I x WHERE x.tenant_id = ventros.require_tenant() AND x.id = $1 '
                       'AND x.status = ''active'' AND x.next_scheduled_at <= $2 FOR UPDATE SKIP LOCKED', parent || '_enrollments')
            INTO got USING e.id, now;
        CONTINUE WHEN got IS NULL;
        EXECUTE format('SELECT ventros.%I($1, $2)', 'advance_' || parent || '_enrollment') USING e.id, now;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_enrollments(text, timestamptz, integer) IS
    'Advances the due active enrollments of active campaigns or sequences (contact then enrollment locked, SKIP LOCKED); returns how many';

-- journey_timezone: the contact's timezone when it is a known one, else the
-- tenant's automation timezone.
CREATE FUNCTION ventros.journey_timezone(contact_id uuid) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tz text;
BEGIN
    SELECT c.timezone INTO tz FROM ventros.contacts c WHERE c.tenant_id = ventros.require_tenant() AND c.id = contact_id;
    IF tz IS NOT NULL THEN
        BEGIN
            PERFORM now() AT TIME ZONE tz;
            RETURN tz;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;   -- not a timezone: the tenant's
        END;
    END IF;
    RETURN (ventros.current_automation_settings()).timezone;
END
$$;
COMMENT ON FUNCTION ventros.journey_timezone(uuid) IS
    'The timezone of a contact''s send window: its own when known, else the tenant''s automation timezone';

-- journey_window_open: at itself when inside a send window ({"from": "09:00",
-- "to": "18:00", "weekdays": [1..5]}, in tz; no window: always), else the
-- window's next opening.
CREATE FUNCTION ventros.journey_window_open(send_window jsonb, tz text, at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opening timestamptz;
    day date := (at AT TIME ZONE tz)::date;
BEGIN
    IF send_window IS NULL OR ventros.automation_condition_holds(jsonb_build_object('time_window', send_window), '{}', tz, at) THEN
        RETURN at;
    END IF;
    FOR d IN 0..7 LOOP
        opening := ((day + d) + (send_window->>'from')::time) AT TIME ZONE tz;
        IF opening > at AND (NOT send_window ? 'weekdays'
                             OR (send_window->'weekdays') @> to_jsonb(extract(isodow FROM day + d)::integer)) THEN
            RETURN opening;
        END IF;
    END LOOP;
    RETURN NULL;    -- a window without any weekday never opens
END
$$;
COMMENT ON FUNCTION ventros.journey_window_open(jsonb, text, timestamptz) IS
    'An instant inside a send window (from included, to excluded, ISO weekdays, in a timezone): at itself, or the next opening';

-- journey_context: what a step condition sees of a contact, the context of
-- an automation rule for an event on the contact (ventros.automation_context).
CREATE FUNCTION ventros.journey_context(contact_id uuid, at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ventros.automation_context(jsonb_populate_record(NULL::ventros.outbox,
        jsonb_build_object('tenant_id', ventros.require_tenant(), 'seq', 0, 'event_id', contact_id,
                           'event_type', 'journey.step', 'aggregate_type', 'contact', 'aggregate_id', contact_id,
                           'payload', '{}'::jsonb, 'occurred_at', at)), at);
END
$$;
COMMENT ON FUNCTION ventros.journey_context(uuid, timestamptz) IS
    'The context a step condition is evaluated in: the contact, its custom fields and pipeline statuses (as for an automation rule)';

-- journey_conditions_hold: a step's conditions (a list or one condition, in
-- the language of automation rules, docs/automation.md) on a contact at an
-- instant, in the contact's timezone; none: true.
CREATE FUNCTION ventros.journey_conditions_hold(conditions jsonb, contact_id uuid, at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF conditions IS NULL OR conditions IN ('[]', '{}', 'null') THEN
        RETURN true;
    END IF;
    RETURN coalesce(ventros.automation_conditions_hold(CASE jsonb_typeof(conditions) WHEN 'array' THEN conditions
                                                                                     ELSE jsonb_build_array(conditions) END,
                                                       ventros.journey_context(contact_id, at),
                                                       ventros.journey_timezone(contact_id), at), false);
END
$$;
COMMENT ON FUNCTION ventros.journey_conditions_hold(jsonb, uuid, timestamptz) IS
    'Whether a step''s conditions (automation rule conditions) hold for a contact at an instant; none: true';

-- journey_exit_reason: why a contact leaves a journey before its next step:
-- opted out of the channel, one of the exit tags, one of the exit pipeline
-- statuses ({"tags": [...], "status_ids": [...]}); NULL: it stays.
CREATE FUNCTION ventros.journey_exit_reason(contact_id uuid, channel_id uuid, exit_on jsonb) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        -- no channel (no session yet): an opt-out of every channel still counts
        WHEN NOT ventros.may_message(contact_id, channel_id) THEN 'opted_out'
        WHEN jsonb_typeof(exit_on->'tags') = 'array' AND EXISTS (
            SELECT 1 FROM ventros.contacts c, jsonb_array_elements_text(exit_on->'tags') t
            WHERE c.tenant_id = ventros.require_tenant() AND c.id = contact_id AND t = ANY (c.tags)) THEN 'tag'
        WHEN jsonb_typeof(exit_on->'status_ids') = 'array' AND EXISTS (
            SELECT 1 FROM ventros.contact_pipeline_statuses p
            WHERE p.tenant_id = ventros.require_tenant() AND p.contact_id = journey_exit_reason.contact_id
              AND p.exited_at IS NULL AND p.deleted_at IS NULL AND exit_on->'status_ids' ? p.status_id::text) THEN 'status'
        END
$$;
COMMENT ON FUNCTION ventros.journey_exit_reason(uuid, uuid, jsonb) IS
    'Why a contact leaves a journey before a step: opted_out (of the channel, or of every channel), tag or status (exit_on.tags, exit_on.status_ids); NULL when it stays';

-- journey_sends: a step's message to a set of contacts, through
-- send_messages (the template's content as text, or a provider template by
-- name); each contact refused (an opt-out: VN010) is a row with its error.
CREATE FUNCTION ventros.journey_sends(channel_id uuid, contact_ids uuid[], template jsonb, source text, metadata jsonb)
RETURNS SETOF ventros.message_send
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
        SELECT * FROM ventros.send_messages(channel_id, contact_ids, text => template->>'content', source => source,
                                            metadata => metadata,
                                            template_name => CASE WHEN template->>'content' IS NULL
                                                                  THEN coalesce(template->>'template_name', template->>'template_id') END,
                                            template_language => template->>'language',
                                            template_components => template->'components');
END
$$;
COMMENT ON FUNCTION ventros.journey_sends(uuid, uuid[], jsonb, text, jsonb) IS
    'Sends a step''s message template (content, or template_name/template_id with language and components) to a set of contacts through send_messages; a refused contact is a row with its error';

-- journey_send: the one-contact case; a refusal (an opt-out: VN010) is raised.
CREATE FUNCTION ventros.journey_send(channel_id uuid, contact_id uuid, template jsonb, source text, metadata jsonb)
RETURNS ventros.messages
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.message_send;
BEGIN
    SELECT * INTO r FROM ventros.journey_sends(channel_id, ARRAY[contact_id], template, source, metadata) x;
    PERFORM ventros.raise_refusal(r);
    RETURN r.message;
END
$$;
COMMENT ON FUNCTION ventros.journey_send(uuid, uuid, jsonb, text, jsonb) IS
    'Sends a step''s message template (content, or template_name/template_id with language and components) to a contact through send_message';

GRANT EXECUTE ON FUNCTION ventros.next_step(anyelement, text, uuid, integer), ventros.journey_timezone(uuid),
    ventros.journey_window_open(jsonb, text, timestamptz), ventros.journey_context(uuid, timestamptz),
    ventros.journey_conditions_hold(jsonb, uuid, timestamptz), ventros.journey_exit_reason(uuid, uuid, jsonb)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.enroll_contact(anyelement, text, uuid, integer, uuid, timestamptz, text),
    ventros.set_enrollment_due(anyelement, text, uuid, integer, timestamptz),
    ventros.finish_enrollment(anyelement, text, uuid, text, text, timestamptz),
    ventros.journey_send(uuid, uuid, jsonb, text, jsonb), ventros.journey_sends(uuid, uuid[], jsonb, text, jsonb) TO ventros_agent;
-- The scheduler's, as every tick: its `now` is the caller's to choose.
GRANT EXECUTE ON FUNCTION ventros.tick_enrollments(text, timestamptz, integer) TO ventros_platform_admin;

-- ---- what contacts do to their journeys, in the same transaction ---------------

-- journey_converted: counts a conversion of the contact's current and
-- completed enrollments of active campaigns, once per enrollment: a reply,
-- a tracking conversion, or (kind status) the campaign's conversion status.
CREATE FUNCTION ventros.journey_converted(contact_id uuid, kind text, status_id uuid, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.campaign_enrollments;
    n integer := 0;
BEGIN
    FOR e IN UPDATE ventros.campaign_enrollments x SET converted_at = at, version = x.version
             FROM ventros.campaigns c
             WHERE x.tenant_id = ventros.require_tenant() AND x.contact_id = journey_converted.contact_id
               AND x.converted_at IS NULL AND x.status IN ('active', 'completed') AND x.deleted_at IS NULL
               AND c.tenant_id = x.tenant_id AND c.id = x.campaign_id AND c.status = 'active'
               AND (kind <> 'status' OR c.conversion_status_id = journey_converted.status_id)
             RETURNING x.*
    LOOP
        UPDATE ventros.campaigns c SET conversions_count = c.conversions_count + 1, version = c.version
        WHERE c.tenant_id = e.tenant_id AND c.id = e.campaign_id;
        PERFORM ventros.emit('campaign.contact_converted', 'campaign', e.campaign_id,
            jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'kind', kind), NULL);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.journey_converted(uuid, text, uuid, timestamptz) IS
    'Counts a conversion (reply, tracking, status) of a contact''s unconverted enrollments of active campaigns (status: those whose conversion_status_id it is); emits campaign.contact_converted; returns how many';

-- journey_reply: an inbound message of a contact, in receive_message's
-- transaction before the session is touched.  When the contact has a
-- current enrollment, the contact is locked first (the order of a tick:
-- contact, then enrollment), then its enrollments of sequences with
-- exit_on_reply exit and its campaigns count the conversion.  A step being
-- sent holds the contact: the reply waits and exits after it; a reply
-- first makes the tick pass the enrollment over (isolation spec
-- sequence_reply_exit).
CREATE FUNCTION ventros.journey_reply(contact_id uuid, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ventros.sequence_enrollments x
                   WHERE x.tenant_id = tenant AND x.contact_id = journey_reply.contact_id AND x.status = 'active')
       AND NOT EXISTS (SELECT 1 FROM ventros.campaign_enrollments x
                       JOIN ventros.campaigns c ON c.tenant_id = x.tenant_id AND c.id = x.campaign_id AND c.status = 'active'
                       WHERE x.tenant_id = tenant AND x.contact_id = journey_reply.contact_id AND x.converted_at IS NULL
                         AND x.status IN ('active', 'completed')) THEN
        RETURN;     -- the hot path of every inbound message
    END IF;
    PERFORM 1 FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = journey_reply.contact_id FOR NO KEY UPDATE;
    PERFORM ventros.exit_sequences(contact_id, 'replied', exit_on_reply => true, at => at);
    PERFORM ventros.journey_converted(contact_id, 'reply', NULL, at);
END
$$;
COMMENT ON FUNCTION ventros.journey_reply(uuid, timestamptz) IS
    'An inbound message: exits the contact''s enrollments of sequences with exit_on_reply and counts the reply as a conversion of its campaigns (contact locked first, as a tick)';

-- journey_status_reached: a contact moved to a pipeline status (in
-- change_contact_pipeline_status, which holds the contact): exits the
-- sequences that list it in exit_on.status_ids, counts the campaigns'
-- conversions whose conversion status it is.
CREATE FUNCTION ventros.journey_status_reached(contact_id uuid, status_id uuid, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.exit_sequences(contact_id, 'status', status_id => status_id, at => at);
    PERFORM ventros.journey_converted(contact_id, 'status', status_id, at);
END
$$;
COMMENT ON FUNCTION ventros.journey_status_reached(uuid, uuid, timestamptz) IS
    'A contact reached a pipeline status: exits the sequences with it in exit_on.status_ids, counts conversions of the campaigns with it as conversion status';

-- journey_exits: the contact's current (active or paused) sequence
-- enrollments that must end now, exited with their journey_exit_reason
-- (opted out of the channel the next step would use, an exit tag, an exit
-- status) at an instant.  Called when a tag is added or a consent withdrawn,
-- in that write's transaction, so an enrollment leaves at that moment
-- rather than at its next step (which checks again).  The enrollments are
-- locked in id order, as exit_sequences does: a step being sent holds its
-- enrollment, and the exit waits for it (isolation spec sequence_tag_exit).
CREATE FUNCTION ventros.journey_exits(contact_id uuid, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    channel uuid;
    e ventros.sequence_enrollments;
    reason text;
    n integer := 0;
BEGIN
    -- the channel a step sends on (advance_sequence_enrollment): the latest session's
    SELECT x.channel_id INTO channel FROM ventros.sessions x
     WHERE x.tenant_id = tenant AND x.contact_id = journey_exits.contact_id ORDER BY x.started_at DESC LIMIT 1;
    FOR e IN SELECT x.* FROM ventros.sequence_enrollments x
              WHERE x.tenant_id = tenant AND x.contact_id = journey_exits.contact_id
                AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
              ORDER BY x.id
              FOR UPDATE OF x
    LOOP
        reason := ventros.journey_exit_reason(contact_id, channel,
                      (SELECT s.exit_on FROM ventros.sequences s WHERE s.tenant_id = tenant AND s.id = e.sequence_id));
        CONTINUE WHEN reason IS NULL;
        PERFORM ventros.end_sequence_enrollment(e, 'exited', reason, at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.journey_exits(uuid, timestamptz) IS
    'Exits a contact''s current sequence enrollments that must end now (opted out, exit tag, exit status: journey_exit_reason) with that reason; emits sequence.enrollment_exited for each; returns how many';

-- A tag added to a contact: its enrollments of sequences with that tag in
-- exit_on.tags exit now (the trigger fires within the contact's UPDATE,
-- which holds the contact: the lock order of a tick and of a reply).
CREATE FUNCTION ventros.journey_contact_tagged() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.sequences s
                JOIN ventros.sequence_enrollments x ON x.tenant_id = s.tenant_id AND x.sequence_id = s.id
                 AND x.contact_id = NEW.id AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
               WHERE s.tenant_id = NEW.tenant_id AND jsonb_typeof(s.exit_on->'tags') = 'array'
                 AND s.exit_on->'tags' ?| ARRAY(SELECT unnest(NEW.tags) EXCEPT SELECT unnest(OLD.tags))) THEN
        PERFORM ventros.journey_exits(NEW.id, now());
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.journey_contact_tagged() IS
    'Trigger: a tag added to a contact exits its current enrollments of sequences with that tag in exit_on.tags, at once (ventros.journey_exits)';
CREATE TRIGGER ventros_journeys_contact_tagged AFTER UPDATE OF tags ON ventros.contacts
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL AND NOT (OLD.tags @> NEW.tags))
    EXECUTE FUNCTION ventros.journey_contact_tagged();

-- A consent withdrawn: the contact's enrollments whose next step could no
-- longer be sent exit now.
CREATE FUNCTION ventros.journey_contact_opted_out() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ventros.sequences s
                JOIN ventros.sequence_enrollments x ON x.tenant_id = s.tenant_id AND x.sequence_id = s.id
                 AND x.contact_id = NEW.contact_id AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
               WHERE s.tenant_id = NEW.tenant_id) THEN
        PERFORM ventros.journey_exits(NEW.contact_id, now());
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.journey_contact_opted_out() IS
    'Trigger: a contact''s consent withdrawn exits its current sequence enrollments whose next step it forbids, at once (ventros.journey_exits)';
CREATE TRIGGER ventros_journeys_contact_opted_out AFTER INSERT OR UPDATE OF status ON ventros.contact_consents
    FOR EACH ROW WHEN (NEW.status = 'opted_out' AND NEW.deleted_at IS NULL)
    EXECUTE FUNCTION ventros.journey_contact_opted_out();

GRANT EXECUTE ON FUNCTION ventros.journey_reply(uuid, timestamptz),
    ventros.journey_converted(uuid, text, uuid, timestamptz), ventros.journey_status_reached(uuid, uuid, timestamptz),
    ventros.journey_exits(uuid, timestamptz)
    TO ventros_agent;
