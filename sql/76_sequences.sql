-- Aggregate 22, Sequence (automation): a drip sequence of timed message
-- steps for enrolled contacts.  draft | paused -> active (needs a step),
-- active -> paused, draft | active | paused -> archived (terminal: the
-- original could reactivate archived sequences).  Steps change only in
-- draft.  Enrollments follow the campaign machine and the step engine of
-- sql/74_enrollments.sql; enrolling, advancing, ending and exiting them are
-- in sql/76_sequences_enrollments.sql.  An active sequence with a trigger other than
-- manual owns an automation rule that enrolls the contacts the trigger
-- names (ventros.sync_sequence_rule; run by the automation executor after
-- the triggering write commits).  An inbound reply exits the active
-- enrollments of sequences with exit_on_reply in the reply's own
-- transaction (ventros.journey_reply); a pipeline status of exit_on exits
-- in the status change's, a tag of exit_on in the tag's and an opt-out in
-- the consent's (sql/74_enrollments.sql, triggers); before each step the
-- contact's opt-out, exit tags and exit statuses are checked again, the
-- step's conditions evaluated and the send window (the contact's timezone,
-- else the tenant's) respected.  Steps
-- and enrollments are child aggregates; the domain's events are emitted on
-- the sequence.

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
    exit_on         jsonb       NOT NULL DEFAULT '{}',
    send_window     jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT sequences_exit_on_object CHECK (jsonb_typeof(exit_on) = 'object'),
    CONSTRAINT sequences_send_window CHECK (send_window IS NULL OR ventros.automation_condition_valid(jsonb_build_object('time_window', send_window))),
    CONSTRAINT sequences_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT sequences_status_known CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    CONSTRAINT sequences_trigger_known CHECK (trigger_type IN ('manual', 'tag_added', 'list_joined', 'form_submit', 'pipeline_entered',
                                                               'contact_created', 'custom')),
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
                                                                          'pipeline_entered', 'contact_created', 'custom'],
                                  'sequence trigger');
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
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sequences;
BEGIN
    result := ventros.apply_changes(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, changes,
                                    ARRAY['name', 'description', 'trigger_type', 'trigger_data', 'exit_on_reply', 'exit_on',
                                          'send_window']);
    PERFORM ventros.sync_sequence_rule(result);
    RETURN result;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'invalid sequence: %', SQLERRM USING ERRCODE = '23514';
END
$$;
COMMENT ON FUNCTION ventros.update_sequence(uuid, integer, jsonb) IS
    'Changes a sequence''s name, description, trigger, exit_on_reply, exit_on ({"tags": [...], "status_ids": [...]}) or send_window ({"from", "to", "weekdays"}; 23514); keeps its enrollment rule; emits sequence.updated';

CREATE FUNCTION ventros.delete_sequence(sequence_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule uuid;
BEGIN
    PERFORM ventros.delete_row('ventros.sequences', 'sequence', sequence_id, expected_version);
    -- the rule that enrolled contacts in it goes with it (ventros.sync_sequence_rule)
    FOR rule IN SELECT a.id FROM ventros.automations a
                WHERE a.tenant_id = ventros.require_tenant() AND a.trigger_config->>'sequence_id' = delete_sequence.sequence_id::text
                  AND a.deleted_at IS NULL LOOP
        PERFORM ventros.delete_automation(rule);
    END LOOP;
END
$$;
COMMENT ON FUNCTION ventros.delete_sequence(uuid, integer) IS
    'Soft-deletes a sequence and the automation rule that enrolled contacts in it; emits sequence.deleted and automation.deleted';

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
    s := ventros.change_row(NULL::ventros.sequences, 'sequence', sequence_id, expected_version, jsonb_build_object('status', status));
    PERFORM ventros.sync_sequence_rule(s);
    RETURN s;
END
$$;
COMMENT ON FUNCTION ventros.set_sequence_status(uuid, integer, text) IS
    'Moves a sequence along its machine (VN002; archived is terminal); activation needs a step (23514); enables its enrollment rule while active; emits sequence.activated, .paused, .resumed or .archived';

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

CREATE FUNCTION ventros.sequence_stats(sequence_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('sequence_id', s.id, 'status', s.status, 'total_enrolled', s.total_enrolled,
                              'active', s.active_count, 'completed', s.completed_count, 'exited', s.exited_count,
                              'steps', (SELECT count(*) FROM ventros.sequence_steps x WHERE x.tenant_id = s.tenant_id AND x.sequence_id = s.id))
    FROM ventros.get_row(NULL::ventros.sequences, 'sequence', sequence_id) s
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

-- ---- automatic enrollment: the sequence's own automation rule ----------------

-- sequence_trigger_rule: the trigger and conditions of the automation rule
-- that enrolls contacts in a sequence, from its trigger_type and
-- trigger_data (plus trigger_data.conditions, more rule conditions).
CREATE FUNCTION ventros.sequence_trigger_rule(s ventros.sequences, OUT trigger text, OUT conditions jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d jsonb := coalesce(s.trigger_data, '{}');
    what text;
BEGIN
    what := CASE s.trigger_type WHEN 'tag_added' THEN 'tag' WHEN 'list_joined' THEN 'list_id' WHEN 'custom' THEN 'event'
                                WHEN 'pipeline_entered' THEN CASE WHEN d ? 'pipeline_id' THEN 'pipeline_id' ELSE 'status_id' END END;
    IF what IS NOT NULL AND coalesce(d->>what, '') = '' THEN
        RAISE EXCEPTION 'a % sequence needs trigger_data.%', s.trigger_type, what USING ERRCODE = '22023';
    END IF;
    conditions := '[]';
    CASE s.trigger_type
    WHEN 'tag_added' THEN
        trigger := 'contact.updated';
        conditions := jsonb_build_array(
            jsonb_build_object('field', 'payload.changed.tags', 'operator', 'contains', 'value', d->'tag'),
            jsonb_build_object('field', 'payload.previous.tags', 'operator', 'not_contains', 'value', d->'tag'));
    WHEN 'list_joined' THEN
        trigger := 'contact_list.contact_added';
        conditions := jsonb_build_array(jsonb_build_object('field', 'event.aggregate_id', 'operator', 'eq', 'value', d->'list_id'));
    WHEN 'pipeline_entered' THEN
        trigger := 'contact.pipeline_status_changed';
        conditions := jsonb_build_array(jsonb_build_object('field', 'payload.' || what, 'operator', 'eq', 'value', d->what))
            || CASE WHEN what = 'pipeline_id'
                    THEN jsonb_build_array(jsonb_build_object('field', 'payload.previous_status_id', 'operator', 'is_null'))
                    ELSE '[]' END;
    WHEN 'contact_created' THEN
        trigger := 'contact.created';
    WHEN 'form_submit' THEN
        trigger := 'custom.' || coalesce(d->>'event', 'form_submitted');
        IF d ? 'form_id' THEN
            conditions := jsonb_build_array(jsonb_build_object('field', 'payload.form_id', 'operator', 'eq', 'value', d->'form_id'));
        END IF;
    WHEN 'custom' THEN
        trigger := 'custom.' || (d->>'event');
    ELSE
        trigger := NULL;    -- manual: no rule
    END CASE;
    IF jsonb_typeof(d->'conditions') = 'array' THEN
        conditions := conditions || (d->'conditions');
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.sequence_trigger_rule(ventros.sequences) IS
    'The trigger and conditions of the rule enrolling contacts in a sequence: tag_added (contact.updated adding trigger_data.tag), list_joined (contact_list.contact_added of list_id), pipeline_entered (contact.pipeline_status_changed to status_id, or into pipeline_id), contact_created, form_submit (custom.form_submitted or custom.<event>, form_id), custom (custom.<event>); 22023 when the trigger_data it needs is missing';

-- sync_sequence_rule: an active sequence with a trigger owns one enabled
-- automation rule (trigger_config.sequence_id) whose action enrolls the
-- event's contact unless it is enrolled; otherwise that rule is disabled.
-- Made and changed through the automation commands, so the executor runs
-- it after the triggering write commits, once per event (docs/automation.md).
CREATE FUNCTION ventros.sync_sequence_rule(s ventros.sequences) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule ventros.automations;
    t record;
    actions jsonb := jsonb_build_array(jsonb_build_object('type', 'enroll_sequence',
                                                          'params', jsonb_build_object('sequence_id', s.id, 'unless_enrolled', true)));
BEGIN
    SELECT * INTO rule FROM ventros.automations a
    WHERE a.tenant_id = s.tenant_id AND a.trigger_config->>'sequence_id' = s.id::text AND a.deleted_at IS NULL
    ORDER BY a.created_at LIMIT 1
    FOR UPDATE;
    IF s.status <> 'active' OR s.trigger_type = 'manual' OR s.deleted_at IS NOT NULL THEN
        IF rule.id IS NOT NULL AND rule.enabled THEN
            PERFORM ventros.set_automation_enabled(rule.id, rule.version, false);
        END IF;
        RETURN;
    END IF;
    t := ventros.sequence_trigger_rule(s);
    IF rule.id IS NULL THEN
        PERFORM ventros.create_automation(left('sequence ' || s.name, 200), t.trigger, actions, t.conditions,
                                          automation_type => 'event', project_id => s.project_id,
                                          description => 'Enrolls contacts in the sequence (kept by the sequence)',
                                          trigger_config => jsonb_build_object('sequence_id', s.id));
    ELSIF NOT rule.enabled OR rule.trigger <> t.trigger OR rule.conditions <> t.conditions OR rule.actions <> actions THEN
        PERFORM ventros.update_automation(rule.id, rule.version,
            jsonb_build_object('trigger', t.trigger, 'conditions', t.conditions, 'actions', actions, 'enabled', true));
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.sync_sequence_rule(ventros.sequences) IS
    'Keeps the automation rule that enrolls contacts in a sequence: enabled with the trigger''s event and conditions while the sequence is active and not manual, disabled otherwise; emits automation.created, .updated, .enabled or .disabled';

GRANT EXECUTE ON FUNCTION ventros.get_sequence(uuid, boolean), ventros.sequence_stats(uuid), ventros.list_sequences(text)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_sequence(text, text, jsonb, boolean, text, uuid),
    ventros.update_sequence(uuid, integer, jsonb), ventros.set_sequence_status(uuid, integer, text),
    ventros.require_draft_sequence(uuid), ventros.add_sequence_step(uuid, integer, text, jsonb, integer, text, jsonb),
    ventros.update_sequence_step(uuid, integer, jsonb), ventros.remove_sequence_step(uuid),
    ventros.sync_sequence_rule(ventros.sequences) TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.sequence_trigger_rule(ventros.sequences) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.delete_sequence(uuid, integer) TO ventros_admin;

-- Steps change only while their sequence is a draft, on every path (commands, direct
-- writes, workers).
SELECT ventros.register_parent_guard('sequence_step', 'sequence_id', 'sequence', '{draft}', 'steps change only in draft');

-- Direct writes of sequence and sequence_step by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('sequence', inserts => '{create_sequence}', updates => '{update_sequence,set_sequence_status}', deletes => '{delete_sequence}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,trigger_type,trigger_data,exit_on_reply}');
SELECT ventros.register_writes('sequence_step', inserts => '{add_sequence_step}', updates => '{update_sequence_step}', deletes => '{remove_sequence_step}');
