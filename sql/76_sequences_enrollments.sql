-- Sequence enrollments (aggregate 22's child, sql/76_sequences.sql): a
-- contact enrolled in an active sequence, advanced step by step by the
-- scheduler (ventros.tick_sequences, pg_cron), completed when no step is
-- left, exited by a reply, an exit tag or status, or an opt-out.  The
-- sequence's counters follow every change of an enrollment's status.

-- The delay of a step as an interval.
CREATE FUNCTION ventros.sequence_step_delay(step ventros.sequence_steps) RETURNS interval
LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_catalog.make_interval(mins => CASE step.delay_unit WHEN 'hours' THEN step.delay_amount * 60
                                                           WHEN 'days' THEN step.delay_amount * 1440
                                                           ELSE step.delay_amount END) $$;
COMMENT ON FUNCTION ventros.sequence_step_delay(ventros.sequence_steps) IS 'A step''s delay as an interval';

CREATE FUNCTION ventros.enroll_in_sequence(sequence_id uuid, contact_id uuid)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id);
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'sequence % is %; contacts enroll in active sequences', sequence_id, s.status USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.enroll_contact(NULL::ventros.sequence_enrollments, 'sequence', s.id, s.version, contact_id,
        now() + coalesce(ventros.sequence_step_delay(ventros.next_step(NULL::ventros.sequence_steps, 'sequence', s.id, -1)), '0'),
        'total_enrolled = x.total_enrolled + 1, active_count = x.active_count + 1');
END
$$;
COMMENT ON FUNCTION ventros.enroll_in_sequence(uuid, uuid) IS
    'Enrolls a contact in an active sequence (VN002 otherwise; once at a time, 23505), due after the first step''s delay; emits sequence_enrollment.created and sequence.contact_enrolled';

-- A sequence's counters after one of its enrollments changed status.
CREATE FUNCTION ventros.count_sequence_enrollment(e ventros.sequence_enrollments, from_status text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.sequences x
    SET active_count = x.active_count - CASE WHEN from_status = 'active' THEN 1 ELSE 0 END
                                      + CASE WHEN e.status = 'active' THEN 1 ELSE 0 END,
        completed_count = x.completed_count + CASE WHEN e.status = 'completed' THEN 1 ELSE 0 END,
        exited_count = x.exited_count + CASE WHEN e.status = 'exited' THEN 1 ELSE 0 END,
        version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.sequence_id
$$;
COMMENT ON FUNCTION ventros.count_sequence_enrollment(ventros.sequence_enrollments, text) IS
    'Keeps a sequence''s active, completed and exited counters after an enrollment left from_status';

CREATE FUNCTION ventros.set_sequence_enrollment_status(sequence_enrollment_id uuid, expected_version integer, status text,
                                                       exit_reason text DEFAULT NULL)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed record := ventros.set_enrollment_status(NULL::ventros.sequence_enrollments, 'sequence', sequence_enrollment_id,
                                                    expected_version, status, exit_reason);
BEGIN
    PERFORM ventros.count_sequence_enrollment(changed.after, (changed.before).status);
    RETURN changed.after;
END
$$;
COMMENT ON FUNCTION ventros.set_sequence_enrollment_status(uuid, integer, text, text) IS
    'Pauses, resumes or exits an enrollment (VN002 when the machine refuses); emits sequence_enrollment.updated and sequence.enrollment_paused, _resumed or _exited';

-- end_sequence_enrollment: an active enrollment completed or exited at an
-- instant, with the sequence's counters.
CREATE FUNCTION ventros.end_sequence_enrollment(e ventros.sequence_enrollments, status text, exit_reason text, at timestamptz)
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequence_enrollments := ventros.finish_enrollment(NULL::ventros.sequence_enrollments, 'sequence', e.id,
                                                                     status, exit_reason, at);
BEGIN
    PERFORM ventros.count_sequence_enrollment(result, e.status);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.end_sequence_enrollment(ventros.sequence_enrollments, text, text, timestamptz) IS
    'Completes or exits an enrollment and keeps its sequence''s counters; emits sequence.enrollment_completed or _exited';

-- advance_sequence_enrollment: the due step of an active enrollment.  In
-- this order: no step left completes it; an opt-out of the channel, an exit
-- tag or an exit status exits it; outside the send window it is due again
-- at the window's opening; a step whose conditions do not hold is passed
-- over; else the step's message is sent on the channel of the contact's
-- latest session (source sequence; without a session the event carries the
-- template for a sender that knows the channel).  Then the next step is due
-- after its delay.
CREATE FUNCTION ventros.advance_sequence_enrollment(sequence_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments := ventros.lock_active_enrollment(NULL::ventros.sequence_enrollments, 'sequence',
                                                                     sequence_enrollment_id);
    s ventros.sequences := ventros.get_sequence(e.sequence_id);
    step ventros.sequence_steps := ventros.next_step(NULL::ventros.sequence_steps, 'sequence', e.sequence_id, e.current_step_order);
    channel uuid;
    reason text;
    opening timestamptz;
    held boolean;
    sent uuid;
BEGIN
    IF step.id IS NULL THEN
        RETURN ventros.end_sequence_enrollment(e, 'completed', NULL, now);
    END IF;
    SELECT x.channel_id INTO channel FROM ventros.sessions x
    WHERE x.tenant_id = e.tenant_id AND x.contact_id = e.contact_id ORDER BY x.started_at DESC LIMIT 1;
    reason := ventros.journey_exit_reason(e.contact_id, channel, s.exit_on);
    IF reason IS NOT NULL THEN
        RETURN ventros.end_sequence_enrollment(e, 'exited', reason, now);
    END IF;
    opening := ventros.journey_window_open(s.send_window, ventros.journey_timezone(e.contact_id), now);
    IF opening IS DISTINCT FROM now THEN
        RETURN ventros.set_enrollment_due(NULL::ventros.sequence_enrollments, 'sequence', e.id, NULL, opening);
    END IF;
    held := ventros.journey_conditions_hold(step.conditions, e.contact_id, now);
    IF held AND channel IS NOT NULL THEN
        sent := (ventros.journey_send(channel, e.contact_id, step.message_template, 'sequence',
                                      jsonb_build_object('sequence_id', e.sequence_id, 'step_order', step."order"))).id;
    END IF;
    PERFORM ventros.emit('sequence.enrollment_advanced', 'sequence', e.sequence_id,
        jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', step."order",
                           'message_template', step.message_template, 'message_id', sent, 'skipped', NOT held), NULL);
    RETURN ventros.set_enrollment_due(NULL::ventros.sequence_enrollments, 'sequence', e.id, step."order",
        now + coalesce(ventros.sequence_step_delay(ventros.next_step(NULL::ventros.sequence_steps, 'sequence', e.sequence_id,
                                                                     step."order")), '0'));
END
$$;
COMMENT ON FUNCTION ventros.advance_sequence_enrollment(uuid, timestamptz) IS
    'Runs the due step of an active enrollment: completes it past the last step; exits it on an opt-out, exit tag or exit status; waits for the send window; passes over a step whose conditions do not hold; sends the step on the contact''s latest session channel (source sequence); schedules the next; emits message.created, sequence.enrollment_advanced, _completed or _exited';

CREATE FUNCTION ventros.tick_sequences(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.tick_enrollments('sequence', now, batch_size) $$;
COMMENT ON FUNCTION ventros.tick_sequences(timestamptz, integer) IS
    'Advances the due enrollments of active sequences (ventros.tick_enrollments: contact and enrollment locked, SKIP LOCKED); returns how many';

-- exit_sequences: the contact's active or paused enrollments of the
-- sequences a filter selects, exited with a reason.
CREATE FUNCTION ventros.exit_sequences(contact_id uuid, reason text, exit_on_reply boolean DEFAULT NULL,
                                       status_id uuid DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments;
    n integer := 0;
BEGIN
    FOR e IN SELECT x.* FROM ventros.sequence_enrollments x
             JOIN ventros.sequences s ON s.tenant_id = x.tenant_id AND s.id = x.sequence_id
             WHERE x.tenant_id = ventros.require_tenant() AND x.contact_id = exit_sequences.contact_id
               AND x.status IN ('active', 'paused') AND x.deleted_at IS NULL
               AND (exit_sequences.exit_on_reply IS NULL OR (s.exit_on_reply AND x.status = 'active'))
               AND (exit_sequences.status_id IS NULL OR coalesce(s.exit_on->'status_ids' ? exit_sequences.status_id::text, false))
             ORDER BY x.id
             FOR UPDATE OF x
    LOOP
        PERFORM ventros.end_sequence_enrollment(e, 'exited', reason, at);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.exit_sequences(uuid, text, boolean, uuid, timestamptz) IS
    'Exits a contact''s current enrollments of the sequences with exit_on_reply (when exit_on_reply) or with a status in exit_on.status_ids (when status_id); returns how many';

CREATE FUNCTION ventros.exit_sequences_on_reply(contact_id uuid) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.exit_sequences(contact_id, 'replied', exit_on_reply => true) $$;
COMMENT ON FUNCTION ventros.exit_sequences_on_reply(uuid) IS
    'An inbound reply: exits the contact''s active enrollments of sequences with exit_on_reply; emits sequence.enrollment_exited for each; returns how many';

CREATE FUNCTION ventros.list_sequence_enrollments(sequence_id uuid, status text DEFAULT NULL, after_id uuid DEFAULT NULL,
                                                  page_size integer DEFAULT 50)
RETURNS SETOF ventros.sequence_enrollments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.sequence_enrollments e
    WHERE e.tenant_id = ventros.require_tenant() AND e.sequence_id = list_sequence_enrollments.sequence_id
      AND (list_sequence_enrollments.status IS NULL OR e.status = list_sequence_enrollments.status)
      AND (after_id IS NULL OR e.id > after_id)
    ORDER BY e.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_sequence_enrollments(uuid, text, uuid, integer) IS 'Enrollments of a sequence; keyset paging on id';

GRANT EXECUTE ON FUNCTION ventros.list_sequence_enrollments(uuid, text, uuid, integer),
    ventros.sequence_step_delay(ventros.sequence_steps) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.enroll_in_sequence(uuid, uuid),
    ventros.end_sequence_enrollment(ventros.sequence_enrollments, text, text, timestamptz),
    ventros.count_sequence_enrollment(ventros.sequence_enrollments, text),
    ventros.set_sequence_enrollment_status(uuid, integer, text, text), ventros.advance_sequence_enrollment(uuid, timestamptz),
    ventros.exit_sequences_on_reply(uuid), ventros.exit_sequences(uuid, text, boolean, uuid, timestamptz) TO ventros_agent;
-- The scheduler's (pg_cron runs it as a platform administrator), never a tenant's:
-- its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_sequences(timestamptz, integer) TO ventros_platform_admin;

-- Direct writes of sequence_enrollment by tenant roles: the same as the first command
-- named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('sequence_enrollment', inserts => '{enroll_in_sequence}', updates => '{set_sequence_enrollment_status,advance_sequence_enrollment}', deletes => '{}');
