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
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "guc.h"

static bool vn_include_deleted = false;
static int	vn_max_page_size = 1000;

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
}
