/*
 * response.h
 *	  What a request answers: status, headers, body; and PostgREST's error
 *	  JSON with its SQLSTATE -> HTTP status table.
 */
#ifndef VN_HTTP_RESPONSE_H
#define VN_HTTP_RESPONSE_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "buf.h"

#define VN_MAX_HEADERS 16

typedef struct VnResponse
{
	int				 status;
	const char		*content_type;
	bool			 type_without_body; /* HEAD: the Content-Type GET would have */
	VnBuf			 body;
	int				 nheaders;
	char			*header_names[VN_MAX_HEADERS];
	char			*header_values[VN_MAX_HEADERS];
	struct VnStream *stream; /* GET /events/stream: the answer is this stream (stream.c) */
} VnResponse;

extern void vn_response_init(VnResponse *r);
extern void vn_response_free(VnResponse *r);
extern void vn_response_header(VnResponse *r, const char *name, const char *value);
/*
 * an error answer in PostgREST's shape; details and hint may be NULL;
 * details starting with VN_DETAILS_JSON are JSON the front wrote (the rest)
 */
#define VN_DETAILS_JSON '\x1f'
extern void vn_response_error(VnResponse *r, int status, const char *code, const char *message,
							  const char *details, const char *hint);
/* an error answer from a PostgreSQL error result */
extern void vn_response_pg_error(VnResponse *r, const PGresult *res, bool authenticated);
extern int	vn_status_of_sqlstate(const char *sqlstate, bool authenticated);

#endif
