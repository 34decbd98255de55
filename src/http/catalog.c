/*
 * catalog.c
 *	  The schema cache over every exposed schema: VENTROS_HTTP_DB_SCHEMAS
 *	  (PostgREST's db-schemas, default api) in order, the first being the
 *	  default of a request without Accept-Profile or Content-Profile; the
 *	  search_path of a request in each, the schema then
 *	  VENTROS_HTTP_DB_EXTRA_SEARCH_PATH (db-extra-search-path, default
 *	  public); and reloads.
 *
 * A reload builds a new catalog and swaps the pointer: requests in flight
 * keep the one they took, which is never freed (a reload leaks a few
 * kilobytes).  Reloads are serialised, whether from SIGHUP or from the
 * listener thread, which reloads on PostgREST's NOTIFY pgrst, 'reload
 * schema' (or an empty payload) and reconnects when its connection breaks.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "buf.h"
#include "catalog.h"
#include "pg.h"

static char			  *conninfo;
static char			 **names;
static int			   nnames;
static char			  *extra_path; /* ", public": quoted, ready to append */
static VnCatalog	  *current;
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* a comma-separated list of names, trimmed, without empty items */
static char **
split_names(const char *list, int *n)
{
	char **out = vn_alloc(sizeof(char *) * (strlen(list) + 1));
	char  *copy = vn_strdup(list);
	char  *save = NULL;

	*n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
	{
		char *e;

		while (*t == ' ')
			t++;
		e = t + strlen(t);
		while (e > t && e[-1] == ' ')
			*--e = '\0';
		if (*t)
			out[(*n)++] = vn_strdup(t);
	}
	free(copy);
	return out;
}

bool
vn_catalog_configure(const char *info, char **error)
{
	const char *schemas = getenv("VENTROS_HTTP_DB_SCHEMAS");
	const char *extra = getenv("VENTROS_HTTP_DB_EXTRA_SEARCH_PATH");
	char	  **items;
	int			nitems;
	VnBuf		b;

	conninfo = vn_strdup(info);
	names = split_names(schemas && *schemas ? schemas : "api", &nnames);
	for (int i = 0; i < nnames; i++)
		if (strcmp(names[i], "pg_catalog") == 0 || strcmp(names[i], "information_schema") == 0 ||
			strlen(names[i]) > 63)
		{
			*error = vn_strdup("VENTROS_HTTP_DB_SCHEMAS: pg_catalog and information_schema cannot be exposed\n");
			return false;
		}
	if (nnames == 0)
	{
		*error = vn_strdup("VENTROS_HTTP_DB_SCHEMAS names no schema\n");
		return false;
	}
	items = split_names(extra ? extra : "public", &nitems);
	vn_buf_init(&b);
	for (int i = 0; i < nitems; i++)
	{
		vn_buf_add(&b, ", ");
		vn_buf_ident(&b, items[i]);
		free(items[i]);
	}
	free(items);
	extra_path = vn_strdup(b.data ? b.data : "");
	vn_buf_free(&b);
	return true;
}

/*
 * The time zones a request may ask for with Prefer: timezone=, read with
 * the schema cache as PostgREST does: the view reads every zone file, too
 * slow to consult per request.  COLLATE "C" sorts them as strcmp does.
 */
static bool
load_timezones(VnCatalog *c, PGconn *conn, char **error)
{
	PGresult *res = vn_schema_run(
		conn, "SELECT name FROM pg_catalog.pg_timezone_names ORDER BY name COLLATE \"C\"", NULL, error);

	if (res == NULL)
		return false;
	c->ntimezones = PQntuples(res);
	c->timezones = vn_alloc(sizeof(char *) * (c->ntimezones + 1));
	for (int i = 0; i < c->ntimezones; i++)
		c->timezones[i] = vn_strdup(PQgetvalue(res, i, 0));
	PQclear(res);
	return true;
}

const char *
vn_catalog_timezone(const char *name, size_t n)
{
	const VnCatalog *c = vn_catalog_current();
	int				 lo = 0;
	int				 hi = c ? c->ntimezones - 1 : -1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		const char *t = c->timezones[mid];
		int			cmp = strncmp(t, name, n);

		if (cmp == 0 && t[n] == '\0')
			return t;
		/* equal on n bytes but longer: t sorts after name */
		if (cmp >= 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

static VnCatalog *
load(PGconn *conn, char **error)
{
	VnCatalog *c = vn_alloc(sizeof(VnCatalog));
	VnBuf	   list;

	c->schemas = vn_alloc(sizeof(VnSchema *) * nnames);
	c->search_paths = vn_alloc(sizeof(char *) * nnames);
	vn_buf_init(&list);
	for (int i = 0; i < nnames; i++)
	{
		VnBuf path;

		c->schemas[i] = vn_schema_load(conn, names[i], error);
		if (c->schemas[i] == NULL)
			return NULL;
		vn_buf_init(&path);
		vn_buf_ident(&path, names[i]);
		vn_buf_add(&path, extra_path);
		c->search_paths[i] = vn_strdup(path.data);
		vn_buf_free(&path);
		vn_buf_add(&list, i ? ", " : "");
		vn_buf_add(&list, names[i]);
		c->n++;
	}
	c->names = vn_strdup(list.data);
	vn_buf_free(&list);
	return load_timezones(c, conn, error) ? c : NULL;
}

bool
vn_catalog_reload(char **error)
{
	PGconn	  *conn;
	VnCatalog *fresh = NULL;

	pthread_mutex_lock(&reload_lock);
	conn = vn_pg_connect_one(conninfo, error);
	if (conn)
	{
		fresh = load(conn, error);
		PQfinish(conn);
	}
	if (fresh)
		__atomic_store_n(&current, fresh, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&reload_lock);
	return fresh != NULL;
}

const VnCatalog *
vn_catalog_current(void)
{
	return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

int
vn_catalog_find(const VnCatalog *c, const char *name)
{
	if (name == NULL)
		return 0;
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->schemas[i]->name, name) == 0)
			return i;
	return -1;
}

/* one listening session: false when its connection broke */
static bool
listen_once(PGconn *conn)
{
	PGresult *res = PQexec(conn, "LISTEN pgrst");
	bool	  ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	while (ok)
	{
		int		  fd = PQsocket(conn);
		fd_set	  fds;
		PGnotify *n;

		FD_ZERO(&fds);
		FD_SET(fd, &fds);
		if (select(fd + 1, &fds, NULL, NULL, NULL) < 0 || !PQconsumeInput(conn))
			return false;
		while ((n = PQnotifies(conn)) != NULL)
		{
			char *error = NULL;

			/* PostgREST's payloads: 'reload schema', or none; 'reload config' has nothing to reload here */
			if (n->extra[0] == '\0' || strcmp(n->extra, "reload schema") == 0)
			{
				if (vn_catalog_reload(&error))
					fprintf(stderr, "ventros-http: schema reloaded on NOTIFY pgrst\n");
				else
					fprintf(stderr, "ventros-http: schema reload failed, keeping the old one: %s", error);
				free(error);
			}
			PQfreemem(n);
		}
	}
	return false;
}

static void *
listener(void *arg)
{
	for (;;)
	{
		char   *error = NULL;
		PGconn *conn = vn_pg_connect_one(conninfo, &error);

		if (conn)
		{
			listen_once(conn);
			PQfinish(conn);
			/* notifications sent while it was away are lost: reload once back */
			if (vn_catalog_reload(&error))
				continue;
		}
		free(error);
		sleep(1); /* PostgreSQL is away: try again shortly */
	}
	return arg;
}

bool
vn_catalog_listen(char **error)
{
	pthread_t t;

	if (pthread_create(&t, NULL, listener, NULL) != 0)
	{
		*error = vn_strdup("cannot start the schema listener thread\n");
		return false;
	}
	pthread_detach(t);
	return true;
}
