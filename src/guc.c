/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Settings read by the SQL layer through current_setting().
 *
 * ventros.include_deleted (user): show soft-deleted rows to queries; the
 *		row-level security policies read it, and the engine turns it on for
 *		the duration of its own soft-delete update.
 * ventros.max_page_size (superuser): the hard maximum of rows one query
 *		function returns; a larger page_size is refused with 54000.
 * ventros.secret_key (superuser, hidden): the key that encrypts credential
 *		secrets (sql/68_credentials.sql); only superusers can read or set it,
 *		so it lives in postgresql.conf and never in the data.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "guc.h"

static bool vn_include_deleted = false;
static int	vn_max_page_size = 1000;
static int	vn_media_max_size = 64 * 1024 * 1024;
static char *vn_secret_key = NULL;

void
vn_guc_init(void)
{
	DefineCustomBoolVariable("ventros.include_deleted",
							 "Show soft-deleted rows to queries.",
							 NULL,
							 &vn_include_deleted,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.max_page_size",
							"Hard maximum number of rows a Ventros query function returns.",
							NULL,
							&vn_max_page_size,
							1000,
							1, 100000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.media_max_size",
							"Largest media download, in bytes, that Ventros stores (the HTTP dispatcher stops beyond).",
							"Media downloads ask the dispatcher for this much instead of ventros.http_max_response_size.",
							&vn_media_max_size,
							64 * 1024 * 1024,
							0, 256 * 1024 * 1024,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ventros.secret_key",
							   "Key that encrypts credential secrets (pgp_sym_encrypt).",
							   NULL,
							   &vn_secret_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}
