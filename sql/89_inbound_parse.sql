-- Inbound parsers: an inbox item (sql/88_inbox.sql) into the domain.
CREATE FUNCTION ventros.inbox_process(r ventros.inbox, ch ventros.channels) RETURNS ventros.inbox_outcome
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ROW('unparsed', NULL, NULL, '{"reason": "not yet parsed"}')::ventros.inbox_outcome;
END
$$;
