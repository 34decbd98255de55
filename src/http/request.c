/*
 * request.c
 *	  The request parser's headers: the media type asked for with Accept,
 *	  the preferences of Prefer, and Range, as PostgREST reads them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "request.h"

bool
vn_request_has_token(const char *list, const char *token)
{
	const char *p = list;
	size_t		n = strlen(token);

	if (list == NULL)
		return false;
	while ((p = strstr(p, token)) != NULL)
	{
		bool start_ok = p == list || p[-1] == ',' || p[-1] == ' ' || p[-1] == ';';
		bool end_ok = p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == ';';

		if (start_ok && end_ok)
			return true;
		p += n;
	}
	return false;
}

/*
 * Range: 0-9 (items); false when malformed.  Bounds past VN_RANGE_MAX are
 * refused too: strtol saturates at LONG_MAX, and b - a + 1 would overflow
 * (found by test/fuzz/fuzz_headers; regression input in its corpus).
 */
#define VN_RANGE_MAX 999999999999L /* as order.c's limit= and offset= */

static bool
parse_range(const char *h, long *offset, long *limit)
{
	long a,
		b = -1;
	char *end;

	*offset = -1;
	*limit = -1;
	if (h == NULL)
		return true;
	if (strncmp(h, "items=", 6) == 0)
		h += 6;
	a = strtol(h, &end, 10);
	if (end == h || *end != '-' || a < 0 || a > VN_RANGE_MAX)
		return false;
	h = end + 1;
	if (*h)
	{
		b = strtol(h, &end, 10);
		if (end == h || *end != '\0' || b < a || b > VN_RANGE_MAX)
			return false;
	}
	*offset = a;
	*limit = b < 0 ? -1 : b - a + 1;
	return true;
}

/* the answer's format from Accept; false (406) when none is served */
static bool
media_type(const char *accept, VnQueryInput *in, VnResponse *resp)
{
	if (!vn_plan_parse(accept, &in->plan))
	{
		vn_response_error(resp, 406, "PGRST107", "none of these media types is available", accept,
						  "The plan's options are analyze, verbose, settings, buffers and wal.");
		return false;
	}
	if (in->plan.on)
	{
		/* the statement explained is the one of the media type named by for= */
		accept = in->plan.target;
	}
	if (vn_request_has_token(accept, "application/vnd.pgrst.object+json") ||
		vn_request_has_token(accept, "application/vnd.pgrst.object"))
		in->format = VN_FORMAT_OBJECT;
	else if (vn_request_has_token(accept, "text/csv"))
		in->format = VN_FORMAT_CSV;
	else
		in->format = VN_FORMAT_JSON;
	if (accept && *accept && !strstr(accept, "*/*") && !strstr(accept, "application/*") &&
		!strstr(accept, "application/json") && !strstr(accept, "text/csv") &&
		!strstr(accept, "application/vnd.pgrst.object") && !strstr(accept, "application/openapi+json"))
	{
		vn_response_error(resp, 406, "PGRST107", "none of these media types is available", accept,
						  "Ask for application/json, application/vnd.pgrst.object+json or text/csv.");
		return false;
	}
	return true;
}

/* a preference the front reads (or, missing=default and handling, keeps by default) */
static bool
preference_known(const char *p, size_t n)
{
	static const char *known[] = {"count=exact",
								  "count=planned",
								  "count=estimated",
								  "return=minimal",
								  "return=headers-only",
								  "return=representation",
								  "resolution=merge-duplicates",
								  "resolution=ignore-duplicates",
								  "params=single-object",
								  "params=multiple-objects",
								  "missing=default",
								  "missing=null",
								  "handling=strict",
								  "handling=lenient",
								  "tx=commit",
								  "tx=rollback",
								  NULL};

	for (int i = 0; known[i]; i++)
		if (strlen(known[i]) == n && strncmp(p, known[i], n) == 0)
			return true;
	if (n > 9 && strncmp(p, "timezone=", 9) == 0)
		return vn_catalog_timezone(p + 9, n - 9) != NULL;
	return n > 13 && strncmp(p, "max-affected=", 13) == 0 && strspn(p + 13, "0123456789") == n - 13;
}

/*
 * Prefer: timezone=<name>: the transaction's TimeZone when the name is one
 * of pg_timezone_names (as written: PostgREST compares exactly); any other
 * is ignored, as PostgREST 12 documents (an error under handling=strict).
 */
static const char *
timezone_preference(const char *prefer)
{
	const char *p = prefer;

	while (p && *p)
	{
		size_t n;

		p += strspn(p, ", ");
		n = strcspn(p, ",");
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (n > 9 && strncmp(p, "timezone=", 9) == 0)
			return vn_catalog_timezone(p + 9, n - 9);
		p += n;
	}
	return NULL;
}

/*
 * Prefer: handling=strict: a preference the front does not know or cannot
 * honour is an error, 400 PGRST122 naming them (PostgREST's rule; lenient,
 * the default, ignores them).
 */
static bool
strict_preferences(const char *prefer, VnResponse *resp)
{
	VnBuf		bad;
	const char *p = prefer;
	bool		ok;

	if (!vn_request_has_token(prefer, "handling=strict"))
		return true;
	vn_buf_init(&bad);
	while (*p)
	{
		size_t n;

		p += strspn(p, ", ");
		n = strcspn(p, ",");
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (n > 0 && !preference_known(p, n))
		{
			vn_buf_add(&bad, bad.len ? ", " : "Invalid preferences: ");
			vn_buf_addn(&bad, p, n);
		}
		p += n;
	}
	ok = bad.len == 0;
	if (!ok)
		vn_response_error(resp, 400, "PGRST122", "Invalid preferences given with handling=strict", bad.data, NULL);
	vn_buf_free(&bad);
	return ok;
}

/* Prefer: count, return, resolution, params, max-affected */
static bool
preferences(const char *prefer, VnQueryInput *in, VnResponse *resp)
{
	/*
	 * count=planned and count=estimated answer the exact count.  The
	 * planner's estimate comes from statistics over every tenant's rows: a
	 * filter on a value only another tenant has would estimate more rows
	 * than one on a value nobody has, and every role the front runs as is a
	 * tenant role (docs/http.md, "Counting").
	 */
	if (vn_request_has_token(prefer, "count=exact") || vn_request_has_token(prefer, "count=planned") ||
		vn_request_has_token(prefer, "count=estimated"))
		in->count = VN_COUNT_EXACT;
	if (vn_request_has_token(prefer, "return=representation"))
		in->ret = VN_RETURN_REPRESENTATION;
	else if (vn_request_has_token(prefer, "return=headers-only"))
		in->ret = VN_RETURN_HEADERS;
	else
		in->ret = VN_RETURN_MINIMAL;
	in->merge_duplicates = vn_request_has_token(prefer, "resolution=merge-duplicates");
	in->ignore_duplicates = vn_request_has_token(prefer, "resolution=ignore-duplicates");
	in->single_object = vn_request_has_token(prefer, "params=single-object");
	in->missing_null = vn_request_has_token(prefer, "missing=null");
	in->missing_default = vn_request_has_token(prefer, "missing=default");
	in->multiple_objects = vn_request_has_token(prefer, "params=multiple-objects");
	in->timezone = timezone_preference(prefer);
	in->max_affected = -1;
	if (!strict_preferences(prefer, resp))
		return false;
	if (prefer && strstr(prefer, "max-affected="))
	{
		char	   *end;
		const char *v = strstr(prefer, "max-affected=") + strlen("max-affected=");
		long		n = strtol(v, &end, 10);

		if (end == v || n < 0 || (*end && *end != ',' && *end != ' ' && *end != ';'))
		{
			vn_response_error(resp, 400, "PGRST100", "malformed max-affected preference", NULL,
							  "Write Prefer: max-affected=10.");
			return false;
		}
		in->max_affected = n;
	}
	return true;
}

bool
vn_request_input(const VnRequest *req, VnQueryInput *in, VnResponse *resp)
{
	in->method = req->method;
	in->args = &req->args;
	in->body = req->body;
	in->body_len = req->body_len;
	in->content_type = req->content_type;
	in->accept = req->accept;
	if (!media_type(req->accept, in, resp) || !preferences(req->prefer, in, resp))
		return false;
	if (!parse_range(req->range, &in->range_offset, &in->range_limit))
	{
		vn_response_error(resp, 416, "PGRST103", "malformed Range header", NULL, "Write Range: 0-9.");
		return false;
	}
	return true;
}
