/*
 * pg_shim.c
 *	  A stand-in for the PostgreSQL backend under the extension's harnesses
 *	  (fuzz_ssrf, fuzz_webhook_auth), which compile the extension's C files
 *	  against the server headers but run outside a server.
 *
 * palloc and friends allocate from one list that shim_reset() frees after
 * each input, as a memory context would at the end of a call, so that
 * LeakSanitizer sees no leak that the server would not clean up either.
 * Lists, SplitGUCList and the text conversions are minimal versions written
 * for this purpose, enough for what ssrf.c and webhook_auth.c use of them;
 * elog-style errors cannot happen on these paths and abort if they do.
 */
#include "postgres.h"

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "pg_shim.h"

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	max_align_t	  pad[]; /* the caller's bytes, suitably aligned */
} Chunk;

static Chunk *chunks;

char *GUC_check_errdetail_string;

void *
palloc(Size size)
{
	Chunk *c = malloc(sizeof(Chunk) + size);

	if (c == NULL)
		abort();
	c->prev = NULL;
	c->next = chunks;
	if (chunks)
		chunks->prev = c;
	chunks = c;
	return c->pad;
}

void *
palloc0(Size size)
{
	void *p = palloc(size);

	memset(p, 0, size);
	return p;
}

void
pfree(void *pointer)
{
	Chunk *c = (Chunk *) ((char *) pointer - offsetof(Chunk, pad));

	if (c->prev)
		c->prev->next = c->next;
	else
		chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

void
shim_reset(void)
{
	while (chunks)
	{
		Chunk *next = chunks->next;

		free(chunks);
		chunks = next;
	}
}

char *
pstrdup(const char *in)
{
	size_t n = strlen(in);
	char  *out = palloc(n + 1);

	memcpy(out, in, n + 1);
	return out;
}

char *
psprintf(const char *fmt, ...)
{
	va_list ap;
	int		n;
	char   *out;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	out = palloc(n + 1);
	va_start(ap, fmt);
	vsnprintf(out, n + 1, fmt, ap);
	va_end(ap);
	return out;
}

void
pre_format_elog_string(int errnumber, const char *domain)
{
}

char *
format_elog_string(const char *fmt, ...)
{
	va_list ap;
	char	buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return pstrdup(buf);
}

/* a List whose cells live in a palloc'd array of their own */
List *
lappend(List *list, void *datum)
{
	if (list == NIL)
	{
		list = palloc0(sizeof(List));
		list->type = T_List;
		list->max_length = 8;
		list->elements = palloc(sizeof(ListCell) * list->max_length);
	}
	else if (list->length == list->max_length)
	{
		ListCell *more = palloc(sizeof(ListCell) * list->max_length * 2);

		memcpy(more, list->elements, sizeof(ListCell) * list->length);
		list->elements = more;
		list->max_length *= 2;
	}
	list->elements[list->length++].ptr_value = datum;
	return list;
}

/*
 * SplitGUCList: items separated by separator, whitespace around them
 * dropped, double quotes around an item (with "" for a quote) kept out.
 * False on an empty item or an unterminated quote.
 */
bool
SplitGUCList(char *rawstring, char separator, List **namelist)
{
	char *p = rawstring;

	*namelist = NIL;
	while (isspace((unsigned char) *p))
		p++;
	if (*p == '\0')
		return true;
	for (;;)
	{
		char *start;
		char *end;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '"')
		{
			char *w;

			start = w = ++p;
			for (;;)
			{
				if (*p == '\0')
					return false;
				if (*p == '"' && p[1] == '"')
					p++;
				else if (*p == '"')
					break;
				*w++ = *p++;
			}
			end = w;
			p++;
		}
		else
		{
			start = p;
			while (*p && *p != separator && !isspace((unsigned char) *p))
				p++;
			end = p;
			if (start == end)
				return false;
		}
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '\0' && *p != separator)
			return false;
		*namelist = lappend(*namelist, start);
		if (*p == '\0')
		{
			*end = '\0';
			return true;
		}
		*end = '\0';
		p++;
	}
}

char *
text_to_cstring(const text *t)
{
	size_t n = VARSIZE_ANY_EXHDR(t);
	char  *out = palloc(n + 1);

	memcpy(out, VARDATA_ANY(t), n);
	out[n] = '\0';
	return out;
}

text *
cstring_to_text(const char *s)
{
	size_t n = strlen(s);
	text  *t = palloc(VARHDRSZ + n);

	SET_VARSIZE(t, VARHDRSZ + n);
	memcpy(VARDATA(t), s, n);
	return t;
}

/* the harnesses build plain in-line varlenas only: nothing to detoast */
struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	if (VARATT_IS_EXTENDED(datum) && !VARATT_IS_SHORT(datum))
		abort();
	return datum;
}

void
DefineCustomStringVariable(const char *name, const char *short_desc, const char *long_desc,
						   char **valueAddr, const char *bootValue, GucContext context, int flags,
						   GucStringCheckHook check_hook, GucStringAssignHook assign_hook,
						   GucShowHook show_hook)
{
	*valueAddr = (char *) bootValue;
}
