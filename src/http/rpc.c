/*
 * rpc.c
 *	  /rpc/<name>: the call of a function served by the front, in
 *	  PostgREST's dialect.
 *
 * Which functions: the schema cache's (for api, ventros.http_rpc_functions:
 * those of schema api, then those of ventros a tenant role may execute; for
 * any other exposed schema, every function of it, as PostgREST).  The
 * caller's own grants are PostgreSQL's to check at the call, as its row
 * policies are.  The front's one rule of its own: a platform function
 * (granted to ventros_platform_admin alone) is found only by a request
 * acting as that role; to any other it does not exist (404, PGRST202).
 *
 * Arguments come, by name, from one of:
 *   - a JSON object body (POST): json_to_record() turns it into typed
 *     values, as PostgREST does, so arrays, rows and json are given as JSON;
 *     an array body is one call of its first object (PostgREST 12), refused
 *     by api's commands, or with Prefer: params=multiple-objects a call per
 *     object (a bulk call, PostgREST 10's), whose results make one array;
 *   - the query string (GET and HEAD, which run read-only): one bound
 *     parameter per argument, cast to its type;
 *   - a raw body (POST with Content-Type text/csv or text/plain): it goes to
 *     the function's one argument without a default, which must be text;
 *     the other arguments come from the query string.  PostgREST passes a
 *     raw body to a function of a single unnamed text parameter; a named
 *     one with optional companions is the closest equivalent that leaves the
 *     SQL signature as it is (import_contacts(csv, project_id)).
 *   - Prefer: params=single-object: the whole body to a function of one
 *     json or jsonb argument;
 *   - a function of a single unnamed argument (PostgREST's rule): a JSON
 *     body, object or array, to a json/jsonb one when no other overload
 *     takes the call; a text/plain, text/xml or application/octet-stream
 *     body to a text, xml or bytea one.
 * A VARIADIC argument takes a JSON array, or its key repeated in the query
 * string (?v=1&v=2), one array either way.
 * Overloads are told apart by the names of the arguments given (PostgREST's
 * rule): a call fits a function when it names only its arguments and all of
 * its required ones; when several fit, the call is ambiguous (300,
 * PGRST203), as PostgreSQL would find it: f(a) and f(a, b DEFAULT 1) both
 * take f(a => x).
 *
 * Results: a scalar answers its JSON value; a set answers a JSON array;
 * rows (of a view of api, of an aggregate's table, OUT/TABLE columns or any
 * composite type) go through select=, filters, order and paging as reads do,
 * an aggregate's row with its view's columns only (redacted columns stay
 * out).  A result whose type is a domain named like a media type
 * (ventros."text/csv") answers the value itself with that Content-Type when
 * the request accepts it.  void answers 204.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

typedef enum ArgSource
{
	ARGS_JSON,	 /* a JSON object body */
	ARGS_QUERY,	 /* the query string */
	ARGS_RAW,	 /* a raw text body, and the query string */
	ARGS_SINGLE, /* the whole body, one json argument */
	ARGS_FORM	 /* an application/x-www-form-urlencoded body */
} ArgSource;

/* a raw body's media type (Content-Type), and the argument type it goes to */
typedef enum RawKind
{
	RAW_NONE,
	RAW_TEXT,  /* text/plain, text/csv: text */
	RAW_XML,   /* text/xml: xml */
	RAW_BINARY /* application/octet-stream: bytea */
} RawKind;

typedef struct Call
{
	ArgSource		  src;
	RawKind			  raw;		  /* ARGS_RAW: what the body is */
	bool			  array_body; /* a JSON array body: its first object is the call, or each is (bulk) */
	bool			  bulk;		  /* Prefer: params=multiple-objects: a call per object of the array */
	const VnArgs	 *named;	  /* the key=value arguments: the query string's, or the form body's */
	VnArgs			  form;		  /* ARGS_FORM: the body's */
	char			**keys;		  /* ARGS_JSON: the body's keys */
	int				  nkeys;
	const VnFunction *f;		 /* the function chosen */
	int				  raw_arg;	 /* ARGS_RAW: the argument the body goes to */
	VnBuf			  call;		 /* schema.name(arg => value, ...) */
	VnBuf			  args_from; /* a FROM item the values come from, or "" */
} Call;

static bool
plain_name(const char *n)
{
	for (; *n; n++)
		if (!(isalnum((unsigned char) *n) || *n == '_'))
			return false;
	return true;
}

static int
arg_index(const VnFunction *f, const char *name)
{
	for (int k = 0; k < f->nargs; k++)
		if (strcmp(f->argnames[k], name) == 0)
			return k;
	return -1;
}

/* a function of a single unnamed argument: the body goes to it (PostgREST's rule) */
static bool
unnamed(const VnFunction *f)
{
	return f->nargs == 1 && f->argnames[0][0] == '\0';
}

static bool
json_type(const char *type)
{
	return strcmp(type, "json") == 0 || strcmp(type, "jsonb") == 0;
}

/* the kind of raw body the request's Content-Type says (parameters aside) */
static RawKind
raw_body(const char *content_type)
{
	static const struct
	{
		const char *type;
		RawKind		kind;
	} types[] = {{"text/csv", RAW_TEXT},
				 {"text/plain", RAW_TEXT},
				 {"text/xml", RAW_XML},
				 {"application/octet-stream", RAW_BINARY},
				 {NULL, RAW_NONE}};

	for (int i = 0; types[i].type; i++)
		if (vn_query_content_type_is(content_type, types[i].type))
			return types[i].kind;
	return RAW_NONE;
}

/*
 * Where a raw body goes: a single unnamed argument of the body's type (text,
 * xml, bytea: PostgREST's rule), or Ventros' own rule for text, the one
 * argument without a default when it is text.  -1: none.
 */
static int
raw_arg(const VnFunction *f, RawKind kind)
{
	static const char *types[] = {NULL, "text", "xml", "bytea"};

	if (kind == RAW_NONE)
		return -1;
	if (unnamed(f))
		return strcmp(f->argtypes[0], types[kind]) == 0 ? 0 : -1;
	if (kind != RAW_TEXT || f->nrequired != 1 || strcmp(f->argtypes[0], "text") != 0)
		return -1;
	return 0;
}

/*
 * Why the call does not fit f (a message for PGRST202), or NULL when it
 * does.  In the query string, a key that is no argument is a filter on the
 * rows of the result, so only functions with rows take one.
 */
static const char *
misfit(const VnQueryCtx *c, const Call *k, const VnFunction *f, char *why, size_t len)
{
	const VnArgs *a = k->named;
	bool		 *given = calloc(f->nargs + 1, sizeof(bool));
	const char	 *result = NULL;

	if (given == NULL)
		abort();
	if (k->src == ARGS_SINGLE)
	{
		if (f->nargs != 1 || !json_type(f->argtypes[0]))
			result = "does not take a single JSON object";
		free(given);
		return result;
	}
	if (k->src == ARGS_RAW)
	{
		if (raw_arg(f, k->raw) < 0)
			result = "does not take a raw body: it needs exactly one argument without a default, of the body's type";
		else
			given[raw_arg(f, k->raw)] = true;
	}
	else if (unnamed(f))
	{
		/* only a body, whole, reaches an unnamed argument (resolve()) */
		free(given);
		return "takes a single unnamed argument: the body";
	}
	for (int i = 0; k->src == ARGS_JSON && i < k->nkeys && !result; i++)
	{
		int n = arg_index(f, k->keys[i]);

		if (n < 0)
		{
			snprintf(why, len, "has no argument %.64s", k->keys[i]);
			result = why;
		}
		else
			given[n] = true;
	}
	for (int i = 0; k->src != ARGS_JSON && i < a->n && !result; i++)
	{
		int n = arg_index(f, a->items[i].key);

		if (n >= 0 && given[n] && !(f->variadic && n == f->nargs - 1))
			snprintf(why, len, "is given argument %.64s twice", a->items[i].key);
		else if (n < 0 && (k->src == ARGS_FORM || (!vn_query_is_reserved(a->items[i].key) && f->result_rel < 0)))
			snprintf(why, len, "has no argument %.64s", a->items[i].key);
		else
		{
			if (n >= 0)
				given[n] = true;
			continue;
		}
		result = why;
	}
	for (int n = 0; n < f->nrequired && !result; n++)
		if (!given[n])
		{
			snprintf(why, len, "needs argument %s", f->argnames[n]);
			result = why;
		}
	free(given);
	return result;
}

static void
signature(VnBuf *b, const VnFunction *f)
{
	vn_buf_addf(b, "%s.%s(", f->schema ? f->schema : "api", f->name);
	for (int n = 0; n < f->nargs; n++)
		vn_buf_addf(b, "%s%s", n ? ", " : "", f->argnames[n]);
	vn_buf_addc(b, ')');
}

/* the overload the call names (PostgREST's rule, see the file header) */
static bool
resolve(VnQueryCtx *c, Call *k)
{
	int				  n;
	const VnFunction *fs = vn_schema_functions(c->in->schema, c->in->target, &n);
	const VnFunction *fit = NULL;
	int				  nfit = 0;
	char			  why[160];
	VnBuf			  list;

	/* a platform function does not exist for anyone else (sql/96_http_rpc.sql) */
	if (fs != NULL && fs[0].platform_only && !c->in->platform_admin)
		fs = NULL;
	if (fs == NULL)
		return vn_query_fail(c->q, 404, "PGRST202", NULL, "Functions are listed at GET /.",
							 "could not find the function %.64s", c->in->target);
	for (int i = 0; i < n; i++)
		if (misfit(c, k, &fs[i], why, sizeof(why)) == NULL)
		{
			nfit++;
			fit = &fs[i];
		}
	/*
	 * A JSON body no other overload takes goes whole to a single unnamed
	 * json or jsonb argument (PostgREST's fallback), an array body too.
	 */
	for (int i = 0; i < n && nfit == 0 && k->src == ARGS_JSON; i++)
		if (unnamed(&fs[i]) && json_type(fs[i].argtypes[0]))
		{
			k->src = ARGS_SINGLE;
			k->f = &fs[i];
			return true;
		}
	/*
	 * Elsewhere an array is one call of its first object (PostgREST 12);
	 * Ventros' commands refuse it rather than drop the other objects.
	 */
	if (k->array_body && c->in->schema->ventros && !c->in->multiple_objects)
		return vn_query_fail(c->q, 400, "PGRST102", NULL,
							 "Send one object, or call once per object with Prefer: params=multiple-objects.",
							 "a command takes one JSON object of named arguments");
	if (nfit == 1)
	{
		k->f = fit;
		return true;
	}
	vn_buf_init(&list);
	for (int i = 0; i < n; i++)
	{
		if (i)
			vn_buf_add(&list, ", ");
		signature(&list, &fs[i]);
	}
	if (nfit > 1)
		vn_query_fail(c->q, 300, "PGRST203", list.data, "Name the arguments of one of them, and only those.",
					  "could not choose the best candidate function for %s", fs[0].name);
	else if (n == 1)
		vn_query_fail(c->q, 404, "PGRST202", list.data, "The function's arguments are listed at GET /.",
					  "function %s.%s %s", fs[0].schema ? fs[0].schema : "api", fs[0].name,
					  misfit(c, k, &fs[0], why, sizeof(why)));
	else
		vn_query_fail(c->q, 404, "PGRST202", list.data, "Name the arguments of one of these.",
					  "could not find a function %s taking the arguments given", fs[0].name);
	vn_buf_free(&list);
	return false;
}

/* appends $n for value to dst instead of the statement */
static bool
param_into(VnQueryCtx *c, VnBuf *dst, const char *value, size_t len)
{
	VnBuf saved = c->q->sql;
	bool  ok;

	c->q->sql = *dst;
	ok = vn_query_param(c->q, value, len);
	*dst = c->q->sql;
	c->q->sql = saved;
	return ok;
}

/* "name => " before argument n's value ("VARIADIC name => "); nothing for an unnamed one */
static void
named(Call *k, int n, bool *first)
{
	if (!*first)
		vn_buf_add(&k->call, ", ");
	*first = false;
	if (k->f->variadic && n == k->f->nargs - 1)
		vn_buf_add(&k->call, "VARIADIC ");
	if (k->f->argnames[n][0] == '\0')
		return;
	vn_buf_ident(&k->call, k->f->argnames[n]);
	vn_buf_add(&k->call, " => ");
}

/* a binary body as one bound parameter: its hex digits, decoded in SQL */
static bool
binary_param(VnQueryCtx *c, VnBuf *dst)
{
	static const char digits[] = "0123456789abcdef";
	size_t			  len = c->in->body_len;
	char			 *hex = malloc(len * 2 + 1);
	bool			  ok;

	if (hex == NULL)
		abort();
	for (size_t i = 0; i < len; i++)
	{
		hex[2 * i] = digits[((unsigned char) c->in->body[i]) >> 4];
		hex[2 * i + 1] = digits[((unsigned char) c->in->body[i]) & 15];
	}
	vn_buf_add(dst, "pg_catalog.decode(");
	ok = param_into(c, dst, hex, len * 2);
	vn_buf_add(dst, ", 'hex')");
	free(hex);
	return ok;
}

/*
 * The values of a VARIADIC argument in the query string: every one given
 * under its name (?v=1&v=2), as one array of its type.
 */
static bool
variadic_values(VnQueryCtx *c, Call *k, int n)
{
	const VnArgs *a = k->named;
	bool		  first = true;
	bool		  ok = true;

	vn_buf_add(&k->call, "ARRAY[");
	for (int i = 0; i < a->n && ok; i++)
		if (strcmp(a->items[i].key, k->f->argnames[n]) == 0)
		{
			if (!first)
				vn_buf_add(&k->call, ", ");
			first = false;
			ok = param_into(c, &k->call, a->items[i].value, strlen(a->items[i].value));
		}
	vn_buf_addf(&k->call, "]::%s", k->f->argtypes[n]);
	return ok;
}

/*
 * k->call, and k->args_from for a JSON body: json_to_record() of the body
 * with a column per argument given.
 */
static bool
build_call(VnQueryCtx *c, Call *k)
{
	const VnFunction *f = k->f;
	bool			  first = true;
	bool			  ok = true;

	vn_buf_ident(&k->call, f->schema ? f->schema : "api");
	vn_buf_addc(&k->call, '.');
	vn_buf_ident(&k->call, f->name);
	vn_buf_addc(&k->call, '(');
	if (k->src == ARGS_SINGLE)
	{
		const char *body = c->in->body_len ? c->in->body : "{}";

		ok = param_into(c, &k->call, body, c->in->body_len ? c->in->body_len : 2);
		vn_buf_addf(&k->call, "::%s", f->argtypes[0]);
	}
	else if (k->bulk && k->nkeys == 0)
	{
		/* objects without keys: a call without arguments for each */
		vn_buf_add(&k->args_from, "pg_catalog.json_array_elements(");
		ok = param_into(c, &k->args_from, c->in->body, c->in->body_len);
		vn_buf_add(&k->args_from, "::json) AS _a(o)");
	}
	else if (k->src == ARGS_JSON && k->nkeys > 0)
	{
		/*
		 * An object: its values.  An array: each object's values for a bulk
		 * call, else the first object's (PostgREST 12 reads an array body
		 * this way, as one call of the first object).
		 */
		vn_buf_add(&k->args_from, k->bulk ? "pg_catalog.json_to_recordset(" : "pg_catalog.json_to_record(");
		vn_buf_add(&k->args_from, k->array_body && !k->bulk ? "(" : "");
		ok = param_into(c, &k->args_from, c->in->body, c->in->body_len);
		vn_buf_add(&k->args_from, k->array_body && !k->bulk ? "::json -> 0)) AS _a(" : "::json) AS _a(");
		for (int n = 0; n < f->nargs; n++)
		{
			bool given = false;

			for (int i = 0; i < k->nkeys; i++)
				given = given || strcmp(k->keys[i], f->argnames[n]) == 0;
			if (!given)
				continue;
			if (!first)
				vn_buf_add(&k->args_from, ", ");
			vn_buf_ident(&k->args_from, f->argnames[n]);
			vn_buf_addf(&k->args_from, " %s", f->argtypes[n]);
			named(k, n, &first);
			vn_buf_add(&k->call, "_a.");
			vn_buf_ident(&k->call, f->argnames[n]);
		}
		vn_buf_addc(&k->args_from, ')');
	}
	else if (k->src != ARGS_JSON)
	{
		/* the query string's or the form body's key=value arguments, and a raw body */
		bool variadic_done = false;

		if (k->src == ARGS_RAW)
		{
			named(k, k->raw_arg, &first);
			if (k->raw == RAW_BINARY)
				ok = binary_param(c, &k->call);
			else
			{
				ok = param_into(c, &k->call, c->in->body ? c->in->body : "", c->in->body_len);
				vn_buf_addf(&k->call, "::%s", f->argtypes[k->raw_arg]);
			}
		}
		for (int i = 0; i < k->named->n && ok; i++)
		{
			int n = arg_index(f, k->named->items[i].key);

			if (n < 0 || (k->src == ARGS_RAW && n == k->raw_arg))
				continue; /* a filter on the rows, or select, order ... */
			if (f->variadic && n == f->nargs - 1)
			{
				if (!variadic_done)
				{
					named(k, n, &first);
					ok = variadic_values(c, k, n);
				}
				variadic_done = true;
				continue;
			}
			named(k, n, &first);
			ok = param_into(c, &k->call, k->named->items[i].value, strlen(k->named->items[i].value));
			vn_buf_addf(&k->call, "::%s", f->argtypes[n]);
		}
	}
	vn_buf_addc(&k->call, ')');
	return ok;
}

/* " FROM <values>, LATERAL <call> alias" or " FROM <call> alias" */
static void
call_from(VnBuf *b, const Call *k, const char *alias)
{
	vn_buf_add(b, " FROM ");
	if (k->args_from.len > 0)
	{
		vn_buf_add(b, k->args_from.data);
		vn_buf_add(b, " CROSS JOIN LATERAL ");
	}
	vn_buf_add(b, k->call.data);
	vn_buf_addc(b, ' ');
	vn_buf_add(b, alias);
}

/* " FROM <values>" after a select list that holds the call, or nothing */
static void
values_from(VnBuf *b, const Call *k)
{
	if (k->args_from.len > 0)
	{
		vn_buf_add(b, " FROM ");
		vn_buf_add(b, k->args_from.data);
	}
}

/*
 * The response.headers and response.status a function set (PostgREST's
 * GUCs), read after the call in the same statement, as the fourth and fifth
 * columns: the headers as "name<US>value" pairs joined by <RS> (answer.c
 * checks and adds them), the status as text.  Both are read where the
 * statement projects its one row, after the call's rows are consumed.
 */
static void
response_gucs(VnBuf *b)
{
	vn_buf_add(b, ", (SELECT pg_catalog.string_agg(_e.key || chr(31) || _e.value, chr(30))"
				  " FROM pg_catalog.json_array_elements(NULLIF("
				  "pg_catalog.current_setting('response.headers', true), '')::json) _h(v),"
				  " pg_catalog.json_each_text(_h.v) _e),"
				  " NULLIF(pg_catalog.current_setting('response.status', true), '')");
}

/*
 * Rows: the call's columns as its relation shows them (an aggregate's
 * view's columns, not the table's), then select=, filters, order, paging.
 * With Prefer: count=exact the call's rows are a materialized CTE, so the
 * function runs once for both the page and the total of the filtered rows.
 */
static bool
shape_rows(VnQueryCtx *c, const Call *k)
{
	const VnFunction *f = k->f;
	const VnRelation *r = &c->in->schema->rels[f->result_rel];
	VnBuf			 *b = &c->q->sql;
	VnBuf			  inner;
	VnBuf			  src;
	bool			  set = f->retset || k->bulk; /* a bulk call's rows are a set */
	bool			  count = set && c->in->count == VN_COUNT_EXACT;
	char			 *where = NULL;
	size_t			  total_at;
	bool			  ok;

	vn_buf_init(&inner);
	vn_buf_add(&inner, "SELECT ");
	for (int i = 0; i < r->ncols; i++)
	{
		if (i)
			vn_buf_add(&inner, ", ");
		vn_buf_add(&inner, "_f.");
		vn_buf_ident(&inner, r->cols[i].name);
	}
	call_from(&inner, k, "_f");
	if (!f->retset)
		vn_buf_add(&inner, " WHERE NOT (_f IS NULL)"); /* a NULL row is no row */
	vn_buf_init(&src);
	if (count)
	{
		vn_buf_addf(b, "WITH _c AS MATERIALIZED (%s) ", inner.data);
		vn_buf_add(&src, "_c _t");
	}
	else
		vn_buf_addf(&src, "(%s) _t", inner.data);
	vn_buf_free(&inner);

	vn_buf_add(b, "SELECT ");
	if (set || c->in->format == VN_FORMAT_CSV)
		vn_query_body_expr(c);
	else
		vn_buf_add(b, "coalesce((pg_catalog.json_agg(_r) -> 0)::text, 'null')");
	vn_buf_add(b, ", pg_catalog.count(*), ");
	total_at = b->len;
	response_gucs(b);
	vn_buf_add(b, " FROM (SELECT ");
	ok = vn_query_rows(c, f->result_rel, src.data, count ? &where : NULL) && (!set || vn_query_paging(c));
	vn_buf_add(b, ") _r");
	if (ok)
	{
		VnBuf out;

		vn_buf_init(&out);
		vn_buf_addn(&out, b->data, total_at);
		if (count)
			vn_buf_addf(&out, "(SELECT pg_catalog.count(*) FROM _c _t WHERE %s)", where);
		else
			vn_buf_add(&out, "NULL::bigint");
		vn_buf_add(&out, b->data + total_at);
		vn_buf_free(b);
		*b = out;
	}
	free(where);
	vn_buf_free(&src);
	c->q->is_read = set;
	c->q->is_rpc_scalar = !set;
	return ok;
}

/* a set of scalars: a JSON array of the values */
static bool
shape_values(VnQueryCtx *c, const Call *k)
{
	VnBuf *b = &c->q->sql;
	bool   ok;

	vn_buf_add(b, "SELECT ");
	if (c->in->format == VN_FORMAT_CSV)
	{
		vn_buf_add(b, "ventros.http_csv(pg_catalog.json_agg(pg_catalog.json_build_object(");
		vn_buf_literal(b, k->f->name);
		vn_buf_add(b, ", _r._v)))");
	}
	else if (c->in->format == VN_FORMAT_OBJECT)
		vn_buf_add(b, "coalesce((pg_catalog.json_agg(_r._v) -> 0)::text, '')");
	else
		vn_buf_add(b, "coalesce(pg_catalog.json_agg(_r._v)::text, '[]')");
	vn_buf_add(b, ", pg_catalog.count(*), NULL::bigint");
	response_gucs(b);
	vn_buf_add(b, " FROM (SELECT _f._v");
	call_from(b, k, "AS _f(_v)");
	ok = vn_query_paging(c);
	vn_buf_add(b, ") _r");
	c->q->is_read = true;
	return ok;
}

/* one value: JSON, a one-column CSV, or the document of a media type */
static void
shape_value(VnQueryCtx *c, const Call *k)
{
	const VnFunction *f = k->f;
	const char		 *accept = c->in->accept;
	VnBuf			 *b = &c->q->sql;

	c->q->is_rpc_scalar = true;
	if (f->media_type &&
		(accept == NULL || *accept == '\0' || strstr(accept, f->media_type) || strstr(accept, "*/*")))
	{
		snprintf(c->q->media_type, sizeof(c->q->media_type), "%s", f->media_type);
		vn_buf_addf(b, "SELECT coalesce((%s)::text, ''), 1::bigint, NULL::bigint", k->call.data);
		response_gucs(b);
	}
	else if (c->in->format == VN_FORMAT_CSV)
	{
		vn_buf_add(b, "SELECT ventros.http_csv(pg_catalog.json_build_array(pg_catalog.json_build_object(");
		vn_buf_literal(b, f->name);
		vn_buf_addf(b, ", %s))), 1::bigint, NULL::bigint", k->call.data);
		response_gucs(b);
	}
	else
	{
		vn_buf_addf(b, "SELECT coalesce(pg_catalog.to_json(%s)::text, 'null'), 1::bigint, NULL::bigint", k->call.data);
		response_gucs(b);
	}
	values_from(b, k);
}

static bool
shape(VnQueryCtx *c, const Call *k)
{
	const VnFunction *f = k->f;
	VnBuf			 *b = &c->q->sql;

	/*
	 * These two call in FROM, where the function always runs: an unused
	 * output column of a subquery, the old form, is dropped by the planner
	 * when the function is not volatile, and the call (with its checks and
	 * its privilege check) would never happen.
	 */
	if (k->bulk && f->returns_grant)
		return vn_query_fail(c->q, 400, "PGRST102", NULL, "Call it once per request.",
							 "%s returns a login grant: it cannot be called in bulk", f->name);
	if (f->returns_grant)
	{
		c->q->shape = VN_SHAPE_GRANT;
		vn_buf_add(b, "SELECT '', 1::bigint, NULL::bigint, _g.claims::text, _g.refresh_token, _g.expires_in");
		call_from(b, k, "_g");
		return true;
	}
	if (f->returns_void)
	{
		c->q->void_result = true;
		c->q->returns_body = false;
		/* one row whatever the calls (a bulk call's are counted) */
		vn_buf_add(b, k->bulk ? "SELECT '', pg_catalog.count(*), NULL::bigint" : "SELECT '', 1::bigint, NULL::bigint");
		response_gucs(b);
		call_from(b, k, "_v");
		return true;
	}
	if (f->result_rel >= 0)
		return shape_rows(c, k);
	/* a bulk call of a scalar function: the array of its values, one per call */
	if (f->retset || k->bulk)
		return shape_values(c, k);
	shape_value(c, k);
	return true;
}

static bool
build(VnQueryCtx *c)
{
	const VnQueryInput *in = c->in;
	bool				get = strcmp(in->method, "GET") == 0 || strcmp(in->method, "HEAD") == 0;
	Call				k;
	bool				ok = true;

	if (!get && strcmp(in->method, "POST") != 0)
		return vn_query_fail(c->q, 405, "PGRST101", NULL, NULL, "functions are called with GET or POST");
	memset(&k, 0, sizeof(k));
	k.raw = get ? RAW_NONE : raw_body(in->content_type);
	k.src = get ? ARGS_QUERY : in->single_object ? ARGS_SINGLE :
						   k.raw != RAW_NONE	 ? ARGS_RAW :
												   ARGS_JSON;
	k.named = in->args;
	if (k.src == ARGS_JSON && vn_query_is_form(in))
	{
		/* PostgREST's form body: key=value pairs, a VARIADIC key repeated */
		k.src = ARGS_FORM;
		k.named = &k.form;
		if (!vn_args_parse(in->body ? in->body : "", in->body_len, &k.form))
			ok = vn_query_fail(c->q, 400, "PGRST102", NULL, "Percent-encode the body as UTF-8.",
							   "malformed application/x-www-form-urlencoded body");
	}
	if (ok && k.src == ARGS_JSON && in->body_len > 0)
	{
		bool is_array = false;

		ok = vn_query_scan_body(c, &k.keys, &k.nkeys, &is_array, true);
		k.array_body = is_array;
	}
	ok = ok && resolve(c, &k);
	/* a bulk call (PostgREST 10's, see docs/http.md): named arguments from an array's objects */
	k.bulk = ok && k.array_body && in->multiple_objects && k.src == ARGS_JSON;
	for (int n = 0; ok && n < k.f->nargs; n++)
		if (!plain_name(k.f->argnames[n]))
			ok = vn_query_fail(c->q, 500, "PGRST000", NULL, NULL, "argument names of %s are not plain", k.f->name);
	if (ok)
	{
		k.raw_arg = raw_arg(k.f, k.raw);
		/* arguments in the query string are not filters on the result's rows */
		c->rpc_get = k.src == ARGS_QUERY || k.src == ARGS_RAW ? k.f : NULL;
		vn_buf_init(&k.call);
		vn_buf_init(&k.args_from);
		ok = build_call(c, &k) && shape(c, &k);
		vn_buf_free(&k.call);
		vn_buf_free(&k.args_from);
	}
	vn_query_free_list(k.keys, k.nkeys);
	vn_args_free(&k.form);
	return ok;
}

/*
 * A bulk call with a text/csv body (PostgREST 10's example of one): the
 * first line names the arguments, each line after it is a call; read as
 * the JSON array of its lines (body.c).  Any other text/csv body is a raw
 * one (build()).
 */
bool
vn_rpc_build(VnQueryCtx *c)
{
	const VnQueryInput *given = c->in;
	VnQueryInput		csv;
	VnBuf				json;
	bool				ok = true;

	vn_buf_init(&json);
	if (given->multiple_objects && strcmp(given->method, "POST") == 0 && vn_query_content_type_is(given->content_type, "text/csv"))
	{
		ok = vn_query_csv_json(c, &json);
		csv = *given;
		csv.body = json.data;
		csv.body_len = json.len;
		csv.content_type = "application/json";
		c->in = &csv;
	}
	ok = ok && build(c);
	c->in = given;
	vn_buf_free(&json);
	return ok;
}
