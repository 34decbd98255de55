/*
 * fuzz_json_scan.c
 *	  The request-body scanner (src/http/json.c, vn_json_scan): the top-level
 *	  keys of a JSON object or of an array of objects.
 *
 * The input is the body as received (not NUL-terminated: the scanner is
 * given a length and must not read past it).  A body it accepts yields keys
 * that are NUL-terminated strings no longer than the body; a refusal comes
 * with a message.  JSON text never holds a NUL byte (RFC 8259: not even
 * escaped as a raw byte), so a body with one must be refused: a key cut
 * short at it would name another column than PostgreSQL later reads.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *body = malloc(size ? size : 1);
	char	  **keys = NULL;
	int			nkeys = 0;
	bool		is_array = false;
	const char *error = NULL;

	memcpy(body, data, size);
	if (vn_json_scan(body, size, &keys, &nkeys, &is_array, &error))
	{
		if (nkeys < 0 || (nkeys > 0 && keys == NULL))
			abort();
		if (memchr(data, '\0', size) != NULL)
		{
			fprintf(stderr, "fuzz: a body with a NUL byte was accepted\n");
			abort();
		}
		for (int i = 0; i < nkeys; i++)
		{
			if (keys[i] == NULL || strlen(keys[i]) > size)
				abort();
			free(keys[i]);
		}
		free(keys);
	}
	else
	{
		if (error == NULL)
			abort();
		for (int i = 0; i < nkeys && keys; i++)
			free(keys[i]);
		free(keys);
	}
	free(body);
	return 0;
}
