/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  Locks that serialise Ventros' own work and that no tenant can take.
 *
 * Ventros used SQL advisory locks (pg_advisory_lock and friends) for two
 * things: the outbox publisher's "one publisher per database" and the
 * per-identity or per-contact serialisation of inbound processing.  Those
 * functions are executable by every login, and all their keys live in one
 * space per database, so a tenant session could take (or queue for) the
 * publisher's key and stop publishing for every tenant, or take another
 * tenant's identity key and stall its inbound messages.
 *
 * The locks here are advisory locktags too (they show in pg_locks as
 * "advisory"), but with a class (locktag_field4) that the SQL functions
 * never use (they use 1 and 2; see locks.h).  Nothing but this module can
 * take them:
 *
 *	- the publisher lock, a session lock taken without waiting;
 *	- ventros.lock_tenant_key(key), a transaction lock on (acting tenant,
 *	  key): the tenant is the acting one, taken here, never an argument a
 *	  bound login chooses, so a tenant can only ever wait for itself.
 *	  (tenant, key) is hashed with SHA-256 into the 64 bits of the tag, so
 *	  that no tenant id or key can be chosen to meet another tenant's tag.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

#include "locks.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(ventros_outbox_publisher_lock);
PG_FUNCTION_INFO_V1(ventros_outbox_release_publisher);
PG_FUNCTION_INFO_V1(ventros_lock_tenant_key);

/* ---- the publisher lock -------------------------------------------------- */

/*
 * One publisher per database: a session lock ('vnob' 'publ' in the
 * publisher class), taken by every claim and kept until the session ends.
 * This backend remembers that it holds it, so a claim does not stack
 * another reference on the lock.
 */
static bool vn_publisher_locked = false;

static void
publisher_locktag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 1986948706, 1886741100,
						 VN_LOCK_CLASS_PUBLISHER);
}

/*
 * vn_lock_publisher_try
 *		Take the publisher lock for the rest of the session, without
 *		waiting; whether this session holds it.
 */
bool
vn_lock_publisher_try(void)
{
	if (!vn_publisher_locked)
	{
		LOCKTAG tag;

		publisher_locktag(&tag);
		vn_publisher_locked = LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	}
	return vn_publisher_locked;
}

/*
 * vn_lock_publisher_release
 *		Release the publisher lock; whether this session held it.
 */
bool
vn_lock_publisher_release(void)
{
	bool held = vn_publisher_locked;

	if (held)
	{
		LOCKTAG tag;

		publisher_locktag(&tag);
		LockRelease(&tag, ExclusiveLock, true);
		vn_publisher_locked = false;
	}
	return held;
}

/*
 * ventros.outbox_publisher_lock() RETURNS boolean
 */
Datum
ventros_outbox_publisher_lock(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vn_lock_publisher_try());
}

/*
 * ventros.outbox_release_publisher() RETURNS boolean
 */
Datum
ventros_outbox_release_publisher(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vn_lock_publisher_release());
}

/* ---- tenant keys ---------------------------------------------------------- */

/*
 * tenant_key_locktag
 *		The tag of (tenant, key): the first 64 bits of SHA-256 over the
 *		tenant, a NUL (which no text value holds), and the key.
 */
static void
tenant_key_locktag(LOCKTAG *tag, const char *tenant, const char *key, int keylen)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8			   digest[PG_SHA256_DIGEST_LENGTH];
	uint32			   key1;
	uint32			   key2;

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) tenant, strlen(tenant) + 1) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) key, keylen) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute the lock key: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	memcpy(&key1, digest, sizeof(key1));
	memcpy(&key2, digest + sizeof(key1), sizeof(key2));
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, key1, key2, VN_LOCK_CLASS_TENANT_KEY);
}

/*
 * ventros.lock_tenant_key(key text, tenant text DEFAULT NULL) RETURNS void
 *		Wait for and take, until the transaction ends, the lock of key in
 *		the acting tenant.  tenant may name the acting tenant; only a
 *		trusted session without one (a superuser, the scheduler) may name
 *		another, as it may choose the acting tenant.  42501 otherwise.
 */
Datum
ventros_lock_tenant_key(PG_FUNCTION_ARGS)
{
	text	   *key;
	const char *acting = vn_current_tenant();
	const char *tenant = acting;
	LOCKTAG		tag;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("lock key must not be null")));
	key = PG_GETARG_TEXT_PP(0);
	if (!PG_ARGISNULL(1))
	{
		char *named = text_to_cstring(PG_GETARG_TEXT_PP(1));

		if (acting != NULL ? strcmp(named, acting) != 0 : !vn_session_is_trusted())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to lock a key of tenant \"%s\"", named),
					 errdetail("Keys are locked in the acting tenant; only trusted sessions without one may name a tenant.")));
		tenant = named;
	}
	if (tenant == NULL || tenant[0] == '\0')
		tenant = vn_require_tenant();
	tenant_key_locktag(&tag, tenant, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}
