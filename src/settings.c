/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Where the values of ductape's settings live, and the tag rule they and
 *	  every definition share.  The settings are defined (names, ranges,
 *	  check hooks, descriptions) by _PG_init in ductape.c; the subsystems
 *	  read these variables.
 *
 * Layer 1 (utilities): calls nothing of ductape's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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

