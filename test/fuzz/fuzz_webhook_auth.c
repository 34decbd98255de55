/*
 * fuzz_webhook_auth.c
 *	  The signature and token comparison of inbound webhooks
 *	  (src/webhook_auth.c): vn_webhook_auth_equal, and the SQL-callable
 *	  ventros.timing_safe_equal(bytea, bytea) called through its fmgr entry
 *	  point with bytea values as the server would pass them (4-byte headers,
 *	  or 1-byte short headers for short values), on pg_shim.c.
 *
 * Input: byte 0 is where the two values split and whether the second is a
 * copy of the first with one byte changed (so that equal lengths, where
 * the comparison runs, are common).  The answer must equal the plain
 * definition: same length and same bytes.  The SQL inbox code
 * (sql/88_inbox.sql) computes the HMAC with pgcrypto and compares through
 * this function.
 */
#include "postgres.h"

#include "fmgr.h"

#include "../../src/webhook_auth.c"
#include "pg_shim.h"

/* a bytea of these bytes, with a short header when short enough and asked */
static bytea *
make_bytea(const uint8_t *p, size_t n, bool shortform)
{
	bytea *b;

	if (shortform && n + VARHDRSZ_SHORT <= VARATT_SHORT_MAX)
	{
		b = palloc(VARHDRSZ_SHORT + n);
		SET_VARSIZE_SHORT(b, VARHDRSZ_SHORT + n);
		memcpy(VARDATA_SHORT(b), p, n);
	}
	else
	{
		b = palloc(VARHDRSZ + n);
		SET_VARSIZE(b, VARHDRSZ + n);
		memcpy(VARDATA(b), p, n);
	}
	return b;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *a,
		*b;
	size_t alen,
		blen;
	uint8_t *changed = NULL;
	bool	 expected;
	Datum	 result;

	if (size < 2)
		return 0;
	a = data + 2;
	alen = size - 2;
	if (data[0] & 1)
	{
		/* b: a copy of a, byte data[1] changed (or none when out of range) */
		changed = malloc(alen ? alen : 1);
		memcpy(changed, a, alen);
		if (data[1] < alen)
			changed[data[1]] ^= (uint8_t) ((data[0] >> 1) | 1);
		b = changed;
		blen = alen;
	}
	else
	{
		size_t cut = alen ? (size_t) data[1] % (alen + 1) : 0;

		b = a + cut;
		blen = alen - cut;
		alen = cut;
	}
	expected = alen == blen && memcmp(a, b, alen) == 0;
	if (alen == blen && !vn_webhook_auth_equal(a, b, alen) != !expected)
		abort();
	{
		LOCAL_FCINFO(fcinfo, 2);

		InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = PointerGetDatum(make_bytea(a, alen, data[0] & 2));
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = PointerGetDatum(make_bytea(b, blen, data[0] & 4));
		fcinfo->args[1].isnull = false;
		result = ventros_timing_safe_equal(fcinfo);
		if (DatumGetBool(result) != expected || fcinfo->isnull)
			abort();
	}
	free(changed);
	shim_reset();
	return 0;
}
