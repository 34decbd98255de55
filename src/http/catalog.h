/*
 * catalog.h
 *	  Every exposed schema's cache (PostgREST's db-schemas), with the
 *	  search_path of a request in each (db-extra-search-path), and its
 *	  reload: on SIGHUP (main.c) and on NOTIFY pgrst, 'reload schema' (a
 *	  connection of its own, listening).
 */
#ifndef VN_HTTP_CATALOG_H
#define VN_HTTP_CATALOG_H

#include "schema.h"

typedef struct VnCatalog
{
	int		   n;
	VnSchema **schemas;		 /* in the configured order: the first is the default */
	char	 **search_paths; /* of a request in each schema: it, then the extra ones */
	char	  *names;		 /* "api, other": for PGRST106 */
	int		   ntimezones;
	char	 **timezones; /* pg_timezone_names, in strcmp order (Prefer: timezone=) */
} VnCatalog;

/* reads VENTROS_HTTP_DB_SCHEMAS and VENTROS_HTTP_DB_EXTRA_SEARCH_PATH; false with *error */
extern bool vn_catalog_configure(const char *conninfo, char **error);
/* loads every exposed schema and makes it current; false with *error (the old one stays) */
extern bool vn_catalog_reload(char **error);
/* the current catalog: a reload never frees the one requests may hold */
extern const VnCatalog *vn_catalog_current(void);
/* the schema named (NULL: the default), or NULL when it is not exposed */
extern int vn_catalog_find(const VnCatalog *c, const char *name);
/* the name of pg_timezone_names equal to the n bytes at name, or NULL (also without a catalog) */
extern const char *vn_catalog_timezone(const char *name, size_t n);
/* LISTEN pgrst on a connection of its own, in a thread; reloads on 'reload schema' */
extern bool vn_catalog_listen(char **error);

#endif
