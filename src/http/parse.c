/*
 * parse.c
 *	  The request parser's small pieces of PostgREST's syntax: lists split at
 *	  top-level commas, quoted values, query arguments, numbers, and the
 *	  argument names that are not filters, the keys of a JSON body, a form
 *	  body as JSON, the type names of casts.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/*
 * The top-level keys of the JSON body, which must not be empty.  With
 * uniform (not NULL), the objects of an array must all name the same keys,
 * PostgREST's rule for a bulk insert without columns= and for a call.
 */
bool
vn_query_scan_body(Ctx *c, char ***keys, int *nkeys, bool *is_array, bool uniform)
{
	const char *err = NULL;
	bool		same = true;

	if (c->in->body_len == 0)
		return vn_query_fail(c->q, 400, "PGRST102", NULL, NULL, "empty request body");
	if (!vn_json_scan_uniform(c->in->body, c->in->body_len, keys, nkeys, is_array, &same, &err))
		return vn_query_fail(c->q, 400, "PGRST102", err, NULL, "invalid JSON in the request body");
	if (uniform && !same)
	{
		vn_query_free_list(*keys, *nkeys);
		*keys = NULL;
		*nkeys = 0;
		return vn_query_fail(c->q, 400, "PGRST102", NULL,
							 "Give every object the same keys, or name the columns: columns=a,b.",
							 "All object keys must match");
	}
	return true;
}

/* Content-Type is type, its parameters aside */
bool
vn_query_content_type_is(const char *content_type, const char *type)
{
	size_t n = strlen(type);

	if (content_type == NULL)
		return false;
	while (*content_type == ' ')
		content_type++;
	return strncasecmp(content_type, type, n) == 0 &&
		   (content_type[n] == '\0' || content_type[n] == ';' || content_type[n] == ' ');
}

/*
 * The body is a form: Content-Type application/x-www-form-urlencoded, and
 * the body is not JSON.  curl -d sends JSON under that type unless told
 * otherwise, and Ventros' documentation and scripts do so: a body opening
 * with { or [ is read as JSON (no form's first key starts so; PostgREST
 * would read it as one).
 */
bool
vn_query_is_form(const VnQueryInput *in)
{
	size_t i = 0;

	if (!vn_query_content_type_is(in->content_type, "application/x-www-form-urlencoded"))
		return false;
	while (i < in->body_len && isspace((unsigned char) in->body[i]))
		i++;
	return i == in->body_len || (in->body[i] != '{' && in->body[i] != '[');
}

/*
 * An application/x-www-form-urlencoded body as PostgREST reads it for a
 * table: one JSON object whose values are the strings given (PostgreSQL
 * turns each into the column's type, as from a JSON string); of a key given
 * twice, the last value.  Into json; false (400 PGRST102) when malformed.
 */
bool
vn_query_form_json(Ctx *c, VnBuf *json)
{
	VnArgs form = {0};
	bool   ok = vn_args_parse(c->in->body ? c->in->body : "", c->in->body_len, &form);

	if (!ok)
	{
		vn_args_free(&form);
		return vn_query_fail(c->q, 400, "PGRST102", NULL, "Percent-encode the body as UTF-8.",
							 "malformed application/x-www-form-urlencoded body");
	}
	vn_buf_addc(json, '{');
	for (int i = 0; i < form.n; i++)
	{
		bool later = false;

		for (int j = i + 1; j < form.n && !later; j++)
			later = strcmp(form.items[i].key, form.items[j].key) == 0;
		if (later)
			continue;
		if (json->len > 1)
			vn_buf_addc(json, ',');
		vn_buf_json_string(json, form.items[i].key);
		vn_buf_addc(json, ':');
		vn_buf_json_string(json, form.items[i].value);
	}
	vn_buf_addc(json, '}');
	vn_args_free(&form);
	return true;
}

/* SQL's spellings of types, written as they are (a quoted "int" or "char" would be another type) */
static const char *sql_types[] = {"text",
								  "integer",
								  "int",
								  "int4",
								  "bigint",
								  "int8",
								  "smallint",
								  "int2",
								  "numeric",
								  "decimal",
								  "real",
								  "float4",
								  "double precision",
								  "float8",
								  "float",
								  "boolean",
								  "bool",
								  "date",
								  "time",
								  "timestamp",
								  "timestamptz",
								  "timestamp with time zone",
								  "timestamp without time zone",
								  "time with time zone",
								  "time without time zone",
								  "interval",
								  "uuid",
								  "json",
								  "jsonb",
								  "varchar",
								  "character varying",
								  "char",
								  "character",
								  "bit",
								  "bit varying",
								  NULL};

/* one identifier of a type name: letters, digits, _, not starting with a digit */
static size_t
type_ident(const char *s)
{
	size_t n = 0;

	if (!(isalpha((unsigned char) *s) || *s == '_'))
		return 0;
	while (isalnum((unsigned char) s[n]) || s[n] == '_')
		n++;
	return n < 64 ? n : 0;
}

/* "(n)" or "(n,m)", spaces allowed around the numbers: its length, 0 for none */
static size_t
type_modifier(const char *s)
{
	const char *p = s;

	if (*p++ != '(')
		return 0;
	for (int part = 0; part < 2; part++)
	{
		size_t digits;

		p += strspn(p, " ");
		digits = strspn(p, "0123456789");
		if (digits == 0 || digits > 9)
			return 0;
		p += digits;
		p += strspn(p, " ");
		if (*p == ')')
			return p + 1 - s;
		if (*p++ != ',')
			return 0;
	}
	return 0;
}

/*
 * The type of a cast (select=col::type): one of SQL's spellings or a
 * catalog name (int4, citext, a_schema.a_type), each identifier quoted, then
 * a type modifier, (10,2) or (5), then any number of [].  A strict grammar:
 * nothing but names, digits and those marks reaches the statement, and
 * PostgreSQL answers a type that does not exist (42704) or a modifier it
 * does not take (22023, 42601), 400 either way.  Appends "::type" to out
 * (when not NULL); false when cast is no type name.
 */
bool
vn_query_cast_type(const char *cast, VnBuf *out)
{
	const char *p = cast;
	size_t		n = 0;
	VnBuf		t;
	bool		ok;

	vn_buf_init(&t);
	/* the longest spelling that ends where a word ends (timestamp with time zone, not timestamp) */
	for (int k = 0; sql_types[k]; k++)
	{
		size_t len = strlen(sql_types[k]);

		if (len > n && strncmp(cast, sql_types[k], len) == 0 && !isalnum((unsigned char) cast[len]) &&
			cast[len] != '_' && cast[len] != '.')
			n = len;
	}
	if (n > 0)
		vn_buf_addn(&t, p, n);
	else if ((n = type_ident(p)) > 0)
	{
		char part[64];

		snprintf(part, sizeof(part), "%.*s", (int) n, p);
		vn_buf_ident(&t, part);
		if (p[n] == '.' && type_ident(p + n + 1) > 0)
		{
			size_t m = type_ident(p + n + 1);

			snprintf(part, sizeof(part), "%.*s", (int) m, p + n + 1);
			vn_buf_addc(&t, '.');
			vn_buf_ident(&t, part);
			n += m + 1;
		}
	}
	p += n;
	if (n > 0 && (n = type_modifier(p)) > 0)
	{
		vn_buf_addn(&t, p, n);
		p += n;
	}
	while (strncmp(p, "[]", 2) == 0)
	{
		vn_buf_add(&t, "[]");
		p += 2;
	}
	ok = t.len > 0 && *p == '\0';
	if (ok && out)
	{
		vn_buf_add(out, "::");
		vn_buf_add(out, t.data);
	}
	vn_buf_free(&t);
	return ok;
}

/*
 * The first '(' of a select item that opens an embedding or an aggregate's
 * (), not what follows a cast's type name (col::numeric(10,2), which
 * vn_query_cast_type() then checks); NULL for none.
 */
char *
vn_query_item_paren(const char *item)
{
	for (const char *p = strchr(item, '('); p; p = strchr(p + 1, '('))
	{
		const char *q = p;

		while (q > item && (isalnum((unsigned char) q[-1]) || q[-1] == '_' || q[-1] == '.' || q[-1] == ' '))
			q--;
		if (q - item < 2 || q[-1] != ':' || q[-2] != ':' || p[1] == ')')
			return (char *) p;
	}
	return NULL;
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
