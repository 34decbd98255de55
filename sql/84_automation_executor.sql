-- Automation rules (sql/83_automation_rules.sql): the actions, each through
-- the command a user would call.  Running them (one rule for one event, a
-- batch, the executor's entry point, the dry run) is in
-- sql/84_automation_executor_run.sql, loaded next.
--
-- search_path: only ventros.run_automations, the entry point (SECURITY
-- DEFINER, in the next file), pins it.  The functions of both files run
-- only under it (EXECUTE is revoked from PUBLIC, no tenant role has it:
-- sql/99_grants.sql), so they inherit the pinned path and carry no SET
-- clause of their own: with one, every call saves the setting, sets it and
-- restores it, and the path is looked up again after it (a few
-- microseconds per call; the executor makes some ten such calls per event
-- and rule that acts).

-- ---- actions -------------------------------------------------------------------

CREATE FUNCTION ventros.automation_require(value text, what text, action text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'action % needs %', action, what USING ERRCODE = '23502';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.automation_require(text, text, text) IS
    'A value an action needs (its parameter or the contact/session of the event), or 23502 naming it';

-- One action, through the command a user would call.  Returns what it did.
CREATE FUNCTION ventros.automation_act(a jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    kind text := a->>'type';
    p jsonb := coalesce(a->'params', '{}');
    contact uuid := ventros.automation_uuid(ctx #>> '{contact,id}');
    session uuid := ventros.automation_uuid(ctx #>> '{session,id}');
    channel uuid := coalesce(ventros.automation_uuid(p->>'channel_id'), ventros.automation_uuid(ctx #>> '{channel,id}'));
    c ventros.contacts;
    tags text[];
    txt text;
    id uuid;
    e ventros.sequence_enrollments;
BEGIN
    CASE kind
    WHEN 'add_tag', 'remove_tag' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        tags := CASE kind WHEN 'add_tag' THEN (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(c.tags || (p->>'tag')) t)
                          ELSE array_remove(c.tags, p->>'tag') END;
        PERFORM ventros.automation_require(p->>'tag', 'params.tag', kind);
        IF tags IS DISTINCT FROM c.tags AND NOT (tags @> c.tags AND c.tags @> tags) THEN
            PERFORM ventros.update_contact(contact, c.version, jsonb_build_object('tags', tags));
        END IF;
    WHEN 'set_field' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = rule.tenant_id AND x.id = contact FOR UPDATE;
        PERFORM ventros.update_contact(contact, c.version,
                                       jsonb_build_object(ventros.automation_require(p->>'field', 'params.field', kind), p->'value'));
    WHEN 'set_custom_field', 'update_custom_field' THEN
        PERFORM ventros.set_contact_custom_field(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                 ventros.automation_require(coalesce(p->>'key', p->>'field'), 'params.key', kind),
                                                 coalesce(p->>'field_type', 'text'), p->'value');
    WHEN 'change_pipeline_status' THEN
        PERFORM ventros.change_contact_pipeline_status(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                       ventros.automation_require(p->>'status_id', 'params.status_id', kind)::uuid,
                                                       notes => 'automation ' || rule.name);
    WHEN 'assign_agent' THEN
        -- params.reason review: an ended session too (a supervisor after a negative summary)
        PERFORM ventros.assign_session_agent(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                             ventros.automation_require(p->>'agent_id', 'params.agent_id', kind)::uuid,
                                             reason => coalesce(p->>'reason', 'manual'));
    WHEN 'assign_team' THEN
        PERFORM ventros.assign_session_to_team(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                               ventros.automation_require(p->>'team_id', 'params.team_id', kind)::uuid);
    WHEN 'send_message', 'send_canned_response' THEN
        PERFORM ventros.automation_require(contact::text, 'a contact', kind);
        txt := CASE kind WHEN 'send_message' THEN ventros.automation_require(p->>'text', 'params.text', kind)
                         ELSE ventros.render_canned_response(ventros.automation_require(p->>'shortcut', 'params.shortcut', kind),
                                                             contact) END;
        txt := replace(replace(txt, '{{contact.name}}', coalesce(ctx #>> '{contact,name}', '')),
                       '{{contact.phone}}', coalesce(ctx #>> '{contact,phone}', ''));
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      contact, txt, source => 'trigger') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'send_template' THEN
        SELECT m.id INTO id FROM ventros.send_message(ventros.automation_require(channel::text, 'a channel', kind)::uuid,
                                                      ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                      source => 'trigger',
                                                      template_name => ventros.automation_require(p->>'template_name', 'params.template_name', kind),
                                                      template_language => coalesce(p->>'template_language', p->>'language'),
                                                      template_components => p->'template_components') m;
        RETURN jsonb_build_object('type', kind, 'message_id', id);
    WHEN 'add_note', 'create_note' THEN
        SELECT n.id INTO id FROM ventros.add_note(ventros.automation_require(contact::text, 'a contact', kind)::uuid,
                                                  ventros.automation_require(coalesce(p->>'content', p->>'text'), 'params.content', kind),
                                                  ventros.system_agent_id('trigger'), author_type => 'system',
                                                  author_name => 'automation ' || rule.name, session_id => session) n;
        RETURN jsonb_build_object('type', kind, 'note_id', id);
    WHEN 'enroll_sequence' THEN
        -- unless_enrolled (the rule a sequence keeps): a contact enrolled already is left alone
        IF coalesce((p->>'unless_enrolled')::boolean, false) AND EXISTS (
            SELECT 1 FROM ventros.sequence_enrollments x
             WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
               AND x.sequence_id = ventros.automation_uuid(p->>'sequence_id')) THEN
            RETURN jsonb_build_object('type', kind, 'enrolled', false, 'reason', 'enrolled already');
        END IF;
        SELECT x.id INTO id FROM ventros.enroll_in_sequence(ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid,
                                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid) x;
        RETURN jsonb_build_object('type', kind, 'enrolled', true, 'enrollment_id', id);
    WHEN 'unenroll_sequence' THEN
        FOR e IN SELECT * FROM ventros.sequence_enrollments x
                  WHERE x.tenant_id = rule.tenant_id AND x.contact_id = contact AND x.status IN ('active', 'paused')
                    AND x.sequence_id = ventros.automation_require(p->>'sequence_id', 'params.sequence_id', kind)::uuid LOOP
            PERFORM ventros.set_sequence_enrollment_status(e.id, e.version, 'exited', 'automation');
        END LOOP;
    WHEN 'add_to_list' THEN
        PERFORM ventros.add_contact_to_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                            ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'remove_from_list' THEN
        PERFORM ventros.remove_contact_from_list(ventros.automation_require(p->>'list_id', 'params.list_id', kind)::uuid,
                                                 ventros.automation_require(contact::text, 'a contact', kind)::uuid);
    WHEN 'close_session' THEN
        PERFORM ventros.close_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
                                      end_reason => 'system_close');
    WHEN 'snooze_session' THEN
        -- params.minutes from now, or params.until (an instant)
        PERFORM ventros.snooze_session(ventros.automation_require(session::text, 'a session', kind)::uuid,
            coalesce((p->>'until')::timestamptz,
                     now() + make_interval(mins => ventros.automation_require(p->>'minutes', 'params.minutes or params.until', kind)::integer)));
    WHEN 'summarize_session' THEN
        -- a chat completion asked now, answered after commit (sql/98_intelligence.sql)
        RETURN jsonb_build_object('type', kind, 'completion_id',
            (ventros.summarize_session(ventros.automation_require(session::text, 'a session', kind)::uuid)).id);
    WHEN 'call_webhook', 'send_webhook' THEN
        RETURN ventros.automation_call_webhook(p, ctx, rule);
    WHEN 'emit_event' THEN
        RETURN jsonb_build_object('type', kind, 'event_type',
            ventros.emit_custom_event(ventros.automation_require(p->>'name', 'params.name', kind),
                                      coalesce(p->'payload', '{}') || jsonb_build_object('automation_id', rule.id,
                                                                                        'contact_id', contact)));
    WHEN 'notify_agents', 'notify_agent', 'notify_coordinator' THEN
        PERFORM ventros.emit('automation.agents_notified', 'automation', rule.id,
            jsonb_build_object('message', coalesce(p->>'message', p->>'text', rule.name), 'agent_ids', p->'agent_ids',
                               'agent_id', p->'agent_id', 'team_id', p->'team_id', 'contact_id', contact,
                               'session_id', session, 'event_id', ctx #> '{event,id}'),
            rule.version);
    ELSE
        RAISE EXCEPTION 'action "%" is not supported by the automation executor', left(kind, 64) USING ERRCODE = '0A000',
            HINT = 'See docs/automation.md for the actions the executor runs.';
    END CASE;
    RETURN jsonb_build_object('type', kind);
END
$$;
COMMENT ON FUNCTION ventros.automation_act(jsonb, jsonb, ventros.automations) IS
    'Runs one automation action through the command a user would call (tags and fields: update_contact; send_message; add_note; enroll_in_sequence; ...); returns what it did; 0A000 for an action the executor does not run';

-- call_webhook: a delivery of the triggering event to one of the tenant's
-- webhook subscriptions, through the dispatcher, signed per attempt with the
-- subscription's secret as every delivery (sql/92_webhook_deliveries.sql).
CREATE FUNCTION ventros.automation_call_webhook(p jsonb, ctx jsonb, rule ventros.automations) RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    w ventros.webhook_subscriptions;
    delivery uuid := gen_random_uuid();
    request uuid := gen_random_uuid();
    ev_id uuid := (ctx #>> '{event,id}')::uuid;
    body bytea;
BEGIN
    SELECT * INTO w FROM ventros.webhook_subscriptions x
     WHERE x.tenant_id = rule.tenant_id AND x.deleted_at IS NULL
       AND x.id = ventros.automation_require(p->>'webhook_subscription_id', 'params.webhook_subscription_id', 'call_webhook')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook subscription % not found', p->>'webhook_subscription_id' USING ERRCODE = 'P0002';
    END IF;
    IF w.secret IS NULL THEN
        RAISE EXCEPTION 'webhook subscription % has no secret: automation calls are signed', w.id USING ERRCODE = '22023';
    END IF;
    -- deactivated (by hand, on 410 Gone, after days of failures): no more deliveries, as for events
    IF NOT w.active THEN
        RAISE EXCEPTION 'webhook subscription % is inactive', w.id USING ERRCODE = '55000',
            HINT = 'Activate it again with ventros.set_webhook_subscription_active.';
    END IF;
    body := convert_to(ventros.webhook_cloudevent(rule.tenant_id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
                                                  (ctx #>> '{event,aggregate_id}')::uuid,
                                                  coalesce(p->'body', ctx->'payload') || jsonb_build_object('automation_id', rule.id),
                                                  (ctx #>> '{event,occurred_at}')::timestamptz), 'UTF8');
    INSERT INTO ventros.http_requests (tenant_id, id, method, url, headers, body, purpose, correlation_id,
                                       retry_policy, retry_schedule, max_attempts, timeout_ms)
    VALUES (rule.tenant_id, request, 'POST', w.url, ventros.webhook_request_headers(ev_id, delivery), body,
            'webhook.delivery', delivery, 'any', ventros.webhook_retry_schedule(),
            1 + least(w.retry_count, cardinality(ventros.webhook_retry_schedule())), w.timeout_seconds * 1000);
    INSERT INTO ventros.webhook_deliveries (tenant_id, id, subscription_id, event_id, event_type, aggregate_type,
                                            aggregate_id, request_id)
    VALUES (rule.tenant_id, delivery, w.id, ev_id, ctx #>> '{event,type}', ctx #>> '{event,aggregate_type}',
            (ctx #>> '{event,aggregate_id}')::uuid, request);
    RETURN jsonb_build_object('type', 'call_webhook', 'delivery_id', delivery);
END
$$;
COMMENT ON FUNCTION ventros.automation_call_webhook(jsonb, jsonb, ventros.automations) IS
    'Action call_webhook: one signed delivery of the triggering event (CloudEvents body, or params.body) to an active webhook subscription of the tenant (inactive: 55000), through the HTTP dispatcher';
