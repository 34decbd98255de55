/*
 * fuzz_select.c
 *	  The select= and embedding parser of src/http/select.c and embed.c:
 *	  aliases, casts, JSON paths, embedded resources of every relationship
 *	  kind (keys, junctions, computed), hints (!inner at any depth, !fk,
 *	  !column), spreads and the filters, order and limits of an embedding.
 *
 * Input: byte 0 picks the relation read (GET, or HEAD when its top bit is
 * set; aggregates enabled with bit 0x10); the text up to the first '&' is
 * the select= value and the rest more "k=v" arguments (messages.order=...,
 * contacts.name=eq.x, limit=...).
 */
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	VnQueryInput in;
	VnQuery		 q;
	VnArgs		 args;
	char		*text;
	char		*nul;

	if (size < 1)
		return 0;
	/* "select=" + input: the first argument is the select list */
	text = malloc(size - 1 + 8);
	memcpy(text, "select=", 7);
	memcpy(text + 7, data + 1, size - 1);
	text[size - 1 + 7] = '\0';
	nul = memchr(text, '\0', size - 1 + 8);
	memset(&in, 0, sizeof(in));
	in.schema = &fuzz_schema;
	in.method = (data[0] & 0x80) ? "HEAD" : "GET";
	in.target = rels[data[0] % fuzz_schema.nrels].name;
	in.format = (VnFormat) ((data[0] >> 2) % 3);
	in.count = (data[0] & 0x40) ? VN_COUNT_EXACT : VN_COUNT_NONE;
	in.aggregates = (data[0] & 0x10) != 0;
	in.range_offset = -1;
	in.range_limit = -1;
	in.max_affected = -1;
	in.body = "";
	fuzz_args(text, (size_t) (nul - text), &args);
	in.args = &args;

	vn_query_init(&q);
	if (vn_query_build(&in, &q))
	{
		FUZZ_CHECK(q.status == 0);
		FUZZ_CHECK(q.is_read);
		fuzz_check_sql(&q);
	}
	else
		FUZZ_CHECK(q.status >= 400 && q.status < 600);
	vn_query_free(&q);
	fuzz_args_free(&args);
	free(text);
	return 0;
}
