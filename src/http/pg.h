/*
 * pg.h
 *	  The connection pool of ventros-http and the one-round-trip request.
 */
#ifndef VN_HTTP_PG_H
#define VN_HTTP_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

/* what the first statement of a request sets, transaction-locally */
typedef struct VnSetup
{
	const char *role;	/* NULL with api_key: the key's role */
	const char *claims; /* JSON text, "" for anonymous */
	const char *method;
	const char *path;
	const char *headers;	   /* JSON object text */
	const char *timeout;	   /* statement_timeout, e.g. "10s" */
	const char *max_plan_cost; /* ventros.max_plan_cost, "0": no ceiling */
	const char *api_key;	   /* an API key to resolve into role and claims, or NULL */
	bool		rollback;	   /* undo the request's changes (Prefer: tx=rollback) */
	bool		read_only;	   /* a read-only transaction (GET, HEAD) */
	const char *search_path;   /* the request's schema and the extra ones; NULL: the login's */
	const char *timezone;	   /* Prefer: timezone=, a name of pg_timezone_names; NULL: the login's */
} VnSetup;

/*
 * A loop thread's connections (loop.c), opened now, each keeping at most
 * max_stmts prepared statements; NULL with *error.
 */
typedef struct VnPool VnPool;
extern VnPool		 *vn_pg_pool_create(const char *conninfo, int size, int max_stmts, char **error);
/*
 * A connection of the calling loop thread's pool, waiting (as a task) at
 * most timeout_ms; NULL when none came free or it could not reconnect.
 */
extern PGconn *vn_pg_acquire(int timeout_ms);
extern void	   vn_pg_release(PGconn *conn);
/* PQgetResult and PQexec that let the loop run while they wait */
extern PGresult *vn_pg_get_result(PGconn *conn);
extern PGresult *vn_pg_exec(PGconn *conn, const char *sql);
/* a statement's parameters: text, or typed and (with formats) binary */
typedef struct VnParams
{
	int				   n;
	const char *const *values;
	const Oid		  *types;	/* NULL: the server infers them */
	const int		  *lengths; /* for binary values */
	const int		  *formats; /* NULL: all text */
} VnParams;

/*
 * Runs the setup statement and sql in one pipeline (one round trip, one
 * implicit transaction; with setup->rollback, BEGIN ... ROLLBACK around them).  Returns the main statement's result, or the first
 * error result; NULL when the connection failed.  The caller PQclear()s it.
 */
extern PGresult *vn_pg_run(PGconn *conn, const VnSetup *setup, const char *sql, const VnParams *params);
extern PGconn	*vn_pg_connect_one(const char *conninfo, char **error);
/* reconnects a pooled connection (its prepared statements are forgotten) */
extern void vn_pg_reset(PGconn *conn);

#endif
