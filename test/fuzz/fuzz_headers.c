/*
 * fuzz_headers.c
 *	  The request headers the front parses itself (src/http/request.c, static
 *	  parse_range and vn_request_has_token: the file is included): Range and the tokens
 *	  of Prefer and Accept.  A Range it accepts is then paged through
 *	  vn_query_build, as the router does, so huge offsets and limits reach
 *	  the SQL builder.
 *
 * Input: byte 0 chooses max-rows, count and an offset= argument; the rest up to a NUL is the
 * Range header, what follows it a Prefer header.
 */
#include "../../src/http/request.c"

#include "fuzz_common.h"

static const char *tokens[] = {
	"count=exact",
	"count=planned",
	"return=representation",
	"resolution=merge-duplicates",
	"params=single-object",
	"text/csv",
	"application/vnd.pgrst.object+json",
	NULL,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text;
	const char *prefer;
	long		offset,
		limit;

	if (size < 1)
		return 0;
	text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	prefer = text + strlen(text) + (strlen(text) < size - 1 ? 1 : 0);

	for (int i = 0; tokens[i]; i++)
		if (vn_request_has_token(prefer, tokens[i]))
			FUZZ_CHECK(strstr(prefer, tokens[i]) != NULL);
	FUZZ_CHECK(!vn_request_has_token(NULL, "count=exact"));

	if (parse_range(text, &offset, &limit))
	{
		VnQueryInput in;
		VnQuery		 q;
		VnArg		 offset_arg = {"offset", "999999999999"};
		VnArgs		 args = {(data[0] & 4) ? 1 : 0, &offset_arg};

		FUZZ_CHECK(offset >= 0);
		FUZZ_CHECK(limit == -1 || limit >= 1);
		memset(&in, 0, sizeof(in));
		in.schema = &fuzz_schema;
		in.method = "GET";
		in.target = "contacts";
		in.args = &args;
		in.body = "";
		in.max_affected = -1;
		in.range_offset = offset;
		in.range_limit = limit;
		in.max_rows = data[0] & 1 ? 1000 : 0;
		in.count = data[0] & 2 ? VN_COUNT_EXACT : VN_COUNT_NONE;
		vn_query_init(&q);
		if (vn_query_build(&in, &q))
			fuzz_check_sql(&q);
		else
			FUZZ_CHECK(q.status >= 400 && q.status < 600);
		vn_query_free(&q);
	}
	else
	{
		FUZZ_CHECK(offset == -1 && limit == -1);
	}
	free(text);
	return 0;
}
