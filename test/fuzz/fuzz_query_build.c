/*
 * fuzz_query_build.c
 *	  The filters of a request (src/http/query.c, vn_query_build): any query
 *	  string, method, target, Prefer and Range against a fixed schema cache.
 *
 * Input: byte 0 picks the method and whether the target is a function,
 * byte 1 the relation or function (and, for rpc, a text/csv body and
 * Accept), byte 2 the Prefer choices, byte 3 the
 * format and Range; then "k=v&k=v" up to a NUL byte, and the request body
 * after it.  Any statement built must pass fuzz_check_sql; any refusal must
 * carry a 4xx/5xx status and a PostgREST code.
 */
#include "fuzz_common.h"

static const char *methods[] = {"GET", "HEAD", "POST", "PATCH", "DELETE", "PUT"};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	VnQueryInput in;
	VnQuery		 q;
	VnArgs		 args;
	const char	*text;
	const char	*nul;
	size_t		 qlen;
	char		*copy;

	if (size < 4)
		return 0;
	memset(&in, 0, sizeof(in));
	in.schema = &fuzz_schema;
	in.method = methods[(data[0] & 0x7f) % 6];
	in.rpc = (data[0] & 0x80) != 0;
	in.target = in.rpc ? funcs[data[1] % fuzz_schema.nfuncs].name : rels[data[1] % fuzz_schema.nrels].name;
	if (data[1] >= 0xF0)
		in.target = "nosuch";
	/* rpc: a raw text body, and a media-type answer */
	in.content_type = (data[1] & 0x40) ? "text/csv; charset=utf-8" : NULL;
	in.accept = (data[1] & 0x20) ? "text/csv" : NULL;
	in.count = (VnCount) (data[2] & 3);
	in.ret = (VnReturn) ((data[2] >> 2) % 3);
	in.merge_duplicates = (data[2] & 0x10) != 0;
	in.ignore_duplicates = (data[2] & 0x20) != 0;
	in.single_object = (data[2] & 0x40) != 0;
	in.max_affected = (data[2] & 0x80) ? 5 : -1;
	in.format = (VnFormat) (data[3] % 3);
	in.range_offset = (data[3] & 0x04) ? (data[3] >> 4) : -1;
	in.range_limit = (data[3] & 0x08) ? (data[3] >> 5) + 1 : -1;
	in.max_rows = (data[3] & 0x80) ? 1000 : 0;

	/* a private copy, NUL-terminated, so that reads past the end are caught */
	copy = malloc(size - 4 + 1);
	memcpy(copy, data + 4, size - 4);
	copy[size - 4] = '\0';
	text = copy;
	nul = memchr(text, '\0', size - 4);
	qlen = nul ? (size_t) (nul - text) : size - 4;
	fuzz_args(text, qlen, &args);
	in.args = &args;
	if (nul && (size_t) (nul - text) < size - 4)
	{
		in.body = nul + 1;
		in.body_len = size - 4 - qlen - 1;
	}
	else
	{
		in.body = "";
		in.body_len = 0;
	}

	vn_query_init(&q);
	if (vn_query_build(&in, &q))
	{
		FUZZ_CHECK(q.status == 0);
		fuzz_check_sql(&q);
	}
	else
	{
		/* 300: overloads that both fit the arguments named (PGRST203) */
		FUZZ_CHECK(q.status == 300 || (q.status >= 400 && q.status < 600));
		FUZZ_CHECK(q.code[0] != '\0');
	}
	vn_query_free(&q);
	fuzz_args_free(&args);
	free(copy);
	return 0;
}
