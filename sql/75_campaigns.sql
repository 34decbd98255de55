-- Aggregate 21, Campaign (automation): a multi-step marketing journey.
-- Contacts are enrolled and advance through steps (broadcast, sequence,
-- delay, condition, wait).  Steps and enrollments are child aggregates
-- (campaign_step, campaign_enrollment) with their own versions; the domain's
-- events (campaign.step_added, campaign.enrollment_paused, ...) are emitted
-- on the campaign by the commands.  Steps change only while the campaign is
-- a draft, checked under a lock of the campaign row.  The enrollment machine:
-- active <-> paused, active -> completed, active | paused -> exited; at most
-- one active or paused enrollment per (campaign, contact).
-- ventros.tick_campaigns runs the due enrollments' steps with the step engine
-- of sql/74_enrollments.sql: a broadcast step sends the broadcast to the
-- contact, a sequence step enrolls it, a condition step goes on, skips,
-- jumps or exits, a wait or delay step is due again after its minutes; a
-- step whose own conditions do not hold is passed over.  contacts_reached
-- counts an enrollment when a broadcast or sequence step first acts on its
-- contact; conversions (a reply, a tracking conversion, the campaign's
-- conversion_status_id reached) are counted once per enrollment by
-- ventros.journey_converted, in the transaction that records them.

CREATE TABLE ventros.campaigns (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         text        NOT NULL,
    version           integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    project_id        uuid        NOT NULL,
    name              text        NOT NULL,
    description       text,
    status            text        NOT NULL DEFAULT 'draft',
    goal_type         text        NOT NULL DEFAULT 'reach_contacts',
    goal_value        integer     NOT NULL DEFAULT 0,
    contacts_reached  integer     NOT NULL DEFAULT 0,
    conversions_count integer     NOT NULL DEFAULT 0,
    start_date        timestamptz,
    end_date          timestamptz,
    conversion_status_id uuid,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    -- the conversion status is one of the tenant's pipeline statuses
    FOREIGN KEY (tenant_id, conversion_status_id) REFERENCES ventros.pipeline_statuses (tenant_id, id)
        ON DELETE SET NULL (conversion_status_id),
    CONSTRAINT campaigns_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT campaigns_status_known CHECK (status IN ('draft', 'scheduled', 'active', 'paused', 'completed', 'archived')),
    CONSTRAINT campaigns_goal_type_known CHECK (goal_type IN ('reach_contacts', 'conversions', 'engagement')),
    CONSTRAINT campaigns_counts_not_negative CHECK (goal_value >= 0 AND contacts_reached >= 0 AND conversions_count >= 0),
    CONSTRAINT campaigns_dates_order CHECK (end_date > start_date),
    CONSTRAINT campaigns_scheduled_start CHECK (status <> 'scheduled' OR start_date IS NOT NULL)
);
CREATE INDEX campaigns_by_status ON ventros.campaigns (tenant_id, status, start_date) WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.campaigns IS 'Campaign: a multi-step marketing journey';

CREATE TABLE ventros.campaign_steps (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   text        NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    campaign_id uuid        NOT NULL,
    "order"     integer     NOT NULL,
    name        text        NOT NULL,
    type        text        NOT NULL,
    config      jsonb       NOT NULL DEFAULT '{}',
    conditions  jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES ventros.campaigns (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT campaign_steps_order_not_negative CHECK ("order" >= 0),
    CONSTRAINT campaign_steps_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT campaign_steps_type_known CHECK (type IN ('broadcast', 'sequence', 'delay', 'condition', 'wait')),
    CONSTRAINT campaign_steps_config_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT campaign_steps_config_complete CHECK (CASE type
        WHEN 'broadcast' THEN config ? 'broadcast_id'
        WHEN 'sequence' THEN config ? 'sequence_id'
        WHEN 'delay' THEN coalesce(jsonb_typeof(config->'delay_minutes') = 'number' AND (config->>'delay_minutes')::numeric >= 0, false)
        ELSE true END)
);
CREATE UNIQUE INDEX campaign_steps_unique_order ON ventros.campaign_steps (tenant_id, campaign_id, "order") WHERE deleted_at IS NULL;
COMMENT ON TABLE ventros.campaign_steps IS 'A step of a campaign';

CREATE TABLE ventros.campaign_enrollments (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    campaign_id        uuid        NOT NULL,
    contact_id         uuid        NOT NULL,
    status             text        NOT NULL DEFAULT 'active',
    current_step_order integer     NOT NULL DEFAULT -1,
    next_scheduled_at  timestamptz,
    exited_at          timestamptz,
    exit_reason        text,
    completed_at       timestamptz,
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    reached_at         timestamptz,
    converted_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES ventros.campaigns (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES ventros.contacts (tenant_id, id),
    CONSTRAINT campaign_enrollments_status_known CHECK (status IN ('active', 'paused', 'completed', 'exited')),
    CONSTRAINT campaign_enrollments_exit_reason CHECK (length(exit_reason) <= 500)
);
CREATE UNIQUE INDEX campaign_enrollments_one_current ON ventros.campaign_enrollments (tenant_id, campaign_id, contact_id)
    WHERE status IN ('active', 'paused') AND deleted_at IS NULL;
CREATE INDEX campaign_enrollments_due ON ventros.campaign_enrollments (tenant_id, next_scheduled_at)
    WHERE status = 'active' AND deleted_at IS NULL;
CREATE INDEX campaign_enrollments_by_contact ON ventros.campaign_enrollments (tenant_id, contact_id) WHERE converted_at IS NULL;
COMMENT ON TABLE ventros.campaign_enrollments IS 'A contact''s way through a campaign';

SELECT ventros.register_aggregate('campaign', 'ventros.campaigns', 'automation',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "draft"},
        {"from": "draft", "to": "scheduled", "event": "campaign.scheduled", "description": "A campaign was scheduled to start."},
        {"from": "draft", "to": "active", "event": "campaign.activated", "description": "A campaign was activated."},
        {"from": "scheduled", "to": "active", "event": "campaign.activated"},
        {"from": "active", "to": "paused", "event": "campaign.paused", "description": "A campaign was paused."},
        {"from": "paused", "to": "active", "event": "campaign.resumed", "description": "A paused campaign was resumed."},
        {"from": "active", "to": "completed", "event": "campaign.completed", "description": "A campaign was completed."},
        {"from": "draft", "to": "archived", "event": "campaign.archived", "description": "A campaign was archived."},
        {"from": "scheduled", "to": "archived", "event": "campaign.archived"},
        {"from": "active", "to": "archived", "event": "campaign.archived"},
        {"from": "paused", "to": "archived", "event": "campaign.archived"},
        {"from": "completed", "to": "archived", "event": "campaign.archived"}
    ]',
    description => 'A multi-step marketing journey');
SELECT ventros.register_quiet_columns('campaign', '{contacts_reached,conversions_count}');
SELECT ventros.register_aggregate('campaign_step', 'ventros.campaign_steps', 'automation',
    description => 'A step of a campaign (child of campaign)');
SELECT ventros.register_enrollment('campaign', 'ventros.campaign_enrollments');
SELECT ventros.register_event_type('campaign.step_added', 'A step was added to a draft campaign.');
SELECT ventros.register_event_type('campaign.step_removed', 'A step was removed from a draft campaign.');
SELECT ventros.register_event_type('campaign.contact_converted',
                                   'A contact of a campaign converted (a reply, a tracking conversion, its conversion status).');
SELECT ventros.register_quiet_columns('campaign_enrollment', '{reached_at,converted_at}');

CREATE FUNCTION ventros.get_campaign(campaign_id uuid, for_update boolean DEFAULT false) RETURNS ventros.campaigns
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN for_update THEN ventros.lock_row(NULL::ventros.campaigns, 'campaign', campaign_id)
                ELSE ventros.get_row(NULL::ventros.campaigns, 'campaign', campaign_id) END
$$;
COMMENT ON FUNCTION ventros.get_campaign(uuid, boolean) IS 'A live campaign (locked when for_update), or P0002';

CREATE FUNCTION ventros.create_campaign(name text, goal_type text DEFAULT 'reach_contacts', goal_value integer DEFAULT 0,
                                        description text DEFAULT NULL, start_date timestamptz DEFAULT NULL,
                                        end_date timestamptz DEFAULT NULL, project_id uuid DEFAULT NULL)
RETURNS ventros.campaigns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.campaigns;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'campaign name must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.require_value(coalesce(goal_type, 'reach_contacts'), ARRAY['reach_contacts', 'conversions', 'engagement'], 'goal type');
    INSERT INTO ventros.campaigns (project_id, name, description, goal_type, goal_value, start_date, end_date)
    VALUES (coalesce(project_id, ventros.default_project()), ventros.check_length(btrim(name), 200, 'campaign name'),
            description, coalesce(goal_type, 'reach_contacts'), coalesce(goal_value, 0), start_date, end_date)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_campaign(text, text, integer, text, timestamptz, timestamptz, uuid) IS
    'Creates a draft campaign; emits campaign.created';

CREATE FUNCTION ventros.update_campaign(campaign_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.campaigns
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.apply_changes(NULL::ventros.campaigns, 'campaign', campaign_id, expected_version, changes,
                                 ARRAY['name', 'description', 'goal_type', 'goal_value', 'start_date', 'end_date',
                                       'conversion_status_id'])
$$;
COMMENT ON FUNCTION ventros.update_campaign(uuid, integer, jsonb) IS
    'Changes name, description, goal, dates or conversion_status_id (the pipeline status that counts as a conversion); emits campaign.updated';

CREATE FUNCTION ventros.delete_campaign(campaign_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.campaigns', 'campaign', campaign_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_campaign(uuid, integer) IS 'Soft-deletes a campaign; emits campaign.deleted';

-- set_campaign_status: the one entry for every campaign transition, with the
-- guards the state machine cannot express (steps, start date).
CREATE FUNCTION ventros.set_campaign_status(campaign_id uuid, expected_version integer, status text)
RETURNS ventros.campaigns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.get_campaign(campaign_id, true);
BEGIN
    PERFORM ventros.require_value(status, ARRAY['draft', 'scheduled', 'active', 'paused', 'completed', 'archived'], 'campaign status');
    IF status IN ('scheduled', 'active') AND c.status IN ('draft', 'scheduled') AND NOT EXISTS (
        SELECT 1 FROM ventros.campaign_steps s WHERE s.tenant_id = c.tenant_id AND s.campaign_id = c.id) THEN
        RAISE EXCEPTION 'campaign % has no steps', campaign_id USING ERRCODE = '23514',
            HINT = 'Add a step with ventros.add_campaign_step() first.';
    END IF;
    IF status = 'scheduled' AND (c.start_date IS NULL OR c.start_date <= now()) THEN
        RAISE EXCEPTION 'campaign % needs a future start date to be scheduled', campaign_id USING ERRCODE = '23514';
    END IF;
    RETURN ventros.change_row(NULL::ventros.campaigns, 'campaign', campaign_id, expected_version, jsonb_build_object('status', status));
END
$$;
COMMENT ON FUNCTION ventros.set_campaign_status(uuid, integer, text) IS
    'Moves a campaign along its machine (VN002); scheduling and activation need a step (23514), scheduling a future start date; emits campaign.scheduled, .activated, .paused, .resumed, .completed or .archived';

CREATE FUNCTION ventros.add_campaign_step(campaign_id uuid, "order" integer, name text, type text, config jsonb DEFAULT '{}',
                                          conditions jsonb DEFAULT NULL)
RETURNS ventros.campaign_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.lock_draft(NULL::ventros.campaigns, 'campaign', campaign_id);
    result ventros.campaign_steps;
BEGIN
    PERFORM ventros.require_value(type, ARRAY['broadcast', 'sequence', 'delay', 'condition', 'wait'], 'campaign step type');
    INSERT INTO ventros.campaign_steps (campaign_id, "order", name, type, config, conditions)
    VALUES (campaign_id, "order", ventros.check_length(btrim(name), 200, 'step name'), type,
            coalesce(ventros.require_json(config, 'object', 'step config'), '{}'), conditions)
    RETURNING * INTO result;
    PERFORM ventros.emit('campaign.step_added', 'campaign', c.id,
        jsonb_build_object('step_id', result.id, 'order', result."order", 'type', result.type), c.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'campaign % has a step % already', campaign_id, "order" USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.add_campaign_step(uuid, integer, text, text, jsonb, jsonb) IS
    'Adds a step to a draft campaign (VN002 otherwise; order unique, 23505; config per type, 23514); emits campaign_step.created and campaign.step_added';

CREATE FUNCTION ventros.update_campaign_step(campaign_step_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.campaign_steps
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.campaign_steps := ventros.get_row(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id);
BEGIN
    PERFORM ventros.lock_draft(NULL::ventros.campaigns, 'campaign', s.campaign_id);
    RETURN ventros.apply_changes(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id, expected_version, changes,
                                 ARRAY['order', 'name', 'type', 'config', 'conditions']);
END
$$;
COMMENT ON FUNCTION ventros.update_campaign_step(uuid, integer, jsonb) IS
    'Changes a step of a draft campaign (VN002 otherwise); emits campaign_step.updated';

CREATE FUNCTION ventros.remove_campaign_step(campaign_step_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s ventros.campaign_steps := ventros.get_row(NULL::ventros.campaign_steps, 'campaign step', campaign_step_id);
    c ventros.campaigns := ventros.lock_draft(NULL::ventros.campaigns, 'campaign', s.campaign_id);
BEGIN
    PERFORM ventros.delete_row('ventros.campaign_steps', 'campaign step', campaign_step_id, NULL);
    PERFORM ventros.emit('campaign.step_removed', 'campaign', c.id,
                         jsonb_build_object('step_id', s.id, 'order', s."order"), c.version);
END
$$;
COMMENT ON FUNCTION ventros.remove_campaign_step(uuid) IS
    'Removes a step of a draft campaign (VN002 otherwise); emits campaign_step.deleted and campaign.step_removed';

CREATE FUNCTION ventros.enroll_in_campaign(campaign_id uuid, contact_id uuid)
RETURNS ventros.campaign_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ventros.campaigns := ventros.get_campaign(campaign_id);
BEGIN
    IF c.status NOT IN ('scheduled', 'active') THEN
        RAISE EXCEPTION 'campaign % is %; contacts enroll in scheduled or active campaigns', campaign_id, c.status
            USING ERRCODE = 'VN002';
    END IF;
    RETURN ventros.enroll_contact(NULL::ventros.campaign_enrollments, 'campaign', c.id, c.version, contact_id,
                                  greatest(now(), coalesce(c.start_date, now())), NULL);
END
$$;
COMMENT ON FUNCTION ventros.enroll_in_campaign(uuid, uuid) IS
    'Enrolls a contact in a scheduled or active campaign (VN002 otherwise; once at a time, 23505), due at the start; emits campaign_enrollment.created and campaign.contact_enrolled';

-- set_campaign_enrollment_status: pause, resume or exit one enrollment.
CREATE FUNCTION ventros.set_campaign_enrollment_status(campaign_enrollment_id uuid, expected_version integer, status text,
                                                       exit_reason text DEFAULT NULL)
RETURNS ventros.campaign_enrollments
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (ventros.set_enrollment_status(NULL::ventros.campaign_enrollments, 'campaign', campaign_enrollment_id,
                                          expected_version, status, exit_reason)).after
$$;
COMMENT ON FUNCTION ventros.set_campaign_enrollment_status(uuid, integer, text, text) IS
    'Pauses, resumes or exits an enrollment (VN002 when the machine refuses); emits campaign_enrollment.updated and campaign.enrollment_paused, _resumed or _exited';

-- campaign_reached: the first broadcast or sequence step that acts on an
-- enrollment's contact counts it in contacts_reached.
CREATE FUNCTION ventros.campaign_reached(e ventros.campaign_enrollments, at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ventros.campaign_enrollments x SET reached_at = at, version = x.version
    WHERE x.tenant_id = e.tenant_id AND x.id = e.id AND x.reached_at IS NULL;
    IF FOUND THEN
        UPDATE ventros.campaigns c SET contacts_reached = c.contacts_reached + 1, version = c.version
        WHERE c.tenant_id = e.tenant_id AND c.id = e.campaign_id;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.campaign_reached(ventros.campaign_enrollments, timestamptz) IS
    'Counts an enrollment''s contact in its campaign''s contacts_reached, once';

-- execute_campaign_step: one step for one enrollment.  Returns what happened:
-- {"outcome": "done" | "skipped" | "wait" | "exit" | "goto", "minutes",
-- "to" (the order a goto or skip goes on before), "message_id"}.
--   broadcast  config.broadcast_id: the broadcast's message to the contact;
--   sequence   config.sequence_id: enrolls the contact unless enrolled;
--   condition  config.conditions (automation rule conditions on the contact)
--              hold: go on; else config.else: "exit" (default), "continue",
--              "skip" (the next step), or {"goto": order};
--   wait, delay  config.minutes or config.delay_minutes, then go on.
CREATE FUNCTION ventros.execute_campaign_step(e ventros.campaign_enrollments, step ventros.campaign_steps, at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg jsonb := step.config;
    x ventros.broadcast_executions;
    following ventros.campaign_steps;
    minutes numeric;
BEGIN
    IF NOT ventros.journey_conditions_hold(step.conditions, e.contact_id, at) THEN
        RETURN '{"outcome": "skipped"}';
    END IF;
    CASE step.type
    WHEN 'broadcast' THEN
        x := ventros.broadcast_to_contact((cfg->>'broadcast_id')::uuid, e.contact_id,
                                          jsonb_build_object('campaign_id', e.campaign_id, 'step_order', step."order"));
        PERFORM ventros.campaign_reached(e, at);
        RETURN jsonb_build_object('outcome', 'done', 'message_id', x.message_id, 'send', x.status);
    WHEN 'sequence' THEN
        IF NOT EXISTS (SELECT 1 FROM ventros.sequence_enrollments s
                       WHERE s.tenant_id = e.tenant_id AND s.sequence_id = (cfg->>'sequence_id')::uuid
                         AND s.contact_id = e.contact_id AND s.status IN ('active', 'paused')) THEN
            PERFORM ventros.enroll_in_sequence((cfg->>'sequence_id')::uuid, e.contact_id);
        END IF;
        PERFORM ventros.campaign_reached(e, at);
        RETURN '{"outcome": "done"}';
    WHEN 'condition' THEN
        IF ventros.journey_conditions_hold(coalesce(cfg->'conditions', '[]'), e.contact_id, at) THEN
            RETURN '{"outcome": "done", "held": true}';
        ELSIF cfg->>'else' = 'continue' THEN
            RETURN '{"outcome": "done", "held": false}';
        ELSIF cfg->>'else' = 'skip' THEN
            following := ventros.next_step(NULL::ventros.campaign_steps, 'campaign', e.campaign_id, step."order");
            RETURN jsonb_build_object('outcome', 'goto', 'held', false, 'to', coalesce(following."order" + 1, step."order" + 1));
        ELSIF jsonb_typeof(cfg->'else'->'goto') = 'number' THEN
            RETURN jsonb_build_object('outcome', 'goto', 'held', false, 'to', (cfg->'else'->>'goto')::integer);
        END IF;
        RETURN '{"outcome": "exit", "held": false}';
    ELSE
        minutes := coalesce((cfg->>'minutes')::numeric, (cfg->>'delay_minutes')::numeric, 0);
        RETURN jsonb_build_object('outcome', CASE WHEN minutes > 0 THEN 'wait' ELSE 'done' END, 'minutes', minutes);
    END CASE;
END
$$;
COMMENT ON FUNCTION ventros.execute_campaign_step(ventros.campaign_enrollments, ventros.campaign_steps, timestamptz) IS
    'Runs one campaign step for an enrollment (broadcast to the contact, sequence enrollment, condition, wait or delay; passed over when its conditions do not hold); returns the outcome';

-- advance_campaign_enrollment: the enrollment's steps from the next one on,
-- until a wait (due again after its minutes), an exit, or the end.
CREATE FUNCTION ventros.advance_campaign_enrollment(campaign_enrollment_id uuid, now timestamptz DEFAULT now())
RETURNS ventros.campaign_enrollments
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e ventros.campaign_enrollments := ventros.lock_active_enrollment(NULL::ventros.campaign_enrollments, 'campaign',
                                                                     campaign_enrollment_id);
    step ventros.campaign_steps;
    after_order integer := e.current_step_order;
    r jsonb;
BEGIN
    FOR n IN 1..100 LOOP
        step := ventros.next_step(NULL::ventros.campaign_steps, 'campaign', e.campaign_id, after_order);
        IF step.id IS NULL THEN
            RETURN ventros.finish_enrollment(NULL::ventros.campaign_enrollments, 'campaign', e.id, 'completed', NULL, now);
        END IF;
        r := ventros.execute_campaign_step(e, step, now);
        PERFORM ventros.emit('campaign.enrollment_advanced', 'campaign', e.campaign_id,
            jsonb_build_object('enrollment_id', e.id, 'contact_id', e.contact_id, 'step_order', step."order",
                               'step_type', step.type) || r, NULL);
        CASE r->>'outcome'
        WHEN 'exit' THEN
            RETURN ventros.finish_enrollment(NULL::ventros.campaign_enrollments, 'campaign', e.id, 'exited', 'condition', now);
        WHEN 'wait' THEN
            RETURN ventros.set_enrollment_due(NULL::ventros.campaign_enrollments, 'campaign', e.id, step."order",
                                               now + make_interval(secs => (r->>'minutes')::numeric * 60));
        WHEN 'goto' THEN
            after_order := (r->>'to')::integer - 1;
        ELSE
            after_order := step."order";
        END CASE;
    END LOOP;
    RAISE EXCEPTION 'campaign % ran 100 steps in one advance of enrollment %: a condition step loops', e.campaign_id, e.id
        USING ERRCODE = '54000', HINT = 'Put a wait step in the loop, or change the goto.';
END
$$;
COMMENT ON FUNCTION ventros.advance_campaign_enrollment(uuid, timestamptz) IS
    'Runs an active enrollment''s steps from the next one on until a wait step (due again after its minutes), a condition''s exit, or the end (completed); more than 100 steps at once is a loop (54000); emits campaign.enrollment_advanced per step, campaign.enrollment_completed or _exited';

CREATE FUNCTION ventros.tick_campaigns(now timestamptz DEFAULT now(), batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- scheduled campaigns whose start has come
    UPDATE ventros.campaigns c SET status = 'active', version = c.version
    WHERE c.tenant_id = ventros.require_tenant() AND c.status = 'scheduled' AND c.start_date <= tick_campaigns.now;
    RETURN ventros.tick_enrollments('campaign', now, batch_size);
END
$$;
COMMENT ON FUNCTION ventros.tick_campaigns(timestamptz, integer) IS
    'Starts due scheduled campaigns and advances due enrollments of active campaigns (ventros.tick_enrollments); returns how many advanced';

CREATE FUNCTION ventros.campaign_stats(campaign_id uuid) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('campaign_id', c.id, 'status', c.status, 'goal_type', c.goal_type, 'goal_value', c.goal_value,
        'contacts_reached', c.contacts_reached, 'conversions', c.conversions_count,
        'progress', CASE WHEN c.goal_value > 0 THEN round(100.0 * CASE c.goal_type WHEN 'conversions' THEN c.conversions_count
                                                                     ELSE c.contacts_reached END / c.goal_value, 1) END,
        'enrollments', (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}')
                        FROM (SELECT e.status, count(*) AS n FROM ventros.campaign_enrollments e
                              WHERE e.tenant_id = c.tenant_id AND e.campaign_id = c.id GROUP BY e.status) s))
    FROM ventros.get_row(NULL::ventros.campaigns, 'campaign', campaign_id) c
$$;
COMMENT ON FUNCTION ventros.campaign_stats(uuid) IS 'Progress of a campaign against its goal and its enrollments per status';

CREATE FUNCTION ventros.list_campaigns(status text DEFAULT NULL) RETURNS SETOF ventros.campaigns
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.campaigns c
    WHERE c.tenant_id = ventros.require_tenant() AND (list_campaigns.status IS NULL OR c.status = list_campaigns.status)
    ORDER BY c.created_at, c.id
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.list_campaigns(text) IS 'Campaigns of the acting tenant, by status';

CREATE FUNCTION ventros.list_campaign_enrollments(campaign_id uuid, status text DEFAULT NULL, due_before timestamptz DEFAULT NULL,
                                                  after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.campaign_enrollments
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM ventros.campaign_enrollments e
    WHERE e.tenant_id = ventros.require_tenant() AND e.campaign_id = list_campaign_enrollments.campaign_id
      AND (list_campaign_enrollments.status IS NULL OR e.status = list_campaign_enrollments.status)
      AND (due_before IS NULL OR (e.status = 'active' AND e.next_scheduled_at <= due_before))
      AND (after_id IS NULL OR e.id > after_id)
    ORDER BY e.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_campaign_enrollments(uuid, text, timestamptz, uuid, integer) IS
    'Enrollments of a campaign by status, or those due before a time; keyset paging on id';

GRANT EXECUTE ON FUNCTION ventros.get_campaign(uuid, boolean), ventros.campaign_stats(uuid), ventros.list_campaigns(text),
    ventros.list_campaign_enrollments(uuid, text, timestamptz, uuid, integer) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.create_campaign(text, text, integer, text, timestamptz, timestamptz, uuid),
    ventros.update_campaign(uuid, integer, jsonb), ventros.set_campaign_status(uuid, integer, text),
    ventros.add_campaign_step(uuid, integer, text, text, jsonb, jsonb), ventros.update_campaign_step(uuid, integer, jsonb),
    ventros.remove_campaign_step(uuid), ventros.enroll_in_campaign(uuid, uuid),
    ventros.set_campaign_enrollment_status(uuid, integer, text, text), ventros.advance_campaign_enrollment(uuid, timestamptz),
    ventros.campaign_reached(ventros.campaign_enrollments, timestamptz),
    ventros.execute_campaign_step(ventros.campaign_enrollments, ventros.campaign_steps, timestamptz)
    TO ventros_agent;
-- The scheduler's (pg_cron runs it as a platform administrator), never a tenant's:
-- its `now` is the caller's to choose (docs/security.md).
GRANT EXECUTE ON FUNCTION ventros.tick_campaigns(timestamptz, integer) TO ventros_platform_admin;
GRANT EXECUTE ON FUNCTION ventros.delete_campaign(uuid, integer) TO ventros_admin;

-- Steps change only while their campaign is a draft, on every path (commands, direct
-- writes, workers).
SELECT ventros.register_parent_guard('campaign_step', 'campaign_id', 'campaign', '{draft}', 'steps change only in draft');

-- Direct writes of campaign, campaign_step, campaign_enrollment by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('campaign', inserts => '{create_campaign}', updates => '{update_campaign,set_campaign_status}', deletes => '{delete_campaign}',
    direct => '{UPDATE,DELETE}',
    update_columns => '{name,description,goal_type,goal_value,start_date,end_date}');
SELECT ventros.register_writes('campaign_step', inserts => '{add_campaign_step}', updates => '{update_campaign_step}', deletes => '{remove_campaign_step}');
SELECT ventros.register_writes('campaign_enrollment', inserts => '{enroll_in_campaign}', updates => '{set_campaign_enrollment_status,advance_campaign_enrollment}', deletes => '{}');
