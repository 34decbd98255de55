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
 * Durations and sizes carry their unit (GUC_UNIT_MS, _S, _BYTE), so '5s' and
 * '64MB' are accepted everywhere; current_setting() shows them with a unit
 * ('5s'), so SQL that computes with one reads ventros.setting_number(), the
 * value in its base unit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "guc.h"

PG_FUNCTION_INFO_V1(ventros_setting_number);

static bool	 vn_include_deleted = false;
static int	 vn_max_page_size = 1000;
static int	 vn_media_max_size = 64 * 1024 * 1024;
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
							GUC_UNIT_BYTE,
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

/*
 * ventros.setting_number(name): a numeric ventros.* setting in its base unit
 * (milliseconds, seconds or bytes, as declared), where current_setting()
 * would show '5s'.  Other names are refused (22023): this reads Ventros'
 * settings, not the server's.
 */
Datum
ventros_setting_number(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *value;
	char	   *end;
	long long	n;

	if (strncmp(name, "ventros.", 8) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a Ventros setting", name),
				 errhint("Use current_setting() for the server's own settings.")));
	/* the raw value, without the unit current_setting() would add */
	value = GetConfigOption(name, false, true);
	errno = 0;
	n = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("setting \"%s\" is not a number", name),
				 errdetail("Its value is \"%s\".", value)));
	PG_RETURN_INT64((int64) n);
}
