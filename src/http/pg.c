/*
 * pg.c
 *	  Each loop thread's pool of libpq connections, and the request's one
 *	  round trip.
 *
 * A request is two statements sent in libpq pipeline mode with one Sync: the
 * setup (SET LOCAL ROLE through set_config('role'), the JWT claims, method,
 * path and headers, statement_timeout) and the request's own statement.
 * Statements between two Syncs that are not in an explicit transaction
 * block form one implicit transaction, so the settings are local to the
 * request, an error in either statement rolls back both, and the Sync
 * commits.  Nothing is ever left on a connection between requests: the
 * settings were transaction-local and the transaction is over.
 *
 * Each loop thread (loop.c) has a fixed array of connections that only it
 * uses, so there is no lock.  The connections are non-blocking: where a
 * request would block (sending, or waiting for the answer) its task yields
 * to the loop until the socket is ready.  A request that finds every
 * connection busy queues for one; after its timeout it gets 503.  A
 * connection found broken is reset before it is handed out again.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/epoll.h>

#include "buf.h"
#include "loop.h"
#include "metrics.h"
#include "pg.h"
#include "task.h"

/*
 * Prepared statements, per connection: the SQL of a request depends only on
 * its shape (values are parameters), so the same text comes back again and
 * again.  The first time a connection sees a text it prepares it in the same
 * pipeline as its execution (still one round trip); later it only executes.
 *
 * Each statement costs the backend memory (its plan cache), and a client
 * chooses the shapes: so a connection holds at most VENTROS_HTTP_PREPARED
 * statements, the least recently used ones deallocated (DEALLOCATE at the
 * head of the pipeline that needs their place), and a text longer than
 * VN_STMT_MAX_SQL runs unnamed, never kept.  Names are never reused (vn<n>
 * counts up per connection), so a name always means one text.  A reset
 * connection forgets its statements.
 */
#define VN_STMT_MAX_SQL (16 * 1024)

typedef struct VnStmt
{
	unsigned long long hash;
	char			  *sql;	 /* NULL: a free slot */
	unsigned long	   name; /* vn<name> on the server */
	unsigned long	   used; /* the pool's clock at its last use */
} VnStmt;

typedef struct VnWaiter
{
	VnTask			*task;
	PGconn			*conn; /* handed over by vn_pg_release */
	struct VnWaiter *next;
} VnWaiter;

struct VnPool
{
	int			   size;
	PGconn		 **conns;
	bool		  *busy;
	char		  *conninfo;
	VnStmt		 **stmts;  /* [size][max_stmts] */
	int			  *nstmts; /* slots in use (free ones included) */
	int			   max_stmts;
	unsigned long *next_name; /* per connection */
	unsigned long  clock;
	VnWaiter	  *waiters; /* tasks waiting for a connection, first come first served */
};

static int	conn_index(PGconn *conn);
static void reset(PGconn *conn, int ci);

/*
 * JIT is off for requests: compiling a large statement's expressions takes
 * as long as it likes without looking at statement_timeout, and a client
 * chooses how large the statement is.  ventros.max_plan_cost (plan_guard.c
 * in the extension) refuses plans over the front's cost ceiling.
 *
 * An answer means durable: a server running synchronous_commit = off makes
 * a commit visible before its WAL is on disk, and a crash then takes back a
 * write the front already answered (a webhook answered 200, which its
 * provider never sends again, was lost so).  The request's transaction
 * commits with synchronous_commit = on instead; local and the stronger
 * remote_* settings are kept.  A request that writes nothing waits for
 * nothing.
 */
#define VN_SYNC_COMMIT \
	" pg_catalog.set_config('synchronous_commit', CASE pg_catalog.current_setting('synchronous_commit')" \
	" WHEN 'off' THEN 'on' ELSE pg_catalog.current_setting('synchronous_commit') END, true)"

/*
 * The setup statement, in variants: a setting whose value would not change
 * is left out rather than set to what it is (each set_config is a function
 * call the executor prepares, a GUC saved and restored at commit, about a
 * tenth of a cached read's cost in the backend).  A read-write request
 * leaves transaction_read_only as it is, a read-only one waits for no
 * commit so synchronous_commit does not matter, without Prefer: timezone
 * the login's timezone stays, and without a schema (webhooks, streams) the
 * login's search_path.  The parameters keep their numbers
 * in every variant (all typed text, so that one a variant does not use is
 * no error): $1 role, $2 claims, $3 method, $4 path, $5 headers,
 * $6 statement_timeout, $7 max_plan_cost, $8 search_path, $9 timezone, and
 * with an API key $10 the key, whose claims are looked up in the same
 * statement.
 */
#define VN_SETUP_PARAMS 10
#define VN_SETUP_API_KEY 1
#define VN_SETUP_READ_ONLY 2
#define VN_SETUP_TIMEZONE 4
#define VN_SETUP_SEARCH_PATH 8
#define VN_SETUP_VARIANTS 16

static char				 *setup_variants[VN_SETUP_VARIANTS];
static unsigned long long setup_hashes[VN_SETUP_VARIANTS];
static pthread_once_t	  setup_once = PTHREAD_ONCE_INIT;

static void
build_setup_variants(void)
{
	for (int v = 0; v < VN_SETUP_VARIANTS; v++)
	{
		VnBuf b;
		bool  key = (v & VN_SETUP_API_KEY) != 0;

		vn_buf_init(&b);
		vn_buf_add(&b, key ? "SELECT pg_catalog.set_config('role', c->>'role', true),"
							 " pg_catalog.set_config('request.jwt.claims', c::text, true)," :
							 "SELECT pg_catalog.set_config('role', $1, true),"
							 " pg_catalog.set_config('request.jwt.claims', $2, true),");
		vn_buf_add(&b, " pg_catalog.set_config('request.method', $3, true), pg_catalog.set_config('request.path', $4, true),"
					   " pg_catalog.set_config('request.headers', $5, true), pg_catalog.set_config('statement_timeout', $6, true),"
					   " pg_catalog.set_config('jit', 'off', true), pg_catalog.set_config('ventros.max_plan_cost', $7, true)");
		if (v & VN_SETUP_SEARCH_PATH)
			vn_buf_add(&b, ", pg_catalog.set_config('search_path', $8, true)");
		/*
		 * GET and HEAD: the transaction is read-only (25006 on a write).  A
		 * read-write request keeps the server's default rather than setting
		 * off, which a default_transaction_read_only server would refuse.
		 */
		if (v & VN_SETUP_READ_ONLY)
			vn_buf_add(&b, ", pg_catalog.set_config('transaction_read_only', 'on', true)");
		else
			vn_buf_add(&b, "," VN_SYNC_COMMIT);
		if (v & VN_SETUP_TIMEZONE)
			vn_buf_add(&b, ", pg_catalog.set_config('timezone', $9, true)");
		if (key)
			vn_buf_add(&b, " FROM ventros.api_key_claims($10) c");
		setup_variants[v] = b.data;
		setup_hashes[v] = vn_hash_string(b.data);
	}
}

PGconn *
vn_pg_connect_one(const char *conninfo, char **error)
{
	PGconn *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
	{
		*error = vn_strdup(PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

VnPool *
vn_pg_pool_create(const char *conninfo, int size, int max_stmts, char **error)
{
	VnPool *pool = vn_alloc(sizeof(VnPool));

	pool->size = size;
	pool->max_stmts = max_stmts < 2 ? 2 : max_stmts;
	pool->next_name = vn_alloc(sizeof(unsigned long) * size);
	pool->conninfo = vn_strdup(conninfo);
	pool->conns = vn_alloc(sizeof(PGconn *) * size);
	pool->busy = vn_alloc(sizeof(bool) * size);
	pool->stmts = vn_alloc(sizeof(VnStmt *) * size);
	pool->nstmts = vn_alloc(sizeof(int) * size);
	for (int i = 0; i < size; i++)
	{
		pool->conns[i] = vn_pg_connect_one(conninfo, error);
		if (pool->conns[i] == NULL)
			return NULL;
		/* a loop thread never blocks on its sockets: it waits in epoll */
		PQsetnonblocking(pool->conns[i], 1);
		pool->stmts[i] = vn_alloc(sizeof(VnStmt) * pool->max_stmts);
	}
	vn_metrics_pool(size, 0, 0);
	return pool;
}

PGconn *
vn_pg_acquire(int timeout_ms)
{
	VnPool *pool = vn_loop_pool();
	PGconn *found = NULL;

	if (pool == NULL)
		return NULL;
	for (int i = 0; i < pool->size && found == NULL; i++)
		if (!pool->busy[i])
		{
			pool->busy[i] = true;
			found = pool->conns[i];
			vn_metrics_pool(0, 1, 0);
		}
	if (found == NULL)
	{
		/* queue up behind earlier waiters; vn_pg_release hands one over */
		VnWaiter   w = {vn_task_current(), NULL, NULL};
		VnWaiter **tail = &pool->waiters;

		while (*tail)
			tail = &(*tail)->next;
		*tail = &w;
		vn_metrics_pool(0, 0, 1);
		vn_loop_park(timeout_ms);
		vn_metrics_pool(0, 0, -1);
		found = w.conn;
		if (found == NULL)
		{
			vn_metrics_pool_timeout();
			/* timed out: leave the queue */
			for (tail = &pool->waiters; *tail; tail = &(*tail)->next)
				if (*tail == &w)
				{
					*tail = w.next;
					break;
				}
			return NULL;
		}
	}
	if (PQstatus(found) == CONNECTION_OK)
	{
		/*
		 * An idle connection has nothing to read unless the server went
		 * away (it sends its FATAL and closes): find out before sending a
		 * request into a dead socket, so that writes need no retry.
		 */
		struct pollfd p = {PQsocket(found), POLLIN, 0};

		if (p.fd >= 0 && poll(&p, 1, 0) > 0)
			PQconsumeInput(found);
	}
	if (PQstatus(found) != CONNECTION_OK)
		reset(found, conn_index(found));
	if (PQstatus(found) != CONNECTION_OK)
	{
		vn_pg_release(found);
		return NULL;
	}
	return found;
}

void
vn_pg_release(PGconn *conn)
{
	VnPool	 *pool = vn_loop_pool();
	VnWaiter *w = pool->waiters;

	if (w)
	{
		/* straight to the first waiter: the connection stays busy */
		pool->waiters = w->next;
		w->conn = conn;
		vn_loop_wake(w->task);
		return;
	}
	for (int i = 0; i < pool->size; i++)
		if (pool->conns[i] == conn && pool->busy[i])
		{
			pool->busy[i] = false;
			vn_metrics_pool(0, -1, 0);
		}
}

/*
 * Waits until conn has a whole result to give (or broke), flushing what
 * the non-blocking sends left unsent: PQgetResult afterwards never blocks.
 */
static void
await_result(PGconn *conn)
{
	for (;;)
	{
		int f = PQflush(conn);

		if (f < 0)
			return;
		if (f > 0)
		{
			vn_loop_wait_fd(PQsocket(conn), EPOLLIN | EPOLLOUT);
			if (!PQconsumeInput(conn))
				return;
			continue;
		}
		if (!PQisBusy(conn))
			return;
		vn_loop_wait_fd(PQsocket(conn), EPOLLIN);
		if (!PQconsumeInput(conn))
			return;
	}
}

PGresult *
vn_pg_get_result(PGconn *conn)
{
	if (PQsocket(conn) >= 0 && PQstatus(conn) == CONNECTION_OK)
		await_result(conn);
	return PQgetResult(conn);
}

PGresult *
vn_pg_exec(PGconn *conn, const char *sql)
{
	PGresult *last = NULL;
	PGresult *res;

	if (!PQsendQuery(conn, sql))
		return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
	while ((res = vn_pg_get_result(conn)) != NULL)
	{
		if (last)
			PQclear(last);
		last = res;
	}
	return last ? last : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

static int
conn_index(PGconn *conn)
{
	VnPool *pool = vn_loop_pool();

	for (int i = 0; pool && i < pool->size; i++)
		if (pool->conns[i] == conn)
			return i;
	return -1;
}

static void
forget_statements(int ci)
{
	VnPool *pool = vn_loop_pool();

	if (ci < 0)
		return;
	for (int k = 0; k < pool->nstmts[ci]; k++)
	{
		free(pool->stmts[ci][k].sql);
		pool->stmts[ci][k].sql = NULL;
	}
	pool->nstmts[ci] = 0;
}

/*
 * Reconnects.  It blocks the loop thread while it connects: it happens only
 * after the server went away, when every request waits for it anyway.
 */
static void
reset(PGconn *conn, int ci)
{
	PQreset(conn);
	PQsetnonblocking(conn, 1);
	forget_statements(ci);
}

typedef enum VnItem
{
	VN_ITEM_PREPARE,
	VN_ITEM_EXEC
} VnItem;

/* the statement's slot on this connection, or -1 */
static int
find_statement(int ci, const char *sql, unsigned long long h)
{
	VnPool *pool = vn_loop_pool();

	if (ci < 0)
		return -1;
	for (int k = 0; k < pool->nstmts[ci]; k++)
		if (pool->stmts[ci][k].sql && pool->stmts[ci][k].hash == h && strcmp(pool->stmts[ci][k].sql, sql) == 0)
			return k;
	return -1;
}

/* a free slot for a new statement on connection ci, or -1 (it runs unnamed) */
static int
take_slot(int ci)
{
	VnPool *pool = vn_loop_pool();

	for (int k = 0; k < pool->nstmts[ci]; k++)
		if (pool->stmts[ci][k].sql == NULL)
			return k;
	if (pool->nstmts[ci] < pool->max_stmts)
		return pool->nstmts[ci]++;
	return -1;
}

/* is sql one to keep prepared on ci?  Marks it used when it is there already */
static bool
needs_slot(int ci, const char *sql, unsigned long long h)
{
	VnPool *pool = vn_loop_pool();
	int		k = find_statement(ci, sql, h);

	if (k >= 0)
		pool->stmts[ci][k].used = ++pool->clock;
	return k < 0 && strlen(sql) <= VN_STMT_MAX_SQL;
}

/*
 * Room for the new statements of this request (the setup's and the main
 * one's): the least recently used statements of ci are deallocated, at the
 * head of the pipeline, where nothing before them can fail and skip them
 * (a skipped DEALLOCATE would leave a statement on the server that the
 * cache has forgotten).  The request's own statements were just marked
 * used, so they are never the ones to go.  False on send failure.
 */
static bool
make_room(PGconn *conn, int ci, int setup_variant, const char *sql, unsigned long long sql_hash,
		  VnItem *items, int *nitems, int *prepared_slot, bool *is_main)
{
	VnPool *pool = vn_loop_pool();
	VnStmt *st = pool->stmts[ci];
	int		need = (needs_slot(ci, setup_variants[setup_variant], setup_hashes[setup_variant]) ? 1 : 0) +
			   (needs_slot(ci, sql, sql_hash) ? 1 : 0);
	int room = pool->max_stmts - pool->nstmts[ci];

	for (int k = 0; k < pool->nstmts[ci]; k++)
		if (st[k].sql == NULL)
			room++;
	while (room < need)
	{
		int	 victim = -1;
		char dealloc[48];

		for (int k = 0; k < pool->nstmts[ci]; k++)
			if (st[k].sql && (victim < 0 || st[k].used < st[victim].used))
				victim = k;
		if (victim < 0)
			break;
		snprintf(dealloc, sizeof(dealloc), "DEALLOCATE vn%lu", st[victim].name);
		if (!PQsendQueryParams(conn, dealloc, 0, NULL, NULL, NULL, NULL, 0))
			return false;
		free(st[victim].sql);
		st[victim].sql = NULL;
		prepared_slot[*nitems] = -1;
		is_main[*nitems] = false;
		items[(*nitems)++] = VN_ITEM_EXEC;
		room++;
	}
	return true;
}

/* queues one statement: prepared, to be prepared, or unnamed; false on send failure */
static bool
send_statement(PGconn *conn, int ci, const char *sql, unsigned long long h, const VnParams *p,
			   VnItem *items, int *nitems, int *prepared_slot, bool *is_main, bool main)
{
	VnPool *pool = vn_loop_pool();
	int		k = find_statement(ci, sql, h);
	char	name[32];

	if (k < 0 && ci >= 0 && strlen(sql) <= VN_STMT_MAX_SQL && (k = take_slot(ci)) >= 0)
	{
		snprintf(name, sizeof(name), "vn%lu", pool->next_name[ci]);
		if (!PQsendPrepare(conn, name, sql, p->n, p->types))
			return false;
		/* recorded now, freed again if the prepare fails */
		pool->stmts[ci][k].hash = h;
		pool->stmts[ci][k].sql = vn_strdup(sql);
		pool->stmts[ci][k].name = pool->next_name[ci]++;
		prepared_slot[*nitems] = k;
		is_main[*nitems] = main;
		items[(*nitems)++] = VN_ITEM_PREPARE;
	}
	if (k >= 0)
	{
		pool->stmts[ci][k].used = ++pool->clock;
		snprintf(name, sizeof(name), "vn%lu", pool->stmts[ci][k].name);
		if (!PQsendQueryPrepared(conn, name, p->n, p->values, p->lengths, p->formats, 0))
			return false;
	}
	else if (!PQsendQueryParams(conn, sql, p->n, p->types, p->values, p->lengths, p->formats, 0))
		return false;
	prepared_slot[*nitems] = -1;
	is_main[*nitems] = main;
	items[(*nitems)++] = VN_ITEM_EXEC;
	return true;
}

PGresult *
vn_pg_run(PGconn *conn, const VnSetup *setup, const char *sql, const VnParams *params)
{
	static const VnParams none = {0, NULL, NULL, NULL, NULL};
	static const Oid	  text_types[VN_SETUP_PARAMS] = {25, 25, 25, 25, 25, 25, 25, 25, 25, 25};
	VnPool				 *pool = vn_loop_pool();
	PGresult			 *res;
	PGresult			 *answer = NULL;
	bool				  ok;
	int					  ci = conn_index(conn);
	VnItem				  items[10]; /* up to two DEALLOCATEs, BEGIN, two PREPAREs, three EXECUTEs */
	int					  prepared_slot[10];
	bool				  is_main[10];
	int					  nitems = 0;
	bool				  broken = false;
	int					  variant = (setup->api_key ? VN_SETUP_API_KEY : 0) | (setup->read_only ? VN_SETUP_READ_ONLY : 0) |
				  (setup->timezone ? VN_SETUP_TIMEZONE : 0) | (setup->search_path ? VN_SETUP_SEARCH_PATH : 0);
	const char *values[VN_SETUP_PARAMS] = {setup->role, setup->claims, setup->method, setup->path,
										   setup->headers, setup->timeout, setup->max_plan_cost,
										   setup->search_path, setup->timezone, setup->api_key};
	VnParams	setup_params = {VN_SETUP_PARAMS, values, text_types, NULL, NULL};
	/* hashed once: the statement cache looks it up twice */
	unsigned long long sql_hash = vn_hash_string(sql);

	pthread_once(&setup_once, build_setup_variants);
	if (!PQenterPipelineMode(conn))
		return NULL;
	/*
	 * Prefer: tx=rollback: an explicit transaction ended by ROLLBACK, still
	 * one round trip.  An error skips the ROLLBACK (the pipeline is aborted
	 * up to the Sync) and leaves the failed block open: it is rolled back
	 * below, an extra round trip on that path only.
	 */
	ok = ci < 0 || make_room(conn, ci, variant, sql, sql_hash, items, &nitems, prepared_slot, is_main);
	ok = ok && (!setup->rollback ||
				send_statement(conn, -1, "BEGIN", 0, &none, items, &nitems, prepared_slot, is_main, false));
	ok = ok && send_statement(conn, ci, setup_variants[variant], setup_hashes[variant], &setup_params, items, &nitems,
							  prepared_slot, is_main, false);
	ok = ok && send_statement(conn, ci, sql, sql_hash, params, items, &nitems, prepared_slot, is_main, true);
	ok = ok && (!setup->rollback ||
				send_statement(conn, -1, "ROLLBACK", 0, &none, items, &nitems, prepared_slot, is_main, false));
	ok = ok && PQpipelineSync(conn);
	if (!ok)
	{
		PQexitPipelineMode(conn);
		reset(conn, ci);
		return NULL;
	}
	/* each item answers with its result(s) and a NULL; then the sync */
	for (int i = 0; i < nitems && !broken; i++)
	{
		bool prepared_ok = false;

		while ((res = vn_pg_get_result(conn)) != NULL)
		{
			ExecStatusType st = PQresultStatus(res);

			if (st == PGRES_FATAL_ERROR && (answer == NULL || PQresultStatus(answer) != PGRES_FATAL_ERROR))
			{
				if (answer)
					PQclear(answer);
				answer = res;
			}
			else if (st == PGRES_TUPLES_OK && is_main[i] && items[i] == VN_ITEM_EXEC && answer == NULL)
				answer = res;
			else
			{
				if (st == PGRES_COMMAND_OK && items[i] == VN_ITEM_PREPARE)
					prepared_ok = true;
				PQclear(res);
			}
		}
		if (PQstatus(conn) != CONNECTION_OK)
			broken = true;
		if (items[i] == VN_ITEM_PREPARE && !prepared_ok && prepared_slot[i] >= 0 && ci >= 0)
		{
			/* not prepared after all (the pipeline failed first): the slot is free */
			int k = prepared_slot[i];

			free(pool->stmts[ci][k].sql);
			pool->stmts[ci][k].sql = NULL;
		}
	}
	res = broken ? NULL : vn_pg_get_result(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC || !PQexitPipelineMode(conn))
	{
		if (res)
			PQclear(res);
		if (answer)
			PQclear(answer);
		reset(conn, ci);
		return NULL;
	}
	PQclear(res);
	if (setup->rollback && PQtransactionStatus(conn) != PQTRANS_IDLE)
	{
		res = vn_pg_exec(conn, "ROLLBACK");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			if (answer)
				PQclear(answer);
			answer = NULL;
			reset(conn, ci);
		}
		PQclear(res);
	}
	return answer;
}

void
vn_pg_reset(PGconn *conn)
{
	reset(conn, conn_index(conn));
}
