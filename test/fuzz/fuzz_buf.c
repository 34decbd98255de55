/*
 * fuzz_buf.c
 *	  The string builders of ventros-http (src/http/buf.c), which every SQL
 *	  statement and JSON answer goes through: each must round-trip.
 *
 *	  vn_buf_literal	'...' whose inside, with '' undoubled, is the input;
 *	  vn_buf_ident		"..." likewise with "";
 *	  vn_buf_json_string "..." with no raw control character, whose escapes
 *						decode back to the input;
 *	  vn_utf8_valid		agrees with RFC 3629's grammar (written out below as
 *						byte ranges, independently of buf.c) minus NUL.
 * The input is appended piecewise to one buffer, so growth is exercised.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define CHECK(cond) \
	do \
	{ \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz invariant failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

/* RFC 3629 section 4, UTF8-char, as ranges of each byte */
static bool
utf8_reference(const unsigned char *s, size_t len)
{
	static const struct
	{
		unsigned char lo[4],
			hi[4];
		int n;
	} forms[] = {
		{{0x01}, {0x7F}, 1}, /* NUL refused on purpose */
		{{0xC2, 0x80}, {0xDF, 0xBF}, 2},
		{{0xE0, 0xA0, 0x80}, {0xE0, 0xBF, 0xBF}, 3},
		{{0xE1, 0x80, 0x80}, {0xEC, 0xBF, 0xBF}, 3},
		{{0xED, 0x80, 0x80}, {0xED, 0x9F, 0xBF}, 3},
		{{0xEE, 0x80, 0x80}, {0xEF, 0xBF, 0xBF}, 3},
		{{0xF0, 0x90, 0x80, 0x80}, {0xF0, 0xBF, 0xBF, 0xBF}, 4},
		{{0xF1, 0x80, 0x80, 0x80}, {0xF3, 0xBF, 0xBF, 0xBF}, 4},
		{{0xF4, 0x80, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF}, 4},
	};
	size_t i = 0;

	while (i < len)
	{
		bool matched = false;

		for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]) && !matched; f++)
		{
			int k;

			if (i + forms[f].n > len)
				continue;
			for (k = 0; k < forms[f].n; k++)
				if (s[i + k] < forms[f].lo[k] || s[i + k] > forms[f].hi[k])
					break;
			if (k == forms[f].n)
			{
				matched = true;
				i += forms[f].n;
			}
		}
		if (!matched)
			return false;
	}
	return true;
}

/* the inside of q...q with doubled q undoubled; NULL when not of that shape */
static char *
undouble(const char *s, size_t len, char q)
{
	char  *out = malloc(len + 1);
	size_t k = 0;

	CHECK(len >= 2 && s[0] == q && s[len - 1] == q);
	for (size_t i = 1; i < len - 1; i++)
	{
		if (s[i] == q)
		{
			CHECK(i + 1 < len - 1 && s[i + 1] == q);
			i++;
		}
		out[k++] = s[i];
	}
	out[k] = '\0';
	return out;
}

static int
hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
										c >= 'A' && c <= 'F'	 ? c - 'A' + 10 :
																   -1;
}

static char *
json_decode(const char *s, size_t len)
{
	char  *out = malloc(len + 1);
	size_t k = 0;

	CHECK(len >= 2 && s[0] == '"' && s[len - 1] == '"');
	for (size_t i = 1; i < len - 1; i++)
	{
		unsigned char c = (unsigned char) s[i];

		CHECK(c >= 0x20 && c != '"');
		if (c != '\\')
		{
			out[k++] = (char) c;
			continue;
		}
		CHECK(i + 1 < len - 1);
		switch (s[++i])
		{
			case '"':
				out[k++] = '"';
				break;
			case '\\':
				out[k++] = '\\';
				break;
			case '/':
				out[k++] = '/';
				break;
			case 'n':
				out[k++] = '\n';
				break;
			case 'r':
				out[k++] = '\r';
				break;
			case 't':
				out[k++] = '\t';
				break;
			case 'b':
				out[k++] = '\b';
				break;
			case 'f':
				out[k++] = '\f';
				break;
			case 'u':
				{
					int v = 0;

					CHECK(i + 4 < len - 1);
					for (int j = 1; j <= 4; j++)
					{
						CHECK(hex(s[i + j]) >= 0);
						v = v * 16 + hex(s[i + j]);
					}
					CHECK(v > 0 && v < 0x20); /* only control characters are escaped so */
					out[k++] = (char) v;
					i += 4;
					break;
				}
			default:
				CHECK(!"unknown escape");
		}
	}
	out[k] = '\0';
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char  *s = malloc(size + 1);
	VnBuf  b;
	size_t start;
	char  *back;

	memcpy(s, data, size);
	s[size] = '\0';
	CHECK(vn_utf8_valid(s, size) == utf8_reference(data, size));

	vn_buf_init(&b);
	vn_buf_addf(&b, "%s:%zu:", "prefix", size);
	start = b.len;
	vn_buf_literal(&b, s);
	back = undouble(b.data + start, b.len - start, '\'');
	CHECK(strcmp(back, s) == 0);
	free(back);

	start = b.len;
	vn_buf_ident(&b, s);
	back = undouble(b.data + start, b.len - start, '"');
	CHECK(strcmp(back, s) == 0);
	free(back);

	start = b.len;
	vn_buf_json_string(&b, s);
	back = json_decode(b.data + start, b.len - start);
	CHECK(strcmp(back, s) == 0);
	free(back);

	CHECK(strlen(b.data) == b.len && b.len < b.cap);
	start = b.len;
	vn_buf_addn(&b, (const char *) data, size); /* raw bytes, NULs included */
	CHECK(b.len == start + size && memcmp(b.data + start, data, size) == 0 && b.data[b.len] == '\0');
	vn_buf_reset(&b);
	CHECK(b.len == 0 && b.data[0] == '\0');
	back = vn_strndup(s, size / 2);
	CHECK(strlen(back) <= size / 2 && strncmp(back, s, size / 2) == 0);
	free(back);
	vn_buf_free(&b);
	free(s);
	return 0;
}
