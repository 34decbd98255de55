/*
 * parse.c
 *	  The request parser's small pieces of PostgREST's syntax: lists split at
 *	  top-level commas, quoted values, query arguments, numbers, and the
 *	  argument names that are not filters, the keys of a JSON body.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "query_shared.h"

typedef VnQueryCtx Ctx;

char *
vn_query_trim(char *s)
{
	char *e;

	while (*s == ' ')
		s++;
	e = s + strlen(s);
	while (e > s && e[-1] == ' ')
		*--e = '\0';
	return s;
}

void
vn_query_free_list(char **items, int n)
{
	for (int i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/*
 * Splits s at top-level commas (outside parentheses and double quotes) into
 * malloc'd pieces.  False on unbalanced input, with nothing left allocated
 * (*out NULL, *n 0), so that a caller's early return leaks nothing.
 */
bool
vn_query_split(const char *s, char ***out, int *n)
{
	int			depth = 0;
	bool		quoted = false;
	const char *start = s;
	int			cap = 8;

	*n = 0;
	*out = vn_alloc(sizeof(char *) * cap);
	for (const char *p = s;; p++)
	{
		if (*p == '\0' || (*p == ',' && depth == 0 && !quoted))
		{
			if (*n == cap)
			{
				cap *= 2;
				*out = realloc(*out, sizeof(char *) * cap);
				if (*out == NULL)
					abort();
			}
			(*out)[(*n)++] = vn_strndup(start, p - start);
			if (*p == '\0')
				break;
			start = p + 1;
			continue;
		}
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '(')
			depth++;
		else if (!quoted && *p == ')')
		{
			if (--depth < 0)
				break;
		}
	}
	if (depth == 0 && !quoted)
		return true;
	vn_query_free_list(*out, *n);
	*out = NULL;
	*n = 0;
	return false;
}

/* a value in double quotes loses them (and its backslash escapes) */
char *
vn_query_unquote(const char *s)
{
	size_t n = strlen(s);
	char  *out;
	size_t k = 0;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return vn_strdup(s);
	out = vn_alloc(n);
	for (size_t i = 1; i < n - 1; i++)
	{
		if (s[i] == '\\' && i + 1 < n - 1)
			i++;
		out[k++] = s[i];
	}
	out[k] = '\0';
	return out;
}
bool
vn_query_is_reserved(const char *key)
{
	static const char *reserved[] = {"select", "order", "limit", "offset", "columns", "on_conflict", NULL};

	for (int i = 0; reserved[i]; i++)
		if (strcmp(key, reserved[i]) == 0)
			return true;
	return false;
}

/*
 * The WHERE clause from the query string's filters: "TRUE AND (...) ...".
 * expect_version: for writes, a version=eq.N filter becomes a check that
 * raises VN001 on a stale version instead of silently matching nothing; its
 * parameter number is stored in *version_param.
 */
const char *
vn_query_arg(const VnArgs *a, const char *key)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->items[i].key, key) == 0)
			return a->items[i].value;
	return NULL;
}
bool
vn_query_number(const char *s, long *out)
{
	char *end;

	if (s == NULL || !isdigit((unsigned char) s[0]) || strlen(s) > 12)
		return false;
	*out = strtol(s, &end, 10);
	return *end == '\0';
}

/* LIMIT/OFFSET from limit=, offset= and Range, capped at max_rows */

/* the top-level keys of the JSON body, which must not be empty */
bool
vn_query_scan_body(Ctx *c, char ***keys, int *nkeys, bool *is_array)
{
	const char *err = NULL;

	if (c->in->body_len == 0)
		return vn_query_fail(c->q, 400, "PGRST102", NULL, NULL, "empty request body");
	if (!vn_json_scan(c->in->body, c->in->body_len, keys, nkeys, is_array, &err))
		return vn_query_fail(c->q, 400, "PGRST102", err, NULL, "invalid JSON in the request body");
	return true;
}

/*
 * key=value&... (a query string, or an application/x-www-form-urlencoded
 * body) into args, each key and value %-decoded with + as space; false
 * when malformed, not UTF-8, or over 200 arguments.
 */
bool
vn_args_parse(const char *s, size_t len, VnArgs *args)
{
	int			cap = 8;
	const char *p = s;
	const char *stop = s + len;

	args->n = 0;
	args->items = vn_alloc(sizeof(VnArg) * cap);
	while (p < stop)
	{
		const char *amp = memchr(p, '&', stop - p);
		const char *end = amp ? amp : stop;
		const char *eq = memchr(p, '=', end - p);
		char	   *k,
			*v;

		if (end > p)
		{
			if (args->n >= 200)
				return false;
			k = vn_url_decode(p, (eq ? eq : end) - p, true);
			v = eq ? vn_url_decode(eq + 1, end - eq - 1, true) : vn_strdup("");
			if (k == NULL || v == NULL)
			{
				free(k);
				free(v);
				return false;
			}
			if (args->n == cap)
			{
				cap *= 2;
				args->items = realloc(args->items, sizeof(VnArg) * cap);
				if (args->items == NULL)
					abort();
			}
			args->items[args->n].key = k;
			args->items[args->n].value = v;
			args->n++;
		}
		p = amp ? amp + 1 : end;
	}
	return true;
}

void
vn_args_free(VnArgs *args)
{
	for (int i = 0; i < args->n; i++)
	{
		free(args->items[i].key);
		free(args->items[i].value);
	}
	free(args->items);
	args->items = NULL;
	args->n = 0;
}
