/*
 * fuzz_query_string.c
 *	  The query-string decoder of ventros-http (parse_query and url_decode in
 *	  src/http/main.c, static: the file is included, its main renamed).
 *
 * The input is the raw query string after '?'.  Accepted: at most 200
 * arguments, each key and value valid UTF-8 (without NUL) and no longer
 * than the input; a string without '%' and '+' decodes to itself.
 */
#define main ventros_http_main
#include "../../src/http/main.c"
#undef main

#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char  *qs = malloc(size + 1);
	VnArgs args;
	bool   plain;

	memcpy(qs, data, size);
	qs[size] = '\0';
	plain = memchr(qs, '%', size) == NULL && memchr(qs, '+', size) == NULL &&
			memchr(qs, '\0', size) == NULL && vn_utf8_valid(qs, size);
	if (parse_query(qs, &args))
	{
		size_t total = 0;

		FUZZ_CHECK(args.n <= 200);
		for (int i = 0; i < args.n; i++)
		{
			size_t kl = strlen(args.items[i].key);
			size_t vl = strlen(args.items[i].value);

			FUZZ_CHECK(vn_utf8_valid(args.items[i].key, kl));
			FUZZ_CHECK(vn_utf8_valid(args.items[i].value, vl));
			total += kl + vl;
			if (plain)
				FUZZ_CHECK(strstr(qs, args.items[i].key) != NULL && strstr(qs, args.items[i].value) != NULL);
		}
		FUZZ_CHECK(total <= size);
	}
	else
		FUZZ_CHECK(!plain || args.n >= 200);
	free_args(&args);
	free(qs);
	return 0;
}
