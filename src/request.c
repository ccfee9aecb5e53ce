/*-------------------------------------------------------------------------
 *
 * request.c
 *	  Turns (app, action, env, product, flat input, options) into the HTTP
 *	  request that http.c sends (docs/reference.md).
 *
 * Placement of a flat input key: a "body:", "query:", "params:" or
 * "headers:" prefix decides; else the input schema's "in"; else params when
 * the resource has ":key"; else query for GET, DELETE and HEAD; else body.
 * This is the one implementation: describe() asks it too (_placement).
 *
 * Merge order, strongest first: the call's input > auth > action template.
 * Everything is checked before anything is sent: a bad input raises 22023
 * and no byte leaves the database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>
#include <time.h>

#include "common/base64.h"
#include "port/pg_bswap.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "ductape.h"

typedef enum
{
	SEC_BODY,
	SEC_QUERY,
	SEC_PARAMS,
	SEC_HEADERS,
	SEC__COUNT
} Section;

static const char *section_names[SEC__COUNT] = {"body", "query", "params", "headers"};

typedef struct KV
{
	char	   *key;
	JsonbValue *val;
} KV;

typedef struct ResolveCtx
{
	DtApp	   *app;
	DtBinding  *binding;
	const char *env;
	Jsonb	   *input;
	List	  **sensitive;		/* resolved secrets are added here */
	DtRequest  *req;			/* for OAuth2 state; NULL outside a call */
	char	   *auth_token;		/* the OAuth2 access token, once fetched */
} ResolveCtx;

/* ---- key/value lists ---- */

static List *
KVSet(List *list, const char *key, JsonbValue *val, bool nocase)
{
	ListCell   *lc;
	KV		   *kv;

	foreach(lc, list)
	{
		kv = lfirst(lc);
		if (nocase ? pg_strcasecmp(kv->key, key) == 0 : strcmp(kv->key, key) == 0)
		{
			kv->val = val;
			return list;
		}
	}
	kv = palloc(sizeof(KV));
	kv->key = pstrdup(key);
	kv->val = val;
	return lappend(list, kv);
}

static JsonbValue *
CopyValue(JsonbValue *v)
{
	JsonbValue *c = palloc(sizeof(JsonbValue));

	*c = *v;
	return c;
}

/* The top-level pairs of a jsonb object, merged into list. */
static List *
KVMergeObject(List *list, Jsonb *obj, bool nocase)
{
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;
	char	   *key = NULL;

	if (obj == NULL || !JB_ROOT_IS_OBJECT(obj))
		return list;
	it = JsonbIteratorInit(&obj->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (r == WJB_VALUE)
			list = KVSet(list, key, CopyValue(&v), nocase);
	}
	return list;
}

/* ---- encoding ---- */

static void
AppendPercentEncoded(StringInfo buf, const char *s, int len)
{
	static const char hex[] = "0123456789ABCDEF";
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 15]);
		}
	}
}

void
RequestPercentEncode(StringInfo buf, const char *s)
{
	AppendPercentEncoded(buf, s, strlen(s));
}

/*
 * One form/query pair; nested values flatten with brackets the way Stripe
 * and Rails expect: {"card": {"exp": 12}} -> card[exp]=12, arrays by index.
 */
static void
AppendFormValue(StringInfo buf, const char *key, JsonbValue *v)
{
	if (v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbIteratorToken r;
		JsonbValue	e;
		char	   *sub = NULL;
		int			index = 0;

		while ((r = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (r == WJB_KEY)
				sub = psprintf("%s[%.*s]", key, e.val.string.len, e.val.string.val);
			else if (r == WJB_VALUE)
				AppendFormValue(buf, sub, &e);
			else if (r == WJB_ELEM)
				AppendFormValue(buf, psprintf("%s[%d]", key, index++), &e);
		}
		return;
	}
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	AppendPercentEncoded(buf, key, strlen(key));
	appendStringInfoChar(buf, '=');
	{
		char	   *text = JsonbValueAsText(v);

		AppendPercentEncoded(buf, text, strlen(text));
	}
}

void
RequestFormAppend(StringInfo buf, const char *key, const char *value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	AppendFormValue(buf, key, &v);
}

static void
CheckHeader(const char *name, const char *value)
{
	const char *p;

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header name cannot be empty")));
	for (p = name; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || strchr("!#$%&'*+.^_`|~-", *p)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid header name \"%s\"", name),
					 errdetail("Header names are letters, digits and !#$%%&'*+.^_`|~-.")));
	}
	if (strpbrk(value, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value of header \"%s\" contains CR or LF", name),
				 errdetail("Line breaks in a header value would let it inject other headers.")));
}

void
RequestAddHeader(DtRequest *req, const char *name, const char *value)
{
	ListCell   *lc;
	size_t		nlen = strlen(name);

	CheckHeader(name, value);
	if (IsSensitiveHeader(name))
	{
		const char *sp = strchr(value, ' ');

		/* "Bearer xyz": the credential is what follows the scheme */
		req->sensitive = lappend(req->sensitive, pstrdup(value));
		if (sp && strlen(sp + 1) >= 4)
			req->sensitive = lappend(req->sensitive, pstrdup(sp + 1));
	}
	/* replace an existing header of the same name */
	foreach(lc, req->headers)
	{
		char	   *h = lfirst(lc);

		if (pg_strncasecmp(h, name, nlen) == 0 && h[nlen] == ':')
		{
			lfirst(lc) = psprintf("%s: %s", name, value);
			return;
		}
	}
	req->headers = lappend(req->headers, psprintf("%s: %s", name, value));
}

/* ---- redaction ---- */

#define REDACTED "[redacted]"

/* Values shorter than this are redacted only where they are a whole value. */
#define REDACT_SUBSTRING_MIN 4

static char *
ReplaceAll(char *in, const char *find, const char *with)
{
	size_t		flen = strlen(find);
	StringInfoData buf;
	const char *p;
	const char *hit;

	if (flen == 0 || strstr(in, find) == NULL)
		return in;
	initStringInfo(&buf);
	for (p = in; (hit = strstr(p, find)) != NULL; p = hit + flen)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, with);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

static bool
InSet(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

/*
 * Does the space at s[sp] follow a lone word that starts a value, as an
 * auth scheme does ("Bearer value")?  The word starts s, a header line's
 * value ("Name: Bearer value") or a JSON string ("Bearer value").
 */
static bool
AfterScheme(const char *s, size_t sp)
{
	size_t		w = sp;

	while (w > 0 && (isalnum((unsigned char) s[w - 1]) || s[w - 1] == '-' || s[w - 1] == '_'))
		w--;
	if (w == sp)
		return false;
	return w == 0 || s[w - 1] == '"' ||
		(w >= 2 && s[w - 1] == ' ' && s[w - 2] == ':');
}

/*
 * Are the len bytes at s + i a whole value, by what surrounds them?  That
 * is where ductape places a value and where an API echoing it prints it:
 *
 *	- the whole of s (a header value, an error text);
 *	- a header line's value, "Name: value";
 *	- what follows an auth scheme at the start of a value, "Bearer value";
 *	- a query, form or cookie value, "=value" up to "&", "#", ";", a quote,
 *	  a space or the end (also inside a JSON string: "body": "k=value");
 *	- a JSON string, "value" (also escaped inside another: \"value\");
 *	- a URL path segment, "/value" up to "/", "?", "#", a quote, a space or
 *	  the end.
 */
static bool
IsWholeValue(const char *s, size_t i, size_t len)
{
	const char *after = s + i + len;
	bool		at_end = *after == '\0';
	bool		value_end = at_end || *after == '\r' || *after == '\n';

	if (i == 0)
		return at_end;
	switch (s[i - 1])
	{
		case ' ':
			if (i >= 2 && s[i - 2] == ':')
				return value_end;
			return (value_end || *after == '"' || (after[0] == '\\' && after[1] == '"')) &&
				AfterScheme(s, i - 1);
		case '=':
			return at_end || InSet(*after, "&#;\"' \t\r\n");
		case '"':
			return *after == '"' || (after[0] == '\\' && after[1] == '"');
		case '/':
			return at_end || InSet(*after, "/?#\"' \t\r\n");
		default:
			return false;
	}
}

/* in with each occurrence of find that is a whole value replaced by with. */
static char *
ReplaceWhole(char *in, const char *find, const char *with)
{
	size_t		flen = strlen(find);
	StringInfoData buf;
	const char *p;
	const char *hit;
	bool		replaced = false;

	if (flen == 0)
		return in;
	initStringInfo(&buf);
	for (p = in; (hit = strstr(p, find)) != NULL; p = hit + flen)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		if (IsWholeValue(in, hit - in, flen))
		{
			appendStringInfoString(&buf, with);
			replaced = true;
		}
		else
			appendBinaryStringInfo(&buf, hit, flen);
	}
	if (!replaced)
	{
		pfree(buf.data);
		return in;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * in with the user-info of every URL in it ("scheme://user:password@host")
 * replaced by [redacted]: whatever the user-info is, it is a credential
 * (libcurl sends it as Basic auth).  A URL ends at a space or a quote; its
 * authority at the first "/", "?" or "#"; the user-info at the authority's
 * last "@".
 */
static char *
RedactUserInfo(char *in)
{
	StringInfoData buf;
	const char *p = in;
	const char *sep;
	bool		replaced = false;

	initStringInfo(&buf);
	while ((sep = strstr(p, "://")) != NULL)
	{
		const char *auth = sep + 3;
		const char *end = auth + strcspn(auth, "/?#\"' \t\r\n<>");
		const char *at = NULL;
		const char *q;

		for (q = auth; q < end; q++)
			if (*q == '@')
				at = q;
		if (at == NULL || at == auth)
		{
			appendBinaryStringInfo(&buf, p, auth - p);
			p = auth;
			continue;
		}
		appendBinaryStringInfo(&buf, p, auth - p);
		appendStringInfoString(&buf, REDACTED);
		p = at;
		replaced = true;
	}
	if (!replaced)
	{
		pfree(buf.data);
		return in;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * s as it may be recorded or shown: URL user-info redacted, and every
 * sensitive string replaced by [redacted].  Each value is looked for as it
 * is, percent-encoded (as it appears in a URL or a form body) and
 * JSON-escaped (as an API echoing it would print it).  A value of 4 bytes
 * or more is replaced wherever it appears; a shorter one, which could be
 * part of anything, where it is a whole value (IsWholeValue): a header
 * value, a query, form or JSON value, a path segment.
 */
char *
Redact(const char *s, List *sensitive)
{
	ListCell   *lc;
	char	   *out;

	if (s == NULL)
		return NULL;
	out = RedactUserInfo(pstrdup(s));
	foreach(lc, sensitive)
	{
		const char *secret = lfirst(lc);
		size_t		len = strlen(secret);
		StringInfoData enc;
		StringInfoData json;
		StringInfoData json2;
		const char *forms[4];
		int			i;

		if (len == 0)
			continue;
		initStringInfo(&enc);
		AppendPercentEncoded(&enc, secret, len);
		initStringInfo(&json);
		escape_json(&json, secret);
		/* without the quotes escape_json adds */
		json.data[json.len - 1] = '\0';
		/* and escaped twice: a JSON body echoed inside a JSON string */
		initStringInfo(&json2);
		escape_json(&json2, json.data + 1);
		json2.data[json2.len - 1] = '\0';
		forms[0] = secret;
		forms[1] = enc.data;
		forms[2] = json.data + 1;
		forms[3] = json2.data + 1;
		for (i = 0; i < lengthof(forms); i++)
		{
			if (len >= REDACT_SUBSTRING_MIN)
				out = ReplaceAll(out, forms[i], REDACTED);
			else
				out = ReplaceWhole(out, forms[i], REDACTED);
		}
		pfree(enc.data);
		pfree(json.data);
		pfree(json2.data);
	}
	return out;
}

/* Headers whose values are credentials wherever they come from. */
bool
IsSensitiveHeader(const char *name)
{
	return pg_strcasecmp(name, "authorization") == 0 ||
		pg_strcasecmp(name, "proxy-authorization") == 0 ||
		pg_strcasecmp(name, "cookie") == 0 ||
		pg_strcasecmp(name, "set-cookie") == 0 ||
		pg_strcasecmp(name, "x-api-key") == 0;
}

/* ---- placeholder resolution for app and action templates ---- */

static JsonbValue *
InputPath(Jsonb *input, int nargs, char **args)
{
	JsonbValue *v;
	JsonbValue	holder;
	JsonbContainer *c;
	int			i;

	if (input == NULL || !JB_ROOT_IS_OBJECT(input))
		return NULL;
	v = JsonbGetField(input, args[0]);
	if (v == NULL)
	{
		/* the key may have been passed with a placement prefix */
		for (i = 0; i < SEC__COUNT && v == NULL; i++)
			v = JsonbGetField(input, psprintf("%s:%s", section_names[i], args[0]));
	}
	for (i = 1; v != NULL && i < nargs; i++)
	{
		if (v->type != jbvBinary)
			return NULL;
		c = v->val.binary.data;
		if (JsonContainerIsObject(c))
		{
			holder.type = jbvString;
			holder.val.string.val = args[i];
			holder.val.string.len = strlen(args[i]);
			v = findJsonbValueFromContainer(c, JB_FOBJECT, &holder);
		}
		else
		{
			char	   *end;
			long		idx = strtol(args[i], &end, 10);

			if (*end != '\0' || idx < 0)
				return NULL;
			v = getIthJsonbValueFromContainer(c, (uint32) idx);
		}
	}
	return v;
}

static void
FormatUuid(char *out)
{
	unsigned char b[16];
	int			i;
	char	   *p = out;

	if (!pg_strong_random(b, sizeof(b)))
		ereport(ERROR, (errmsg("could not generate random values")));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		sprintf(p, "%02x", b[i]);
		p += 2;
	}
	*p = '\0';
}

/*
 * Who gets OAuth2 access tokens: oauth.c, which needs the worker to refresh
 * them, sits above the request builder, so it is registered at load time
 * (ductape.c) rather than called by name.
 */
static RequestTokenProvider TokenProvider = NULL;

void
RequestSetTokenProvider(RequestTokenProvider provider)
{
	TokenProvider = provider;
}

/* The OAuth2 access token for this call (fetched once per build). */
static char *
OAuthToken(ResolveCtx *ctx)
{
	if (ctx->auth_token == NULL)
	{
		DtRequest  *req = ctx->req;

		if (TokenProvider == NULL)
			elog(ERROR, "no OAuth2 token provider is registered");
		ctx->auth_token = TokenProvider(ctx->app, ctx->binding, req->oauth_force,
										req->oauth_force_seen, &req->oauth_token_at);
		req->oauth = true;
		*ctx->sensitive = lappend(*ctx->sensitive, ctx->auth_token);
	}
	return ctx->auth_token;
}

static bool
ResolveAppPlaceholder(void *arg, PlaceholderKind kind, int nargs, char **args,
					  JsonbValue *out)
{
	ResolveCtx *ctx = arg;
	JsonbValue *v = NULL;

	switch (kind)
	{
		case PH_INPUT:
			v = InputPath(ctx->input, nargs, args);
			break;
		case PH_CONSTANT:
			if (nargs == 2)
				v = JsonbGetField(CatalogGetApp(args[0])->constants, args[1]);
			else
				v = JsonbGetField(ctx->app->constants, args[0]);
			break;
		case PH_VARIABLE:
			v = JsonbGetField(ctx->binding->variables, args[0]);
			if (v == NULL)
			{
				/* fall back to the declared default */
				Jsonb	   *decl = JsonbGetJsonb(ctx->app->declared_variables, args[0]);

				v = JsonbGetField(decl, "default");
			}
			break;
		case PH_NOW:
			{
				struct timeval tv;
				struct tm	tm;
				char		buf[64];

				gettimeofday(&tv, NULL);
				gmtime_r(&tv.tv_sec, &tm);
				strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
				out->type = jbvString;
				out->val.string.val = psprintf("%s.%03dZ", buf, (int) (tv.tv_usec / 1000));
				out->val.string.len = strlen(out->val.string.val);
				return true;
			}
		case PH_UUID:
			out->type = jbvString;
			out->val.string.val = palloc(37);
			FormatUuid(out->val.string.val);
			out->val.string.len = 36;
			return true;
		case PH_SECRET:
			{
				char	   *plain = SecretResolve(args[0], ctx->app->tag, ctx->env);

				*ctx->sensitive = lappend(*ctx->sensitive, plain);
				out->type = jbvString;
				out->val.string.val = plain;
				out->val.string.len = strlen(plain);
				return true;
			}
		case PH_AUTH:
			{
				char	   *type = JsonbGetString(ctx->app->auth, "type");

				if (type == NULL || strcmp(type, "oauth2") != 0 || ctx->req == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_DT_SECRET),
							 errmsg("placeholder $Auth{%s} cannot be resolved: app \"%s\" does not use oauth2 auth",
									args[0], ctx->app->tag)));
				if (strcmp(args[0], "access_token") == 0)
				{
					out->type = jbvString;
					out->val.string.val = OAuthToken(ctx);
					out->val.string.len = strlen(out->val.string.val);
					return true;
				}
				if (strcmp(args[0], "token_type") == 0)
				{
					out->type = jbvString;
					out->val.string.val = "Bearer";
					out->val.string.len = 6;
					return true;
				}
				return false;
			}
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("this placeholder cannot be used in an app or action template")));
	}
	if (v == NULL)
		return false;
	*out = *v;
	return true;
}

static Jsonb *
Resolve(Jsonb *tpl, ResolveCtx *ctx)
{
	if (tpl == NULL)
		return NULL;
	return TemplateApply(tpl, ResolveAppPlaceholder, ctx);
}

static char *
ResolveString(Jsonb *spec, const char *key, ResolveCtx *ctx, List **sensitive)
{
	JsonbValue *v = JsonbGetField(spec, key);
	Jsonb	   *r;
	JsonbValue	s;
	char	   *text;

	if (v == NULL)
		return NULL;
	r = Resolve(JsonbValueToJsonb(v), ctx);
	if (!JsonbExtractScalar(&r->root, &s) || s.type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth field \"%s\" of app \"%s\" must resolve to a string, number or boolean",
						key, ctx->app->tag)));
	text = JsonbValueAsText(&s);
	*sensitive = lappend(*sensitive, text);
	return text;
}

/*
 * A string field of a spec object (the app's auth, a webhook's verify),
 * templates resolved under the binding; resolved secrets are added to
 * *sensitive.
 */
char *
RequestResolveField(DtApp *app, DtBinding *b, Jsonb *obj, const char *key, List **sensitive)
{
	ResolveCtx	ctx;
	List	   *scratch = NIL;

	memset(&ctx, 0, sizeof(ctx));
	ctx.app = app;
	ctx.binding = b;
	ctx.env = b->env;
	ctx.sensitive = sensitive ? sensitive : &scratch;
	return ResolveString(obj, key, &ctx, ctx.sensitive);
}

/* A field of the app's auth spec, templates resolved (for oauth.c). */
char *
RequestResolveAuthField(DtApp *app, DtBinding *b, const char *key, List **sensitive)
{
	return RequestResolveField(app, b, app->auth, key, sensitive);
}

static JsonbValue *
StringValue(const char *s)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = pstrdup(s);
	v->val.string.len = strlen(s);
	return v;
}

/* Auth (docs/reference.md) as header or query pairs; values are sensitive. */
static void
ApplyAuth(DtApp *app, ResolveCtx *ctx, List **headers, List **query,
		  List **sensitive)
{
	char	   *type;

	if (app->auth == NULL)
		return;
	type = JsonbGetString(app->auth, "type");
	if (type == NULL)			/* (the loader refuses such an app) */
		return;
	if (strcmp(type, "bearer") == 0)
	{
		char	   *token = ResolveString(app->auth, "token", ctx, sensitive);

		*headers = KVSet(*headers, "Authorization",
						 StringValue(psprintf("Bearer %s", token ? token : "")), true);
	}
	else if (strcmp(type, "api_key") == 0)
	{
		char	   *in = JsonbGetString(app->auth, "in");
		char	   *name = JsonbGetString(app->auth, "name");
		char	   *value = ResolveString(app->auth, "value", ctx, sensitive);

		if (name == NULL)
			name = "X-Api-Key";
		if (in && strcmp(in, "query") == 0)
			*query = KVSet(*query, name, StringValue(value ? value : ""), false);
		else
			*headers = KVSet(*headers, name, StringValue(value ? value : ""), true);
	}
	else if (strcmp(type, "basic") == 0)
	{
		char	   *user = ResolveString(app->auth, "username", ctx, sensitive);
		char	   *pass = ResolveString(app->auth, "password", ctx, sensitive);
		char	   *plain = psprintf("%s:%s", user ? user : "", pass ? pass : "");
		int			len = pg_b64_enc_len(strlen(plain));
		char	   *enc = palloc(len + 1);

		len = pg_b64_encode(plain, strlen(plain), enc, len);
		enc[len] = '\0';
		*sensitive = lappend(*sensitive, enc);
		*headers = KVSet(*headers, "Authorization",
						 StringValue(psprintf("Basic %s", enc)), true);
	}
	else if (strcmp(type, "oauth2") == 0)
		*headers = KVSet(*headers, "Authorization",
						 StringValue(psprintf("Bearer %s", OAuthToken(ctx))), true);
}

/* ---- options (docs/reference.md) ---- */

void
RequestApplyOptions(DtRequest *req, Jsonb *options, const char *idempotency_header)
{
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;

	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	it = JsonbIteratorInit(&options->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r != WJB_KEY)
			continue;
		if (!((v.val.string.len == 10 && strncmp(v.val.string.val, "timeout_ms", 10) == 0) ||
			  (v.val.string.len == 7 && strncmp(v.val.string.val, "retries", 7) == 0) ||
			  (v.val.string.len == 15 && strncmp(v.val.string.val, "idempotency_key", 15) == 0)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%.*s\"", v.val.string.len, v.val.string.val),
					 errhint("Options are timeout_ms, retries and idempotency_key.")));
	}
	if (JsonbGetField(options, "timeout_ms") != NULL)
	{
		JsonbValue *t = JsonbGetField(options, "timeout_ms");
		double		d;

		if (t->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option timeout_ms must be a number of milliseconds")));
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(t->val.numeric)));
		if (d < 1 || d > 86400000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option timeout_ms must be between 1 and 86400000")));
		req->timeout_ms = (int) d;
	}
	RetryPolicyOverlay(&req->policy, JsonbGetJsonb(options, "retries"), "options");
	if (JsonbGetField(options, "idempotency_key") != NULL)
	{
		char	   *key = JsonbGetString(options, "idempotency_key");

		if (key == NULL || key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option idempotency_key must be a non-empty string")));
		RequestAddHeader(req, idempotency_header, key);
		req->has_idempotency_key = true;
	}
}

/* ---- building ---- */

static Section
PlaceKey(DtAction *action, const char *key)
{
	JsonbValue *props;
	ListCell   *lc;

	props = JsonbGetField(action->input, "properties");
	if (props && props->type == jbvBinary && JsonContainerIsObject(props->val.binary.data))
	{
		JsonbValue	k;
		JsonbValue *prop;

		k.type = jbvString;
		k.val.string.val = (char *) key;
		k.val.string.len = strlen(key);
		prop = findJsonbValueFromContainer(props->val.binary.data, JB_FOBJECT, &k);
		if (prop && prop->type == jbvBinary && JsonContainerIsObject(prop->val.binary.data))
		{
			JsonbValue	ink;
			JsonbValue *in;
			int			s;

			ink.type = jbvString;
			ink.val.string.val = "in";
			ink.val.string.len = 2;
			in = findJsonbValueFromContainer(prop->val.binary.data, JB_FOBJECT, &ink);
			if (in && in->type == jbvString)
				for (s = 0; s < SEC__COUNT; s++)
					if (strlen(section_names[s]) == in->val.string.len &&
						strncmp(section_names[s], in->val.string.val, in->val.string.len) == 0)
						return (Section) s;
		}
	}
	foreach(lc, action->path_params)
		if (strcmp((char *) lfirst(lc), key) == 0)
			return SEC_PARAMS;
	if (strcmp(action->method, "GET") == 0 || strcmp(action->method, "DELETE") == 0 ||
		strcmp(action->method, "HEAD") == 0)
		return SEC_QUERY;
	return SEC_BODY;
}

/*
 * _placement(action jsonb, key text, prop jsonb) -> 'body', 'query',
 * 'params' or 'headers': where an unprefixed input key goes, as
 * RequestBuild places it (describe() shows it).  prop, the key's schema, is
 * read from the action's own input schema, as RequestBuild does.  The
 * action is read by the loader's CatalogParseAction, which checks it by the
 * action rules first (all but its tag and placeholders: it comes without
 * its catalog row and app).
 */
PG_FUNCTION_INFO_V1(dt_placement);

Datum
dt_placement(PG_FUNCTION_ARGS)
{
	DtAction   *action = CatalogParseAction(NULL, NULL, PG_GETARG_JSONB_P(0), NULL, NULL);

	PG_RETURN_TEXT_P(cstring_to_text(section_names[PlaceKey(action, text_to_cstring(PG_GETARG_TEXT_PP(1)))]));
}

/*
 * Place each key of a flat object (the call's input, or config
 * credentials) into its section, by prefix, schema "in", :param, method.
 */
static void
PlaceFlat(Jsonb *flat, DtAction *action, List *sec[SEC__COUNT], const char *what)
{
	JsonbIterator *it = JsonbIteratorInit(&flat->root);
	JsonbIteratorToken r;
	JsonbValue	v;
	char	   *key = NULL;
	int			s;

	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *colon;
		Section		target = SEC__COUNT;

		if (r == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (r != WJB_VALUE)
			continue;
		colon = strchr(key, ':');
		if (colon)
		{
			for (s = 0; s < SEC__COUNT; s++)
				if (strlen(section_names[s]) == colon - key &&
					strncmp(section_names[s], key, colon - key) == 0)
					target = (Section) s;
			if (target == SEC__COUNT)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s key \"%s\" has an unknown prefix", what, key),
						 errhint("Prefixes are body:, query:, params: and headers:.")));
			if (colon[1] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s key \"%s\" names no field after its prefix", what, key)));
			key = colon + 1;
		}
		else
			target = PlaceKey(action, key);
		sec[target] = KVSet(sec[target], key, CopyValue(&v), target == SEC_HEADERS);
	}
}

static char *
ValueText(JsonbValue *v)
{
	return JsonbValueAsText(v);
}

void
RequestBuild(DtRequest *req, DtApp *app, DtAction *action, DtBinding *binding,
			 Jsonb *input, Jsonb *options)
{
	List	   *sec[SEC__COUNT] = {NIL, NIL, NIL, NIL};
	List	   *input_sec[SEC__COUNT] = {NIL, NIL, NIL, NIL};
	List	   *config_sec[SEC__COUNT] = {NIL, NIL, NIL, NIL};
	List	   *auth_headers = NIL;
	List	   *auth_query = NIL;
	ResolveCtx	ctx;
	DtEnv	   *env = binding->app_env;
	const char *request_type;
	StringInfoData url;
	StringInfoData query;
	const char *p;
	ListCell   *lc;
	int			s;

	if (input == NULL || !JB_ROOT_IS_OBJECT(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input of %s.%s must be a JSON object", app->tag, action->tag),
				 errhint("Pass a flat object such as '{\"amount\": 1000}'.")));

	SchemaValidateInput(app->tag, action->tag, action->input, input);

	ctx.app = app;
	ctx.binding = binding;
	ctx.env = binding->env;
	ctx.input = input;
	ctx.sensitive = &req->sensitive;
	ctx.req = req;
	ctx.auth_token = NULL;

	req->method = action->method;
	req->app = app->tag;
	req->action = action->tag;
	req->env = binding->env;
	req->product = binding->product;
	LimitSetApp(&req->limit, app->tag, env->slug, &env->limits);
	req->success = action->success;
	req->nsuccess = action->nsuccess;
	req->timeout_ms = action->timeout_ms > 0 ? action->timeout_ms :
		app->timeout_ms > 0 ? app->timeout_ms : ductape_default_timeout_ms;
	/* background jobs retry more by default (docs/reference.md) */
	RetryPolicyDefaults(&req->policy, req->job_id != 0 ? RETRY_BACKGROUND_MAX : RETRY_SYNC_MAX);
	RetryPolicyOverlay(&req->policy, app->retries, "the app");
	RetryPolicyOverlay(&req->policy, action->retries, "the action");

	/* 1. place the caller's input */
	PlaceFlat(input, action, input_sec, "input");

	/*
	 * 2. Merge, weakest first: action template < config credentials < auth
	 * < the caller's input.
	 */
	sec[SEC_HEADERS] = KVMergeObject(NIL, Resolve(action->headers, &ctx), true);
	sec[SEC_QUERY] = KVMergeObject(NIL, Resolve(action->query, &ctx), false);
	sec[SEC_BODY] = KVMergeObject(NIL, Resolve(action->body, &ctx), false);
	if (binding->credentials)
	{
		List	   *before = req->sensitive;
		Jsonb	   *creds = Resolve(binding->credentials, &ctx);

		PlaceFlat(creds, action, config_sec, "credential");

		/*
		 * Credentials are secret by nature: every value of a credential that
		 * came from a template with a placeholder is redacted, not only the
		 * $Secret parts (so "Bearer $Secret{K}" hides the whole header).
		 */
		if (req->sensitive != before)
			for (s = 0; s < SEC__COUNT; s++)
				foreach(lc, config_sec[s])
					req->sensitive = lappend(req->sensitive,
											 JsonbValueAsText(((KV *) lfirst(lc))->val));
	}
	ApplyAuth(app, &ctx, &auth_headers, &auth_query, &req->sensitive);
	for (s = 0; s < SEC__COUNT; s++)
	{
		foreach(lc, config_sec[s])
			sec[s] = KVSet(sec[s], ((KV *) lfirst(lc))->key, ((KV *) lfirst(lc))->val, s == SEC_HEADERS);
		if (s == SEC_HEADERS || s == SEC_QUERY)
			foreach(lc, s == SEC_HEADERS ? auth_headers : auth_query)
				sec[s] = KVSet(sec[s], ((KV *) lfirst(lc))->key, ((KV *) lfirst(lc))->val, s == SEC_HEADERS);
		foreach(lc, input_sec[s])
			sec[s] = KVSet(sec[s], ((KV *) lfirst(lc))->key, ((KV *) lfirst(lc))->val, s == SEC_HEADERS);
	}

	/* 3. URL: base + resource with :params, then the query */
	initStringInfo(&url);
	appendStringInfoString(&url, env->base_url);
	while (url.len > 0 && url.data[url.len - 1] == '/')
		url.data[--url.len] = '\0';
	for (p = action->resource; *p; p++)
	{
		const char *e;
		char	   *name;
		KV		   *found = NULL;

		if (*p != ':')
		{
			appendStringInfoChar(&url, *p);
			continue;
		}
		for (e = p + 1; *e && (isalnum((unsigned char) *e) || *e == '_'); e++)
			;
		name = pnstrdup(p + 1, e - p - 1);
		foreach(lc, sec[SEC_PARAMS])
			if (strcmp(((KV *) lfirst(lc))->key, name) == 0)
				found = lfirst(lc);
		if (found == NULL || found->val->type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("missing path parameter \"%s\" for %s.%s", name, app->tag, action->tag),
					 errdetail("The resource is %s.", action->resource),
					 errhint("Pass \"%s\" (or \"params:%s\") in the input.", name, name)));
		if (found->val->type == jbvBinary)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("path parameter \"%s\" for %s.%s must be a string, number or boolean",
							name, app->tag, action->tag)));
		{
			char	   *text = ValueText(found->val);

			/*
			 * "." and ".." survive percent-encoding (they are unreserved)
			 * and would be resolved as dot segments: from input, that is a
			 * way out of the action's path.
			 */
			if (strcmp(text, ".") == 0 || strcmp(text, "..") == 0 || text[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("path parameter \"%s\" for %s.%s cannot be \"%s\"",
								name, app->tag, action->tag, text),
						 errdetail("An empty, \".\" or \"..\" path segment would change which resource is called.")));
			AppendPercentEncoded(&url, text, strlen(text));
		}
		p = e - 1;
	}
	foreach(lc, sec[SEC_PARAMS])
	{
		KV		   *kv = lfirst(lc);
		bool		known = false;
		ListCell   *lc2;

		foreach(lc2, action->path_params)
			if (strcmp(lfirst(lc2), kv->key) == 0)
				known = true;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("path parameter \"%s\" is not in the resource of %s.%s",
							kv->key, app->tag, action->tag),
					 errdetail("The resource is %s.", action->resource)));
	}
	initStringInfo(&query);
	foreach(lc, sec[SEC_QUERY])
	{
		KV		   *kv = lfirst(lc);

		AppendFormValue(&query, kv->key, kv->val);
	}
	if (query.len > 0)
		appendStringInfo(&url, "?%s", query.data);
	req->url = url.data;

	/* 4. headers */
	foreach(lc, sec[SEC_HEADERS])
	{
		KV		   *kv = lfirst(lc);

		if (kv->val->type == jbvNull)
			continue;
		RequestAddHeader(req, kv->key, ValueText(kv->val));
	}

	/* 5. body */
	request_type = action->request_type ? action->request_type :
		env->request_type ? env->request_type : "application/json";
	if (sec[SEC_BODY] != NIL)
	{
		if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s.%s is a %s action and cannot send a body", app->tag, action->tag, req->method),
					 errdetail("Input placed in the body: \"%s\".", ((KV *) linitial(sec[SEC_BODY]))->key),
					 errhint("Use a query: prefix, or declare the property with \"in\": \"query\".")));
		if (strcmp(request_type, "application/json") == 0)
		{
			JsonbParseState *ps = NULL;
			JsonbValue *res;

			pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
			foreach(lc, sec[SEC_BODY])
			{
				KV		   *kv = lfirst(lc);
				JsonbValue	k;

				k.type = jbvString;
				k.val.string.val = kv->key;
				k.val.string.len = strlen(kv->key);
				pushJsonbValue(&ps, WJB_KEY, &k);
				pushJsonbValue(&ps, WJB_VALUE, kv->val);
			}
			res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
			req->body = JsonbToCString(NULL, &JsonbValueToJsonb(res)->root, 0);
		}
		else if (strcmp(request_type, "application/x-www-form-urlencoded") == 0)
		{
			StringInfoData form;

			initStringInfo(&form);
			foreach(lc, sec[SEC_BODY])
			{
				KV		   *kv = lfirst(lc);

				AppendFormValue(&form, kv->key, kv->val);
			}
			req->body = form.data;
		}
		else if (strcmp(request_type, "text/plain") == 0)
		{
			if (list_length(sec[SEC_BODY]) != 1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a text/plain body takes exactly one input field, %s.%s got %d",
								app->tag, action->tag, list_length(sec[SEC_BODY])),
						 errhint("Pass the text as {\"body:text\": \"...\"}.")));
			req->body = ValueText(((KV *) linitial(sec[SEC_BODY]))->val);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("request type %s of %s.%s is not supported yet", request_type, app->tag, action->tag),
					 errdetail("ductape %s sends application/json, application/x-www-form-urlencoded and text/plain bodies.", DUCTAPE_VERSION),
					 errhint("Set \"request_type\" to one of those.")));
		req->body_len = strlen(req->body);
		{
			bool		has_ct = false;

			foreach(lc, req->headers)
				if (pg_strncasecmp(lfirst(lc), "Content-Type:", 13) == 0)
					has_ct = true;
			if (!has_ct)
				RequestAddHeader(req, "Content-Type",
								 strcmp(request_type, "text/plain") == 0 ?
								 "text/plain; charset=utf-8" : request_type);
		}
	}

	/* 6. per-call options */
	RequestApplyOptions(req, options, app->idempotency_header);
}
