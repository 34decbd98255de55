/*
 * query.h
 *	  From a request in PostgREST's dialect to one SQL statement with bound
 *	  parameters.  Identifiers come from the schema cache only, and are
 *	  quoted; every value from the request is a parameter.
 */
#ifndef VN_HTTP_QUERY_H
#define VN_HTTP_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "plan.h"
#include "schema.h"

#define VN_MAX_PARAMS 256
#define VN_MAX_DEPTH 8		 /* or=/and= nesting */
#define VN_MAX_EMBED_DEPTH 8 /* embedded resources inside embedded resources */

typedef struct VnArg
{
	char *key;
	char *value;
} VnArg;

typedef struct VnArgs
{
	int	   n;
	VnArg *items;
} VnArgs;

typedef enum VnShape
{
	VN_SHAPE_ROWS, /* body, n, total */
	VN_SHAPE_GRANT /* body, n, total, claims, refresh_token, expires_in */
} VnShape;

typedef enum VnFormat
{
	VN_FORMAT_JSON,
	VN_FORMAT_OBJECT, /* application/vnd.pgrst.object+json */
	VN_FORMAT_CSV
} VnFormat;

/* Prefer: count=planned|estimated are answered exactly (router.c) */
typedef enum VnCount
{
	VN_COUNT_NONE,
	VN_COUNT_EXACT
} VnCount;

typedef enum VnReturn
{
	VN_RETURN_MINIMAL,
	VN_RETURN_HEADERS,
	VN_RETURN_REPRESENTATION
} VnReturn;

/* what the router knows of the request */
typedef struct VnQueryInput
{
	const VnSchema *schema;
	const char	   *method; /* GET HEAD POST PATCH DELETE */
	const char	   *target; /* relation name, or function name when rpc */
	bool			rpc;
	const VnArgs   *args;
	const char	   *body;
	size_t			body_len;
	const char	   *content_type; /* rpc: text/csv or text/plain is a raw body */
	const char	   *accept;		  /* rpc: a media-type result answers as itself when accepted */
	VnFormat		format;
	VnCount			count;
	VnReturn		ret;
	bool			merge_duplicates;
	bool			ignore_duplicates;
	bool			single_object;	  /* Prefer: params=single-object */
	bool			missing_null;	  /* Prefer: missing=null: an absent key inserts NULL */
	bool			missing_default;  /* Prefer: missing=default: an absent key of columns= takes the default */
	bool			multiple_objects; /* Prefer: params=multiple-objects: a call per object of an array body */
	const char	   *timezone;		  /* Prefer: timezone=, when pg_timezone_names has it; else NULL */
	long			max_affected;	  /* Prefer: max-affected=N on PATCH/DELETE, -1: none */
	long			range_offset;	  /* -1: no Range header */
	long			range_limit;	  /* -1: open */
	long			max_rows;
	int				max_embeds;		/* embedded resources per request (54000 beyond) */
	int				max_select;		/* select-list items per request, at every level */
	bool			platform_admin; /* the request acts as ventros_platform_admin */
	bool			aggregates;		/* db-aggregates-enabled: avg() count() max() min() sum() in select= */
	VnPlan			plan;			/* Accept: application/vnd.pgrst.plan (plan.c) */
} VnQueryInput;

typedef struct VnQuery
{
	VnBuf	sql;
	int		nparams;
	char   *params[VN_MAX_PARAMS];
	VnShape shape;
	long	offset;
	bool	returns_body; /* false: 204 / 201 without body */
	bool	void_result;
	bool	is_read;
	bool	is_rpc_scalar;	/* single (non-set) rpc result: no Content-Range */
	bool	put;			/* PUT: no row means the body's key is not the URL's (400 PGRST115) */
	char	media_type[64]; /* the body is a document of this type, not JSON */
	/* error */
	int	  status;
	char  code[16];
	char  message[512];
	char *details;
	char *hint;
} VnQuery;

/* parse.c: key=value&... (query string, form body), %-decoded; false when malformed */
extern bool vn_args_parse(const char *s, size_t len, VnArgs *args);
extern void vn_args_free(VnArgs *args);

extern void vn_query_init(VnQuery *q);
extern void vn_query_free(VnQuery *q);
/* true when q holds a statement; false when q holds an error */
extern bool vn_query_build(const VnQueryInput *in, VnQuery *q);
/* GET / of a schema other than api: its OpenAPI document, as the role sees it (openapi.c) */
extern bool vn_openapi_statement(const VnQueryInput *in, VnQuery *q);

#endif
