/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Secrets encrypted at rest (docs/reference.md): the master keyring,
 *	  AES-256-GCM, and the SQL functions that set, read and rotate them.
 *
 * Keyring.  ductape.master_key_file names a file of keys, one per line,
 * "N:KEY" where N is the key version and KEY is 32 bytes as 64 hex digits
 * or base64; a line with a bare KEY is version 1.  Blank lines and lines
 * starting with "#" are ignored.  The highest version encrypts new values;
 * every version stays usable for decryption, so rotate_master_key() can
 * append a new version and re-encrypt rows under it transactionally (an
 * aborted rotation leaves an unused key line, never an unreadable row).
 * When the setting is empty the postmaster creates
 * $PGDATA/ductape_master.key (mode 0600) once, with a WARNING that
 * production keys belong outside the data directory.
 *
 * Encryption.  AES-256-GCM through OpenSSL EVP, a fresh random 96-bit nonce
 * for every write, and associated data binding the ciphertext to what it
 * is (the secret's name), so a ciphertext copied onto another row does not
 * decrypt.  A stored value is nonce (12) || ciphertext || tag (16), with
 * the key version in its own column.
 *
 * The plaintext is encrypted here, in C, before any SQL sees a row: it
 * never reaches a table, WAL or a dead tuple.  Decrypted values live in
 * palloc'd memory of the current call only.  The functions that take a
 * secret as an argument run under RunHidingStatement, so that no error
 * they raise logs the statement that carries it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ductape.h"

PG_FUNCTION_INFO_V1(dt_secret_set);
PG_FUNCTION_INFO_V1(dt_secret_get);
PG_FUNCTION_INFO_V1(dt_rotate_master_key);

#define DT_KEY_LEN 32
#define DT_NONCE_LEN 12
#define DT_TAG_LEN 16
#define DT_MAX_KEYS 64
#define DT_DEFAULT_KEY_FILE "ductape_master.key"

char	   *ductape_master_key_file = NULL;

typedef struct DtKey
{
	int			version;
	unsigned char key[DT_KEY_LEN];
} DtKey;

/* The keyring, loaded on first use in each process. */
static DtKey *Keyring = NULL;
static int	KeyringCount = 0;

static const char *
KeyFilePath(void)
{
	if (ductape_master_key_file && ductape_master_key_file[0])
		return ductape_master_key_file;
	return psprintf("%s/%s", DataDir, DT_DEFAULT_KEY_FILE);
}

static void
KeyError(const char *path, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DT_SECRET),
			 errmsg("ductape master key file \"%s\" cannot be used", path),
			 errdetail("%s", detail),
			 errhint("Check ductape.master_key_file: a file of 32-byte keys, one per line, as 64 hex digits or base64.")));
}

/*
 * Whether the master key file can be read now, for ductape.health() and
 * /metrics: NULL if it can, else why, without the path (the setting is for
 * superusers only) and without reading a key.
 */
char *
SecretsKeyFileProblem(void)
{
	const char *path = KeyFilePath();
	struct stat st;
	int			fd;

	if (stat(path, &st) != 0)
		return psprintf("The file cannot be read: %s.", strerror(errno));
	if (st.st_mode & S_IRWXO)
		return pstrdup("The file is accessible to other users; it must be mode 0600 or 0640.");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return psprintf("The file cannot be read: %s.", strerror(errno));
	close(fd);
	if (st.st_size == 0)
		return pstrdup("The file is empty.");
	return NULL;
}

/* Decode one key (hex or base64) into out; false if it is not 32 bytes. */
static bool
DecodeKey(const char *text, unsigned char *out)
{
	size_t		len = strlen(text);
	size_t		i;

	if (len == DT_KEY_LEN * 2)
	{
		for (i = 0; i < len; i++)
			if (!isxdigit((unsigned char) text[i]))
				break;
		if (i == len)
		{
			for (i = 0; i < DT_KEY_LEN; i++)
			{
				char		byte[3] = {text[2 * i], text[2 * i + 1], '\0'};

				out[i] = (unsigned char) strtoul(byte, NULL, 16);
			}
			return true;
		}
	}
	{
		char		buf[DT_KEY_LEN * 2];
		int			n = pg_b64_decode(text, len, buf, sizeof(buf));

		if (n == DT_KEY_LEN)
		{
			memcpy(out, buf, DT_KEY_LEN);
			explicit_bzero(buf, sizeof(buf));
			return true;
		}
		explicit_bzero(buf, sizeof(buf));
	}
	return false;
}

/* (Re)load the keyring from the key file. */
static void
LoadKeyring(void)
{
	const char *path = KeyFilePath();
	struct stat st;
	FILE	   *f;
	char		line[512];
	DtKey	   *keys;
	int			n = 0;
	int			lineno = 0;

	if (stat(path, &st) != 0)
		KeyError(path, psprintf("The file cannot be read: %s.", strerror(errno)));
	if (st.st_mode & S_IRWXO)
		KeyError(path, "The file is accessible to other users; it must be mode 0600 or 0640.");
	f = AllocateFile(path, "r");
	if (f == NULL)
		KeyError(path, psprintf("The file cannot be read: %s.", strerror(errno)));

	keys = MemoryContextAllocZero(TopMemoryContext, sizeof(DtKey) * DT_MAX_KEYS);
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *p = line;
		char	   *colon;
		int			version = 1;
		size_t		len;

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		len = strlen(p);
		while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' ||
						   p[len - 1] == ' ' || p[len - 1] == '\t'))
			p[--len] = '\0';
		if (len == 0 || p[0] == '#')
			continue;
		colon = strchr(p, ':');
		if (colon)
		{
			char	   *end;

			*colon = '\0';
			version = (int) strtol(p, &end, 10);
			if (*end != '\0' || version < 1 || version > 1000000)
			{
				FreeFile(f);
				explicit_bzero(line, sizeof(line));
				KeyError(path, psprintf("Line %d has an invalid key version.", lineno));
			}
			p = colon + 1;
		}
		if (n >= DT_MAX_KEYS || !DecodeKey(p, keys[n].key))
		{
			FreeFile(f);
			explicit_bzero(line, sizeof(line));
			KeyError(path, n >= DT_MAX_KEYS ?
					 psprintf("The file holds more than %d keys.", DT_MAX_KEYS) :
					 psprintf("Line %d is not a 32-byte key in hex or base64.", lineno));
		}
		keys[n++].version = version;
	}
	explicit_bzero(line, sizeof(line));
	FreeFile(f);
	if (n == 0)
		KeyError(path, "The file holds no key.");

	if (Keyring)
	{
		explicit_bzero(Keyring, sizeof(DtKey) * DT_MAX_KEYS);
		pfree(Keyring);
	}
	Keyring = keys;
	KeyringCount = n;
}

static DtKey *
CurrentKey(void)
{
	int			i;
	DtKey	   *best = NULL;

	if (Keyring == NULL)
		LoadKeyring();
	for (i = 0; i < KeyringCount; i++)
		if (best == NULL || Keyring[i].version > best->version)
			best = &Keyring[i];
	return best;
}

static DtKey *
KeyByVersion(int version)
{
	int			attempt,
				i;

	for (attempt = 0; attempt < 2; attempt++)
	{
		if (Keyring == NULL || attempt == 1)
			LoadKeyring();		/* another backend may have rotated */
		for (i = 0; i < KeyringCount; i++)
			if (Keyring[i].version == version)
				return &Keyring[i];
	}
	ereport(ERROR,
			(errcode(ERRCODE_DT_SECRET),
			 errmsg("master key version %d is not in the key file", version),
			 errhint("Restore the key file that encrypted these values.")));
	return NULL;
}

/*
 * Called in the postmaster at start-up: with no key file configured, make
 * sure $PGDATA/ductape_master.key exists.
 */
void
SecretsEnsureDefaultKey(void)
{
	char	   *path;
	int			fd;
	unsigned char key[DT_KEY_LEN];
	char		hex[DT_KEY_LEN * 2 + 2];
	int			i;

	if (ductape_master_key_file && ductape_master_key_file[0])
		return;
	path = psprintf("%s/%s", DataDir, DT_DEFAULT_KEY_FILE);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		if (errno != EEXIST)
			ereport(WARNING,
					(errmsg("ductape could not create its master key file \"%s\": %m", path)));
		return;
	}
	if (RAND_bytes(key, sizeof(key)) != 1)
		elog(FATAL, "could not generate a random master key");
	for (i = 0; i < DT_KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	hex[DT_KEY_LEN * 2] = '\n';
	if (write(fd, hex, DT_KEY_LEN * 2 + 1) != DT_KEY_LEN * 2 + 1 || pg_fsync(fd) != 0)
		elog(FATAL, "could not write the master key file \"%s\": %m", path);
	close(fd);
	explicit_bzero(key, sizeof(key));
	explicit_bzero(hex, sizeof(hex));
	ereport(WARNING,
			(errmsg("ductape created a master key in \"%s\"", path),
			 errdetail("Secrets are encrypted with this key; anyone with a copy of the data directory (a backup, for instance) can decrypt them."),
			 errhint("For production, keep the key outside the data directory and set ductape.master_key_file.")));
}

/* ---- AES-256-GCM ---- */

static void
CryptoFail(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DT_SECRET),
			 errmsg("could not %s a secret", what),
			 errdetail("OpenSSL's AES-256-GCM failed.")));
}

/* Encrypt plain (len bytes) bound to aad; returns nonce||ciphertext||tag. */
bytea *
SecretEncrypt(const char *plain, int len, const char *aad, int *version)
{
	DtKey	   *key = CurrentKey();
	EVP_CIPHER_CTX *ctx;
	bytea	   *out = palloc(VARHDRSZ + DT_NONCE_LEN + len + DT_TAG_LEN);
	unsigned char *nonce = (unsigned char *) VARDATA(out);
	unsigned char *ct = nonce + DT_NONCE_LEN;
	int			n = 0,
				total = 0;
	bool		ok;

	if (RAND_bytes(nonce, DT_NONCE_LEN) != 1)
		CryptoFail("encrypt");
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		CryptoFail("encrypt");
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, DT_NONCE_LEN, NULL) == 1 &&
		EVP_EncryptInit_ex(ctx, NULL, NULL, key->key, nonce) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *) aad, strlen(aad)) == 1 &&
		EVP_EncryptUpdate(ctx, ct, &n, (const unsigned char *) plain, len) == 1;
	total = n;
	ok = ok && EVP_EncryptFinal_ex(ctx, ct + total, &n) == 1;
	total += n;
	ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, DT_TAG_LEN, ct + total) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		CryptoFail("encrypt");
	SET_VARSIZE(out, VARHDRSZ + DT_NONCE_LEN + total + DT_TAG_LEN);
	*version = key->version;
	return out;
}

/* Decrypt a value written by SecretEncrypt; what names it in errors. */
char *
SecretDecrypt(bytea *blob, int version, const char *aad, const char *what)
{
	DtKey	   *key = KeyByVersion(version);
	const unsigned char *data = (const unsigned char *) VARDATA_ANY(blob);
	int			blen = VARSIZE_ANY_EXHDR(blob);
	int			clen = blen - DT_NONCE_LEN - DT_TAG_LEN;
	EVP_CIPHER_CTX *ctx;
	char	   *plain;
	int			n = 0,
				total;
	bool		ok;

	if (clen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DT_SECRET),
				 errmsg("%s cannot be decrypted", what),
				 errdetail("The stored value is truncated.")));
	plain = palloc(clen + 1);
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		CryptoFail("decrypt");
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, DT_NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, key->key, data) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *) aad, strlen(aad)) == 1 &&
		EVP_DecryptUpdate(ctx, (unsigned char *) plain, &n, data + DT_NONCE_LEN, clen) == 1;
	total = n;
	ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, DT_TAG_LEN,
								   (void *) (data + DT_NONCE_LEN + clen)) == 1;
	ok = ok && EVP_DecryptFinal_ex(ctx, (unsigned char *) plain + total, &n) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
	{
		explicit_bzero(plain, clen + 1);
		ereport(ERROR,
				(errcode(ERRCODE_DT_SECRET),
				 errmsg("%s cannot be decrypted", what),
				 errdetail("Authentication of the ciphertext failed: wrong key, or the stored value was altered or copied from another row.")));
	}
	plain[total] = '\0';
	return plain;
}

/* ---- statements that carry a secret ---- */

/*
 * Call fn(fcinfo), a SQL function whose arguments carry a secret, so that
 * the server log never shows the statement that called it.
 *
 * PostgreSQL logs the statement of an error or FATAL
 * (log_min_error_statement, default error), and the error's CONTEXT can
 * quote it too (a PL/pgSQL PERFORM of the call with a literal).  While fn
 * runs, debug_query_string is NULL, so nothing logged meanwhile prints the
 * statement (a FATAL when the session is terminated, a WARNING under a
 * lower log_min_error_statement); an error fn raises is re-thrown with
 * errhidestmt and errhidecontext set, so the client still gets all of it
 * (SQLSTATE, message, detail, hint, context) and the log gets the error
 * without its STATEMENT and CONTEXT lines.  Validate the arguments inside
 * fn, so that even a bad one is reported this way.
 *
 * log_statement and log_min_duration_statement log a statement before or
 * after any function runs: no function can hide it from them.
 */
Datum
RunHidingStatement(PGFunction fn, FunctionCallInfo fcinfo)
{
	const char *saved_query = debug_query_string;
	MemoryContext cxt = CurrentMemoryContext;
	Datum		result;

	debug_query_string = NULL;
	PG_TRY();
	{
		result = fn(fcinfo);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		debug_query_string = saved_query;
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;
		edata->hide_ctx = true;
		ReThrowError(edata);
	}
	PG_END_TRY();
	debug_query_string = saved_query;
	return result;
}

/* ---- secrets ---- */

static const char *secret_aad_prefix = "ductape:secret:";

static bool
IsValidSecretName(const char *name)
{
	int			i;

	if (name[0] == '\0' || !(isalpha((unsigned char) name[0]) || name[0] == '_'))
		return false;
	for (i = 0; name[i]; i++)
		if (!(isalnum((unsigned char) name[i]) || name[i] == '_' ||
			  name[i] == '-' || name[i] == '.'))
			return false;
	return i <= 128;
}

static void
CheckTagArray(ArrayType *arr, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	if (arr == NULL)
		return;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *t = nulls[i] ? NULL : TextDatumGetCString(elems[i]);

		if (t == NULL || !DtIsValidTag(t))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s entry \"%s\"", what, t ? t : "NULL"),
					 errdetail("Entries are tags: 1 to 63 of a-z 0-9 _ . -, starting with a letter or digit.")));
	}
}

/*
 * secret_set(name, value, description, apps, envs, expires_at): every
 * argument is checked, then the value is encrypted before the row is
 * written.
 */
static Datum
SecretSet(PG_FUNCTION_ARGS)
{
	char	   *name;
	text	   *value;
	bytea	   *blob;
	int			version;
	Oid			argtypes[7] = {TEXTOID, BYTEAOID, INT4OID, TEXTOID, TEXTARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		args[7];
	char		nulls[7] = "       ";

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a secret needs a name and a value")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!IsValidSecretName(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid secret name \"%s\"", name),
				 errdetail("A secret name is 1 to 128 letters, digits, \"_\", \"-\" and \".\", starting with a letter or \"_\".")));
	if (!PG_ARGISNULL(3))
		CheckTagArray(PG_GETARG_ARRAYTYPE_P(3), "apps");
	if (!PG_ARGISNULL(4))
		CheckTagArray(PG_GETARG_ARRAYTYPE_P(4), "envs");
	if (!PG_ARGISNULL(5) && PG_GETARG_TIMESTAMPTZ(5) <= GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_at %s is in the past", timestamptz_to_str(PG_GETARG_TIMESTAMPTZ(5))),
				 errdetail("A secret that has expired cannot be used."),
				 errhint("Pass a time in the future, or NULL for a secret that does not expire.")));

	value = PG_GETARG_TEXT_PP(1);
	blob = SecretEncrypt(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
						 psprintf("%s%s", secret_aad_prefix, name), &version);

	args[0] = CStringGetTextDatum(name);
	args[1] = PointerGetDatum(blob);
	args[2] = Int32GetDatum(version);
	args[3] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	args[4] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	args[5] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	args[6] = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
	nulls[3] = PG_ARGISNULL(2) ? 'n' : ' ';
	nulls[4] = PG_ARGISNULL(3) ? 'n' : ' ';
	nulls[5] = PG_ARGISNULL(4) ? 'n' : ' ';
	nulls[6] = PG_ARGISNULL(5) ? 'n' : ' ';

	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO ductape._secrets AS s "
							  "(name, value, key_version, description, apps, envs, expires_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7) "
							  "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
							  "key_version = EXCLUDED.key_version, description = EXCLUDED.description, "
							  "apps = EXCLUDED.apps, envs = EXCLUDED.envs, "
							  "expires_at = EXCLUDED.expires_at, updated_at = pg_catalog.now()",
							  7, argtypes, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store secret \"%s\"", name);
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
dt_secret_set(PG_FUNCTION_ARGS)
{
	return RunHidingStatement(SecretSet, fcinfo);
}

typedef struct SecretRow
{
	bytea	   *value;
	int			version;
	ArrayType  *apps;
	ArrayType  *envs;
	TimestampTz expires_at;
	bool		expires;
} SecretRow;

static bool
FetchSecret(const char *name, SecretRow *row)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	bool		isnull;
	bool		found;
	DtElevated	elevated;

	/* callers may be usage roles: read as the catalog's owner */
	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args("SELECT value, key_version, apps, envs, expires_at "
							  "FROM ductape._secrets WHERE name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read secret \"%s\"", name);
	found = SPI_processed == 1;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		d;

		row->value = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 1, &isnull));
		row->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		row->apps = isnull ? NULL : DatumGetArrayTypePCopy(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		row->envs = isnull ? NULL : DatumGetArrayTypePCopy(d);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		row->expires = !isnull;
		row->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	}
	SPI_finish();
	ElevateEnd(&elevated);
	return found;
}

static bool
ArrayHas(ArrayType *arr, const char *value)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i] && strcmp(TextDatumGetCString(elems[i]), value) == 0)
			return true;
	return false;
}

static void
SecretUnavailable(const char *name, const char *reason, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_DT_SECRET),
			 errmsg("secret \"%s\" cannot be used: %s", name, reason),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * The plaintext of secret name for a call of app in env.  Raises DT003
 * (naming the secret and the reason, never the value) when it is missing,
 * out of scope, for another env, or expired.
 */
char *
SecretResolve(const char *name, const char *app, const char *env)
{
	SecretRow	row;

	if (!FetchSecret(name, &row))
		SecretUnavailable(name, "it does not exist",
						  "Create it with ductape.secret_set.");
	if (row.apps && app && !ArrayHas(row.apps, app))
		SecretUnavailable(name, psprintf("it is not available to app \"%s\"", app),
						  "Add the app to the secret's apps with ductape.secret_set.");
	if (row.envs && env && !ArrayHas(row.envs, env))
		SecretUnavailable(name, psprintf("it is not available in env \"%s\"", env),
						  "Add the env to the secret's envs with ductape.secret_set.");
	if (row.expires && row.expires_at <= GetCurrentTimestamp())
		SecretUnavailable(name, psprintf("it expired at %s", timestamptz_to_str(row.expires_at)),
						  "Set a new value with ductape.secret_set.");
	return SecretDecrypt(row.value, row.version,
						 psprintf("%s%s", secret_aad_prefix, name),
						 psprintf("secret \"%s\"", name));
}

/* secret_get(name): the plaintext, for administrators. */
Datum
dt_secret_get(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SecretRow	row;

	if (!FetchSecret(name, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("secret \"%s\" does not exist", name)));
	PG_RETURN_TEXT_P(cstring_to_text(SecretDecrypt(row.value, row.version,
												   psprintf("%s%s", secret_aad_prefix, name),
												   psprintf("secret \"%s\"", name))));
}

/*
 * The other sealed values (OAuth2 tokens, endpoint signing secrets) belong
 * to subsystems above this one; each registers how to re-encrypt its own
 * at load time (ductape.c), and rotate_master_key runs them all.
 */
#define DT_MAX_SEALED 8
static SecretsReencrypt Sealed[DT_MAX_SEALED];
static int	NSealed = 0;

void
SecretsRegisterSealed(SecretsReencrypt reencrypt)
{
	if (NSealed >= DT_MAX_SEALED)
		elog(ERROR, "too many kinds of sealed values");
	Sealed[NSealed++] = reencrypt;
}

/*
 * rotate_master_key(): append a new key version to the key file, then
 * re-encrypt every stored secret, and every other registered kind of sealed
 * value, under it.  Returns how many values were re-encrypted.
 */
Datum
dt_rotate_master_key(PG_FUNCTION_ARGS)
{
	const char *path = KeyFilePath();
	unsigned char key[DT_KEY_LEN];
	char		line[16 + DT_KEY_LEN * 2 + 2];
	int			version = CurrentKey()->version + 1;
	int			fd,
				i,
				len,
				count = 0;
	uint64		r;

	if (RAND_bytes(key, sizeof(key)) != 1)
		CryptoFail("generate a key for");
	len = snprintf(line, sizeof(line), "%d:", version);
	for (i = 0; i < DT_KEY_LEN; i++)
		len += snprintf(line + len, sizeof(line) - len, "%02x", key[i]);
	line[len++] = '\n';
	explicit_bzero(key, sizeof(key));

	fd = OpenTransientFile(path, O_WRONLY | O_APPEND | PG_BINARY);
	if (fd < 0)
		KeyError(path, psprintf("The file cannot be opened for writing: %s.", strerror(errno)));
	if (write(fd, line, len) != len || pg_fsync(fd) != 0)
	{
		CloseTransientFile(fd);
		KeyError(path, psprintf("The new key could not be written: %s.", strerror(errno)));
	}
	CloseTransientFile(fd);
	explicit_bzero(line, sizeof(line));
	LoadKeyring();

	SPI_connect();
	if (SPI_execute("SELECT name, value, key_version FROM ductape._secrets FOR UPDATE",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read secrets");
	{
		SPITupleTable *tt = SPI_tuptable;
		uint64		n = SPI_processed;

		for (r = 0; r < n; r++)
		{
			bool		isnull;
			char	   *name = SPI_getvalue(tt->vals[r], tt->tupdesc, 1);
			bytea	   *blob = DatumGetByteaPP(SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &isnull));
			int			v = DatumGetInt32(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
			char	   *aad = psprintf("%s%s", secret_aad_prefix, name);
			char	   *plain = SecretDecrypt(blob, v, aad, psprintf("secret \"%s\"", name));
			int			newv;
			bytea	   *nb = SecretEncrypt(plain, strlen(plain), aad, &newv);
			Oid			argtypes[3] = {TEXTOID, BYTEAOID, INT4OID};
			Datum		args[3] = {CStringGetTextDatum(name), PointerGetDatum(nb), Int32GetDatum(newv)};

			explicit_bzero(plain, strlen(plain));
			if (SPI_execute_with_args("UPDATE ductape._secrets SET value = $2, key_version = $3 "
									  "WHERE name OPERATOR(pg_catalog.=) $1",
									  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not re-encrypt secret \"%s\"", name);
			count++;
		}
	}
	for (i = 0; i < NSealed; i++)
		count += Sealed[i] ();
	SPI_finish();
	PG_RETURN_INT32(count);
}
