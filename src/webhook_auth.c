/*-------------------------------------------------------------------------
 *
 * webhook_auth.c
 *	  Constant-time equality of two byte strings, for inbound webhook
 *	  verification (sql/88_inbox.sql): a signature we computed against the
 *	  one a request carries, or a configured token against a header.
 *
 * Invariant: for two inputs of the same length, the time taken does not
 * depend on where (or whether) they differ, so an attacker timing our
 * answers learns nothing about the expected value byte by byte.  A length
 * difference answers at once: lengths are public (an HMAC-SHA256 is always
 * 32 bytes, and a token's length is no secret worth a timing channel).
 * PostgreSQL's bytea = operator stops at the first difference (memcmp),
 * which is why this function exists.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "webhook_auth.h"

PG_FUNCTION_INFO_V1(ventros_timing_safe_equal);

/*
 * vn_webhook_auth_equal
 *		Compare len bytes without an early exit.  The accumulator is volatile
 *		so that the compiler keeps every iteration.
 */
bool
vn_webhook_auth_equal(const unsigned char *a, const unsigned char *b, size_t len)
{
	volatile unsigned char diff = 0;
	size_t				   i;

	for (i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/*
 * ventros.timing_safe_equal(a bytea, b bytea) RETURNS boolean (STRICT)
 */
Datum
ventros_timing_safe_equal(PG_FUNCTION_ARGS)
{
	bytea *a = PG_GETARG_BYTEA_PP(0);
	bytea *b = PG_GETARG_BYTEA_PP(1);
	size_t len = VARSIZE_ANY_EXHDR(a);

	if (len != VARSIZE_ANY_EXHDR(b))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(vn_webhook_auth_equal((const unsigned char *) VARDATA_ANY(a),
										 (const unsigned char *) VARDATA_ANY(b),
										 len));
}
