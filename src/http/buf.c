/*
 * buf.c
 *	  Growable strings, quoting and UTF-8 validation for ventros-http.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void *
vn_alloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

char *
vn_strndup(const char *s, size_t n)
{
	char *p = vn_alloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
vn_strdup(const char *s)
{
	return vn_strndup(s, strlen(s));
}

void
vn_buf_init(VnBuf *b)
{
	b->cap = 256;
	b->len = 0;
	b->data = vn_alloc(b->cap);
}

void
vn_buf_free(VnBuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
vn_buf_reset(VnBuf *b)
{
	b->len = 0;
	b->data[0] = '\0';
}

static void
reserve(VnBuf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	while (b->len + more + 1 > b->cap)
		b->cap *= 2;
	b->data = realloc(b->data, b->cap);
	if (b->data == NULL)
		abort();
}

void
vn_buf_addn(VnBuf *b, const char *s, size_t n)
{
	reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
vn_buf_add(VnBuf *b, const char *s)
{
	vn_buf_addn(b, s, strlen(s));
}

void
vn_buf_addc(VnBuf *b, char c)
{
	vn_buf_addn(b, &c, 1);
}

void
vn_buf_addf(VnBuf *b, const char *fmt, ...)
{
	va_list ap;
	int		n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	reserve(b, (size_t) n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
}

void
vn_buf_ident(VnBuf *b, const char *ident)
{
	vn_buf_addc(b, '"');
	for (; *ident; ident++)
	{
		if (*ident == '"')
			vn_buf_addc(b, '"');
		vn_buf_addc(b, *ident);
	}
	vn_buf_addc(b, '"');
}

void
vn_buf_literal(VnBuf *b, const char *s)
{
	vn_buf_addc(b, '\'');
	for (; *s; s++)
	{
		if (*s == '\'')
			vn_buf_addc(b, '\'');
		vn_buf_addc(b, *s);
	}
	vn_buf_addc(b, '\'');
}

void
vn_buf_json_string(VnBuf *b, const char *s)
{
	vn_buf_addc(b, '"');
	for (; s && *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		switch (c)
		{
			case '"':
				vn_buf_add(b, "\\\"");
				break;
			case '\\':
				vn_buf_add(b, "\\\\");
				break;
			case '\n':
				vn_buf_add(b, "\\n");
				break;
			case '\r':
				vn_buf_add(b, "\\r");
				break;
			case '\t':
				vn_buf_add(b, "\\t");
				break;
			default:
				if (c < 0x20)
					vn_buf_addf(b, "\\u%04x", c);
				else
					vn_buf_addc(b, (char) c);
		}
	}
	vn_buf_addc(b, '"');
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF, no NUL. */
bool
vn_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t				 i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		int			  n;
		unsigned int  cp;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
		{
			n = 1;
			cp = c & 0x1F;
		}
		else if ((c & 0xF0) == 0xE0)
		{
			n = 2;
			cp = c & 0x0F;
		}
		else if ((c & 0xF8) == 0xF0)
		{
			n = 3;
			cp = c & 0x07;
		}
		else
			return false;
		for (int k = 1; k <= n; k++)
		{
			if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/*
 * FNV-1a over 64 bits: the one hash of the front's tables (the token cache,
 * prepared statements, per-address counts).  Fast and well spread for short
 * keys; not keyed, so never a defence by itself against chosen collisions:
 * every table that uses it bounds its chains.
 */
unsigned long long
vn_hash_bytes(const void *p, size_t len)
{
	const unsigned char *b = p;
	unsigned long long	 h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

unsigned long long
vn_hash_string(const char *s)
{
	return vn_hash_bytes(s, strlen(s));
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %-decoding (and + as space in query strings); NULL when malformed or not UTF-8 */
char *
vn_url_decode(const char *s, size_t n, bool plus)
{
	char  *out = vn_alloc(n + 1);
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
	{
		if (s[i] == '%')
		{
			int h,
				l;

			if (i + 2 >= n)
			{
				free(out);
				return NULL;
			}
			h = hexval(s[i + 1]);
			l = hexval(s[i + 2]);
			if (h < 0 || l < 0)
			{
				free(out);
				return NULL;
			}
			out[k++] = (char) (h * 16 + l);
			i += 2;
		}
		else if (plus && s[i] == '+')
			out[k++] = ' ';
		else
			out[k++] = s[i];
	}
	out[k] = '\0';
	if (!vn_utf8_valid(out, k))
	{
		free(out);
		return NULL;
	}
	return out;
}
