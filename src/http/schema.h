/*
 * schema.h
 *	  The schema cache of ventros-http, one VnSchema per exposed schema: its
 *	  relations (views and tables, their columns and primary keys), the
 *	  foreign keys between their tables, and for api the functions served
 *	  under /rpc/ (ventros.http_rpc_functions: api's and the commands of
 *	  ventros a tenant role may execute); catalog.c holds them all.
 *	  Every identifier of a request is looked up here before it is quoted
 *	  into SQL; anything not found is a 4xx.
 */
#ifndef VN_HTTP_SCHEMA_H
#define VN_HTTP_SCHEMA_H

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct VnColumn
{
	char *name;
	char *type;		/* format_type(): trusted catalog text */
	char  category; /* pg_type.typcategory: A array, S string, ... */
	bool  is_tsvector;
	char *default_expr; /* the table column's default (catalog text), "NULL" for none */
	bool  is_pk;		/* part of the table's primary key */
	int	  attnum;
	Oid	  src_rel; /* lineage: the table column it is (a view's through its */
	int	  src_att; /* query tree, relations.c); InvalidOid: computed */
} VnColumn;

typedef struct VnRelation
{
	char	 *name;
	char	 *description;
	Oid		  base;		 /* the table under the view */
	bool	  aggregate; /* a Ventros aggregate's: the engine's rules apply */
	bool	  has_id;	 /* an aggregate's, with tenant_id and id: its key */
	int		  npk;		 /* columns of the primary key */
	int		  ncols;
	VnColumn *cols;
	Oid		  oid;	  /* the view itself */
	bool	  hidden; /* an rpc result's columns, not a path */
	int		  nfields;
	VnColumn *fields; /* computed fields: functions of the row type, named as columns (relations.c) */
} VnRelation;

/*
 * A foreign key between the tables under two exposed relations (tables or
 * views, relations.c): one entry per pair of relations exposing both ends,
 * with the columns as each relation names them.
 */
typedef struct VnForeignKey
{
	char  *name;
	int	   from; /* index into relations */
	int	   to;
	int	   ncols;
	char **from_cols;
	char **to_cols;
	bool   unique; /* the referencing columns are unique: one-to-one */
	bool   in_pk;  /* and part of the referencing table's primary key */
} VnForeignKey;

/* many-to-many: from and to both referenced by a junction's primary key */
typedef struct VnJunction
{
	int from;
	int to;
	int junction;
	int left;  /* fks[]: junction -> from */
	int right; /* fks[]: junction -> to */
} VnJunction;

/* a computed relationship: a function of the schema from a row of from */
typedef struct VnComputed
{
	char *name;
	int	  from;
	int	  to;
	bool  to_one; /* returns one row (not SETOF, or ROWS 1) */
} VnComputed;

typedef struct VnFunction
{
	char	   *name;
	char	   *description;
	int			nargs;
	int			nrequired; /* the first nrequired args have no default */
	char	  **argnames;
	char	  **argtypes;
	char	   *argcategories;
	char	   *rettype;
	char		rettypekind; /* pg_type.typtype of the result: c composite, b base, p pseudo */
	bool		retset;
	bool		stable; /* callable with GET */
	bool		returns_void;
	bool		returns_grant; /* api.auth_grant: the front signs the claims */
	const char *schema;		   /* "api", "ventros" or another exposed schema; NULL: api */
	int			result_rel;	   /* rows of the result: index into rels, -1 for scalars */
	char	   *media_type;	   /* a result answered as is, e.g. "text/csv"; NULL: JSON */
	bool		platform_only; /* served to ventros_platform_admin alone (sql/96_http_rpc.sql) */
	bool		variadic;	   /* the last argument is VARIADIC (an array) */
} VnFunction;

typedef struct VnSchema
{
	char		 *name;	   /* the exposed schema */
	bool		  ventros; /* Ventros' api: its functions, its roles */
	int			  nrels;
	VnRelation	 *rels;
	int			  nfks;
	VnForeignKey *fks;
	int			  nfuncs;
	VnFunction	 *funcs; /* by name: the overloads of a name are adjacent */
	int			  njunctions;
	VnJunction	 *junctions;
	int			  ncomputed;
	VnComputed	 *computed;
} VnSchema;

extern VnSchema *vn_schema_load(PGconn *conn, const char *name, char **error);
/* schema.c's helpers: a query with $1 = schema (NULL: none), lists joined by chr(31) */
extern PGresult *vn_schema_run(PGconn *conn, const char *sql, const char *schema, char **error);
extern char	   **vn_schema_split(const char *s, int *n);
/* relations.c: the lineage of views' columns, then every relationship */
extern bool				 vn_relations_lineage(VnSchema *s, PGconn *conn, char **error);
extern bool				 vn_relations_load(VnSchema *s, PGconn *conn, char **error);
extern const VnRelation *vn_schema_relation(const VnSchema *s, const char *name);
extern int				 vn_schema_relation_index(const VnSchema *s, const char *name);
extern const VnColumn	*vn_schema_column(const VnRelation *r, const char *name);
/* a computed field of r (not a column: never written, not in *) */
extern const VnColumn	*vn_schema_field(const VnRelation *r, const char *name);
extern const VnFunction *vn_schema_function(const VnSchema *s, const char *name);
/* the overloads of name: the first one, and how many follow it */
extern const VnFunction *vn_schema_functions(const VnSchema *s, const char *name, int *n);

#endif
