-- Channels: every declared status transition is allowed and emits its event;
-- every other pair of statuses is refused with VN002 and writes nothing.
BEGIN;
SELECT * FROM no_plan();

SELECT ventros.create_tenant('chan_a', 'Channels A');
SET LOCAL ventros.tenant = 'chan_a';

CREATE FUNCTION pg_temp.channel_in(status text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    channel_id uuid := (ventros.create_channel('Line ' || status, 'waha')).id;
BEGIN
    -- place it in the starting status without going through the machine
    SET LOCAL session_replication_role = replica;
    UPDATE ventros.channels SET status = channel_in.status WHERE id = channel_id;
    SET LOCAL session_replication_role = origin;
    RETURN channel_id;
END
$$;

CREATE FUNCTION pg_temp.transitions() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    states text[] := ARRAY['inactive', 'activating', 'active', 'connecting', 'disconnected', 'error'];
    f text;
    t text;
    declared text;
    channel_id uuid;
    before bigint;
BEGIN
    FOREACH f IN ARRAY states LOOP
        FOREACH t IN ARRAY states LOOP
            CONTINUE WHEN f = t;
            SELECT event_type INTO declared FROM ventros.aggregate_transitions
            WHERE aggregate = 'channel' AND from_state = f AND to_state = t;
            channel_id := pg_temp.channel_in(f);
            before := (SELECT count(*) FROM ventros.outbox);
            IF FOUND THEN
                RETURN NEXT lives_ok(format('SELECT ventros.set_channel_status(%L, 1, %L)', channel_id, t),
                                     format('channel %s -> %s is allowed', f, t));
                RETURN NEXT is((SELECT event_type FROM ventros.outbox ORDER BY seq DESC LIMIT 1), declared,
                               format('channel %s -> %s emits %s', f, t, declared));
            ELSE
                RETURN NEXT throws_ok(format('SELECT ventros.set_channel_status(%L, 1, %L)', channel_id, t), 'VN002',
                                      format('channel %s cannot change status from "%s" to "%s"', channel_id, f, t),
                                      format('channel %s -> %s is refused (VN002)', f, t));
                RETURN NEXT is((SELECT count(*) FROM ventros.outbox), before,
                               format('the refused %s -> %s wrote no event', f, t));
            END IF;
        END LOOP;
    END LOOP;
END
$$;
SELECT pg_temp.transitions();

SELECT is((SELECT count(*)::int FROM ventros.aggregate_transitions WHERE aggregate = 'channel' AND from_state IS NOT NULL), 16,
          'the channel machine declares 16 transitions');
SELECT throws_ok($$INSERT INTO ventros.channels (project_id, name, type, status) VALUES (ventros.default_project(), 'x', 'waha', 'active')$$,
                 'VN002', 'channel cannot be created with status "active"', 'a channel starts inactive (VN002 otherwise)');
SELECT throws_ok($$SELECT ventros.create_channel('x', 'fax')$$, '22023', 'unknown channel type "fax"',
                 'an unknown channel type is refused (22023)');
SELECT throws_ok($$SELECT ventros.create_channel(NULL, 'waha')$$, '23502', NULL, 'a NULL name is refused (23502)');
SELECT throws_ok($$SELECT ventros.create_channel('x', 'waha', config => '[1]')$$, '22023', NULL,
                 'a config that is not an object is refused (22023)');
SELECT throws_ok($$SELECT ventros.update_channel((ventros.create_channel('y', 'waha')).id, 1, '{"debounce_timeout_ms": 999999}')$$,
                 '23514', NULL, 'a debounce window out of range is refused (23514)');
SELECT throws_ok($$SELECT ventros.update_channel((ventros.create_channel('z', 'waha')).id, 1, '{"status": "sleeping"}')$$,
                 'VN002', NULL, 'an unknown status is not a declared transition (VN002)');
SELECT ok(NOT (payload ? 'config'), 'channel config (credentials) is redacted from event payloads')
FROM ventros.outbox WHERE event_type = 'channel.created' ORDER BY seq DESC LIMIT 1;
SELECT throws_ok($$SELECT ventros.create_channel('x', 'waha')$$, '42501', NULL, 'agents may not create channels (42501)')
FROM (SELECT set_config('role', 'ventros_agent', true)) s;

SELECT * FROM finish();
ROLLBACK;
