-- Aggregate 22, Sequence (automation): a drip sequence of timed message
-- steps for enrolled contacts.  draft | paused -> active (needs a step),
-- active -> paused, draft | active | paused -> archived (terminal: the
-- original could reactivate archived sequences).  Steps change only in
-- draft.  Enrollments follow the campaign machine; an inbound reply exits
-- the active enrollments of sequences with exit_on_reply
-- (ventros.exit_sequences_on_reply).  Steps and enrollments are child
-- aggregates; the domain's events are emitted on the sequence.

CREATE TABLE ventros.sequences (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    project_id      uuid        NOT NULL,
    name            text        NOT NULL,
    description     text,
    status          text        NOT NULL DEFAULT 'draft',
    trigger_type    text        NOT NULL DEFAULT 'manual',
    trigger_data    jsonb,
    exit_on_reply   boolean     NOT NULL DEFAULT true,
    total_enrolled  integer     NOT NULL DEFAULT 0,
    active_count    integer     NOT NULL DEFAULT 0,
    completed_count integer     NOT NULL DEFAULT 0,
    exited_count    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT sequences_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT sequences_status_known CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    CONSTRAINT sequences_trigger_known CHECK (trigger_type IN ('manual', 'tag_added', 'list_joined', 'form_submit', 'pipeline_entered')),
    CONSTRAINT sequences_counts_not_negative CHECK (total_enrolled >= 0 AND active_count >= 0 AND completed_count >= 0
                                                    AND exited_count >= 0)
);
COMMENT ON TABLE ventros.sequences IS 'Sequence: a drip sequence of timed messages';

CREATE TABLE ventros.sequence_steps (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        text        NOT NULL,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    sequence_id      uuid        NOT NULL,
    "order"          integer     NOT NULL,
    name             text        NOT NULL,
    delay_amount     integer     NOT NULL DEFAULT 0,
    delay_unit       text        NOT NULL DEFAULT 'minutes',
    message_template jsonb       NOT NULL,
    conditions       jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sequence_id) REFERENCES ventros.sequences (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT sequence_steps_order_not_negative CHECK ("order" >= 0),
    CONSTRAINT sequence_steps_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT sequence_steps_delay CHECK (delay_amount >= 0 AND delay_unit IN ('minutes', 'hours', 'days')),
    CONSTRAINT sequence_steps_template CHECK (jsonb_typeof(message_template) = 'object' AND message_template ? 'type'
                                              AND (message_template ? 'content' OR message_template ? 'template_id'))
);
CREATE UNIQUE INDEX sequence_steps_unique_order ON ventros.sequence_steps (tenant_id, sequence_id, "order") WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.sequence_steps IS 'A timed message step of a sequence';

CREATE TABLE ventros.sequence_enrollments (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    sequence_id        uuid        NOT NULL,
    contact_id         uuid        NOT NULL,
    status             text        NOT NULL DEFAULT 'active',
    current_step_order integer     NOT NULL DEFAULT -1,
    next_scheduled_at  timestamptz,
    exited_at          timestamptz,
    exit_reason        text,
    completed_at       timestamptz,
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sequence_id) REFERENCES ventros.sequences (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT sequence_enrollments_status_known CHECK (status IN ('active', 'paused', 'completed', 'exited')),
    CONSTRAINT sequence_enrollments_exit_reason CHECK (length(exit_reason) <= 500)
);
CREATE UNIQUE INDEX sequence_enrollments_one_current ON ventros.sequence_enrollments (tenant_id, sequence_id, contact_id)
    WHERE status IN ('active', 'paused') AND deleted_at IS NULL;
CREATE INDEX sequence_enrollments_due ON ventros.sequence_enrollments (tenant_id, next_scheduled_at)
    WHERE status = 'active' AND deleted_at IS NULL;
CREATE INDEX sequence_enrollments_by_contact ON ventros.sequence_enrollments (tenant_id, contact_id) WHERE status = 'active';
COMMENT ON TABLE ventros.sequence_enrollments IS 'A contact''s way through a sequence';

SELECT ventros.register_aggregate('sequence', 'ventros.sequences', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": "draft", "to": "active", "event": "sequence.activated", "description": "A sequence was activated."},
        {"from": "paused", "to": "active", "event": "sequence.resumed", "description": "A paused sequence was resumed."},
        {"from": "active", "to": "paused", "event": "sequence.paused", "description": "A sequence was paused."},
        {"from": "draft", "to": "archived", "event": "sequence.archived", "description": "A sequence was archived."},
        {"from": "active", "to": "archived", "event": "sequence.archived"},
        {"from": "paused", "to": "archived", "event": "sequence.archived"}
    ]',
    description => 'A drip sequence');
SELECT ventros.register_quiet_columns('sequence', '{total_enrolled,active_count,completed_count,exited_count}');
SELECT ventros.register_aggregate('sequence_step', 'ventros.sequence_steps', 'automation',
    description => 'A step of a sequence (child of sequence)');
SELECT ventros.register_enrollment('sequence', 'ventros.sequence_enrollments');
SELECT ventros.register_event_type('sequence.step_added', 'A step was added to a draft sequence.');
SELECT ventros.register_event_type('sequence.step_updated', 'A step of a draft sequence was changed.');
SELECT ventros.register_event_type('sequence.step_removed', 'A step was removed from a draft sequence.');

CREATE FUNCTION ventros.get_sequence(sequence_id uuid, for_update boolean DEFAULT false) RETURNS ventros.sequences
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.sequences, 'sequence', sequence_id)
                ELSE ventros.get_row(NULL::ventros.sequences, 'sequence', sequence_id) END
$$;
COMMENT ON FUNCTION ventros.get_sequence(uuid, boolean) IS 'A live sequence (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_sequence(name text, trigger_type text DEFAULT 'manual', trigger_data jsonb DEFAULT NULL,
                                        exit_on_reply boolean DEFAULT true, description text DEFAULT NULL,
                                        project_id uuid DEFAULT NULL)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequences;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'sequence name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(trigger_type, 'manual'), ARRAY['manual', 'tag_added', 'list_joined', 'form_submit',
                                                                          'pipeline_entered'], 'sequence trigger');
    INSERT INTO ventros.sequences (project_id, name, description, trigger_type, trigger_data, exit_on_reply)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'sequence name'),
            description, coalesce(trigger_type, 'manual'), trigger_data, coalesce(exit_on_reply, true))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_sequence(text, text, jsonb, boolean, text, uuid) IS 'Creates a draft sequence; emits sequence.created';

CREATE FUNCTION ventros.update_sequence(sequence_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.sequences
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, changes,
                                 ARRAY['name', 'description', 'trigger_type', 'trigger_data', 'exit_on_reply'])
$$;
COMMENT ON FUNCTION ventros.update_sequence(uuid, integer, jsonb) IS 'Changes a sequence''s name, description, trigger or exit_on_reply; emits sequence.updated';

CREATE FUNCTION ventros.delete_sequence(sequence_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.sequences', 'sequence', sequence_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_sequence(uuid, integer) IS 'Soft-deletes a sequence; emits sequence.deleted';

CREATE FUNCTION ventros.set_sequence_status(sequence_id uuid, expected_version integer, status text)
RETURNS ventros.sequences
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.get_sequence(sequence_id, true);
BEGIN
    PERFORM ventros.require_value(status, ARRAY['draft', 'active', 'paused', 'archived'], 'sequence status');
    IF status = 'active' AND NOT EXISTS (SELECT 1 FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id) THEN
        RAISE EXCEPTION 'sequence % has no steps', sequence_id USING ERRCODE = '23514',
            HINT = 'Add a step with ventros.add_sequence_step() first.';
    END IF;
    RETURN ventros.change_row(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, jsonb_build_object('status', status));
END
$$;
COMMENT ON FUNCTION ventros.set_sequence_status(uuid, integer, text) IS
    'Moves a sequence along its machine (VN002; archived is terminal); activation needs a step (23514); emits sequence.activated, .paused, .resumed or .archived';

CREATE FUNCTION ventros.require_draft_sequence(sequence_id uuid) RETURNS ventros.sequences
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.lock_draft(NULL::ventros.sequences, 'sequence', sequence_id) $$;
COMMENT ON FUNCTION ventros.require_draft_sequence(uuid) IS 'Locks a sequence and checks it is a draft (VN002 otherwise)';

CREATE FUNCTION ventros.add_sequence_step(sequence_id uuid, "order" integer, name text, message_template jsonb,
                                          delay_amount integer DEFAULT 0, delay_unit text DEFAULT 'minutes',
                                          conditions jsonb DEFAULT NULL)
RETURNS ventros.sequence_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.sequences := ventros.require_draft_sequence(sequence_id);
    result ventros.sequence_steps;
BEGIN
    PERFORM ventros.require_value(coalesce(delay_unit, 'minutes'), ARRAY['minutes', 'hours', 'days'], 'delay unit');
    INSERT INTO ventros.sequence_steps (sequence_id, "order", name, delay_amount, delay_unit, message_template, conditions)
    VALUES (sequence_id, "order", ventros.check_length(btrim(name), 200, 'step name'), coalesce(delay_amount, 0),
            coalesce(delay_unit, 'minutes'), message_template, conditions)
    RETURNING * INTO result;
    PERFORM ventros.emit('sequence.step_added', 'sequence', s.id,
        jsonb_build_object('step_id', result.id, 'order', result."order"), s.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'sequence % has a step % already', sequence_id, "order" USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_sequence_step(uuid, integer, text, jsonb, integer, text, jsonb) IS
    'Adds a step to a draft sequence (VN002 otherwise; template needs type and content or template_id, 23514); emits sequence_step.created and sequence.step_added';

CREATE FUNCTION ventros.update_sequence_step(sequence_step_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.sequence_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step ventros.sequence_steps := ventros.get_row(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id);
    s ventros.sequences := ventros.require_draft_sequence(step.sequence_id);
    result ventros.sequence_steps;
BEGIN
    result := ventros.apply_changes(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id, expected_version, changes,
                                    ARRAY['order', 'name', 'delay_amount', 'delay_unit', 'message_template', 'conditions']);
    PERFORM ventros.emit('sequence.step_updated', 'sequence', s.id,
        jsonb_build_object('step_id', result.id, 'fields', (SELECT jsonb_agg(k) FROM jsonb_object_keys(changes) k)), s.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.update_sequence_step(uuid, integer, jsonb) IS
    'Changes a step of a draft sequence (VN002 otherwise); emits sequence_step.updated and sequence.step_updated';

CREATE FUNCTION ventros.remove_sequence_step(sequence_step_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step ventros.sequence_steps := ventros.get_row(NULL::ventros.sequence_steps, 'sequence step', sequence_step_id);
    s ventros.sequences := ventros.require_draft_sequence(step.sequence_id);
BEGIN
    PERFORM ventros.delete_row('ventros.sequence_steps', 'sequence step', sequence_step_id, NULL);
    PERFORM ventros.emit('sequence.step_removed', 'sequence', s.id, jsonb_build_object('step_id', step.id, 'order', step."order"), s.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_sequence_step(uuid) IS
    'Removes a step of a draft sequence (VN002 otherwise); emits sequence_step.deleted and sequence.step_removed';

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
    first_step ventros.sequence_steps;
    result ventros.sequence_enrollments;
BEGIN
    IF s.status <> 'active' THEN
        RAISE EXCEPTION 'sequence % is %; contacts enroll in active sequences', sequence_id, s.status USING ERRCODE = 'VN002';
    END IF;
    PERFORM ventros.get_contact(contact_id);
    SELECT * INTO first_step FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id
    ORDER BY x."order" LIMIT 1;
    INSERT INTO ventros.sequence_enrollments (sequence_id, contact_id, next_scheduled_at)
    VALUES (sequence_id, contact_id, now() + ventros.sequence_step_delay(first_step))
    RETURNING * INTO result;
    UPDATE ventros.sequences x SET total_enrolled = x.total_enrolled + 1, active_count = x.active_count + 1, version = x.version
    WHERE x.tenant_id = s.tenant_id AND x.id = s.id;
    PERFORM ventros.emit('sequence.contact_enrolled', 'sequence', s.id,
        jsonb_build_object('enrollment_id', result.id, 'contact_id', contact_id), s.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'contact % is enrolled in sequence % already', contact_id, sequence_id USING ERRCODE = '23505';
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

-- Counters and business event of an enrollment that completed or exited while advancing.
CREATE FUNCTION ventros.sequence_enrollment_changed(e ventros.sequence_enrollments, from_status text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ventros.count_sequence_enrollment(e, from_status);
    PERFORM ventros.emit_enrollment_event('sequence', e);
END
$$;
COMMENT ON FUNCTION ventros.sequence_enrollment_changed(ventros.sequence_enrollments, text) IS
    'Keeps a sequence''s counters and emits the enrollment''s event after a status change';

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

CREATE FUNCTION ventros.advance_sequence_enrollment(sequence_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.sequence_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments := ventros.lock_active_enrollment(NULL::ventros.sequence_enrollments, 'sequence',
                                                                     sequence_enrollment_id);
    step ventros.sequence_steps;
    following ventros.sequence_steps;
    result ventros.sequence_enrollments;
    channel uuid;
    sent uuid;
BEGIN
    -- the step now due (its message goes out with source = sequence when the sender runs)
    SELECT * INTO step FROM ventros.sequence_steps x WHERE x.tenant_id = e.tenant_id AND x.sequence_id = e.sequence_id
      AND x."order" > e.current_step_order ORDER BY x."order" LIMIT 1;
    IF NOT FOUND THEN
        UPDATE ventros.sequence_enrollments x SET status = 'completed', completed_at = now, next_scheduled_at = NULL, version = x.version
        WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
        PERFORM ventros.sequence_enrollment_changed(result, 'active');
        RETURN result;
    END IF;
    -- Send on the channel of the contact's latest session (source sequence,
    -- its system agent); consent is checked by send_message: an opted-out
    -- contact leaves the sequence.  Without a session the event carries the
    -- template for a sender that knows the channel.
    SELECT s.channel_id INTO channel FROM ventros.sessions s
    WHERE s.tenant_id = e.tenant_id AND s.contact_id = e.contact_id ORDER BY s.started_at DESC LIMIT 1;
    IF channel IS NOT NULL AND step.message_template ? 'content' THEN
        BEGIN
            sent := (ventros.send_message(channel, e.contact_id, text => step.message_template->>'content', source => 'sequence',
                                          metadata => jsonb_build_object('sequence_id', e.sequence_id, 'step_order', step."order"))).id;
        EXCEPTION WHEN SQLSTATE 'VN010' THEN
            UPDATE ventros.sequence_enrollments x
            SET status = 'exited', exited_at = now, exit_reason = 'opted_out', next_scheduled_at = NULL, version = x.version
            WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
            PERFORM ventros.sequence_enrollment_changed(result, 'active');
            RETURN result;
        END;
    END IF;
    SELECT * INTO following FROM ventros.sequence_steps x WHERE x.tenant_id = e.tenant_id AND x.sequence_id = e.sequence_id
      AND x."order" > step."order" ORDER BY x."order" LIMIT 1;
    UPDATE ventros.sequence_enrollments x
    SET current_step_order = step."order",
        next_scheduled_at = now + coalesce(ventros.sequence_step_delay(following), '0'),
        version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.id RETURNING * INTO result;
    PERFORM ventros.emit('sequence.enrollment_advanced', 'sequence', e.sequence_id,
        jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', step."order",
                           'message_template', step.message_template, 'message_id', sent), NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.advance_sequence_enrollment(uuid, timestamptz) IS
    'Sends the due step of an active enrollment on the contact''s latest session channel (source sequence; an opted-out contact exits) and schedules the next, or completes; emits message.created, sequence.enrollment_advanced, sequence.enrollment_completed or sequence.enrollment_exited';

CREATE FUNCTION ventros.tick_sequences(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    n integer := 0;
BEGIN
    FOR e IN SELECT x.id FROM ventros.sequence_enrollments x
             JOIN ventros.sequences s ON s.tenant_id = x.tenant_id AND s.id = x.sequence_id AND s.status = 'active'
             WHERE x.tenant_id = ventros.require_tenant() AND x.status = 'active' AND x.next_scheduled_at <= tick_sequences.now
             ORDER BY x.next_scheduled_at LIMIT batch_size
             FOR UPDATE OF x SKIP LOCKED
    LOOP
        PERFORM ventros.advance_sequence_enrollment(e.id, now);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.tick_sequences(timestamptz, integer) IS
    'Advances the due enrollments of active sequences (SKIP LOCKED); returns how many';

CREATE FUNCTION ventros.exit_sequences_on_reply(contact_id uuid) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.sequence_enrollments;
    n integer := 0;
BEGIN
    FOR e IN
        UPDATE ventros.sequence_enrollments x
        SET status = 'exited', exited_at = now(), exit_reason = 'replied', next_scheduled_at = NULL, version = x.version
        FROM ventros.sequences s
        WHERE x.tenant_id = ventros.require_tenant() AND x.contact_id = exit_sequences_on_reply.contact_id
          AND x.status = 'active' AND s.tenant_id = x.tenant_id AND s.id = x.sequence_id AND s.exit_on_reply
        RETURNING x.*
    LOOP
        PERFORM ventros.sequence_enrollment_changed(e, 'active');
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.exit_sequences_on_reply(uuid) IS
    'An inbound reply: exits the contact''s active enrollments of sequences with exit_on_reply; emits sequence.enrollment_exited for each; returns how many';

CREATE FUNCTION ventros.sequence_stats(sequence_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('sequence_id', s.id, 'status', s.status, 'total_enrolled', s.total_enrolled,
                              'active', s.active_count, 'completed', s.completed_count, 'exited', s.exited_count,
                              'steps', (SELECT count(*) FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id))
    FROM ventros.get_sequence(sequence_id) s
$$;
COMMENT ON FUNCTION ventros.sequence_stats(uuid) IS 'Enrollment counts and step count of a sequence';

CREATE FUNCTION ventros.list_sequences(status text DEFAULT NULL) RETURNS SETOF ventros.sequences
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.sequences s
    WHERE s.tenant_id = ventros.require_tenant() AND (list_sequences.status IS NULL OR s.status = list_sequences.status)
    ORDER BY s.created_at, s.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_sequences(text) IS 'Sequences of the acting tenant, by status';

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

GRANT EXECUTE ON FUNCTION ventros.get_sequence(uuid, boolean), ventros.sequence_stats(uuid), ventros.list_sequences(text),
    ventros.list_sequence_enrollments(uuid, text, uuid, integer), ventros.sequence_step_delay(ventros.sequence_steps)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_sequence(text, text, jsonb, boolean, text, uuid),
    ventros.update_sequence(uuid, integer, jsonb), ventros.set_sequence_status(uuid, integer, text),
    ventros.require_draft_sequence(uuid), ventros.add_sequence_step(uuid, integer, text, jsonb, integer, text, jsonb),
    ventros.update_sequence_step(uuid, integer, jsonb), ventros.remove_sequence_step(uuid),
    ventros.enroll_in_sequence(uuid, uuid), ventros.sequence_enrollment_changed(ventros.sequence_enrollments, text),
    ventros.count_sequence_enrollment(ventros.sequence_enrollments, text),
    ventros.set_sequence_enrollment_status(uuid, integer, text, text), ventros.advance_sequence_enrollment(uuid, timestamptz),
    ventros.exit_sequences_on_reply(uuid)
    TO ventros_agent;
-- The scheduler's (pg_cron runs it as a platform administrator), never a tenant's:
-- its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_sequences(timestamptz, integer) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.delete_sequence(uuid, integer) TO ventros_admin;

-- Steps change only while their sequence is a draft, on every path (commands, direct
-- writes, workers).
SELECT ventros.register_parent_guard('sequence_step', 'sequence_id', 'sequence', '{draft}', 'steps change only in draft');

-- Direct writes of sequence, sequence_step, sequence_enrollment by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('sequence', inserts => '{create_sequence}', updates => '{update_sequence,set_sequence_status}', deletes => '{delete_sequence}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,trigger_type,trigger_data,exit_on_reply}');
SELECT ventros.register_writes('sequence_step', inserts => '{add_sequence_step}', updates => '{update_sequence_step}', deletes => '{remove_sequence_step}');
SELECT ventros.register_writes('sequence_enrollment', inserts => '{enroll_in_sequence}', updates => '{set_sequence_enrollment_status,advance_sequence_enrollment}', deletes => '{}');
