/*-------------------------------------------------------------------------
 *
 * http_body.h
 *	  Request bodies the HTTP dispatcher builds from a request's media
 *	  (http_requests.body_form): multipart/form-data with libcurl's MIME
 *	  API, or a body with the media's base64 written inline.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_HTTP_BODY_H
#define VENTROS_HTTP_BODY_H

#include <curl/curl.h>

/* One part of a multipart body: a value, or the media itself. */
typedef struct VnHttpPart
{
	char *name;
	char *value;		/* NULL for the media part */
	char *filename;		/* media part: the file name sent */
	char *content_type; /* media part: its type */
	bool  media;
	Size  pos; /* media part: read position */
} VnHttpPart;

/* A body built from media; lives in the request's memory context. */
typedef struct VnHttpBody
{
	bool		present; /* the request has a body_form */
	const char *media;	 /* the media's bytes (NULL: not downloaded) */
	Size		media_len;
	/* multipart */
	int			nparts;
	VnHttpPart *parts;
	curl_mime  *mime;
	/* inline base64: body = prefix, base64(media), suffix */
	const char *prefix;
	Size		prefix_len;
	const char *suffix;
	Size		suffix_len;
	Size		total; /* bytes sent */
	Size		pos;   /* read position in the whole body */
} VnHttpBody;

extern char *vn_http_body_prepare(VnHttpBody *b, const char *body, int body_len,
								  const char *marker, Size max_size);
extern void	 vn_http_body_attach(VnHttpBody *b, CURL *e);
extern void	 vn_http_body_free(VnHttpBody *b);

#endif
