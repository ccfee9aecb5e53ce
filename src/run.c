/*-------------------------------------------------------------------------
 *
 * run.c
 *	  The SQL entry points that call an API and wait for the answer:
 *	  ductape.run (the body, or DT000/DT001), ductape.run_response (the
 *	  envelope, never raising for HTTP or network outcomes) and ductape.http
 *	  (the ad hoc form).  They build the request (request.c), send it with
 *	  its retries (http.c) and turn the result into SQL.
 *
 * Layer 5 (features): calls the transport and the core below it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"

#include "ductape.h"
#include "http.h"

PG_FUNCTION_INFO_V1(dt_run);
PG_FUNCTION_INFO_V1(dt_run_response);
PG_FUNCTION_INFO_V1(dt_http);

static const char *
ArgTag(FunctionCallInfo fcinfo, int n, const char *what, const char *dflt)
{
	char	   *s;

	if (PG_ARGISNULL(n))
	{
		if (dflt)
			return dflt;
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s cannot be NULL", what)));
	}
	s = text_to_cstring(PG_GETARG_TEXT_PP(n));
	return s;
}

static void
BuildRunRequest(FunctionCallInfo fcinfo, DtRequest *req, bool oauth_force,
				TimestampTz oauth_seen)
{
	const char *app_tag = ArgTag(fcinfo, 0, "app", NULL);
	const char *action_tag = ArgTag(fcinfo, 1, "action", NULL);
	Jsonb	   *input = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	const char *env = ArgTag(fcinfo, 3, "env", ductape_env);
	const char *product = ArgTag(fcinfo, 4, "product", ductape_product);
	Jsonb	   *options = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	DtApp	   *app;
	DtAction   *action;

	if (input == NULL)
	{
		JsonbValue	empty;
		JsonbParseState *ps = NULL;

		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		empty = *pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
		input = JsonbValueToJsonb(&empty);
	}
	CatalogBeginCall();
	app = CatalogGetApp(app_tag);
	action = CatalogGetAction(app, action_tag);
	memset(req, 0, sizeof(*req));
	req->oauth_force = oauth_force;
	req->oauth_force_seen = oauth_seen;
	RequestBuild(req, app, action, CatalogGetBinding(app, product, env), input, options);
	AddUrlCredentials(req);
}

/*
 * Build and send an action call.  With OAuth2, a 401 means the token was
 * refused: refresh it once (unless another backend already did) and replay
 * the request once.
 */
static void
RunCall(FunctionCallInfo fcinfo, DtRequest *req, CallResult *cr)
{
	BuildRunRequest(fcinfo, req, false, 0);
	Execute(req, cr);
	if (req->oauth && cr->o.kind == OUT_RESPONSE && cr->o.status == 401)
	{
		TimestampTz seen = req->oauth_token_at;

		BuildRunRequest(fcinfo, req, true, seen);
		Execute(req, cr);
	}
}

static void
RaiseForOutcome(DtRequest *req, CallResult *cr)
{
	Outcome    *o = &cr->o;

	if (o->kind == OUT_RESPONSE)
	{
		char	   *excerpt;

		if (o->body == NULL || memchr(o->body, '\0', o->body_len) != NULL ||
			!pg_verifymbstr(o->body, o->body_len, true))
			excerpt = "(not text)";
		else
		{
			/* redact the whole body first, then cut on a character boundary */
			excerpt = Redact(o->body, req->sensitive);
			excerpt[pg_mbcliplen(excerpt, strlen(excerpt), DT_EXCERPT)] = '\0';
		}
		ereport(ERROR,
				(errcode(ERRCODE_DT_HTTP_STATUS),
				 errmsg("%s.%s answered HTTP %ld", req->app, req->action, o->status),
				 errdetail_plural("Status %ld after %d attempt from %s %s. Body: %s",
								  "Status %ld after %d attempts from %s %s. Body: %s",
								  cr->attempts,
								  o->status, cr->attempts,
								  req->method, UrlForMessage(req->url, req->sensitive),
								  excerpt),
				 errhint("Use ductape.run_response to get the status, headers and body without an error.")));
	}
	ereport(ERROR,
			(errcode(ERRCODE_DT_NETWORK),
			 errmsg("%s.%s %s: %s", req->app, req->action,
					o->kind == OUT_TIMEOUT ? "timed out" : "failed", o->error),
			 errdetail_plural("%s %s, %d attempt. Last attempt: DNS %.1f ms, connect %.1f ms, TLS %.1f ms, first byte %.1f ms, total %.1f ms.",
							  "%s %s, %d attempts. Last attempt: DNS %.1f ms, connect %.1f ms, TLS %.1f ms, first byte %.1f ms, total %.1f ms.",
							  cr->attempts,
							  req->method, UrlForMessage(req->url, req->sensitive),
							  cr->attempts,
							  o->t_dns, o->t_connect, o->t_tls, o->t_first, o->t_total),
			 errhint(o->kind == OUT_TIMEOUT ?
					 "Raise timeout_ms in the options, the action or the app if the API is slow." :
					 "Check the environment's base_url and that the API is reachable.")));
}

Datum
dt_run(PG_FUNCTION_ARGS)
{
	DtRequest	req;
	CallResult	cr;

	RunCall(fcinfo, &req, &cr);
	if (cr.o.kind != OUT_RESPONSE || !ResponseIsSuccess(&req, cr.o.status))
		RaiseForOutcome(&req, &cr);
	PG_RETURN_JSONB_P(BodyToJsonb(&cr.o));
}

Datum
dt_run_response(PG_FUNCTION_ARGS)
{
	DtRequest	req;
	CallResult	cr;

	RunCall(fcinfo, &req, &cr);
	PG_RETURN_JSONB_P(Envelope(&req, &cr));
}

Datum
dt_http(PG_FUNCTION_ARGS)
{
	DtRequest	req;
	CallResult	cr;
	const char *method_arg = ArgTag(fcinfo, 0, "method", NULL);
	char	   *method = asc_toupper(method_arg, strlen(method_arg));
	char	   *url = (char *) ArgTag(fcinfo, 1, "url", NULL);
	Jsonb	   *headers = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Jsonb	   *body = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	Jsonb	   *options = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	char	   *scheme,
			   *host;
	bool		has_ct = false;

	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
		strcmp(method, "PUT") != 0 && strcmp(method, "PATCH") != 0 &&
		strcmp(method, "DELETE") != 0 && strcmp(method, "HEAD") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown method \"%s\"", method),
				 errhint("Use GET, POST, PUT, PATCH, DELETE or HEAD.")));
	if (!UrlParts(url, &scheme, &host))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid URL \"%s\"", UrlForMessage(url, NIL))));

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	/* a password in the URL is a credential: never recorded */
	AddUrlCredentials(&req);
	req.env = NULL;
	req.timeout_ms = ductape_default_timeout_ms;
	RetryPolicyDefaults(&req.policy, RETRY_SYNC_MAX);

	if (headers != NULL)
	{
		JsonbIterator *it;
		JsonbIteratorToken r;
		JsonbValue	v;
		char	   *name = NULL;

		if (!JB_ROOT_IS_OBJECT(headers))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers must be a JSON object of names and values")));
		it = JsonbIteratorInit(&headers->root);
		while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (r == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (r == WJB_VALUE && v.type != jbvNull)
			{
				char	   *value = JsonbValueAsText(&v);

				RequestAddHeader(&req, name, value);
				if (pg_strcasecmp(name, "Content-Type") == 0)
					has_ct = true;
			}
		}
	}
	if (body != NULL)
	{
		JsonbValue	v;

		if (JB_ROOT_IS_SCALAR(body) && JsonbExtractScalar(&body->root, &v) &&
			v.type == jbvString)
		{
			req.body = pnstrdup(v.val.string.val, v.val.string.len);
			req.body_len = v.val.string.len;
			if (!has_ct)
				RequestAddHeader(&req, "Content-Type", "text/plain; charset=utf-8");
		}
		else if (!(JB_ROOT_IS_SCALAR(body) && v.type == jbvNull))
		{
			req.body = JsonbToCString(NULL, &body->root, VARSIZE(body));
			req.body_len = strlen(req.body);
			if (!has_ct)
				RequestAddHeader(&req, "Content-Type", "application/json");
		}
		if (req.body && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a %s request cannot carry a body", method)));
	}
	RequestApplyOptions(&req, options, "Idempotency-Key");

	Execute(&req, &cr);
	PG_RETURN_JSONB_P(Envelope(&req, &cr));
}
