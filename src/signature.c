/*-------------------------------------------------------------------------
 *
 * signature.c
 *	  Webhook signatures: verifying the schemes of docs/reference.md (stripe,
 *	  github, standard, hmac, none) on inbound events, and signing outbound
 *	  ones the Standard Webhooks way.
 *
 * Every scheme is an HMAC-SHA256 computed with OpenSSL over the bytes
 * received; the signature the sender put in a header is decoded to bytes
 * and compared with CRYPTO_memcmp (constant time).  Where a header carries
 * several signatures (Stripe's v1=..,v1=.., Standard Webhooks' space
 * separated list, e.g. during a secret rotation), one match is enough, and
 * versions other than v1 are skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/base64.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "fmgr.h"

#include "ductape.h"

#define MAC_LEN 32				/* SHA-256 */
#define DEFAULT_TOLERANCE_S 300

static bool
Mac(const char *key, int keylen, const char *const *parts, const size_t *lens,
	int nparts, unsigned char *out)
{
	EVP_MAC    *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM	params[2];
	size_t		outlen = 0;
	bool		ok = false;
	int			i;

	params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (ctx != NULL && EVP_MAC_init(ctx, (const unsigned char *) key, keylen, params) == 1)
	{
		ok = true;
		for (i = 0; i < nparts && ok; i++)
			ok = EVP_MAC_update(ctx, (const unsigned char *) parts[i], lens[i]) == 1;
		ok = ok && EVP_MAC_final(ctx, out, &outlen, MAC_LEN) == 1 && outlen == MAC_LEN;
	}
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	if (!ok)
		elog(ERROR, "could not compute an HMAC-SHA256");
	return ok;
}

/* Decode hex (either case) into out; false unless exactly MAC_LEN bytes. */
static bool
DecodeHex(const char *s, size_t len, unsigned char *out)
{
	size_t		i;

	if (len != MAC_LEN * 2)
		return false;
	for (i = 0; i < len; i++)
		if (!isxdigit((unsigned char) s[i]))
			return false;
	hex_decode(s, len, (char *) out);
	return true;
}

static bool
DecodeBase64(const char *s, size_t len, unsigned char *out)
{
	char		buf[64];
	char		again[64];

	if (len == 0 || len > 48 || pg_b64_dec_len(len) > (int) sizeof(buf))
		return false;
	if (pg_b64_decode(s, len, buf, sizeof(buf)) != MAC_LEN)
		return false;
	/* only the canonical encoding (unused bits zero), as string comparison would */
	if (pg_b64_encode(buf, MAC_LEN, again, sizeof(again)) != (int) len || memcmp(again, s, len) != 0)
		return false;
	memcpy(out, buf, MAC_LEN);
	return true;
}

static bool
Equal(const unsigned char *a, const unsigned char *b)
{
	return CRYPTO_memcmp(a, b, MAC_LEN) == 0;
}

static bool
ParseInt64(const char *s, size_t len, int64 *v)
{
	int64		r = 0;
	size_t		i;

	if (len == 0 || len > 15)
		return false;
	for (i = 0; i < len; i++)
	{
		if (!isdigit((unsigned char) s[i]))
			return false;
		r = r * 10 + (s[i] - '0');
	}
	*v = r;
	return true;
}

/* Stripe-Signature: t=1614265330,v1=<hex>[,v1=<hex>][,v0=...] over "t.body" */
static SignatureResult
VerifyStripe(const char *secret, const char *header, const char *body, size_t len,
			 int64 now_s, int tolerance)
{
	const char *p = header;
	int64		t = -1;
	const char *sigs[16];
	size_t		siglens[16];
	int			nsigs = 0;
	char		tbuf[32];
	unsigned char expected[MAC_LEN];
	const char *parts[3];
	size_t		lens[3];
	int			i;

	while (*p)
	{
		const char *end = strchr(p, ',');
		size_t		n = end ? (size_t) (end - p) : strlen(p);

		while (n > 0 && *p == ' ')
			p++, n--;
		if (n > 2 && strncmp(p, "t=", 2) == 0)
		{
			if (!ParseInt64(p + 2, n - 2, &t))
				return SIG_MALFORMED;
		}
		else if (n > 3 && strncmp(p, "v1=", 3) == 0 && nsigs < lengthof(sigs))
		{
			sigs[nsigs] = p + 3;
			siglens[nsigs++] = n - 3;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	if (t < 0 || nsigs == 0)
		return SIG_MALFORMED;
	if (now_s - t > tolerance)
		return SIG_STALE;
	snprintf(tbuf, sizeof(tbuf), INT64_FORMAT, t);
	parts[0] = tbuf;
	lens[0] = strlen(tbuf);
	parts[1] = ".";
	lens[1] = 1;
	parts[2] = body;
	lens[2] = len;
	Mac(secret, strlen(secret), parts, lens, 3, expected);
	for (i = 0; i < nsigs; i++)
	{
		unsigned char got[MAC_LEN];

		if (DecodeHex(sigs[i], siglens[i], got) && Equal(got, expected))
			return SIG_OK;
	}
	return SIG_MISMATCH;
}

/* Standard Webhooks: whsec_ secrets are base64; the key is the decoded bytes. */
static bool
StandardKey(const char *secret, char *key, int *keylen)
{
	const char *b64 = secret;
	int			n;

	if (strncmp(b64, "whsec_", 6) == 0)
		b64 += 6;
	n = strlen(b64);
	if (n == 0 || pg_b64_dec_len(n) > 256)
		return false;
	*keylen = pg_b64_decode(b64, n, key, 256);
	return *keylen > 0;
}

static void
StandardMac(const char *key, int keylen, const char *id, const char *ts,
			const char *body, size_t len, unsigned char *out)
{
	const char *parts[5] = {id, ".", ts, ".", body};
	size_t		lens[5] = {strlen(id), 1, strlen(ts), 1, len};

	Mac(key, keylen, parts, lens, 5, out);
}

static SignatureResult
VerifyStandard(const char *secret, const char *id, const char *ts, const char *header,
			   const char *body, size_t len, int64 now_s, int tolerance)
{
	char		key[256];
	int			keylen;
	int64		t;
	unsigned char expected[MAC_LEN];
	const char *p = header;

	if (!StandardKey(secret, key, &keylen))
		return SIG_MISSING;
	if (!ParseInt64(ts, strlen(ts), &t))
		return SIG_MALFORMED;
	if (now_s - t > tolerance || t - now_s > tolerance)
		return SIG_STALE;
	StandardMac(key, keylen, id, ts, body, len, expected);
	while (*p)
	{
		const char *end = strchr(p, ' ');
		size_t		n = end ? (size_t) (end - p) : strlen(p);

		if (n > 3 && strncmp(p, "v1,", 3) == 0)
		{
			unsigned char got[MAC_LEN];

			if (DecodeBase64(p + 3, n - 3, got) && Equal(got, expected))
				return SIG_OK;
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	return SIG_MISMATCH;
}

/* hmac (and github): a signature header over the body, hex or base64, with a prefix */
static SignatureResult
VerifyBodyMac(const char *secret, const char *value, const char *prefix, bool base64,
			  const char *body, size_t len)
{
	size_t		plen = strlen(prefix);
	unsigned char expected[MAC_LEN];
	unsigned char got[MAC_LEN];
	const char *parts[1] = {body};
	size_t		lens[1] = {len};

	if (strncmp(value, prefix, plen) != 0)
		return SIG_MALFORMED;
	value += plen;
	if (!(base64 ? DecodeBase64(value, strlen(value), got) : DecodeHex(value, strlen(value), got)))
		return SIG_MALFORMED;
	Mac(secret, strlen(secret), parts, lens, 1, expected);
	return Equal(got, expected) ? SIG_OK : SIG_MISMATCH;
}

/*
 * Verify an inbound request under a webhook's "verify" spec.  secret is the
 * resolved secret (NULL or empty: nothing can verify, except scheme none).
 */
SignatureResult
SignatureVerify(Jsonb *verify, const char *secret, HeaderLookup header, void *arg,
				const char *body, size_t len, int64 now_s)
{
	char	   *scheme = JsonbGetString(verify, "scheme");
	int			tolerance = JsonbGetInt(verify, "tolerance_s", DEFAULT_TOLERANCE_S);

	if (scheme != NULL && strcmp(scheme, "none") == 0)
		return SIG_OK;
	if (scheme == NULL || secret == NULL || secret[0] == '\0')
		return SIG_MISSING;
	if (strcmp(scheme, "stripe") == 0)
	{
		const char *h = header(arg, "Stripe-Signature");

		return h ? VerifyStripe(secret, h, body, len, now_s, tolerance) : SIG_MISSING;
	}
	if (strcmp(scheme, "github") == 0)
	{
		const char *h = header(arg, "X-Hub-Signature-256");

		return h ? VerifyBodyMac(secret, h, "sha256=", false, body, len) : SIG_MISSING;
	}
	if (strcmp(scheme, "standard") == 0)
	{
		const char *id = header(arg, "webhook-id");
		const char *ts = header(arg, "webhook-timestamp");
		const char *sig = header(arg, "webhook-signature");

		if (id == NULL || ts == NULL || sig == NULL)
			return SIG_MISSING;
		return VerifyStandard(secret, id, ts, sig, body, len, now_s, tolerance);
	}
	if (strcmp(scheme, "hmac") == 0)
	{
		char	   *name = JsonbGetString(verify, "header");
		char	   *prefix = JsonbGetString(verify, "prefix");
		char	   *encoding = JsonbGetString(verify, "encoding");
		const char *h = name ? header(arg, name) : NULL;

		if (h == NULL)
			return SIG_MISSING;
		return VerifyBodyMac(secret, h, prefix ? prefix : "",
							 encoding != NULL && strcmp(encoding, "base64") == 0, body, len);
	}
	return SIG_MISSING;
}

const char *
SignatureResultText(SignatureResult r)
{
	switch (r)
	{
		case SIG_OK:
			return "verified";
		case SIG_MISSING:
			return "signature or secret missing";
		case SIG_MALFORMED:
			return "signature header malformed";
		case SIG_STALE:
			return "timestamp outside the tolerance";
		case SIG_MISMATCH:
			return "signature mismatch";
	}
	return "unknown";
}

/* The key length of a Standard Webhooks secret; -1 if not whsec_ + base64. */
int
SignatureStandardKeyLength(const char *secret)
{
	char		key[256];
	int			n;

	if (!StandardKey(secret, key, &n))
		return -1;
	explicit_bzero(key, sizeof(key));
	return n;
}

/* "v1,<base64>" for an outbound Standard Webhooks delivery (docs/reference.md). */
char *
SignatureStandard(const char *secret, const char *msg_id, int64 timestamp,
				  const char *body, size_t len)
{
	char		key[256];
	int			keylen;
	char		ts[32];
	unsigned char mac[MAC_LEN];
	char		b64[64];
	int			n;

	if (!StandardKey(secret, key, &keylen))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid signing secret"),
				 errdetail("A Standard Webhooks secret is whsec_ followed by base64.")));
	snprintf(ts, sizeof(ts), INT64_FORMAT, timestamp);
	StandardMac(key, keylen, msg_id, ts, body, len, mac);
	n = pg_b64_encode((char *) mac, MAC_LEN, b64, sizeof(b64));
	return psprintf("v1,%.*s", n, b64);
}

/* ---- SQL: sign as a delivery would, check as the listener would ---- */

PG_FUNCTION_INFO_V1(dt_signature_standard);

/* _signature_standard(secret, msg_id, timestamp, body): known-answer tests */
Datum
dt_signature_standard(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(3);

	PG_RETURN_TEXT_P(cstring_to_text(SignatureStandard(text_to_cstring(PG_GETARG_TEXT_PP(0)),
													   text_to_cstring(PG_GETARG_TEXT_PP(1)),
													   PG_GETARG_INT64(2),
													   VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body))));
}


PG_FUNCTION_INFO_V1(dt_signature_check);

static const char *
JsonbHeader(void *arg, const char *name)
{
	Jsonb	   *headers = arg;
	JsonbIterator *it = JsonbIteratorInit(&headers->root);
	JsonbValue	v;
	JsonbIteratorToken t;
	bool		match = false;

	while ((t = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (t == WJB_KEY)
			match = v.val.string.len == (int) strlen(name) &&
				pg_strncasecmp(v.val.string.val, name, v.val.string.len) == 0;
		else if (t == WJB_VALUE && match && v.type == jbvString)
			return pnstrdup(v.val.string.val, v.val.string.len);
	}
	return NULL;
}

/*
 * _signature_check(verify jsonb, secret text, headers jsonb, body text,
 *					at timestamptz) -> 'verified' or why not
 */
Datum
dt_signature_check(PG_FUNCTION_ARGS)
{
	Jsonb	   *verify;
	char	   *secret = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *headers;
	text	   *body;
	TimestampTz at;

	/* (no secret is a verdict of its own; the rest must be given) */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		PG_RETURN_NULL();
	verify = PG_GETARG_JSONB_P(0);
	headers = PG_GETARG_JSONB_P(2);
	body = PG_GETARG_TEXT_PP(3);
	at = PG_GETARG_TIMESTAMPTZ(4);

	PG_RETURN_TEXT_P(cstring_to_text(
		SignatureResultText(SignatureVerify(verify, secret, JsonbHeader, headers,
											VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body),
											(int64) timestamptz_to_time_t(at)))));
}
