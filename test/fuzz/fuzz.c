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

#include <fcntl.h>
#include <unistd.h>

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
