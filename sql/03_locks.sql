-- Locks of Ventros' own (src/locks.c).  SQL's advisory lock functions are
-- executable by every login and share one key space per database, so a
-- lock Ventros needs for itself is never taken through them: a tenant
-- could hold or queue for it.  ventros.lock_tenant_key locks a key within
-- the acting tenant, in a lock class no SQL function can take; a tenant can
-- only ever wait for itself.  (The outbox publisher's lock is the other
-- user: sql/40_outbox_publisher.sql.)

CREATE FUNCTION ventros.lock_tenant_key(key text, tenant text DEFAULT NULL) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_lock_tenant_key';
COMMENT ON FUNCTION ventros.lock_tenant_key(text, text) IS
    'Waits for and takes, until the transaction ends, the lock of key within the acting tenant (a lock class SQL''s pg_advisory_* functions cannot take); tenant may only name the acting tenant, or any tenant in a trusted session without one (42501)';

GRANT EXECUTE ON FUNCTION ventros.lock_tenant_key(text, text)
    TO ventros_viewer, ventros_authenticator, ventros_platform_admin;
