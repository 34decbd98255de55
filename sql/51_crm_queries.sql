-- The queries a CRM screen needs, each with keyset paging (the caller passes
-- the last row's sort key) and the hard maximum page size of
-- ventros.check_page_size() (54000 above ventros.max_page_size).  Each one is
-- served by an index in the order it returns.

-- contact_timeline: sessions, messages, notes and pipeline moves of a
-- contact, newest first.  Each branch reads at most page_size rows from its
-- own index (tenant, contact, time DESC, id DESC).
CREATE FUNCTION ventros.contact_timeline(contact_id uuid, before_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                         page_size integer DEFAULT 50)
RETURNS TABLE (kind text, at timestamptz, id uuid, detail jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    n integer := ventros.check_page_size(page_size);
    b_at timestamptz := coalesce(before_at, 'infinity');
    b_id uuid := coalesce(before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
BEGIN
    RETURN QUERY
    SELECT t.kind, t.at, t.id, t.detail FROM (
        (SELECT 'session'::text AS kind, s.started_at AS at, s.id,
                jsonb_build_object('status', s.status, 'channel_id', s.channel_id, 'ended_at', s.ended_at,
                                   'end_reason', s.end_reason, 'message_count', s.message_count,
                                   'assigned_agent_id', s.assigned_agent_id) AS detail
         FROM ventros.sessions s
         WHERE s.tenant_id = tenant AND s.contact_id = contact_timeline.contact_id AND (s.started_at, s.id) < (b_at, b_id)
         ORDER BY s.started_at DESC, s.id DESC LIMIT n)
        UNION ALL
        (SELECT 'message', m."timestamp", m.id,
                jsonb_build_object('from_me', m.from_me, 'content_type', m.content_type, 'text', left(m.text, 200),
                                   'status', m.status, 'session_id', m.session_id, 'channel_id', m.channel_id)
         FROM ventros.messages m
         WHERE m.tenant_id = tenant AND m.contact_id = contact_timeline.contact_id AND (m."timestamp", m.id) < (b_at, b_id)
         ORDER BY m."timestamp" DESC, m.id DESC LIMIT n)
        UNION ALL
        (SELECT 'note', x.created_at, x.id,
                jsonb_build_object('note_type', x.note_type, 'content', left(x.content, 200), 'author_name', x.author_name,
                                   'pinned', x.pinned, 'priority', x.priority)
         FROM ventros.notes x
         WHERE x.tenant_id = tenant AND x.contact_id = contact_timeline.contact_id AND (x.created_at, x.id) < (b_at, b_id)
         ORDER BY x.created_at DESC, x.id DESC LIMIT n)
        UNION ALL
        (SELECT 'pipeline_move', c.entered_at, c.id,
                jsonb_build_object('pipeline_id', c.pipeline_id, 'status_id', c.status_id, 'exited_at', c.exited_at)
         FROM ventros.contact_pipeline_statuses c
         WHERE c.tenant_id = tenant AND c.contact_id = contact_timeline.contact_id AND (c.entered_at, c.id) < (b_at, b_id)
         ORDER BY c.entered_at DESC, c.id DESC LIMIT n)
    ) t
    ORDER BY t.at DESC, t.id DESC
    LIMIT n;
END
$$;
COMMENT ON FUNCTION ventros.contact_timeline(uuid, timestamptz, uuid, integer) IS
    'A contact''s sessions, messages, notes and pipeline moves, newest first; next page: pass the last row''s at and id';

-- open_sessions: active sessions of an agent (NULL: unassigned ones), on one
-- channel or all, most recently active first.
CREATE FUNCTION ventros.open_sessions(agent_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                      before_activity_at timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                      page_size integer DEFAULT 50)
RETURNS SETOF ventros.sessions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM ventros.sessions s
    WHERE s.tenant_id = ventros.require_tenant() AND s.status = 'active' AND s.deleted_at IS NULL
      AND s.assigned_agent_id IS NOT DISTINCT FROM open_sessions.agent_id
      AND (open_sessions.channel_id IS NULL OR s.channel_id = open_sessions.channel_id)
      AND (before_id IS NULL OR (s.last_activity_at, s.id) < (before_activity_at, before_id))
    ORDER BY s.last_activity_at DESC, s.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.open_sessions(uuid, uuid, timestamptz, uuid, integer) IS
    'Active sessions of an agent (NULL: the unassigned queue), optionally of one channel, most recently active first, keyset paged';

CREATE FUNCTION ventros.open_session_counts()
RETURNS TABLE (agent_id uuid, channel_id uuid, open_sessions bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.assigned_agent_id, s.channel_id, count(*) FROM ventros.sessions s
    WHERE s.tenant_id = ventros.require_tenant() AND s.status = 'active' AND s.deleted_at IS NULL
    GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2
    LIMIT current_setting('ventros.max_page_size')::integer
$$;
COMMENT ON FUNCTION ventros.open_session_counts() IS 'Number of active sessions per agent (NULL: unassigned) and channel';

-- session_messages: a session's messages in conversation order.
CREATE FUNCTION ventros.session_messages(session_id uuid, after_timestamp timestamptz DEFAULT NULL,
                                         after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF ventros.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = ventros.require_tenant() AND m.session_id = session_messages.session_id
      AND (after_id IS NULL OR (m."timestamp", m.id) > (after_timestamp, after_id))
    ORDER BY m."timestamp", m.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.session_messages(uuid, timestamptz, uuid, integer) IS
    'A session''s messages, oldest first; next page: pass the last row''s timestamp and id';

-- pipeline_board: the statuses of a pipeline with the number of contacts in each.
CREATE FUNCTION ventros.pipeline_board(pipeline_id uuid)
RETURNS TABLE (status_id uuid, name text, status_type text, "position" integer, color text, contacts bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
BEGIN
    PERFORM 1 FROM ventros.pipelines p WHERE p.tenant_id = tenant AND p.id = pipeline_board.pipeline_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY
    SELECT s.id, s.name, s.status_type, s.position, s.color,
           (SELECT count(*) FROM ventros.contact_pipeline_statuses c
            WHERE c.tenant_id = tenant AND c.pipeline_id = s.pipeline_id AND c.status_id = s.id AND c.exited_at IS NULL AND c.deleted_at IS NULL)
    FROM ventros.pipeline_statuses s
    WHERE s.tenant_id = tenant AND s.pipeline_id = pipeline_board.pipeline_id AND s.active
    ORDER BY s.position, s.id;
END
$$;
COMMENT ON FUNCTION ventros.pipeline_board(uuid) IS
    'The active statuses of a pipeline in position order, each with the number of contacts in it';

-- pipeline_status_contacts: the contacts in one status (a board column), most recent entry first.
CREATE FUNCTION ventros.pipeline_status_contacts(status_id uuid, before_entered_at timestamptz DEFAULT NULL,
                                                 before_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS TABLE (id uuid, contact_id uuid, name text, phone text, email text, entered_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, k.id, k.name, k.phone, k.email, c.entered_at
    FROM ventros.contact_pipeline_statuses c
    JOIN ventros.pipeline_statuses s ON s.tenant_id = c.tenant_id AND s.id = c.status_id
    JOIN ventros.contacts k ON k.tenant_id = c.tenant_id AND k.id = c.contact_id
    WHERE c.tenant_id = ventros.require_tenant() AND c.status_id = pipeline_status_contacts.status_id
      AND c.pipeline_id = s.pipeline_id AND c.exited_at IS NULL AND c.deleted_at IS NULL
      AND (before_id IS NULL OR (c.entered_at, c.id) < (before_entered_at, before_id))
    ORDER BY c.entered_at DESC, c.id DESC
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.pipeline_status_contacts(uuid, timestamptz, uuid, integer) IS
    'The contacts currently in a pipeline status (a board column), most recent entry first, keyset paged by (entered_at, id)';

-- search_messages: full-text search over message text, newest first.  The
-- query is in web search syntax ("a b", a OR b, -a), matched with each
-- message's own language (index messages_search, sql/82_search.sql: the
-- query parsed in every language finds the candidates, then each is matched
-- with its own configuration).  Ranked search over messages, media text,
-- notes and contacts: ventros.search.
-- SECURITY DEFINER: under row-level security the planner may not use the GIN
-- index for @@ (not leakproof, so it must run after the policy's filter);
-- the function states the tenant and live-row conditions itself instead.
-- No parallel workers and no JIT: the GIN scan's estimate (thousands of
-- rows for any word) made the planner start two workers for a page of
-- results, whose start-up cost 40-60 ms on a loaded machine, and at
-- 10,000,000 messages compile the plan (40 ms), against 0.2 ms of work
-- (bench/domain.sh, docs/performance.md).
CREATE FUNCTION ventros.search_messages(query text, channel_id uuid DEFAULT NULL, contact_id uuid DEFAULT NULL,
                                        before_timestamp timestamptz DEFAULT NULL, before_id uuid DEFAULT NULL,
                                        page_size integer DEFAULT 50)
RETURNS SETOF ventros.messages
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET max_parallel_workers_per_gather = 0
SET jit = off
AS $$
DECLARE
    q_any tsquery;
    tenant text := ventros.require_tenant();
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'search query must not be empty' USING ERRCODE = '22023';
    END IF;
    q_any := ventros.search_tsquery(ventros.check_length(query, 500, 'search query'));
    RETURN QUERY
    SELECT m.* FROM ventros.messages m
    WHERE m.tenant_id = tenant AND m.deleted_at IS NULL
      AND to_tsvector(ventros.search_config(m.language), coalesce(m.text, '')) @@ q_any
      AND to_tsvector(ventros.search_config(m.language), coalesce(m.text, ''))
          @@ websearch_to_tsquery(ventros.search_config(m.language), query)
      AND (search_messages.channel_id IS NULL OR m.channel_id = search_messages.channel_id)
      AND (search_messages.contact_id IS NULL OR m.contact_id = search_messages.contact_id)
      AND (before_id IS NULL OR (m."timestamp", m.id) < (before_timestamp, before_id))
    ORDER BY m."timestamp" DESC, m.id DESC
    LIMIT ventros.check_page_size(page_size);
END
$$;
COMMENT ON FUNCTION ventros.search_messages(text, uuid, uuid, timestamptz, uuid, integer) IS
    'Messages whose text matches a web-search style query (full text in each message''s language, GIN), newest first, keyset paged by (timestamp, id)';

GRANT EXECUTE ON FUNCTION ventros.contact_timeline(uuid, timestamptz, uuid, integer),
    ventros.open_sessions(uuid, uuid, timestamptz, uuid, integer), ventros.open_session_counts(),
    ventros.session_messages(uuid, timestamptz, uuid, integer), ventros.pipeline_board(uuid),
    ventros.pipeline_status_contacts(uuid, timestamptz, uuid, integer),
    ventros.search_messages(text, uuid, uuid, timestamptz, uuid, integer) TO ventros_viewer;
