/*-------------------------------------------------------------------------
 *
 * http_body.c
 *	  Request bodies built from a request's media (http_requests.body_form,
 *	  sql/45_http_requests.sql): the media is the downloaded bytes of a
 *	  message (ventros.message_media), read at claim time and handed to
 *	  libcurl through read callbacks, never copied into another body.
 *
 *	  - multipart/form-data (AI transcriptions, document uploads): built
 *	    with libcurl's MIME API; value parts are copied by libcurl, the
 *	    media part is read from the request's buffer (curl_mime_data_cb);
 *	  - inline base64 (Gemini's inline_data): the stored body with a marker
 *	    where the media's base64 goes; the encoding is produced while
 *	    libcurl reads, so no base64 copy of the media is ever made.
 *
 *	  Both are bounded: vn_http_body_prepare refuses a body larger than the
 *	  dispatcher's ventros.http_max_body_size, and a request whose media is
 *	  not downloaded.  Everything lives in the request's memory context; the
 *	  MIME handle is libcurl's and freed by vn_http_body_free.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>

#include "http_body.h"

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static Size
b64_len(Size n)
{
	return (n + 2) / 3 * 4;
}

/* The four base64 characters of group g (input bytes 3g .. 3g+2). */
static void
b64_group(const unsigned char *in, Size len, Size g, char out[4])
{
	Size   at = g * 3;
	Size   k = Min(len - at, (Size) 3);
	uint32 v = (uint32) in[at] << 16;

	if (k > 1)
		v |= (uint32) in[at + 1] << 8;
	if (k > 2)
		v |= in[at + 2];
	out[0] = b64chars[(v >> 18) & 63];
	out[1] = b64chars[(v >> 12) & 63];
	out[2] = k > 1 ? b64chars[(v >> 6) & 63] : '=';
	out[3] = k > 2 ? b64chars[v & 63] : '=';
}

/*
 * vn_http_body_prepare
 *		Checks a body_form request before it is sent: NULL when it can go,
 *		else why not (palloc'd).  For inline base64, splits the stored body
 *		at marker.  Runs in the request's memory context.
 */
char *
vn_http_body_prepare(VnHttpBody *b, const char *body, int body_len, const char *marker,
					 Size max_size)
{
	int i;

	if (b->media == NULL)
		return pstrdup("the media of this request is not downloaded (or was deleted)");
	if (b->nparts > 0)
	{
		b->total = b->media_len;
		for (i = 0; i < b->nparts; i++)
			if (!b->parts[i].media && b->parts[i].value != NULL)
				b->total += strlen(b->parts[i].value);
	}
	else if (marker != NULL && marker[0] != '\0' && body != NULL)
	{
		Size		mlen = strlen(marker);
		const char *at = NULL;
		int			k;

		for (k = 0; k + (int) mlen <= body_len; k++)
			if (memcmp(body + k, marker, mlen) == 0)
			{
				at = body + k;
				break;
			}
		if (at == NULL)
			return pstrdup("the request body has no place for the media (inline_base64 marker missing)");
		b->prefix = body;
		b->prefix_len = at - body;
		b->suffix = at + mlen;
		b->suffix_len = body_len - b->prefix_len - mlen;
		b->total = b->prefix_len + b64_len(b->media_len) + b->suffix_len;
	}
	else
		return pstrdup("the request's body_form has neither multipart parts nor an inline_base64 marker");
	if (b->total > max_size)
		return psprintf("the request body would have %zu bytes, more than ventros.http_max_body_size (%zu)",
						(size_t) b->total, (size_t) max_size);
	return NULL;
}

/* ---- multipart: the media part's reader ------------------------------------ */

typedef struct VnMediaReader
{
	VnHttpBody *body;
	VnHttpPart *part;
} VnMediaReader;

static size_t
on_part_read(char *buf, size_t size, size_t n, void *arg)
{
	VnMediaReader *r = (VnMediaReader *) arg;
	Size		   left = r->body->media_len - r->part->pos;
	Size		   k = Min((Size) (size * n), left);

	memcpy(buf, r->body->media + r->part->pos, k);
	r->part->pos += k;
	return k;
}

static int
on_part_seek(void *arg, curl_off_t offset, int origin)
{
	VnMediaReader *r = (VnMediaReader *) arg;

	if (origin != SEEK_SET || offset < 0 || (Size) offset > r->body->media_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->part->pos = (Size) offset;
	return CURL_SEEKFUNC_OK;
}

/* ---- inline base64: the whole body's reader ---------------------------------- */

static size_t
on_inline_read(char *buf, size_t size, size_t n, void *arg)
{
	VnHttpBody *b = (VnHttpBody *) arg;
	Size		room = size * n;
	Size		out = 0;
	Size		b64 = b64_len(b->media_len);

	while (out < room && b->pos < b->total)
	{
		Size pos = b->pos;
		Size k;

		if (pos < b->prefix_len)
		{
			k = Min(room - out, b->prefix_len - pos);
			memcpy(buf + out, b->prefix + pos, k);
		}
		else if (pos < b->prefix_len + b64)
		{
			Size off = pos - b->prefix_len;
			char group[4];

			b64_group((const unsigned char *) b->media, b->media_len, off / 4, group);
			k = Min(room - out, (Size) (4 - off % 4));
			memcpy(buf + out, group + off % 4, k);
		}
		else
		{
			Size off = pos - b->prefix_len - b64;

			k = Min(room - out, b->suffix_len - off);
			memcpy(buf + out, b->suffix + off, k);
		}
		out += k;
		b->pos += k;
	}
	return out;
}

static int
on_inline_seek(void *arg, curl_off_t offset, int origin)
{
	VnHttpBody *b = (VnHttpBody *) arg;

	if (origin != SEEK_SET || offset < 0 || (Size) offset > b->total)
		return CURL_SEEKFUNC_CANTSEEK;
	b->pos = (Size) offset;
	return CURL_SEEKFUNC_OK;
}

/*
 * vn_http_body_attach
 *		Sets the prepared body on a POST transfer.  libcurl builds the
 *		multipart boundary and Content-Type itself.
 */
void
vn_http_body_attach(VnHttpBody *b, CURL *e)
{
	int i;

	if (b->nparts > 0)
	{
		b->mime = curl_mime_init(e);
		if (b->mime == NULL)
			elog(ERROR, "curl_mime_init failed");
		for (i = 0; i < b->nparts; i++)
		{
			VnHttpPart	  *p = &b->parts[i];
			curl_mimepart *part;

			if (!p->media && p->value == NULL)
				continue;
			part = curl_mime_addpart(b->mime);
			curl_mime_name(part, p->name);
			if (p->media)
			{
				VnMediaReader *r = palloc(sizeof(VnMediaReader));

				r->body = b;
				r->part = p;
				p->pos = 0;
				curl_mime_data_cb(part, (curl_off_t) b->media_len, on_part_read, on_part_seek, NULL, r);
				curl_mime_filename(part, p->filename ? p->filename : "file");
				if (p->content_type)
					curl_mime_type(part, p->content_type);
			}
			else
				curl_mime_data(part, p->value, CURL_ZERO_TERMINATED);
		}
		curl_easy_setopt(e, CURLOPT_MIMEPOST, b->mime);
		return;
	}
	b->pos = 0;
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, on_inline_read);
	curl_easy_setopt(e, CURLOPT_READDATA, b);
	curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_inline_seek);
	curl_easy_setopt(e, CURLOPT_SEEKDATA, b);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) b->total);
}

/* After curl_easy_cleanup: the MIME handle (its memory is libcurl's). */
void
vn_http_body_free(VnHttpBody *b)
{
	if (b->mime != NULL)
		curl_mime_free(b->mime);
	b->mime = NULL;
}
