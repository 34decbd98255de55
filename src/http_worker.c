/*-------------------------------------------------------------------------
 *
 * http_worker.c
 *	  The HTTP dispatcher: delivers ventros.http_requests at least once,
 *	  concurrently, with libcurl multi, behind the SSRF guard (ssrf.c).
 *
 * One background worker for each database of ventros.databases,
 * registered at preload and restarted by the postmaster after a crash.
 * Its loop, worker_spi's shape with pg_net's libcurl core:
 *
 *	1. claim due rows in one short transaction (ventros.http_claim: SKIP
 *	   LOCKED, a lease, the attempt counted), as many as there are free
 *	   slots (ventros.http_concurrency);
 *	2. outside any transaction, check each URL with the SSRF guard, pin the
 *	   connection to the checked addresses (CURLOPT_RESOLVE, plus an
 *	   open-socket callback that checks the real peer), and hand it to the
 *	   multi handle; wait on the latch and curl's sockets in one
 *	   WaitEventSet, so a SIGTERM or a wake-up is seen at once;
 *	3. record finished transfers in the next transaction
 *	   (ventros.http_record_attempt decides succeeded, failed, dead or a
 *	   retry after exponential backoff or Retry-After).
 *
 * All progress is row state: a worker that dies mid-flight leaves its rows
 * in_flight; the next one puts them back in the queue when it starts
 * (ventros.http_release_orphans), so nothing is lost, and a request may be
 * sent twice (at least once).
 *
 * Wake-up (pg_net's pattern): a statement trigger on ventros.http_requests
 * calls vn_http_wake_at_commit(), which sets a backend-local flag; at
 * commit the transaction callback sets the worker's latch, found in shared
 * memory.  An aborted transaction wakes nobody.  The worker also sleeps no
 * longer than until the next due retry and ventros.http_poll_interval.
 *
 * The worker runs on the worker kit (worker.c): registration, its shared
 * slot (the kit's part, then its counters), attach, loop, transaction
 * steps and the install check are the kit's.
 *
 * Memory: each request lives in its own context under the worker's
 * http_ctx, deleted once its outcome is committed; curl handles are freed
 * as soon as the transfer ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <time.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "http_body.h"
#include "http_worker.h"
#include "shmem.h"
#include "ssrf.h"
#include "trigger.h"
#include "worker.h"

#define VN_HTTP_LEASE_MARGIN_S 60
#define VN_HTTP_MAX_ROW_TIMEOUT_S 600

/* The dispatcher's shared slot: the kit's part, then its counters. */
typedef struct VnHttpSlot
{
	VnWorkerSlot w;
	int			 in_flight;
	int64		 succeeded;
	int64		 failed_attempts;
	int64		 refused;
	TimestampTz	 last_activity_at;
} VnHttpSlot;

/* One claimed request, from claim to recorded outcome. */
typedef struct VnHttpReq
{
	MemoryContext	   ctx; /* everything below lives here */
	CURL			  *easy;
	struct curl_slist *headers;
	struct curl_slist *resolve;
	char			  *tenant_id;
	char			  *id;
	char			  *method;
	char			  *url;
	char			  *body;
	int				   body_len;
	bool			   has_body;
	int				   attempt;
	int				   timeout_ms;
	int				   max_response_size; /* bytes of the body kept */
	bool			   retry_any;
	char			 **header_lines;
	int				   nheaders;
	VnSsrfTarget	   target;
	StringInfoData	   resp_body;
	StringInfoData	   resp_headers;
	bool			   truncated;
	VnHttpBody		   form; /* a body built from media (body_form) */
	char			  *inline_marker;
	char			  *local_error; /* refused before sending: the body cannot be built */
	char			  *refusal;		/* SSRF guard, before or while connecting */
	bool			   refusal_transient;
	char			   errbuf[CURL_ERROR_SIZE];
	/* the outcome */
	bool			  succeeded;
	bool			  retryable;
	int64			  retry_after_ms; /* -1: none */
	long			  status;
	char			 *error;
	struct VnHttpReq *next; /* in the done list */
} VnHttpReq;

typedef struct VnSock
{
	curl_socket_t fd;
	int			  what; /* CURL_POLL_IN, _OUT or _INOUT */
} VnSock;

/* GUCs */
static int vn_http_concurrency = 32;
static int vn_http_connect_timeout = 5000;
static int vn_http_timeout = 10000;
static int vn_http_max_attempts = 8;
static int vn_http_backoff_min = 5000;
static int vn_http_backoff_max = 36000000;
static int vn_http_retry_after_max = 86400;
static int vn_http_max_response_size = 65536;
static int vn_http_poll_interval = 1000;
static int vn_http_max_body_size = 32 * 1024 * 1024;

static VnWorkerKind http_kind = {
	.type = "ventros http dispatcher",
	.main = "vn_http_worker_main",
	.slot_size = sizeof(VnHttpSlot),
	.old_databases = "ventros.http_database",
};

/* what the dispatcher calls: there once the extension is */
static const char *const http_functions[] = {
	"ventros.http_record_attempt(text,uuid,integer,boolean,boolean,bigint,integer,text,bytea,boolean,text)",
	"ventros.http_next_due()",
};

/* backend: this transaction changed the queue */
static int vn_http_wake_target = -1; /* set in the postmaster, inherited */

/* worker state (the worker process only) */
static VnHttpSlot	*my_slot = NULL;
static MemoryContext http_ctx = NULL;
static CURLM		*multi = NULL;
static VnSock		*socks = NULL;
static int			 nsocks = 0;
static int			 maxsocks = 0;
static TimestampTz	 curl_deadline = 0; /* 0: no timer */
static int			 in_flight = 0;
static VnHttpReq	*done_head = NULL;
/* A completion handler queued a request in the worker's own transaction. */
static bool queued_by_handler = false;

PG_FUNCTION_INFO_V1(ventros_http_requests_wake);
PG_FUNCTION_INFO_V1(ventros_http_dispatcher_state);

/* ---- wake-up at commit --------------------------------------------------- */

void
vn_http_wake_at_commit(void)
{
	vn_wake_at_commit(vn_http_wake_target);
}

/* The latch of this database's dispatcher (never our own), for the wake at commit. */
static Latch *
vn_http_find_latch(void)
{
	return vn_worker_find_latch(&http_kind, 0, MyDatabaseId);
}

/*
 * ventros.http_requests_wake(): statement trigger on the queue; the
 * dispatcher's own updates do not wake it.
 */
Datum
ventros_http_requests_wake(PG_FUNCTION_ARGS)
{
	TriggerData *td = vn_check_trigger(fcinfo, "ventros_http_requests_wake");

	if (multi == NULL)
		vn_http_wake_at_commit();
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		queued_by_handler = true; /* claim again at once, see record_done */
	return PointerGetDatum(NULL);
}

/* ---- libcurl callbacks --------------------------------------------------- */

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int i;

	for (i = 0; i < nsocks; i++)
		if (socks[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsocks)
			socks[i] = socks[--nsocks];
		return 0;
	}
	if (i == nsocks)
	{
		if (nsocks == maxsocks)
		{
			maxsocks *= 2;
			socks = repalloc(socks, sizeof(VnSock) * maxsocks);
		}
		socks[nsocks++].fd = fd;
	}
	socks[i].what = what;
	return 0;
}

static int
on_timer(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		curl_deadline = 0;
	else
		curl_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/* The open-socket callback: the real peer, after any DNS, passes the guard. */
static curl_socket_t
on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	VnHttpReq	 *req = (VnHttpReq *) clientp;
	MemoryContext old = MemoryContextSwitchTo(req->ctx);
	char		 *reason = vn_ssrf_check_peer(&address->addr, req->target.host_allowed);

	MemoryContextSwitchTo(old);
	if (reason != NULL)
	{
		req->refusal = reason;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

static size_t
on_header(char *buf, size_t size, size_t n, void *userdata)
{
	VnHttpReq *req = (VnHttpReq *) userdata;
	size_t	   len = size * n;

	/* a new status line (after 100 Continue): keep only the final headers */
	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0)
		resetStringInfo(&req->resp_headers);
	else if (req->resp_headers.len + len <= (size_t) vn_http_max_response_size)
		appendBinaryStringInfo(&req->resp_headers, buf, (int) len);
	return len;
}

/* Keeps the body up to the cap, then stops the transfer (truncated). */
static size_t
on_body(char *buf, size_t size, size_t n, void *userdata)
{
	VnHttpReq *req = (VnHttpReq *) userdata;
	size_t	   len = size * n;
	size_t	   cap = (size_t) req->max_response_size;
	size_t	   room = cap > (size_t) req->resp_body.len ? cap - req->resp_body.len : 0;

	if (len > room)
	{
		appendBinaryStringInfo(&req->resp_body, buf, (int) room);
		req->truncated = true;
		return 0;
	}
	appendBinaryStringInfo(&req->resp_body, buf, (int) len);
	return len;
}

/* ---- one request --------------------------------------------------------- */

static void
push_done(VnHttpReq *req)
{
	req->next = done_head;
	done_head = req;
}

/* Retry-After in milliseconds from now (seconds or an HTTP date), or -1. */
static int64
retry_after_ms(const char *headers)
{
	const char *line = headers;

	while (line && *line)
	{
		const char *eol = strchr(line, '\n');
		size_t		len = eol ? (size_t) (eol - line) : strlen(line);

		if (len > 12 && pg_strncasecmp(line, "retry-after:", 12) == 0)
		{
			char  *value = pnstrdup(line + 12, len - 12);
			char  *p = value;
			char  *end;
			int64  now_ms;
			time_t t;

			while (*p == ' ' || *p == '\t')
				p++;
			for (end = p + strlen(p); end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'); end--)
				;
			*end = '\0';
			if (*p == '\0')
				return -1;
			if (strspn(p, "0123456789") == strlen(p))
				return strlen(p) > 9 ? INT64CONST(999999999) * 1000 : (int64) atol(p) * 1000;
			t = curl_getdate(p, NULL);
			if (t == -1)
				return -1;
			now_ms = GetCurrentTimestamp() / 1000 +
					 (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
			return Max((int64) t * 1000 - now_ms, 0);
		}
		line = eol ? eol + 1 : NULL;
	}
	return -1;
}

/* The outcome of a finished transfer (or of a refusal before it). */
static void
decide(VnHttpReq *req, CURLcode code)
{
	req->succeeded = false;
	req->retryable = false;
	req->retry_after_ms = -1;
	if (req->local_error != NULL)
	{
		req->error = req->local_error;
		return;
	}
	if (req->refusal != NULL)
	{
		req->retryable = req->refusal_transient;
		req->error = req->refusal_transient ? req->refusal :
											  psprintf("refused by the SSRF guard: %s", req->refusal);
		return;
	}
	if ((code == CURLE_OK || (code == CURLE_WRITE_ERROR && req->truncated)) && req->status > 0)
	{
		long s = req->status;

		if (s >= 200 && s < 300)
		{
			req->succeeded = true;
			return;
		}
		req->retryable = s == 408 || s == 425 || s == 429 || s >= 500 ||
						 (req->retry_any && s != 410);
		if (s == 429 || s == 503)
			req->retry_after_ms = retry_after_ms(req->resp_headers.data);
		if (s >= 300 && s < 400)
			req->error = psprintf("HTTP %ld: redirects are not followed", s);
		else
			req->error = psprintf("HTTP %ld", s);
		return;
	}
	req->error = psprintf("%s%s%s", curl_easy_strerror(code),
						  req->errbuf[0] ? ": " : "", req->errbuf);
	switch (code)
	{
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_BAD_FUNCTION_ARGUMENT:
		case CURLE_TOO_MANY_REDIRECTS:
			req->retryable = false;
			break;
		default:
			req->retryable = true; /* timeouts, resets, refused connections */
			break;
	}
}

/*
 * start_request
 *		Checks the URL with the SSRF guard and hands the transfer to the
 *		multi handle, or puts the refused request in the done list.  Runs
 *		outside any transaction (the guard may query DNS).
 */
static void
start_request(VnHttpReq *req)
{
	MemoryContext old = MemoryContextSwitchTo(req->ctx);
	bool		  transient = false;
	char		 *reason;
	CURL		 *e;
	int			  i;

	reason = vn_ssrf_check_url(req->url, &req->target, &transient);
	if (reason != NULL)
	{
		req->refusal = reason;
		req->refusal_transient = transient;
		decide(req, CURLE_OK);
		push_done(req);
		MemoryContextSwitchTo(old);
		return;
	}
	if (req->form.present)
	{
		req->local_error = vn_http_body_prepare(&req->form, req->body, req->body_len, req->inline_marker,
												(Size) vn_http_max_body_size);
		if (req->local_error != NULL)
		{
			decide(req, CURLE_OK);
			push_done(req);
			MemoryContextSwitchTo(old);
			return;
		}
	}
	initStringInfo(&req->resp_body);
	initStringInfo(&req->resp_headers);

	/* pin the name to the addresses just checked */
	if (!req->target.host_is_literal && req->target.naddrs > 0)
	{
		StringInfoData r;

		initStringInfo(&r);
		appendStringInfo(&r, "%s:%d:", req->target.host, req->target.port);
		for (i = 0; i < req->target.naddrs; i++)
		{
			char			 a[INET6_ADDRSTRLEN];
			struct sockaddr *sa = (struct sockaddr *) &req->target.addrs[i];

			vn_ssrf_format_addr(sa, a, sizeof(a));
			appendStringInfo(&r, sa->sa_family == AF_INET6 ? "%s[%s]" : "%s%s", i ? "," : "", a);
		}
		req->resolve = curl_slist_append(NULL, r.data);
	}
	for (i = 0; i < req->nheaders; i++)
		req->headers = curl_slist_append(req->headers, req->header_lines[i]);
	/* no "Expect: 100-continue" round trip for large bodies */
	req->headers = curl_slist_append(req->headers, "Expect:");

	e = curl_easy_init();
	if (e == NULL)
		elog(ERROR, "curl_easy_init failed");
	req->easy = e;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, req);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "Ventros-Dispatcher/1.0");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) vn_http_connect_timeout);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
					 (long) (req->timeout_ms > 0 ? req->timeout_ms : vn_http_timeout));
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, req);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	if (req->resolve)
		curl_easy_setopt(e, CURLOPT_RESOLVE, req->resolve);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
	if (req->form.present)
		vn_http_body_attach(&req->form, e);
	else if (strcmp(req->method, "GET") == 0 && !req->has_body)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else
	{
		if (strcmp(req->method, "POST") == 0)
			curl_easy_setopt(e, CURLOPT_POST, 1L);
		else
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
		if (req->has_body || strcmp(req->method, "POST") == 0)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->has_body ? req->body : "");
		}
	}
	MemoryContextSwitchTo(old);
	if (curl_multi_add_handle(multi, e) != CURLM_OK)
		elog(ERROR, "curl_multi_add_handle failed");
	in_flight++;
}

/* Moves every finished transfer to the done list. */
static void
harvest(void)
{
	CURLMsg *msg;
	int		 left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		CURL		 *e = msg->easy_handle;
		CURLcode	  code = msg->data.result;
		VnHttpReq	 *req = NULL;
		MemoryContext old;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **) &req);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &req->status);
		curl_multi_remove_handle(multi, e);
		curl_easy_cleanup(e);
		vn_http_body_free(&req->form);
		req->easy = NULL;
		curl_slist_free_all(req->headers);
		curl_slist_free_all(req->resolve);
		req->headers = req->resolve = NULL;
		in_flight--;
		old = MemoryContextSwitchTo(req->ctx);
		decide(req, code);
		MemoryContextSwitchTo(old);
		push_done(req);
	}
}

/* ---- transactions -------------------------------------------------------- */

static bool
schema_ready(void)
{
	bool		  ready;
	MemoryContext old = vn_worker_begin("checking for ventros.http_requests");

	ready = vn_worker_missing_function(http_functions, lengthof(http_functions)) == NULL;
	if (ready)
	{
		int n;

		if (SPI_execute("SELECT ventros.http_release_orphans()", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not release orphaned http requests");
		n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &(bool){false}));
		if (n > 0)
			ereport(LOG,
					(errmsg("ventros http dispatcher put %d interrupted requests back in the queue", n)));
	}
	vn_worker_end(old);
	return ready;
}

static char *
copy_text(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	Datum d = SPI_getbinval(tup, desc, col, isnull);

	return *isnull ? NULL : TextDatumGetCString(d);
}

/* The columns of claim's statement, in its SELECT order (SPI attribute numbers). */
typedef enum VnHttpClaimColumn
{
	HC_TENANT_ID = 1,
	HC_ID,
	HC_METHOD,
	HC_URL,
	HC_HEADER_LINES,
	HC_BODY,
	HC_ATTEMPTS,
	HC_TIMEOUT_MS,
	HC_RETRY_POLICY,
	HC_MAX_RESPONSE_SIZE,
	HC_FORM_PRESENT,
	HC_FORM_MARKER,
	HC_FORM_NAMES,
	HC_FORM_VALUES,
	HC_FORM_FILENAMES,
	HC_FORM_TYPES,
	HC_FORM_KINDS,
	HC_MEDIA
} VnHttpClaimColumn;

/*
 * The parts of a multipart body_form, in order, for claim's statement; not
 * an array (a row written by hand) gives none rather than an error that
 * would stop every claim.
 */
#define VN_FORM_PARTS \
	"pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(c.body_form->'multipart') " \
	"= 'array' THEN c.body_form->'multipart' END) WITH ORDINALITY x(p, n) ORDER BY n"

/* A text[] column as C strings (NULL elements stay NULL); *n gets its length. */
static char **
copy_text_array(HeapTuple tup, TupleDesc desc, int col, int *n)
{
	bool   isnull;
	Datum  d = SPI_getbinval(tup, desc, col, &isnull);
	Datum *elems;
	bool  *nulls;
	char **out;
	int	   k;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc0(sizeof(char *) * Max(*n, 1));
	for (k = 0; k < *n; k++)
		out[k] = nulls[k] ? NULL : TextDatumGetCString(elems[k]);
	return out;
}

/*
 * read_form
 *		The body_form of a claimed request: its multipart parts or inline
 *		marker, and a copy of the media it streams (the claim's SPI memory
 *		is gone once the transaction ends).  In the request's context.
 */
static void
read_form(VnHttpReq *req, HeapTuple tup, TupleDesc desc)
{
	bool   isnull;
	Datum  d = SPI_getbinval(tup, desc, HC_FORM_PRESENT, &isnull);
	char **names;
	char **values;
	char **files;
	char **types;
	char **kinds;
	int	   n;
	int	   k;
	int	   m;

	req->form.present = !isnull && DatumGetBool(d);
	if (!req->form.present)
		return;
	req->inline_marker = copy_text(tup, desc, HC_FORM_MARKER, &isnull);
	/* the five lists come from one array; never index past the shortest */
	names = copy_text_array(tup, desc, HC_FORM_NAMES, &n);
	values = copy_text_array(tup, desc, HC_FORM_VALUES, &m);
	n = Min(n, m);
	files = copy_text_array(tup, desc, HC_FORM_FILENAMES, &m);
	n = Min(n, m);
	types = copy_text_array(tup, desc, HC_FORM_TYPES, &m);
	n = Min(n, m);
	kinds = copy_text_array(tup, desc, HC_FORM_KINDS, &m);
	n = Min(n, m);
	req->form.parts = palloc0(sizeof(VnHttpPart) * Max(n, 1));
	for (k = 0; k < n; k++)
	{
		VnHttpPart *p = &req->form.parts[req->form.nparts];

		if (names[k] == NULL)
			continue;
		p->name = names[k];
		p->value = values[k];
		p->filename = files[k];
		p->content_type = types[k];
		p->media = kinds[k] != NULL && strcmp(kinds[k], "media") == 0;
		req->form.nparts++;
	}
	d = SPI_getbinval(tup, desc, HC_MEDIA, &isnull);
	if (!isnull)
	{
		bytea *b = DatumGetByteaPCopy(d);

		req->form.media = VARDATA(b);
		req->form.media_len = VARSIZE(b) - VARHDRSZ;
	}
}

/*
 * claim
 *		Claims up to n due requests in one transaction and starts them after
 *		it commits.  Returns how many were claimed; *next_due gets the time
 *		of the earliest pending request (0 when none).
 */
static int
claim(int n, TimestampTz *next_due)
{
	static const char *sql =
		"SELECT c.tenant_id, c.id::text, c.method, c.url, "
		"       ARRAY(SELECT k.key || ': ' || k.value FROM pg_catalog.jsonb_each_text(c.headers) k), "
		"       c.body, c.attempts, c.timeout_ms, c.retry_policy, c.max_response_size, "
		"       c.body_form IS NOT NULL, c.body_form->>'inline_base64', "
		"       ARRAY(SELECT p->>'name' FROM " VN_FORM_PARTS "), "
		"       ARRAY(SELECT p->>'value' FROM " VN_FORM_PARTS "), "
		"       ARRAY(SELECT p->>'filename' FROM " VN_FORM_PARTS "), "
		"       ARRAY(SELECT p->>'content_type' FROM " VN_FORM_PARTS "), "
		"       ARRAY(SELECT CASE WHEN p->>'media' = 'true' THEN 'media' ELSE 'value' END FROM " VN_FORM_PARTS "), "
		"       c.media "
		"  FROM ventros.http_claim($1, pg_catalog.make_interval(secs => $2)) c";
	Oid			  types[2] = {INT4OID, FLOAT8OID};
	Datum		  values[2];
	VnHttpReq	**reqs;
	int			  count;
	int			  i;
	bool		  isnull;
	MemoryContext old;

	values[0] = Int32GetDatum(n);
	values[1] = Float8GetDatum((double) (Max(vn_http_timeout / 1000, VN_HTTP_MAX_ROW_TIMEOUT_S) + VN_HTTP_LEASE_MARGIN_S));
	old = vn_worker_begin("claiming http requests");
	if (SPI_execute_with_args(sql, 2, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim http requests");
	count = SPI_processed;
	reqs = MemoryContextAlloc(old, sizeof(VnHttpReq *) * Max(count, 1));
	for (i = 0; i < count; i++)
	{
		HeapTuple	  tup = SPI_tuptable->vals[i];
		TupleDesc	  desc = SPI_tuptable->tupdesc;
		MemoryContext ctx = AllocSetContextCreate(http_ctx, "ventros http request",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext spi = MemoryContextSwitchTo(ctx);
		VnHttpReq	 *req = palloc0(sizeof(VnHttpReq));
		Datum		  d;
		char		 *policy;

		req->ctx = ctx;
		req->tenant_id = copy_text(tup, desc, HC_TENANT_ID, &isnull);
		req->id = copy_text(tup, desc, HC_ID, &isnull);
		req->method = copy_text(tup, desc, HC_METHOD, &isnull);
		req->url = copy_text(tup, desc, HC_URL, &isnull);
		d = SPI_getbinval(tup, desc, HC_HEADER_LINES, &isnull);
		if (!isnull)
		{
			Datum *elems;
			bool  *nulls;
			int	   k;
			int	   m;

			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &m);
			req->header_lines = palloc0(sizeof(char *) * Max(m, 1));
			for (k = 0; k < m; k++)
			{
				char *line;

				if (nulls[k])
					continue;
				line = TextDatumGetCString(elems[k]);
				/* never let a value smuggle another header or a body */
				if (strpbrk(line, "\r\n") != NULL)
					continue;
				req->header_lines[req->nheaders++] = line;
			}
		}
		d = SPI_getbinval(tup, desc, HC_BODY, &isnull);
		if (!isnull)
		{
			bytea *b = DatumGetByteaPCopy(d);

			req->has_body = true;
			req->body = VARDATA(b);
			req->body_len = VARSIZE(b) - VARHDRSZ;
		}
		req->attempt = DatumGetInt32(SPI_getbinval(tup, desc, HC_ATTEMPTS, &isnull));
		d = SPI_getbinval(tup, desc, HC_TIMEOUT_MS, &isnull);
		req->timeout_ms = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, HC_MAX_RESPONSE_SIZE, &isnull);
		req->max_response_size = isnull ? vn_http_max_response_size : DatumGetInt32(d);
		policy = copy_text(tup, desc, HC_RETRY_POLICY, &isnull);
		req->retry_any = policy != NULL && strcmp(policy, "any") == 0;
		read_form(req, tup, desc);
		MemoryContextSwitchTo(spi);
		reqs[i] = req;
	}
	*next_due = 0;
	if (count < n)
	{
		/* held requests (ventros.send_pauses) are not due: no claim loop */
		if (SPI_execute("SELECT ventros.http_next_due()", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the next due http request");
		if (SPI_processed == 1)
		{
			Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_due = DatumGetTimestampTz(d);
		}
	}
	vn_worker_end(old);

	/*
	 * Send only what a crash cannot take back (worker.c): a request queued
	 * by a transaction with synchronous_commit = off would otherwise reach
	 * its receiver although a crash then undid it.  The flush makes the
	 * claim durable too.  Outcomes are recorded without a flush: a crash
	 * that takes one back leaves the row claimed, and it is sent again (at
	 * least once).
	 */
	if (count > 0)
		vn_worker_flush_wal();
	for (i = 0; i < count; i++)
		start_request(reqs[i]);
	pfree(reqs);
	if (count > 0)
	{
		vn_worker_lock(&http_kind);
		my_slot->in_flight = in_flight;
		my_slot->last_activity_at = GetCurrentTimestamp();
		vn_worker_unlock(&http_kind);
	}
	return count;
}

/*
 * record_done
 *		Records every finished request in one transaction, then frees them.
 *		Returns true when a retry was scheduled (the next claim must look
 *		for the earliest due time again), or when a completion handler
 *		queued a new request in this transaction: its own commit does not
 *		wake the worker, so it claims again at once.
 */
static bool
record_done(void)
{
	static const char *sql =
		"SELECT ventros.http_record_attempt($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
	Oid			  types[11] = {TEXTOID, TEXTOID, INT4OID, BOOLOID, BOOLOID, INT8OID, INT4OID,
							   TEXTOID, BYTEAOID, BOOLOID, TEXTOID};
	VnHttpReq	 *req;
	int64		  ok = 0;
	int64		  bad = 0;
	int64		  refused = 0;
	const char	 *last_error = NULL;
	MemoryContext old;
	bool		  retry = false;

	if (done_head == NULL)
		return false;
	queued_by_handler = false;
	old = vn_worker_begin("recording http request outcomes");
	for (req = done_head; req != NULL; req = req->next)
	{
		Datum v[11];
		char  nulls[11];
		bool  answered = req->refusal == NULL && req->status > 0;

		memset(nulls, ' ', sizeof(nulls));
		v[0] = CStringGetTextDatum(req->tenant_id);
		v[1] = CStringGetTextDatum(req->id);
		v[2] = Int32GetDatum(req->attempt);
		v[3] = BoolGetDatum(req->succeeded);
		v[4] = BoolGetDatum(req->retryable);
		v[5] = Int64GetDatum(req->retry_after_ms);
		if (req->retry_after_ms < 0)
			nulls[5] = 'n';
		v[6] = Int32GetDatum((int32) req->status);
		if (!answered)
			nulls[6] = nulls[7] = nulls[8] = 'n';
		else
		{
			bytea *b = palloc(VARHDRSZ + req->resp_body.len);

			SET_VARSIZE(b, VARHDRSZ + req->resp_body.len);
			memcpy(VARDATA(b), req->resp_body.data, req->resp_body.len);
			v[7] = CStringGetTextDatum(req->resp_headers.data);
			v[8] = PointerGetDatum(b);
		}
		v[9] = BoolGetDatum(req->truncated);
		v[10] = req->error ? CStringGetTextDatum(req->error) : (Datum) 0;
		if (req->error == NULL)
			nulls[10] = 'n';
		if (SPI_execute_with_args(sql, 11, types, v, nulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not record an http request outcome");
		if (SPI_processed == 1)
		{
			bool  isnull;
			Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull && strcmp(TextDatumGetCString(d), "pending") == 0)
				retry = true;
		}
		if (req->succeeded)
			ok++;
		else
		{
			bad++;
			if (req->refusal != NULL && !req->refusal_transient)
				refused++;
			last_error = req->error;
		}
	}
	vn_worker_end(old);

	/* a request's error is its row's: shown, not logged */
	vn_worker_lock(&http_kind);
	my_slot->succeeded += ok;
	my_slot->failed_attempts += bad;
	my_slot->refused += refused;
	my_slot->in_flight = in_flight;
	my_slot->last_activity_at = GetCurrentTimestamp();
	if (last_error != NULL)
		vn_worker_note_error(&my_slot->w, last_error, my_slot->last_activity_at);
	vn_worker_unlock(&http_kind);

	while (done_head != NULL)
	{
		req = done_head;
		done_head = req->next;
		MemoryContextDelete(req->ctx);
	}
	/* A handler's new request (media step 2, next page) is due now. */
	return retry || queued_by_handler;
}

/* ---- waiting ------------------------------------------------------------- */

/*
 * wait_and_drive
 *		Sleeps on the latch and curl's sockets for at most timeout_ms, then
 *		lets libcurl act on what fired.  Returns true when the latch was set.
 */
static bool
wait_and_drive(long timeout_ms)
{
	WaitEventSet *set;
	WaitEvent	 *occurred;
	int			  nevents = nsocks + 2;
	int			  n;
	int			  i;
	int			  running;
	bool		  woken = false;
	VnSock		 *fired;
	int			  nfired = 0;

	set = CreateWaitEventSet(CurrentMemoryContext, nevents);
	occurred = palloc(sizeof(WaitEvent) * nevents);
	fired = palloc(sizeof(VnSock) * nevents);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nsocks; i++)
	{
		uint32 ev = 0;

		if (socks[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (socks[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		if (ev != 0)
			AddWaitEventToSet(set, ev, socks[i].fd, NULL, NULL);
	}
	n = WaitEventSetWait(set, timeout_ms, occurred, nevents, PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
	{
		if (occurred[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
		else if (occurred[i].events & WL_SOCKET_MASK)
		{
			int flags = 0;

			if (occurred[i].events & WL_SOCKET_READABLE)
				flags |= CURL_CSELECT_IN;
			if (occurred[i].events & WL_SOCKET_WRITEABLE)
				flags |= CURL_CSELECT_OUT;
			fired[nfired].fd = occurred[i].fd;
			fired[nfired++].what = flags;
		}
	}
	FreeWaitEventSet(set);

	for (i = 0; i < nfired; i++)
		curl_multi_socket_action(multi, fired[i].fd, fired[i].what, &running);
	if (curl_deadline != 0 && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	harvest();
	return woken;
}

static long
ms_until(TimestampTz t, TimestampTz now)
{
	if (t <= now)
		return 0;
	return (long) Min((t - now + 999) / 1000, (TimestampTz) INT_MAX);
}

/* before the kit clears the slot: nothing is in flight any more */
static void
worker_exit(int code, Datum arg)
{
	vn_worker_lock(&http_kind);
	my_slot->in_flight = 0;
	vn_worker_unlock(&http_kind);
}

void
vn_http_worker_main(Datum main_arg)
{
	bool		ready = false;
	TimestampTz next_ready_check = 0;
	TimestampTz next_claim_at = 0;

	my_slot = (VnHttpSlot *) vn_worker_attach(&http_kind, main_arg);
	before_shmem_exit(worker_exit, (Datum) 0);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(FATAL, "ventros http dispatcher: curl_global_init failed");
	http_ctx = AllocSetContextCreate(TopMemoryContext, "ventros http dispatcher",
									 ALLOCSET_DEFAULT_SIZES);
	maxsocks = 16;
	socks = MemoryContextAlloc(http_ctx, sizeof(VnSock) * maxsocks);
	multi = curl_multi_init();
	if (multi == NULL)
		elog(FATAL, "ventros http dispatcher: curl_multi_init failed");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);

	for (;;)
	{
		TimestampTz now;
		long		timeout;

		(void) vn_worker_loop_top();

		now = GetCurrentTimestamp();
		if (!ready && now >= next_ready_check)
		{
			ready = schema_ready();
			if (!ready)
			{
				char msg[VN_WORKER_ERRLEN];

				snprintf(msg, sizeof(msg), "extension ventros is not installed in database \"%s\"",
						 my_slot->w.database);
				vn_worker_set_error(msg);
				next_ready_check = TimestampTzPlusMilliseconds(now, vn_http_poll_interval);
			}
		}

		if (ready && in_flight < vn_http_concurrency && now >= next_claim_at)
		{
			int			want = vn_http_concurrency - in_flight;
			TimestampTz next_due = 0;
			int			got = claim(want, &next_due);

			now = GetCurrentTimestamp();
			if (got == want)
				next_claim_at = now; /* more may be due */
			else
			{
				next_claim_at = TimestampTzPlusMilliseconds(now, vn_http_poll_interval);
				if (next_due != 0 && next_due < next_claim_at)
					next_claim_at = next_due;
			}
		}
		if (record_done())
			next_claim_at = 0;

		now = GetCurrentTimestamp();
		timeout = vn_http_poll_interval;
		if (!ready)
			timeout = Min(timeout, ms_until(next_ready_check, now));
		else if (in_flight < vn_http_concurrency)
			timeout = Min(timeout, ms_until(next_claim_at, now));
		if (curl_deadline != 0)
			timeout = Min(timeout, ms_until(curl_deadline, now));
		if (wait_and_drive(timeout))
			next_claim_at = 0;
		if (record_done())
			next_claim_at = 0;
	}
}

/* ---- status -------------------------------------------------------------- */

/*
 * ventros.http_dispatcher_state(): the shared counters of the dispatcher
 * of the current database (a row of NULLs and zeros when none serves it).
 */
Datum
ventros_http_dispatcher_state(PG_FUNCTION_ARGS)
{
	TupleDesc  desc;
	Datum	   v[10];
	bool	   nulls[10];
	VnHttpSlot copy;

	(void) vn_worker_database_state(&http_kind, fcinfo, &desc, &copy);
	memset(nulls, 0, sizeof(nulls));
	v[0] = Int32GetDatum(copy.w.pid);
	nulls[0] = copy.w.pid == 0;
	v[1] = CStringGetTextDatum(copy.w.database);
	nulls[1] = copy.w.database[0] == '\0';
	v[2] = TimestampTzGetDatum(copy.w.started_at);
	nulls[2] = copy.w.pid == 0 || copy.w.started_at == 0;
	v[3] = Int32GetDatum(copy.in_flight);
	v[4] = Int64GetDatum(copy.succeeded);
	v[5] = Int64GetDatum(copy.failed_attempts);
	v[6] = Int64GetDatum(copy.refused);
	v[7] = TimestampTzGetDatum(copy.last_activity_at);
	nulls[7] = copy.last_activity_at == 0;
	v[8] = TimestampTzGetDatum(copy.w.last_error_at);
	nulls[8] = copy.w.last_error_at == 0;
	v[9] = CStringGetTextDatum(copy.w.last_error);
	nulls[9] = copy.w.last_error[0] == '\0';
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, nulls)));
}

/* ---- registration -------------------------------------------------------- */

/*
 * vn_http_worker_init
 *		GUCs and the commit callback always; at preload also shared memory
 *		and a worker for each database of ventros.databases.
 */
void
vn_http_worker_init(void)
{
	vn_ssrf_init();
	DefineCustomIntVariable("ventros.http_concurrency",
							"Requests the HTTP dispatcher performs at the same time.",
							NULL,
							&vn_http_concurrency,
							32, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_connect_timeout",
							"How long an HTTP request may take to connect.",
							NULL,
							&vn_http_connect_timeout,
							5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_timeout",
							"How long one attempt of an HTTP request may take in total, unless the request sets timeout_ms.",
							NULL,
							&vn_http_timeout,
							10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_max_attempts",
							"Attempts a new HTTP request gets before it is dead, unless it says otherwise.",
							NULL,
							&vn_http_max_attempts,
							8, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_backoff_min",
							"Delay before the second attempt; each later delay doubles, with +-10 % jitter.",
							NULL,
							&vn_http_backoff_min,
							5000, 1, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_backoff_max",
							"Longest delay between two attempts of an HTTP request.",
							NULL,
							&vn_http_backoff_max,
							36000000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_retry_after_max",
							"Longest Retry-After the HTTP dispatcher honours.",
							NULL,
							&vn_http_retry_after_max,
							86400, 0, 604800,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_max_response_size",
							"Bytes of an answer's body (and of its headers) kept on the request row; the rest is cut.",
							NULL,
							&vn_http_max_response_size,
							65536, 0, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_max_body_size",
							"Largest request body the HTTP dispatcher builds from media (multipart or inline base64); larger ones are refused.",
							NULL,
							&vn_http_max_body_size,
							32 * 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.http_poll_interval",
							"Longest sleep of the HTTP dispatcher without a wake-up.",
							NULL,
							&vn_http_poll_interval,
							1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);


	vn_http_wake_target = vn_worker_define(&http_kind, 1, vn_http_find_latch);
}
