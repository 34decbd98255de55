-- Aggregate 31, Saga (core): a multi-step asynchronous process tracked by its
-- correlation id.  Work done in one SQL transaction needs no saga; sagas
-- track what crosses the network (Stripe, providers, AI).  A failed saga asks
-- for compensation of its completed steps with saga.compensation_requested,
-- one event per target (the original's 22 compensate.<target> events).

CREATE TABLE ventros.sagas (
    id             uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id      text        NOT NULL,
    version        integer     NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    correlation_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    saga_type      text        NOT NULL,
    status         text        NOT NULL DEFAULT 'running',
    current_step   text,
    step_number    integer     NOT NULL DEFAULT 0,
    completed_steps text[]     NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    error          text,
    context        jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT sagas_type_known CHECK (saga_type IN ('process_inbound_message', 'change_pipeline_status',
        'create_contact_with_session', 'track_ad_conversion', 'process_waha_webhook', 'onboard_customer',
        'renew_subscription', 'import_waha_history', 'process_media_with_ai', 'compensate')),
    CONSTRAINT sagas_status_known CHECK (status IN ('running', 'completed', 'failed', 'compensating', 'compensated')),
    CONSTRAINT sagas_step_number CHECK (step_number >= 0),
    CONSTRAINT sagas_step_format CHECK (current_step ~ '^[a-z][a-z0-9_.]{0,99}$'),
    CONSTRAINT sagas_context_object CHECK (jsonb_typeof(context) = 'object'),
    CONSTRAINT sagas_error_size CHECK (length(error) <= 4000)
);
CREATE UNIQUE INDEX sagas_unique_correlation ON ventros.sagas (tenant_id, correlation_id);
CREATE INDEX sagas_running ON ventros.sagas (tenant_id, saga_type, started_at) WHERE status IN ('running', 'compensating');
COMMENT ON TABLE ventros.sagas IS 'Saga: a multi-step asynchronous process, by correlation id';

SELECT ventros.register_aggregate('saga', 'ventros.sagas', 'core',
    state_column => 'status',
    transitions => '[
        {"from": null, "to": "running"},
        {"from": "running", "to": "completed", "event": "saga.completed", "description": "A saga completed all its steps."},
        {"from": "running", "to": "failed", "event": "saga.failed", "description": "A step of a saga failed."},
        {"from": "failed", "to": "compensating", "event": "saga.compensation_started", "description": "A failed saga started compensating its completed steps."},
        {"from": "compensating", "to": "compensated", "event": "saga.compensated", "description": "A saga finished compensating."}
    ]',
    description => 'A multi-step asynchronous process');
-- saga.created is the row; saga.started, emitted with it by start_saga, is the
-- process event consumers correlate on (the engine needs both catalogued).
SELECT ventros.register_event_type('saga.started', 'A saga started.');
SELECT ventros.register_event_type('saga.step_completed', 'A step of a saga completed.');
SELECT ventros.register_event_type('saga.compensation_requested',
    'Compensation of one completed step was requested (target: the original compensate.<target>).');

-- The original's 22 compensation targets (compensate.<target>).
CREATE FUNCTION ventros.saga_compensation_targets() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['contact.created', 'contact.updated', 'contact.merged', 'contact.pipeline_changed',
                 'session.started', 'session.assigned', 'session.escalated',
                 'message.created', 'message.sent', 'note.added', 'note.updated',
                 'pipeline.created', 'pipeline.status_changed', 'status.created',
                 'channel.created', 'channel.activated', 'agent.created', 'agent.permission_granted',
                 'billing.account_created', 'billing.payment_method_activated',
                 'automation.executed', 'tracking.created']
$$;
COMMENT ON FUNCTION ventros.saga_compensation_targets() IS
    'The 22 compensation targets of the original (compensate.<target>), all emitted as saga.compensation_requested';

CREATE FUNCTION ventros.start_saga(saga_type text, correlation_id uuid DEFAULT NULL, first_step text DEFAULT NULL,
                                   context jsonb DEFAULT '{}')
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.sagas;
BEGIN
    PERFORM ventros.require_value(saga_type, ARRAY['process_inbound_message', 'change_pipeline_status',
        'create_contact_with_session', 'track_ad_conversion', 'process_waha_webhook', 'onboard_customer',
        'renew_subscription', 'import_waha_history', 'process_media_with_ai', 'compensate'], 'saga type');
    INSERT INTO ventros.sagas (saga_type, correlation_id, current_step, context)
    VALUES (saga_type, coalesce(correlation_id, gen_random_uuid()), first_step,
            coalesce(ventros.require_json(context, 'object', 'saga context'), '{}'))
    RETURNING * INTO result;
    PERFORM ventros.emit('saga.started', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type,
                           'current_step', result.current_step), result.version);
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a saga with correlation id % exists already', correlation_id USING ERRCODE = '23505';
END
$$;
COMMENT ON FUNCTION ventros.start_saga(text, uuid, text, jsonb) IS 'Starts a saga; emits saga.created and saga.started';

CREATE FUNCTION ventros.complete_saga_step(saga_id uuid, expected_version integer, step text, next_step text DEFAULT NULL)
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.sagas := ventros.get_saga(saga_id);
    result ventros.sagas;
BEGIN
    IF current.status <> 'running' THEN
        RAISE EXCEPTION 'saga % is %, not running', saga_id, current.status USING ERRCODE = 'VN002';
    END IF;
    IF step IS NULL OR step !~ '^[a-z][a-z0-9_.]{0,99}$' THEN
        RAISE EXCEPTION 'malformed saga step "%"', left(step, 64) USING ERRCODE = '22023';
    END IF;
    result := ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version,
        jsonb_build_object('step_number', current.step_number + 1, 'current_step', next_step,
                           'completed_steps', current.completed_steps || step));
    PERFORM ventros.emit('saga.step_completed', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type, 'step', step,
                           'step_number', result.step_number), result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.complete_saga_step(uuid, integer, text, text) IS
    'Records a completed step of a running saga (VN002 otherwise); emits saga.updated and saga.step_completed';

CREATE FUNCTION ventros.complete_saga(saga_id uuid, expected_version integer)
RETURNS ventros.sagas
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version,
        jsonb_build_object('status', 'completed', 'completed_at', now(), 'current_step', NULL))
$$;
COMMENT ON FUNCTION ventros.complete_saga(uuid, integer) IS 'Completes a running saga; emits saga.completed';

CREATE FUNCTION ventros.fail_saga(saga_id uuid, expected_version integer, error text)
RETURNS ventros.sagas
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version,
        jsonb_build_object('status', 'failed', 'completed_at', now(), 'error', ventros.check_length(error, 4000, 'saga error')))
$$;
COMMENT ON FUNCTION ventros.fail_saga(uuid, integer, text) IS 'Marks a running saga failed; emits saga.failed';

-- request_saga_compensation: moves a failed saga to compensating (first call)
-- and asks for compensation of one target.
CREATE FUNCTION ventros.request_saga_compensation(saga_id uuid, expected_version integer, target text,
                                                  target_id uuid DEFAULT NULL, details jsonb DEFAULT '{}')
RETURNS ventros.sagas
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current ventros.sagas := ventros.get_saga(saga_id);
    result ventros.sagas := current;
BEGIN
    PERFORM ventros.require_value(target, ventros.saga_compensation_targets(), 'compensation target');
    PERFORM ventros.require_json(details, 'object', 'compensation details');
    IF current.status = 'failed' THEN
        result := ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version, '{"status": "compensating"}');
    ELSIF current.status <> 'compensating' THEN
        RAISE EXCEPTION 'saga % is %; only failed sagas compensate', saga_id, current.status USING ERRCODE = 'VN002';
    ELSE
        PERFORM ventros.require_version('saga', saga_id, expected_version, current.version);
    END IF;
    PERFORM ventros.emit('saga.compensation_requested', 'saga', result.id,
        jsonb_build_object('correlation_id', result.correlation_id, 'saga_type', result.saga_type,
                           'target', target, 'target_id', target_id, 'details', coalesce(details, '{}')),
        result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.request_saga_compensation(uuid, integer, text, uuid, jsonb) IS
    'Asks for compensation of one target (one of saga_compensation_targets(), 22023 otherwise) of a failed saga; emits saga.compensation_started (first time) and saga.compensation_requested';

CREATE FUNCTION ventros.mark_saga_compensated(saga_id uuid, expected_version integer)
RETURNS ventros.sagas
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.change_row(NULL::ventros.sagas, 'saga', saga_id, expected_version, '{"status": "compensated"}') $$;
COMMENT ON FUNCTION ventros.mark_saga_compensated(uuid, integer) IS 'Ends the compensation of a saga; emits saga.compensated';

CREATE FUNCTION ventros.get_saga(saga_id uuid) RETURNS ventros.sagas
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.sagas, 'saga', saga_id) $$;
COMMENT ON FUNCTION ventros.get_saga(uuid) IS 'A live saga of the acting tenant, or P0002';

CREATE FUNCTION ventros.find_saga(correlation_id uuid) RETURNS SETOF ventros.sagas
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.sagas s
    WHERE s.tenant_id = ventros.require_tenant() AND s.correlation_id = find_saga.correlation_id
$$;
COMMENT ON FUNCTION ventros.find_saga(uuid) IS 'The saga with this correlation id, or no row';

GRANT EXECUTE ON FUNCTION ventros.saga_compensation_targets() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.get_saga(uuid), ventros.find_saga(uuid) TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.start_saga(text, uuid, text, jsonb), ventros.complete_saga_step(uuid, integer, text, text),
    ventros.complete_saga(uuid, integer), ventros.fail_saga(uuid, integer, text),
    ventros.request_saga_compensation(uuid, integer, text, uuid, jsonb), ventros.mark_saga_compensated(uuid, integer)
    TO ventros_agent;

-- Direct writes of saga by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('saga', inserts => '{start_saga}', updates => '{complete_saga_step,complete_saga,fail_saga,request_saga_compensation,mark_saga_compensated}', deletes => '{}');
