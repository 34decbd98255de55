/*
 * json.c
 *	  A small JSON scanner for request bodies: checks that a body is well
 *	  formed (PostgreSQL parses it again, for real) and lists the top-level
 *	  keys of an object or of an array of objects, which become the column or
 *	  argument names of the statement.  Nesting is limited to 64 levels and
 *	  the distinct keys to 1000.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

typedef struct Scan
{
	const char *p;
	const char *end;
	int			depth;
	char	  **keys;
	int			nkeys;
	int			cap;
	const char *error;
	bool		exact;	  /* keys decoded exactly, and a repeated key is an error */
	int		   *last;	  /* per key: the last object (1, 2 ...) that named it */
	int			obj;	  /* the objects whose keys were collected so far */
	int			obj_keys; /* distinct keys of the current object */
	int			min_keys; /* the fewest distinct keys of an object, -1 before the first */
} Scan;

static void
ws(Scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* appends code point cp as UTF-8 */
static void
add_utf8(VnBuf *out, unsigned long cp)
{
	if (cp < 0x80)
		vn_buf_addc(out, (char) cp);
	else if (cp < 0x800)
	{
		vn_buf_addc(out, (char) (0xC0 | (cp >> 6)));
		vn_buf_addc(out, (char) (0x80 | (cp & 0x3F)));
	}
	else if (cp < 0x10000)
	{
		vn_buf_addc(out, (char) (0xE0 | (cp >> 12)));
		vn_buf_addc(out, (char) (0x80 | ((cp >> 6) & 0x3F)));
		vn_buf_addc(out, (char) (0x80 | (cp & 0x3F)));
	}
	else
	{
		vn_buf_addc(out, (char) (0xF0 | (cp >> 18)));
		vn_buf_addc(out, (char) (0x80 | ((cp >> 12) & 0x3F)));
		vn_buf_addc(out, (char) (0x80 | ((cp >> 6) & 0x3F)));
		vn_buf_addc(out, (char) (0x80 | (cp & 0x3F)));
	}
}

/*
 * A \u escape, decoded as a JSON parser would (a surrogate pair is one
 * code point; a lone surrogate stays as it is, its own distinct key).
 */
static void
add_escape(Scan *s, VnBuf *out)
{
	unsigned long cp = strtoul((char[5]){s->p[1], s->p[2], s->p[3], s->p[4], 0}, NULL, 16);

	if (cp >= 0xD800 && cp < 0xDC00 && s->end - s->p >= 11 && s->p[5] == '\\' && s->p[6] == 'u')
	{
		unsigned long lo = strtoul((char[5]){s->p[7], s->p[8], s->p[9], s->p[10], 0}, NULL, 16);

		if (lo >= 0xDC00 && lo < 0xE000)
		{
			add_utf8(out, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
			s->p += 6;
			return;
		}
	}
	add_utf8(out, cp);
}

static bool
scan_string(Scan *s, VnBuf *out)
{
	if (s->p >= s->end || *s->p != '"')
		return false;
	s->p++;
	while (s->p < s->end && *s->p != '"')
	{
		unsigned char ch = (unsigned char) *s->p;

		if (ch < 0x20)
			return false;
		if (ch == '\\')
		{
			s->p++;
			/* strchr finds the terminating NUL too: a NUL byte is no escape */
			if (s->p >= s->end || *s->p == '\0' || !strchr("\"\\/bfnrtu", *s->p))
				return false;
			if (*s->p == 'u')
			{
				for (int i = 1; i <= 4; i++)
					if (s->p + i >= s->end || !isxdigit((unsigned char) s->p[i]))
						return false;
				if (out && s->exact)
					add_escape(s, out);
				else if (out)
					vn_buf_add(out, "\\u"); /* keys with escapes never match a column */
				s->p += 4;
			}
			else if (out)
				vn_buf_addc(out, *s->p == 'n' ? '\n' : *s->p == 't' ? '\t' :
												   *s->p == 'b'		? '\b' :
												   *s->p == 'f'		? '\f' :
												   *s->p == 'r'		? '\r' :
																	  *s->p);
			s->p++;
			continue;
		}
		if (out)
			vn_buf_addc(out, (char) ch);
		s->p++;
	}
	if (s->p >= s->end)
		return false;
	s->p++;
	return true;
}

static bool scan_value(Scan *s, bool collect);

/* the end of an object whose keys were collected: the fewest keys so far */
static bool
object_done(Scan *s, bool collect)
{
	if (collect && (s->min_keys < 0 || s->obj_keys < s->min_keys))
		s->min_keys = s->obj_keys;
	return true;
}

static bool
scan_object(Scan *s, bool collect)
{
	if (collect)
	{
		s->obj++;
		s->obj_keys = 0;
	}
	s->p++;
	ws(s);
	if (s->p < s->end && *s->p == '}')
	{
		s->p++;
		return object_done(s, collect);
	}
	for (;;)
	{
		VnBuf key;
		bool  ok;

		ws(s);
		vn_buf_init(&key);
		ok = scan_string(s, collect ? &key : NULL);
		if (ok && collect)
		{
			int seen = -1;

			for (int i = 0; i < s->nkeys; i++)
				if (strcmp(s->keys[i], key.data) == 0)
					seen = i;
			if (seen >= 0 && s->exact)
			{
				vn_buf_free(&key);
				s->error = "A key appears twice.";
				return false;
			}
			if (seen < 0)
			{
				if (s->nkeys >= 1000)
				{
					vn_buf_free(&key);
					s->error = "Too many distinct keys.";
					return false;
				}
				if (s->nkeys == s->cap)
				{
					s->cap = s->cap ? s->cap * 2 : 16;
					s->keys = realloc(s->keys, sizeof(char *) * s->cap);
					s->last = realloc(s->last, sizeof(int) * s->cap);
					if (s->keys == NULL || s->last == NULL)
						abort();
				}
				seen = s->nkeys;
				s->last[seen] = 0;
				s->keys[s->nkeys++] = vn_strdup(key.data);
			}
			if (s->last[seen] != s->obj)
			{
				s->last[seen] = s->obj;
				s->obj_keys++;
			}
		}
		vn_buf_free(&key);
		if (!ok)
			return false;
		ws(s);
		if (s->p >= s->end || *s->p != ':')
			return false;
		s->p++;
		if (!scan_value(s, false))
			return false;
		ws(s);
		if (s->p < s->end && *s->p == ',')
		{
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == '}')
		{
			s->p++;
			return object_done(s, collect);
		}
		return false;
	}
}

static bool
scan_array(Scan *s, bool collect_objects)
{
	s->p++;
	ws(s);
	if (s->p < s->end && *s->p == ']')
	{
		s->p++;
		return true;
	}
	for (;;)
	{
		ws(s);
		if (collect_objects && (s->p >= s->end || *s->p != '{'))
		{
			s->error = "A bulk insert is an array of objects.";
			return false;
		}
		if (!scan_value(s, collect_objects))
			return false;
		ws(s);
		if (s->p < s->end && *s->p == ',')
		{
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ']')
		{
			s->p++;
			return true;
		}
		return false;
	}
}

static bool
scan_value(Scan *s, bool collect)
{
	bool ok;

	ws(s);
	if (s->p >= s->end)
		return false;
	if (++s->depth > 64)
	{
		s->error = "JSON nests at most 64 levels.";
		return false;
	}
	switch (*s->p)
	{
		case '{':
			ok = scan_object(s, collect);
			break;
		case '[':
			ok = scan_array(s, false);
			break;
		case '"':
			ok = scan_string(s, NULL);
			break;
		case 't':
			ok = s->end - s->p >= 4 && strncmp(s->p, "true", 4) == 0;
			s->p += ok ? 4 : 0;
			break;
		case 'f':
			ok = s->end - s->p >= 5 && strncmp(s->p, "false", 5) == 0;
			s->p += ok ? 5 : 0;
			break;
		case 'n':
			ok = s->end - s->p >= 4 && strncmp(s->p, "null", 4) == 0;
			s->p += ok ? 4 : 0;
			break;
		default:
			{
				const char *start = s->p;

				if (*s->p == '-')
					s->p++;
				while (s->p < s->end && (isdigit((unsigned char) *s->p) || *s->p == '.' || *s->p == 'e' ||
										 *s->p == 'E' || *s->p == '+' || *s->p == '-'))
					s->p++;
				ok = s->p > start && isdigit((unsigned char) s->p[-1]);
			}
	}
	s->depth--;
	return ok;
}

bool
vn_json_scan(const char *str, size_t len, char ***keys, int *nkeys, bool *is_array, const char **error)
{
	return vn_json_scan_uniform(str, len, keys, nkeys, is_array, NULL, error);
}

bool
vn_json_scan_uniform(const char *str, size_t len, char ***keys, int *nkeys, bool *is_array, bool *uniform,
					 const char **error)
{
	Scan s = {str, str + len, 0, NULL, 0, 0, NULL, false, NULL, 0, 0, -1};
	bool ok;

	ws(&s);
	*is_array = s.p < s.end && *s.p == '[';
	if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
	{
		*error = "The body must be a JSON object or an array of objects.";
		return false;
	}
	s.depth = 1;
	if (*is_array)
		ok = scan_array(&s, true);
	else
		ok = scan_object(&s, true);
	ws(&s);
	if (ok && s.p != s.end)
		ok = false;
	*keys = s.keys;
	*nkeys = s.nkeys;
	/* every object names every key: each has as many distinct keys as all of them */
	if (uniform)
		*uniform = s.min_keys < 0 || s.min_keys == s.nkeys;
	free(s.last);
	if (!ok)
	{
		*error = s.error ? s.error : "Malformed JSON.";
		for (int i = 0; i < s.nkeys; i++)
			free(s.keys[i]);
		free(s.keys);
		*keys = NULL;
		*nkeys = 0;
	}
	return ok;
}

bool
vn_json_object_keys(const char *str, size_t len, char ***keys, int *nkeys)
{
	Scan s = {str, str + len, 1, NULL, 0, 0, NULL, true, NULL, 0, 0, -1};
	bool ok;

	ws(&s);
	ok = s.p < s.end && *s.p == '{' && scan_object(&s, true);
	ws(&s);
	ok = ok && s.p == s.end;
	*keys = s.keys;
	*nkeys = s.nkeys;
	free(s.last);
	if (!ok)
	{
		for (int i = 0; i < s.nkeys; i++)
			free(s.keys[i]);
		free(s.keys);
		*keys = NULL;
		*nkeys = 0;
	}
	return ok;
}
