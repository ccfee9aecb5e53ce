/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Where the values of ductape's settings live, the tag rule they and
 *	  every definition share, and who counts as an administrator.  The settings are defined (names, ranges,
 *	  check hooks, descriptions) by _PG_init in ductape.c; the subsystems
 *	  read these variables.
 *
 * Layer 1 (utilities): calls nothing of ductape's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/syscache.h"

#include "ductape.h"

char	   *ductape_env = NULL;
char	   *ductape_product = NULL;
int			ductape_default_timeout_ms = 30000;
int			ductape_max_response_size = 10 * 1024 * 1024;
int			ductape_log_requests = DT_LOG_ALL;
char	   *ductape_proxy = NULL;
int			ductape_workers = 1;
char	   *ductape_ca_file = NULL;
int			ductape_max_concurrency = 256;
int			ductape_job_retention_s = 7 * 24 * 3600;
int			ductape_call_retention_s = 7 * 24 * 3600;

/*
 * Bumped whenever a setting that decides what we may connect to changes;
 * http.c drops its pooled connections when it sees a new value, so a
 * connection opened under an older, looser policy is never reused.
 */
int			ductape_egress_generation = 0;

/*
 * A tag names apps, actions, products, envs: ^[a-z0-9][a-z0-9_.-]{0,62}$
 */
bool
DtIsValidTag(const char *tag)
{
	int			len;

	if (tag == NULL || tag[0] == '\0')
		return false;
	if (!((tag[0] >= 'a' && tag[0] <= 'z') || (tag[0] >= '0' && tag[0] <= '9')))
		return false;
	for (len = 1; tag[len]; len++)
	{
		char		c = tag[len];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '.' || c == '-'))
			return false;
	}
	return len <= DT_TAG_MAXLEN;
}

/*
 * Is the current user one of ductape's administrators (who see every
 * role's counters, and the endpoints' limits)?  The test: EXECUTE on
 * ductape.secret_get(text), which grant_admin gives and grant_usage does
 * not.  The function is found by its schema, name and
 * argument type in the catalog, never through the caller's search_path, so
 * that no object of the caller's (a type named text in pg_temp, say) can
 * change the answer or make it fail.
 */
bool
DtCallerIsAdmin(void)
{
	Oid			argtypes[1] = {TEXTOID};
	HeapTuple	tup;
	Oid			fn;

	tup = SearchSysCache3(PROCNAMEARGSNSP,
						  CStringGetDatum("secret_get"),
						  PointerGetDatum(buildoidvector(argtypes, 1)),
						  ObjectIdGetDatum(get_namespace_oid("ductape", false)));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function ductape.secret_get(text) does not exist"),
				 errhint("The extension ductape is damaged: reinstall it.")));
	fn = ((Form_pg_proc) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) == ACLCHECK_OK;
}
