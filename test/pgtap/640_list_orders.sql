-- The orders a list endpoint offers (the console's lists, newest contacts
-- first) are read from an index, not sorted: with sorting and sequential
-- scans priced out, a plan that still sorts has no index to read the order
-- from, whatever the table's size (issue 19: lists at 10^6 rows).
BEGIN;
SELECT plan(4);
SELECT ventros.create_tenant('t_lists', 'List orders');
SET LOCAL ventros.tenant = 't_lists';
SET LOCAL ROLE ventros_agent;
SET LOCAL enable_sort = off;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
-- the plan of a list query as text (one line per node)
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    result text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        result := result || line || E'\n';
    END LOOP;
    RETURN result;
END
$$;
SELECT doesnt_match(pg_temp.plan_of('SELECT * FROM api.contacts ORDER BY created_at DESC LIMIT 20'), 'Sort',
              'GET /contacts?order=created_at.desc reads contacts_by_created');
SELECT doesnt_match(pg_temp.plan_of($q$SELECT * FROM api.sessions WHERE status IN ('active', 'snoozed')
                                ORDER BY last_activity_at DESC LIMIT 100$q$), 'Sort',
              'the console''s conversation list (sessions by last activity) reads sessions_by_activity');
SELECT doesnt_match(pg_temp.plan_of($q$SELECT * FROM api.messages WHERE session_id = '00000000-0000-4000-8000-000000000001'
                                ORDER BY "timestamp", id LIMIT 500$q$), 'Sort',
              'a conversation''s messages in order read messages_by_session');
SELECT doesnt_match(pg_temp.plan_of($q$SELECT * FROM api.notes WHERE contact_id = '00000000-0000-4000-8000-000000000001'
                                ORDER BY created_at DESC, id DESC LIMIT 50$q$), 'Sort',
              'a contact''s notes newest first read notes_by_contact');
SELECT * FROM finish();
ROLLBACK;
