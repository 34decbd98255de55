/*
 * body.c
 *	  Request bodies of other media types than JSON, read as PostgREST 12
 *	  reads them for a table: text/csv (a bulk insert: the first line names
 *	  the columns, each line after it is one object, the unquoted string
 *	  NULL is null) becomes a JSON array of objects; the write then goes on
 *	  as for JSON (write.c).  Every value is a JSON string that PostgreSQL
 *	  turns into its column's type, as from any JSON string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

/* a CSV body's JSON is at most this large (54000, 413 beyond) */
#define VN_CSV_JSON_MAX (16 * 1024 * 1024)

typedef struct Csv
{
	const char *p;
	const char *end;
} Csv;

/*
 * One field (RFC 4180: "..." with "" for a quote, or up to the next comma
 * or line end) into out; *quoted tells which; *last whether it ended its
 * line.  False when a quoted field is not closed or text follows its quote.
 */
static bool
csv_field(Csv *s, VnBuf *out, bool *quoted, bool *last)
{
	vn_buf_reset(out);
	*quoted = s->p < s->end && *s->p == '"';
	if (*quoted)
	{
		for (s->p++;; s->p++)
		{
			if (s->p >= s->end)
				return false;
			if (*s->p == '"' && s->p + 1 < s->end && s->p[1] == '"')
				s->p++;
			else if (*s->p == '"')
				break;
			vn_buf_addc(out, *s->p);
		}
		s->p++;
	}
	else
		while (s->p < s->end && *s->p != ',' && *s->p != '\n' && *s->p != '\r')
			vn_buf_addc(out, *s->p++);
	if (s->p < s->end && *s->p == ',')
	{
		s->p++;
		*last = false;
		return true;
	}
	if (s->p < s->end && *s->p == '\r')
		s->p++;
	if (s->p < s->end && *s->p == '\n')
		s->p++;
	else if (s->p < s->end)
		return false; /* text after a closing quote */
	*last = true;
	return true;
}

/* the fields of one line; false when malformed */
static bool
csv_line(Csv *s, char ***fields, bool **nulls, int *n)
{
	VnBuf field;
	bool  quoted,
		last = false,
		ok = true;
	int cap = 8;

	*n = 0;
	*fields = vn_alloc(sizeof(char *) * cap);
	*nulls = vn_alloc(sizeof(bool) * cap);
	vn_buf_init(&field);
	while (ok && !last)
	{
		ok = csv_field(s, &field, &quoted, &last) && *n < 1600;
		if (!ok)
			break;
		if (*n == cap)
		{
			cap *= 2;
			*fields = realloc(*fields, sizeof(char *) * cap);
			*nulls = realloc(*nulls, sizeof(bool) * cap);
			if (*fields == NULL || *nulls == NULL)
				abort();
		}
		(*nulls)[*n] = !quoted && strcmp(field.data ? field.data : "", "NULL") == 0;
		(*fields)[(*n)++] = vn_strdup(field.data ? field.data : "");
	}
	vn_buf_free(&field);
	return ok;
}

/*
 * A text/csv body as the JSON array of its lines' objects, into json;
 * false with the error in c->q (400 PGRST102 when malformed or a line has
 * another number of fields than the first, 413 54000 when too large).
 */
bool
vn_query_csv_json(VnQueryCtx *c, VnBuf *json)
{
	Csv	   s = {c->in->body ? c->in->body : "", (c->in->body ? c->in->body : "") + c->in->body_len};
	char **head = NULL,
		 **row = NULL;
	bool *hnull = NULL,
		 *rnull = NULL;
	int nhead = 0,
		nrow = 0;
	bool ok = csv_line(&s, &head, &hnull, &nhead);

	vn_buf_addc(json, '[');
	while (ok && s.p < s.end)
	{
		ok = csv_line(&s, &row, &rnull, &nrow) && nrow == nhead;
		for (int i = 0; ok && i < nrow; i++)
		{
			vn_buf_add(json, i ? "," : json->len > 1 ? ",{" :
													   "{");
			vn_buf_json_string(json, head[i]);
			vn_buf_addc(json, ':');
			if (rnull[i])
				vn_buf_add(json, "null");
			else
				vn_buf_json_string(json, row[i]);
		}
		vn_buf_add(json, ok ? "}" : "");
		vn_query_free_list(row, nrow);
		free(rnull);
		row = NULL;
		rnull = NULL;
		if (json->len > VN_CSV_JSON_MAX)
		{
			vn_query_free_list(head, nhead);
			free(hnull);
			return vn_query_fail(c->q, 413, "54000", NULL, "Send fewer lines per request.",
								 "the CSV body is too large once read");
		}
	}
	vn_buf_addc(json, ']');
	vn_query_free_list(head, nhead);
	free(hnull);
	if (!ok)
		return vn_query_fail(c->q, 400, "PGRST102", NULL,
							 "The first line names the columns; every line after it has a value for each.",
							 "malformed CSV body");
	return true;
}
