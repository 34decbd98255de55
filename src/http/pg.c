/*
 * pg.c
 *	  A fixed pool of libpq connections, and the request's one round trip.
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
 * The pool is a fixed array guarded by a mutex and a condition variable;
 * a request that waits longer than its timeout for a connection gets 503.
 * A connection found broken is reset before it is handed out again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "pg.h"

typedef struct VnPool
{
	pthread_mutex_t lock;
	pthread_cond_t freed;
	int			size;
	PGconn	  **conns;
	bool	   *busy;
	char	   *conninfo;
} VnPool;

static VnPool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static const char *setup_sql =
"SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true),"
" pg_catalog.set_config('request.method', $3, true), pg_catalog.set_config('request.path', $4, true),"
" pg_catalog.set_config('request.headers', $5, true), pg_catalog.set_config('statement_timeout', $6, true)";

/* API keys: the key's claims are looked up in the same statement */
static const char *setup_key_sql =
"SELECT pg_catalog.set_config('role', c->>'role', true), pg_catalog.set_config('request.jwt.claims', c::text, true),"
" pg_catalog.set_config('request.method', $1, true), pg_catalog.set_config('request.path', $2, true),"
" pg_catalog.set_config('request.headers', $3, true), pg_catalog.set_config('statement_timeout', $4, true)"
" FROM ventros.api_key_claims($5) c";

PGconn *
vn_pg_connect_one(const char *conninfo, char **error)
{
	PGconn	   *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
	{
		*error = vn_strdup(PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

bool
vn_pg_pool_init(const char *conninfo, int size, char **error)
{
	pool.size = size;
	pool.conninfo = vn_strdup(conninfo);
	pool.conns = vn_alloc(sizeof(PGconn *) * size);
	pool.busy = vn_alloc(sizeof(bool) * size);
	for (int i = 0; i < size; i++)
	{
		pool.conns[i] = vn_pg_connect_one(conninfo, error);
		if (pool.conns[i] == NULL)
			return false;
	}
	return true;
}

PGconn *
vn_pg_acquire(int timeout_ms)
{
	struct timespec deadline;
	PGconn	   *found = NULL;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pool.lock);
	for (;;)
	{
		for (int i = 0; i < pool.size; i++)
			if (!pool.busy[i])
			{
				pool.busy[i] = true;
				found = pool.conns[i];
				break;
			}
		if (found || pthread_cond_timedwait(&pool.freed, &pool.lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool.lock);
	if (found && PQstatus(found) != CONNECTION_OK)
		PQreset(found);
	if (found && PQstatus(found) != CONNECTION_OK)
	{
		vn_pg_release(found);
		return NULL;
	}
	return found;
}

void
vn_pg_release(PGconn *conn)
{
	pthread_mutex_lock(&pool.lock);
	for (int i = 0; i < pool.size; i++)
		if (pool.conns[i] == conn)
			pool.busy[i] = false;
	pthread_cond_signal(&pool.freed);
	pthread_mutex_unlock(&pool.lock);
}

PGresult *
vn_pg_run(PGconn *conn, const VnSetup *setup, const char *sql, int nparams, const char *const *values)
{
	PGresult   *res;
	PGresult   *answer = NULL;
	bool		ok;
	int			stage = 0;		/* 0 setup, 1 main, 2 sync */

	if (!PQenterPipelineMode(conn))
		return NULL;
	if (setup->api_key)
	{
		const char *v[5] = {setup->method, setup->path, setup->headers, setup->timeout, setup->api_key};

		ok = PQsendQueryParams(conn, setup_key_sql, 5, NULL, v, NULL, NULL, 0);
	}
	else
	{
		const char *v[6] = {setup->role, setup->claims, setup->method, setup->path, setup->headers,
		setup->timeout};

		ok = PQsendQueryParams(conn, setup_sql, 6, NULL, v, NULL, NULL, 0);
	}
	ok = ok && PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	ok = ok && PQpipelineSync(conn);
	if (!ok)
	{
		PQexitPipelineMode(conn);
		PQreset(conn);
		return NULL;
	}
	/* read: setup result, NULL, main result, NULL, sync */
	while (stage < 3)
	{
		res = PQgetResult(conn);
		if (res == NULL)
		{
			if (PQstatus(conn) != CONNECTION_OK)
				break;
			stage++;
			continue;
		}
		switch (PQresultStatus(res))
		{
			case PGRES_PIPELINE_SYNC:
				stage = 3;
				PQclear(res);
				break;
			case PGRES_FATAL_ERROR:
				if (answer == NULL || PQresultStatus(answer) != PGRES_FATAL_ERROR)
				{
					if (answer)
						PQclear(answer);
					answer = res;
				}
				else
					PQclear(res);
				break;
			case PGRES_PIPELINE_ABORTED:
				PQclear(res);
				break;
			default:
				if (stage == 1 && answer == NULL)
					answer = res;
				else
					PQclear(res);
		}
	}
	if (stage < 3 || !PQexitPipelineMode(conn))
	{
		if (answer)
			PQclear(answer);
		PQreset(conn);
		return NULL;
	}
	return answer;
}
