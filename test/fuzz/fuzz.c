/*-------------------------------------------------------------------------
 *
 * fuzz.c
 *	  libFuzzer targets for ductape, run inside a real PostgreSQL backend.
 *
 * ductape's parsers live on palloc, ereport, jsonb and SPI, so they are
 * fuzzed where they run: `make fuzz` compiles every file of src/ again with
 * clang's coverage instrumentation (-fsanitize=fuzzer-no-link, -DDT_FUZZ)
 * into test/fuzz/ductape_fuzz.so together with this harness and libFuzzer
 * itself (its no-main flavour).  scripts/fuzz starts a throwaway cluster
 * with the ordinary ductape preloaded and the extension created, loads the
 * instrumented copy as one more C function (linked -Bsymbolic, so it calls
 * its own copies; its _PG_init does nothing), and calls
 *
 *		SELECT fuzz_run('<target>', ARRAY['-max_total_time=300', dir], log)
 *
 * which hands the backend over to libFuzzer's loop until it exits.
 *
 * Each input runs in a memory context reset afterwards; targets that read
 * the catalog or write run in a subtransaction that is always rolled back.
 * The oracle is stricter than "does not crash": an ereport is a finding
 * unless its SQLSTATE is one the target may refuse input with (22023 for a
 * bad template, 22P02 for bad JSON, ...), and some targets check what they
 * built.  A finding calls abort(), which libFuzzer reports and saves as
 * crash-<sha1>; every one fixed becomes a regression test (sql/fuzz.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "ductape.h"
#include "calls.h"
#include "egress.h"

/* PG_MODULE_MAGIC comes with src/ductape.c */

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*cb) (const uint8_t *data, size_t size));

extern Datum dt_document_parse(PG_FUNCTION_ARGS);

typedef struct FuzzTarget
{
	const char *name;
	void		(*run) (const uint8_t *data, size_t size);
	bool		subxact;		/* reads the catalog or writes: roll back */
	const char *allowed;		/* SQLSTATEs input may be refused with */
} FuzzTarget;

static const FuzzTarget *Target = NULL;
static MemoryContext InputContext = NULL;
static bool Preparing = false;	/* turning the bytes into arguments */

static void
Finding(const char *what)
{
	fprintf(stderr, "FINDING (%s): %s\n", Target->name, what);
	abort();
}

/* NUL-terminated copy of the input, or NULL when it is not valid text */
static char *
InputText(const uint8_t *data, size_t size)
{
	if (memchr(data, '\0', size) != NULL ||
		!pg_verifymbstr((const char *) data, size, true))
		return NULL;
	return pnstrdup((const char *) data, size);
}

/* jsonb_in of the input: its refusals are PostgreSQL's, not findings */
static Jsonb *
ParseJson(const char *s)
{
	Jsonb	   *j;

	Preparing = true;
	j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
	Preparing = false;
	return j;
}

/* ---- template: placeholder syntax in a template string ---- */

static bool
FixedResolver(void *arg, PlaceholderKind kind, int nargs, char **args, JsonbValue *out)
{
	if (nargs > 0 && strcmp(args[0], "missing") == 0)
		return false;
	out->type = jbvString;
	out->val.string.val = "value";
	out->val.string.len = 5;
	return true;
}

static void
FuzzTemplate(const uint8_t *data, size_t size)
{
	char	   *s = InputText(data, size);
	JsonbParseState *ps = NULL;
	JsonbValue	k,
				v;
	Jsonb	   *tpl;
	List	   *errors = NIL;

	if (s == NULL)
		return;
	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "s";
	k.val.string.len = 1;
	v.type = jbvString;
	v.val.string.val = s;
	v.val.string.len = size;
	pushJsonbValue(&ps, WJB_KEY, &k);
	pushJsonbValue(&ps, WJB_VALUE, &v);
	tpl = JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
	TemplateCheck(tpl, "", PH_BIT(PH__COUNT) - 1,
				  ParseJson("{\"c\": 1}"), ParseJson("{\"v\": {}}"), &errors);
	(void) TemplateStepRefs(tpl);
	(void) TemplateApply(tpl, FixedResolver, NULL);
}

/* ---- placement: a flat input placed into an action's request ---- */

static void
FuzzPlacement(const uint8_t *data, size_t size)
{
	static const char *const actions[] = {"get", "create", "form", "note"};
	char	   *s = InputText(data, size);
	DtRequest	req;
	DtApp	   *app;
	DtAction   *action;
	Jsonb	   *input;
	ListCell   *lc;
	const char *p;

	if (s == NULL)
		return;
	input = ParseJson(s);
	CatalogBeginCall();
	app = CatalogGetApp("fz");
	action = CatalogGetAction(app, actions[size % lengthof(actions)]);
	memset(&req, 0, sizeof(req));
	RequestBuild(&req, app, action, CatalogGetBinding(app, "default", "dev"), input, NULL);

	/* what was built must be sendable as it is */
	if (strncmp(req.url, "http://fz.invalid/v1/", 21) != 0)
		Finding(psprintf("URL outside the base URL: %s", req.url));
	for (p = req.url; *p; p++)
		if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
			Finding(psprintf("unencoded byte 0x%02x in the URL", (unsigned char) *p));
	foreach(lc, req.headers)
	{
		const char *h = lfirst(lc);

		if (strpbrk(h, "\r\n") != NULL)
			Finding(psprintf("line break in a header: %s", h));
		if (strchr(h, ':') == NULL || strchr(h, ':') == h)
			Finding(psprintf("header without a name: %s", h));
	}
}

/* ---- signature: the verification header parsers ---- */

typedef struct SigFields
{
	const char *f[3];			/* the signature header, webhook-id, webhook-timestamp */
} SigFields;

static const char *
SigHeader(void *arg, const char *name)
{
	SigFields  *sf = arg;

	if (strcmp(name, "webhook-id") == 0)
		return sf->f[1];
	if (strcmp(name, "webhook-timestamp") == 0)
		return sf->f[2];
	return sf->f[0];
}

static void
FuzzSignature(const uint8_t *data, size_t size)
{
	static const char *const specs[] = {
		"{\"scheme\": \"stripe\"}",
		"{\"scheme\": \"github\"}",
		"{\"scheme\": \"standard\", \"tolerance_s\": 300}",
		"{\"scheme\": \"hmac\", \"header\": \"X-Sig\", \"prefix\": \"v1=\"}",
		"{\"scheme\": \"hmac\", \"header\": \"X-Sig\", \"encoding\": \"base64\"}",
	};
	SigFields	sf = {{NULL, NULL, NULL}};
	const char *secret;
	char	   *s;
	char	   *body;
	int			i;
	int			which;

	if (size < 1)
		return;
	which = data[0] % lengthof(specs);
	s = pnstrdup((const char *) data + 1, size - 1);
	body = s;
	/* header value, id and timestamp are the first lines; the rest is the body */
	for (i = 0; i < 3; i++)
	{
		char	   *nl = strchr(body, '\n');

		sf.f[i] = body;
		if (nl == NULL)
		{
			body = "";
			break;
		}
		*nl = '\0';
		body = nl + 1;
	}
	secret = which == 2 ? "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" : "s3cret";
	(void) SignatureVerify(ParseJson(specs[which]), secret, SigHeader, &sf,
						   body, strlen(body), 1700000000);
}

/* ---- document: the JSON/YAML reader of the importers ($refs: openapi) ---- */

static void
FuzzDocument(const uint8_t *data, size_t size)
{
	char	   *s = InputText(data, size);

	if (s == NULL)
		return;
	(void) DirectFunctionCall2(dt_document_parse, PointerGetDatum(cstring_to_text(s)),
							   PointerGetDatum(cstring_to_text("the document")));
}

/* ---- openapi: the whole importer, define included ---- */

static void
FuzzOpenapi(const uint8_t *data, size_t size)
{
	char	   *s = InputText(data, size);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	if (s == NULL)
		return;
	args[0] = PointerGetDatum(cstring_to_text(s));
	if (SPI_execute_with_args("SELECT ductape.import_openapi($1, 'fz-import')",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		Finding("import_openapi did not return");
}

/* ---- schema: define-time check, then validation ---- */

static void
FuzzSchema(const uint8_t *data, size_t size)
{
	char	   *s = InputText(data, size);
	char	   *nl;
	Jsonb	   *schema;
	Jsonb	   *instance;
	JsonbValue	inst;
	StringInfoData errors;

	if (s == NULL || (nl = strchr(s, '\n')) == NULL)
		return;
	*nl = '\0';
	schema = ParseJson(s);
	instance = ParseJson(nl + 1);
	if (SchemaCheck(schema, "") != NIL)
		return;					/* refused at define time */
	if (JB_ROOT_IS_SCALAR(instance))
	{
		JsonbValue *scalar = getIthJsonbValueFromContainer(&instance->root, 0);

		inst = *scalar;
	}
	else
	{
		inst.type = jbvBinary;
		inst.val.binary.data = &instance->root;
		inst.val.binary.len = VARSIZE(instance) - VARHDRSZ;
	}
	initStringInfo(&errors);
	if (SchemaValidate(schema, &inst, &errors) != (errors.len == 0))
		Finding("validation result and its messages disagree");
}

/* ---- egress: the address classifier and ductape.allowed_hosts ---- */

/*
 * The oracle is written here again, independently of egress.c: address
 * ranges as plain 32-bit masks over words from inet_pton, the documented
 * rules of EgressCheckAddress and EgressCheckUrl, and the list split and
 * read with inet_pton.  Any disagreement is a finding.
 */
typedef struct RefRange
{
	uint32		net;
	uint32		mask;
	const char *name;
} RefRange;

/* IPv4 (egress.h: private, special, documentation, benchmarking, reserved) */
static const RefRange RefV4[] = {
	{0x00000000, 0xFF000000, "unspecified"},	/* 0/8 */
	{0x0A000000, 0xFF000000, "private (RFC 1918)"},	/* 10/8 */
	{0x64400000, 0xFFC00000, "carrier-grade NAT"},	/* 100.64/10 */
	{0x7F000000, 0xFF000000, "loopback"},	/* 127/8 */
	{0xA9FE0000, 0xFFFF0000, "link-local"}, /* 169.254/16 */
	{0xAC100000, 0xFFF00000, "private (RFC 1918)"},	/* 172.16/12 */
	{0xC0000000, 0xFFFFFF00, "reserved"},	/* 192.0.0/24 */
	{0xC0000200, 0xFFFFFF00, "documentation"},	/* 192.0.2/24 */
	{0xC0586300, 0xFFFFFF00, "reserved"},	/* 192.88.99/24 */
	{0xC0A80000, 0xFFFF0000, "private (RFC 1918)"},	/* 192.168/16 */
	{0xC6120000, 0xFFFE0000, "benchmarking"},	/* 198.18/15 */
	{0xC6336400, 0xFFFFFF00, "documentation"},	/* 198.51.100/24 */
	{0xCB007100, 0xFFFFFF00, "documentation"},	/* 203.0.113/24 */
	{0xE0000000, 0xF0000000, "multicast"},	/* 224/4 */
	{0xF0000000, 0xF0000000, "reserved"},	/* 240/4 */
};

static uint32
Word(const uint8 *a, int i)
{
	return ((uint32) a[4 * i] << 24) | ((uint32) a[4 * i + 1] << 16) |
		((uint32) a[4 * i + 2] << 8) | (uint32) a[4 * i + 3];
}

static const char *
RefClassV4(uint32 w)
{
	int			i;

	for (i = 0; i < lengthof(RefV4); i++)
		if ((w & RefV4[i].mask) == RefV4[i].net)
			return RefV4[i].name;
	return NULL;
}

static const char *
RefClassV6(const uint8 *a)
{
	uint32		w0 = Word(a, 0),
				w1 = Word(a, 1),
				w2 = Word(a, 2),
				w3 = Word(a, 3);

	if (w0 == 0 && w1 == 0 && w2 == 0 && w3 == 0)
		return "unspecified";
	if (w0 == 0 && w1 == 0 && w2 == 0 && w3 == 1)
		return "loopback";
	if (w0 == 0 && w1 == 0 && (w2 == 0x0000FFFF || w2 == 0))
		return RefClassV4(w3);	/* IPv4-mapped, IPv4-compatible */
	if (w0 == 0x0064FF9B && ((w1 == 0 && w2 == 0) || (w1 >> 16) == 0x0001))
		return RefClassV4(w3);	/* NAT64 64:ff9b::/96, 64:ff9b:1::/48 */
	if ((w0 >> 16) == 0x2002)
		return RefClassV4((w0 << 16) | (w1 >> 16));	/* 6to4 */
	if ((w0 & 0xFE000000) == 0xFC000000)
		return "unique-local";
	if ((w0 & 0xFFC00000) == 0xFE800000)
		return "link-local";
	if ((w0 & 0xFFC00000) == 0xFEC00000)
		return "site-local";
	if ((w0 & 0xFF000000) == 0xFF000000)
		return "multicast";
	if (w0 == 0x20010DB8 || (w0 & 0xFFFFF000) == 0x3FFF0000)
		return "documentation";
	if (w0 == 0x01000000 && w1 == 0)
		return "discard";
	if (w0 == 0x20010002 && (w1 >> 16) == 0)
		return "benchmarking";
	if ((w0 & 0xFFFFFE00) == 0x20010000)
		return "reserved";
	if ((w0 & 0xE0000000) != 0x20000000)
		return "reserved";
	return NULL;
}

/* the IPv4 address an IPv6 one embeds, as egress.h lists the forms */
static bool
RefEmbeddedV4(const uint8 *a, uint32 *v4)
{
	uint32		w0 = Word(a, 0),
				w1 = Word(a, 1),
				w2 = Word(a, 2),
				w3 = Word(a, 3);

	if ((w0 == 0 && w1 == 0 && w2 == 0x0000FFFF) ||
		(w0 == 0x0064FF9B && ((w1 == 0 && w2 == 0) || (w1 >> 16) == 0x0001)) ||
		(w0 == 0 && w1 == 0 && w2 == 0 && w3 > 1))
	{
		*v4 = w3;
		return true;
	}
	if ((w0 >> 16) == 0x2002)
	{
		*v4 = (w0 << 16) | (w1 >> 16);
		return true;
	}
	return false;
}

typedef struct RefAddr
{
	int			family;
	uint8		a[16];
} RefAddr;

typedef struct RefEntry
{
	int			kind;			/* 0 exact, 1 wildcard, 2 net */
	char	   *name;			/* lower case, no "*." and no trailing dot */
	RefAddr		net;
	int			bits;
} RefEntry;

static bool
RefPrefixMatch(const uint8 *a, const uint8 *net, int bits)
{
	int			i;

	for (i = 0; i < bits; i++)
	{
		int			bit = 7 - i % 8;

		if (((a[i / 8] >> bit) & 1) != ((net[i / 8] >> bit) & 1))
			return false;
	}
	return true;
}

static bool
RefNetMatch(List *entries, const RefAddr *addr)
{
	uint32		v4 = 0;
	uint8		v4b[4];
	bool		has_v4 = addr->family == AF_INET6 && RefEmbeddedV4(addr->a, &v4);
	ListCell   *lc;

	v4b[0] = v4 >> 24;
	v4b[1] = v4 >> 16;
	v4b[2] = v4 >> 8;
	v4b[3] = v4;
	foreach(lc, entries)
	{
		RefEntry   *e = lfirst(lc);

		if (e->kind != 2)
			continue;
		if (e->net.family == addr->family && RefPrefixMatch(addr->a, e->net.a, e->bits))
			return true;
		if (has_v4 && e->net.family == AF_INET && RefPrefixMatch(v4b, e->net.a, e->bits))
			return true;
	}
	return false;
}

static void
RefNameMatch(List *entries, const char *host, bool *exact, bool *wildcard)
{
	char	   *h;
	int			len;
	int			i;
	ListCell   *lc;

	*exact = *wildcard = false;
	if (host == NULL)
		return;
	h = pstrdup(host);
	len = strlen(h);
	if (len > 0 && h[len - 1] == '.')
		h[--len] = '\0';
	if (len == 0)
		return;
	for (i = 0; i < len; i++)
		h[i] = pg_ascii_tolower((unsigned char) h[i]);
	foreach(lc, entries)
	{
		RefEntry   *e = lfirst(lc);
		int			n;

		if (e->kind == 2)
			continue;
		n = strlen(e->name);
		if (e->kind == 0 && strcmp(h, e->name) == 0)
			*exact = true;
		/* *.d: at least one non-empty label before ".d" */
		if (e->kind == 1 && len >= n + 2 && strcmp(h + len - n, e->name) == 0 &&
			h[len - n - 1] == '.' && h[len - n - 2] != '.')
			*wildcard = true;
	}
}

/* an IP literal as EgressCheckUrl takes it: [brackets], a %zone (IPv6) */
static bool
RefLiteral(const char *s, bool allow_zone, RefAddr *out)
{
	char	   *t = pstrdup(s);
	int			len = strlen(t);
	bool		bracketed = false;
	char	   *zone;

	if (len >= 2 && t[0] == '[' && t[len - 1] == ']')
	{
		t[len - 1] = '\0';
		t++;
		bracketed = true;
	}
	zone = strchr(t, '%');
	if (zone && !allow_zone)
		return false;
	if (zone)
		*zone = '\0';
	memset(out, 0, sizeof(*out));
	if (!bracketed && zone == NULL && inet_pton(AF_INET, t, out->a) == 1)
	{
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, t, out->a) == 1)
	{
		out->family = AF_INET6;
		return true;
	}
	return false;
}

/* the entries of a list egress_check_allowed_hosts accepted; NIL if blank */
static List *
RefEntries(const char *list)
{
	List	   *entries = NIL;
	char	   *copy = pstrdup(list);
	char	   *tok = copy;
	bool		last = false;

	if (strspn(copy, " \t\n\r\f\v") == strlen(copy))
		return NIL;
	while (!last)
	{
		char	   *end = strchr(tok, ',');
		char	   *a = tok;
		char	   *b;
		RefEntry   *e = palloc0(sizeof(RefEntry));
		char	   *slash;
		int			i;

		if (end)
			*end = '\0';
		else
			last = true;
		while (*a && strchr(" \t\n\r\f\v", *a))
			a++;
		b = a + strlen(a);
		while (b > a && strchr(" \t\n\r\f\v", b[-1]))
			*--b = '\0';
		slash = strchr(a, '/');
		if (slash || a[0] == '[' || strchr(a, ':') || RefLiteral(a, false, &e->net))
		{
			if (slash)
				*slash = '\0';
			if (!RefLiteral(a, false, &e->net))
				Finding(psprintf("allowed_hosts accepted \"%s\", which is no address", a));
			e->kind = 2;
			e->bits = e->net.family == AF_INET ? 32 : 128;
			if (slash)
				e->bits = atoi(slash + 1);
			if (e->net.family == AF_INET6 && e->bits >= 96 &&
				Word(e->net.a, 0) == 0 && Word(e->net.a, 1) == 0 && Word(e->net.a, 2) == 0xFFFF)
			{
				memmove(e->net.a, e->net.a + 12, 4);
				memset(e->net.a + 4, 0, 12);
				e->net.family = AF_INET;
				e->bits -= 96;
			}
			/* host bits cleared */
			for (i = e->bits; i < 128; i++)
				e->net.a[i / 8] &= ~(1 << (7 - i % 8));
		}
		else
		{
			if (a[0] == '*' && a[1] == '.')
			{
				e->kind = 1;
				a += 2;
			}
			b = a + strlen(a);
			if (b > a && b[-1] == '.')
				*--b = '\0';
			for (i = 0; a[i]; i++)
			{
				if (!(isalnum((unsigned char) a[i]) || a[i] == '-' || a[i] == '.'))
					Finding(psprintf("allowed_hosts accepted the host name \"%s\"", a));
				a[i] = pg_ascii_tolower((unsigned char) a[i]);
			}
			if (a[0] == '\0')
				Finding("allowed_hosts accepted an empty host name");
			e->name = a;
		}
		entries = lappend(entries, e);
		tok = end + 1;
	}
	return entries;
}

typedef struct RefPolicy
{
	List	   *entries;
	bool		private_ok;
	bool		https_only;
} RefPolicy;

/* EgressCheckAddress's rules, from egress.c's header comment */
static bool
RefCheck(RefPolicy *rp, const char *host, const RefAddr *addr)
{
	bool		listed = RefNetMatch(rp->entries, addr);
	bool		exact,
				wildcard;
	const char *cls = addr->family == AF_INET ? RefClassV4(Word(addr->a, 0)) : RefClassV6(addr->a);

	RefNameMatch(rp->entries, host, &exact, &wildcard);
	if (cls != NULL && !rp->private_ok && !listed && !exact)
		return false;
	if (rp->entries != NIL && !listed && !exact && !wildcard)
		return false;
	return true;
}

/* EgressCheckUrl's, for an https URL */
static bool
RefCheckUrl(RefPolicy *rp, const char *host)
{
	RefAddr		addr;
	bool		exact,
				wildcard;
	ListCell   *lc;

	if (host[0] == '\0')
		return false;
	if (RefLiteral(host, true, &addr))
		return RefCheck(rp, host, &addr);
	if (rp->entries == NIL)
		return true;
	RefNameMatch(rp->entries, host, &exact, &wildcard);
	if (exact || wildcard)
		return true;
	foreach(lc, rp->entries)
		if (((RefEntry *) lfirst(lc))->kind == 2)
			return true;
	return false;
}

static void
SockAddr(const RefAddr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a->a, 4);
	}
	else
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, a->a, 16);
	}
}

static char *
AddrText(const RefAddr *a)
{
	char		buf[INET6_ADDRSTRLEN];

	if (inet_ntop(a->family, a->a, buf, sizeof(buf)) == NULL)
		return "?";
	return pstrdup(buf);
}

/* the classifier against the oracle, and the policy against RefCheck */
static void
EgressAgree(RefPolicy *rp, const char *host, const RefAddr *a)
{
	struct sockaddr_storage ss;
	const char *cls;
	const char *ref;
	char		reason[256];
	bool		allowed;

	SockAddr(a, &ss);
	cls = EgressAddressClass((struct sockaddr *) &ss);
	ref = a->family == AF_INET ? RefClassV4(Word(a->a, 0)) : RefClassV6(a->a);
	if ((cls == NULL) != (ref == NULL) || (cls && strcmp(cls, ref) != 0))
		Finding(psprintf("%s is \"%s\" to the classifier, \"%s\" to the oracle",
						 AddrText(a), cls ? cls : "public", ref ? ref : "public"));
	reason[0] = '\0';
	allowed = EgressCheckAddress(host, (struct sockaddr *) &ss, reason, sizeof(reason));
	if (allowed != RefCheck(rp, host, a))
		Finding(psprintf("EgressCheckAddress(%s, %s) %s it (%s); the rules say the opposite",
						 host ? host : "NULL", AddrText(a), allowed ? "allows" : "refuses", reason));
	if (!allowed && reason[0] == '\0')
		Finding("a refusal without a reason");
}

/*
 * Input: byte 0 flags (1: allow_private_networks, 2: https_only), bytes
 * 1..16 an address (IPv6; its first 4 bytes also as IPv4), then text:
 * ductape.allowed_hosts, a newline, a URL host.
 */
static void
FuzzEgress(const uint8_t *data, size_t size)
{
	char	   *text;
	char	   *list;
	char	   *host;
	char	   *nl;
	void	   *extra = NULL;
	RefPolicy	rp;
	RefAddr		a;
	const char *why;
	ListCell   *lc;

	if (size < 17 || (text = InputText(data + 17, size - 17)) == NULL)
		return;
	list = text;
	host = "";
	if ((nl = strchr(text, '\n')) != NULL)
	{
		*nl = '\0';
		host = nl + 1;
	}
	ductape_allow_private_networks = rp.private_ok = (data[0] & 1) != 0;
	ductape_https_only = rp.https_only = (data[0] & 2) != 0;

	/* the classifier alone, and with no list */
	rp.entries = NIL;
	ductape_allowed_hosts = "";
	egress_assign_allowed_hosts("", NULL);
	a.family = AF_INET;
	memcpy(a.a, data + 1, 4);
	EgressAgree(&rp, NULL, &a);
	a.family = AF_INET6;
	memcpy(a.a, data + 1, 16);
	EgressAgree(&rp, NULL, &a);

	/* the list */
	if (egress_check_allowed_hosts(&list, &extra, PGC_S_TEST))
	{
		ductape_allowed_hosts = list;
		egress_assign_allowed_hosts(list, extra);
		rp.entries = RefEntries(list);

		/* the address and the host, against the rules */
		a.family = AF_INET;
		memcpy(a.a, data + 1, 4);
		EgressAgree(&rp, host, &a);
		a.family = AF_INET6;
		memcpy(a.a, data + 1, 16);
		EgressAgree(&rp, host, &a);
		if (RefLiteral(host, true, &a))
			EgressAgree(&rp, host, &a);
		why = EgressCheckUrl(rp.https_only ? "http" : "https", host);
		if (rp.https_only && why == NULL)
			Finding("http allowed with ductape.https_only on");
		why = EgressCheckUrl("https", host);
		if ((why == NULL) != RefCheckUrl(&rp, host))
			Finding(psprintf("EgressCheckUrl(https, \"%s\") %s it (%s); the rules say the opposite",
							 host, why ? "refuses" : "allows", why ? why : ""));

		/* every host the list names is allowed */
		foreach(lc, rp.entries)
		{
			RefEntry   *e = lfirst(lc);
			char	   *h;

			if (e->kind == 2)
			{
				RefAddr		last = e->net;
				int			i;

				for (i = e->bits; i < (e->net.family == AF_INET ? 32 : 128); i++)
					last.a[i / 8] |= 1 << (7 - i % 8);
				if (!RefCheck(&rp, NULL, &e->net) || !RefCheck(&rp, NULL, &last))
					Finding(psprintf("the rules refuse the network %s/%d the list names",
									 AddrText(&e->net), e->bits));
				EgressAgree(&rp, NULL, &e->net);
				EgressAgree(&rp, NULL, &last);
				h = e->net.family == AF_INET ? AddrText(&last) : psprintf("[%s]", AddrText(&last));
			}
			else
			{
				RefAddr		pub = {AF_INET, {93, 184, 216, 34}};
				struct sockaddr_storage ss;

				h = e->kind == 0 ? e->name : psprintf("fz.%s", e->name);
				SockAddr(&pub, &ss);
				if (!EgressCheckAddress(h, (struct sockaddr *) &ss, NULL, 0))
					Finding(psprintf("the list names %s, but a public address of it is refused", h));
			}
			if ((why = EgressCheckUrl("https", h)) != NULL)
				Finding(psprintf("the list names %s, but https://%s/ is refused: %s", h, h, why));
		}
		egress_assign_allowed_hosts(NULL, NULL);
		free(extra);
	}
	ductape_allowed_hosts = NULL;
	ductape_allow_private_networks = false;
	ductape_https_only = false;
	/* GUC_check_errdetail formats into ErrorContext */
	FlushErrorState();
}

/* ---- listener: raw HTTP through libmicrohttpd and the listener ---- */

static void
FuzzListener(const uint8_t *data, size_t size)
{
	char	   *answer = WebhookFuzzRequest((const char *) data, size);

	if (answer != NULL && strncmp(answer, "HTTP/1.", 7) != 0)
		Finding("an answer that is not HTTP");
}

static const FuzzTarget Targets[] = {
	{"template", FuzzTemplate, false, "22023"},
	{"placement", FuzzPlacement, true, "22023 22P02 54000 54001"},
	{"signature", FuzzSignature, false, ""},
	{"document", FuzzDocument, false, "22023 22P02 54001"},
	{"openapi", FuzzOpenapi, true, "22023 22P02 54000 54001 23505"},
	{"schema", FuzzSchema, false, "22P02 54000 54001"},
	{"listener", FuzzListener, true, ""},
	{"egress", FuzzEgress, false, ""},
};

static int
OneInput(const uint8_t *data, size_t size)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool failed = false;

	if (Target->subxact)
	{
		BeginInternalSubTransaction(NULL);
		SPI_connect();
	}
	MemoryContextSwitchTo(InputContext);
	Preparing = false;
	PG_TRY();
	{
		Target->run(data, size);
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		const char *code;

		MemoryContextSwitchTo(InputContext);	/* reset below */
		failed = true;
		ed = CopyErrorData();
		FlushErrorState();
		code = unpack_sql_state(ed->sqlerrcode);
		if (!Preparing && strstr(Target->allowed, code) == NULL)
			Finding(psprintf("error %s: %s", code, ed->message));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	if (Target->subxact)
	{
		if (!failed)
			SPI_finish();		/* else the rollback closes it */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	MemoryContextReset(InputContext);
	return 0;
}

/* at exit (libFuzzer's): where the backend's memory is, for the log */
static void
ReportMemory(void)
{
	MemoryContextStats(TopMemoryContext);
}

/*
 * fuzz_run(target text, args text[], log text): never returns; libFuzzer
 * exits the backend when it is done (0) or has found something (1).
 */
PG_FUNCTION_INFO_V1(fuzz_run);
Datum
fuzz_run(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	char	   *log = text_to_cstring(PG_GETARG_TEXT_PP(2));
	Datum	   *elems;
	int			nelems;
	int			argc;
	char	  **argv;
	int			fd;
	int			i;

	for (i = 0; i < lengthof(Targets); i++)
		if (strcmp(Targets[i].name, name) == 0)
			Target = &Targets[i];
	if (Target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown fuzz target \"%s\"", name)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	argv = palloc0(sizeof(char *) * (nelems + 2));
	argv[0] = "ductape-fuzz";
	for (i = 0; i < nelems; i++)
		argv[i + 1] = TextDatumGetCString(elems[i]);
	argc = nelems + 1;

	InputContext = AllocSetContextCreate(TopMemoryContext, "fuzz input",
										 ALLOCSET_DEFAULT_SIZES);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not open \"%s\": %m", log)));
	dup2(fd, 2);
	close(fd);
	atexit(ReportMemory);
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, OneInput));
}
