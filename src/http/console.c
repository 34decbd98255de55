/*
 * console.c
 *	  The agent console (console/ in the source tree, docs/console.md): an
 *	  HTML page, its stylesheet and its script, compiled into the front
 *	  (scripts/c-assets.sh makes console_assets.h), served at /console and
 *	  /console/<name>.
 *
 * The files are a fixed table: a request names one of them or gets 404, so
 * there is no path to walk and no file system read at run time.  The page
 * speaks only the public API, with the caller's token, like any other front
 * end; it needs no authentication to be fetched.  The Content-Security-Policy
 * lets it load only its own files and talk only to this origin.
 */
#include <string.h>
#include <strings.h>

#include "console.h"

typedef struct VnAsset
{
	const char			*name;
	const unsigned char *bytes;
	size_t				 length;
} VnAsset;

#include "console_assets.h"

static const char *const csp =
	"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

static const char *
content_type_of(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot && strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (dot && strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	if (dot && strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	return "application/octet-stream";
}

static const VnAsset *
find_asset(const char *name)
{
	for (size_t i = 0; i < sizeof(vn_assets) / sizeof(vn_assets[0]); i++)
		if (strcmp(vn_assets[i].name, name) == 0)
			return &vn_assets[i];
	return NULL;
}

void
vn_console_serve(const VnRequest *req, VnResponse *resp)
{
	const char	  *name;
	const VnAsset *a;
	bool		   head = strcmp(req->method, "HEAD") == 0;

	if (!head && strcmp(req->method, "GET") != 0)
	{
		vn_response_error(resp, 405, "PGRST117", "the console answers GET and HEAD only", NULL, NULL);
		vn_response_header(resp, "Allow", "GET, HEAD");
		return;
	}
	name = strcmp(req->path, "/console") == 0 || strcmp(req->path, "/console/") == 0 ? "index.html" : req->path + strlen("/console/");
	a = find_asset(name);
	if (a == NULL)
	{
		vn_response_error(resp, 404, "PGRST125", "no such file of the console", NULL, NULL);
		return;
	}
	resp->status = 200;
	resp->content_type = content_type_of(a->name);
	resp->type_without_body = head;
	if (!head)
		vn_buf_addn(&resp->body, (const char *) a->bytes, a->length);
	vn_response_header(resp, "Content-Security-Policy", csp);
	vn_response_header(resp, "X-Content-Type-Options", "nosniff");
	vn_response_header(resp, "Referrer-Policy", "no-referrer");
	vn_response_header(resp, "Cache-Control", "no-cache");
}
