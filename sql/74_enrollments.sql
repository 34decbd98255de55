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
