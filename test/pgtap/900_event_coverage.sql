-- Runs last: every event type in the catalog was emitted by at least one of
-- the pgTAP files before it (counted by test/fixtures/90_event_coverage.sql,
-- across their rollbacks).  Prints the counts of aggregates and event types.
BEGIN;
SELECT plan(2);

SELECT diag(format('catalog: %s aggregates, %s event types',
                   (SELECT count(*) FROM ventros.aggregates), (SELECT count(*) FROM ventros.event_types)));

CREATE FUNCTION pg_temp.emitted(counter regclass) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    called boolean;
BEGIN
    EXECUTE format('SELECT is_called FROM %s', counter) INTO called;
    RETURN called;
END
$$;

SELECT is(
    (SELECT coalesce(string_agg(event_type, ', ' ORDER BY event_type), '')
     FROM ventros_test.event_counters WHERE NOT pg_temp.emitted(counter)),
    '', 'every registered event type is emitted by at least one test');
SELECT is((SELECT count(*)::int FROM ventros.event_types e
           WHERE NOT EXISTS (SELECT 1 FROM ventros_test.event_counters c WHERE c.event_type = e.event_type)),
          0, 'every registered event type is counted');

SELECT * FROM finish();
ROLLBACK;
