-- Issue 13: the worker kit (src/worker.c) and its status function (sql/03_workers.sql).

CREATE FUNCTION ventros.worker_status(
    OUT kind text, OUT slot integer, OUT pid integer, OUT database text,
    OUT started_at timestamptz, OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_worker_status';
COMMENT ON FUNCTION ventros.worker_status() IS
    'Every background worker of the kit (src/worker.c), one row per slot: its kind (the backend_type in pg_stat_activity), pid (NULL when not running), database, start, and last error (55000 when ventros is not preloaded)';

REVOKE ALL ON FUNCTION ventros.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.worker_status() TO ventros_authenticator, ventros_platform_admin;
