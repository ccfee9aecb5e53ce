/*-------------------------------------------------------------------------
 *
 * egress.c
 *	  The egress policy: which URLs and addresses outbound HTTP may reach.
 *	  http.c calls EgressCheckUrl before a request and EgressCheckAddress
 *	  from libcurl's open-socket callback for every connection; this file
 *	  holds only the policy, no libcurl calls.
 *
 * Settings (superuser only):
 *	  ductape.allowed_hosts            comma-separated entries; empty means
 *	                                   any public address.  An entry is an
 *	                                   exact host name (api.stripe.com; case
 *	                                   and a trailing dot ignored), a
 *	                                   wildcard (*.example.com: at least one
 *	                                   more label, never example.com itself),
 *	                                   an IPv4 or IPv6 address (brackets
 *	                                   optional) or a CIDR (10.0.0.0/8,
 *	                                   fd00::/8).
 *	  ductape.allow_private_networks   default off
 *	  ductape.https_only               default off
 *
 * Rules for one connection (EgressCheckAddress):
 *	  1. When allowed_hosts is non-empty, the address must match an address
 *		 or CIDR entry, or the URL host must match a name or wildcard entry.
 *	  2. A non-public address (EgressAddressClass != NULL) is refused unless
 *		 allow_private_networks is on, or the address matches an address or
 *		 CIDR entry, or the URL host matches an EXACT name entry.  Wildcards
 *		 never unlock non-public addresses (DNS rebinding: whoever runs a
 *		 zone can point any name in it anywhere).
 *	  An IPv6 address embedding an IPv4 one (IPv4-mapped, IPv4-compatible,
 *	  NAT64, 6to4) is classified by, and also matches IPv4 entries through,
 *	  the embedded address.
 *
 * Rules for a URL (EgressCheckUrl): scheme http or https (https only when
 * https_only is on); an IP-literal host is checked as an address right away;
 * a host name that matches no name entry is refused only when allowed_hosts
 * has no address or CIDR entry (otherwise its resolved addresses decide).
 *
 * Everything called from the open-socket callback is pure: no ereport, no
 * palloc, no locale.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "utils/guc.h"

#include "egress.h"

char	   *ductape_allowed_hosts = NULL;
bool		ductape_allow_private_networks = false;
bool		ductape_https_only = false;

#define EGRESS_NAME_MAXLEN	253		/* longest DNS name, no trailing dot */
#define EGRESS_LABEL_MAXLEN 63

/* An address in network byte order; IPv4 uses the first 4 bytes. */
typedef struct EgressAddr
{
	int			family;			/* AF_INET or AF_INET6 */
	uint8		a[16];
} EgressAddr;

typedef enum EgressEntryKind
{
	EGRESS_EXACT,				/* api.stripe.com */
	EGRESS_WILDCARD,			/* *.example.com, stored as ".example.com" */
	EGRESS_NET					/* address or CIDR */
} EgressEntryKind;

typedef struct EgressEntry
{
	EgressEntryKind kind;
	EgressAddr	net;			/* EGRESS_NET: network, host bits cleared */
	int			bits;			/* EGRESS_NET: prefix length */
	uint32		name_off;		/* names: offset into the name pool */
	uint32		name_len;		/* names: length, without the NUL */
} EgressEntry;

/*
 * The parsed ductape.allowed_hosts: one malloc'd block (the GUC machinery
 * frees it with free()), the entries followed by a pool of NUL-terminated
 * lower-case names.  Offsets, not pointers, so the block is self-contained.
 */
typedef struct EgressPolicy
{
	int			nentries;
	int			nnets;			/* EGRESS_NET entries */
	int			nnames;			/* EGRESS_EXACT and EGRESS_WILDCARD entries */
	uint32		pool_off;		/* offset of the name pool from the start */
	EgressEntry entries[FLEXIBLE_ARRAY_MEMBER];
} EgressPolicy;

#define EgressPolicyPool(p) ((const char *) (p) + (p)->pool_off)

/* Installed by the assign hook; NULL until the GUC is defined. */
static const EgressPolicy *egress_policy = NULL;

/* ---- small pure helpers ---- */

static inline char
egress_tolower(char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static bool
egress_caseeq(const char *a, const char *b, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (egress_tolower(a[i]) != egress_tolower(b[i]))
			return false;
	return true;
}

static inline bool
egress_isspace(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

static void
egress_reason(char *reason, size_t reasonlen, const char *fmt,...)
pg_attribute_printf(3, 4);

static void
egress_reason(char *reason, size_t reasonlen, const char *fmt,...)
{
	va_list		args;

	if (reason == NULL || reasonlen == 0)
		return;
	va_start(args, fmt);
	vsnprintf(reason, reasonlen, fmt, args);
	va_end(args);
}

/* Does a match net/bits?  Both in network byte order. */
static bool
egress_prefix_match(const uint8 *a, const uint8 *net, int bits)
{
	int			full = bits / 8;
	int			rest = bits % 8;

	if (memcmp(a, net, full) != 0)
		return false;
	if (rest != 0)
	{
		uint8		mask = (uint8) (0xFF << (8 - rest));

		if ((a[full] & mask) != (net[full] & mask))
			return false;
	}
	return true;
}

static void
egress_mask(uint8 *a, int len, int bits)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		if (bits >= 8)
			bits -= 8;
		else
		{
			a[i] &= (uint8) (0xFF << (8 - bits));
			bits = 0;
		}
	}
}

static bool
egress_from_sockaddr(const struct sockaddr *sa, EgressAddr *out)
{
	if (sa == NULL)
		return false;
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET)
	{
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof(sin));
		out->family = AF_INET;
		memcpy(out->a, &sin.sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		struct sockaddr_in6 sin6;

		memcpy(&sin6, sa, sizeof(sin6));
		out->family = AF_INET6;
		memcpy(out->a, &sin6.sin6_addr, 16);
		return true;
	}
	return false;
}

static void
egress_format(const EgressAddr *addr, char *buf, size_t buflen)
{
	if (inet_ntop(addr->family, addr->a, buf, buflen) == NULL)
		strlcpy(buf, "?", buflen);
}

/*
 * The IPv4 address an IPv6 address embeds, if any: IPv4-mapped
 * ::ffff:0:0/96, IPv4-compatible ::/96 (except :: and ::1), NAT64
 * 64:ff9b::/96 and 64:ff9b:1::/48 (last 32 bits), 6to4 2002::/16 (bits
 * 16..47).
 */
static bool
egress_embedded_v4(const uint8 *a6, uint8 *v4)
{
	static const uint8 zero[12] = {0};
	static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
	static const uint8 nat64[12] = {0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
	static const uint8 nat64_local[6] = {0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01};

	if (memcmp(a6, mapped, 12) == 0 ||
		memcmp(a6, nat64, 12) == 0 ||
		memcmp(a6, nat64_local, 6) == 0)
	{
		memcpy(v4, a6 + 12, 4);
		return true;
	}
	if (memcmp(a6, zero, 12) == 0)
	{
		/* :: and ::1 are IPv6's own unspecified and loopback */
		if (a6[12] == 0 && a6[13] == 0 && a6[14] == 0 && a6[15] <= 1)
			return false;
		memcpy(v4, a6 + 12, 4);
		return true;
	}
	if (a6[0] == 0x20 && a6[1] == 0x02)
	{
		memcpy(v4, a6 + 2, 4);
		return true;
	}
	return false;
}

typedef struct EgressRange
{
	uint8		net[16];
	int			bits;
	const char *name;
} EgressRange;

static const EgressRange egress_v4_ranges[] = {
	{{0, 0, 0, 0}, 8, "unspecified"},
	{{10, 0, 0, 0}, 8, "private (RFC 1918)"},
	{{100, 64, 0, 0}, 10, "carrier-grade NAT"},
	{{127, 0, 0, 0}, 8, "loopback"},
	{{169, 254, 0, 0}, 16, "link-local"},
	{{172, 16, 0, 0}, 12, "private (RFC 1918)"},
	{{192, 0, 0, 0}, 24, "reserved"},	/* IETF protocol assignments */
	{{192, 0, 2, 0}, 24, "documentation"},
	{{192, 88, 99, 0}, 24, "reserved"}, /* 6to4 relay anycast */
	{{192, 168, 0, 0}, 16, "private (RFC 1918)"},
	{{198, 18, 0, 0}, 15, "benchmarking"},
	{{198, 51, 100, 0}, 24, "documentation"},
	{{203, 0, 113, 0}, 24, "documentation"},
	{{224, 0, 0, 0}, 4, "multicast"},
	{{240, 0, 0, 0}, 4, "reserved"},	/* includes 255.255.255.255 */
};

/* Checked in order; the first match wins. */
static const EgressRange egress_v6_ranges[] = {
	{{0xFC, 0x00}, 7, "unique-local"},
	{{0xFE, 0x80}, 10, "link-local"},
	{{0xFE, 0xC0}, 10, "site-local"},
	{{0xFF, 0x00}, 8, "multicast"},
	{{0x20, 0x01, 0x0D, 0xB8}, 32, "documentation"},
	{{0x3F, 0xFF, 0x00}, 20, "documentation"},	/* RFC 9637 */
	{{0x01, 0x00, 0, 0, 0, 0, 0, 0}, 64, "discard"},
	{{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, "benchmarking"},
	{{0x20, 0x01, 0x00, 0x00}, 23, "reserved"}, /* IETF protocol
												 * assignments, Teredo */
};

static const char *
egress_class_v4(const uint8 *a)
{
	size_t		i;

	for (i = 0; i < lengthof(egress_v4_ranges); i++)
		if (egress_prefix_match(a, egress_v4_ranges[i].net,
								egress_v4_ranges[i].bits))
			return egress_v4_ranges[i].name;
	return NULL;
}

static const char *
egress_class_v6(const uint8 *a)
{
	static const uint8 zero[16] = {0};
	uint8		v4[4];
	size_t		i;

	if (memcmp(a, zero, 15) == 0 && a[15] == 0)
		return "unspecified";
	if (memcmp(a, zero, 15) == 0 && a[15] == 1)
		return "loopback";
	if (egress_embedded_v4(a, v4))
		return egress_class_v4(v4);
	for (i = 0; i < lengthof(egress_v6_ranges); i++)
		if (egress_prefix_match(a, egress_v6_ranges[i].net,
								egress_v6_ranges[i].bits))
			return egress_v6_ranges[i].name;
	/* Only 2000::/3 is allocated as global unicast. */
	if ((a[0] & 0xE0) != 0x20)
		return "reserved";
	return NULL;
}

static const char *
egress_class(const EgressAddr *addr)
{
	if (addr->family == AF_INET)
		return egress_class_v4(addr->a);
	if (addr->family == AF_INET6)
		return egress_class_v6(addr->a);
	return "unsupported address family";
}

const char *
EgressAddressClass(const struct sockaddr *addr)
{
	EgressAddr	a;

	if (!egress_from_sockaddr(addr, &a))
		return "unsupported address family";
	return egress_class(&a);
}

/* ---- matching against the parsed list ---- */

/* Does the address (or the IPv4 address it embeds) match a net entry? */
static bool
egress_match_net(const EgressPolicy *p, const EgressAddr *addr)
{
	uint8		v4[4];
	bool		has_v4 = false;
	int			i;

	if (addr->family == AF_INET6)
		has_v4 = egress_embedded_v4(addr->a, v4);

	for (i = 0; i < p->nentries; i++)
	{
		const EgressEntry *e = &p->entries[i];

		if (e->kind != EGRESS_NET)
			continue;
		if (e->net.family == addr->family &&
			egress_prefix_match(addr->a, e->net.a, e->bits))
			return true;
		if (has_v4 && e->net.family == AF_INET &&
			egress_prefix_match(v4, e->net.a, e->bits))
			return true;
	}
	return false;
}

/* Does the host name match an exact entry, a wildcard entry? */
static void
egress_match_name(const EgressPolicy *p, const char *pool, const char *host,
				  bool *exact, bool *wildcard)
{
	size_t		len;
	int			i;

	*exact = false;
	*wildcard = false;
	if (host == NULL)
		return;
	len = strlen(host);
	if (len > 0 && host[len - 1] == '.')
		len--;
	if (len == 0)
		return;

	for (i = 0; i < p->nentries; i++)
	{
		const EgressEntry *e = &p->entries[i];
		const char *name = pool + e->name_off;

		if (e->kind == EGRESS_EXACT)
		{
			if (len == e->name_len && egress_caseeq(host, name, len))
				*exact = true;
		}
		else if (e->kind == EGRESS_WILDCARD)
		{
			/* name is ".example.com": need a non-empty label before it */
			if (len > e->name_len &&
				host[len - e->name_len - 1] != '.' &&
				egress_caseeq(host + len - e->name_len, name, e->name_len))
				*wildcard = true;
		}
	}
}

/*
 * The installed list, or false when ductape.allowed_hosts is set but no
 * parsed list was installed (which should not happen; fail closed).
 */
static bool
egress_get_policy(const EgressPolicy **p, const char **pool)
{
	*p = egress_policy;
	*pool = NULL;
	if (*p != NULL)
	{
		*pool = EgressPolicyPool(*p);
		return true;
	}
	if (ductape_allowed_hosts != NULL)
	{
		const char *s;

		for (s = ductape_allowed_hosts; *s; s++)
			if (!egress_isspace(*s))
				return false;
	}
	return true;
}

static bool
egress_check(const char *host, const EgressAddr *addr,
			 char *reason, size_t reasonlen)
{
	const EgressPolicy *p;
	const char *pool;
	const char *cls;
	bool		listed = false;
	bool		exact = false;
	bool		wildcard = false;
	bool		have_list;
	char		text[INET6_ADDRSTRLEN];

	egress_format(addr, text, sizeof(text));
	if (!egress_get_policy(&p, &pool))
	{
		egress_reason(reason, reasonlen,
					  "ductape.allowed_hosts is set but was not loaded");
		return false;
	}
	have_list = (p != NULL && p->nentries > 0);
	if (have_list)
	{
		listed = egress_match_net(p, addr);
		egress_match_name(p, pool, host, &exact, &wildcard);
	}

	cls = egress_class(addr);
	if (cls != NULL && !ductape_allow_private_networks && !listed && !exact)
	{
		if (wildcard)
			egress_reason(reason, reasonlen,
						  "address %s is %s (private networks are not allowed, and a *.domain entry of ductape.allowed_hosts does not allow them)",
						  text, cls);
		else
			egress_reason(reason, reasonlen,
						  "address %s is %s (private networks are not allowed)",
						  text, cls);
		return false;
	}
	if (have_list && !listed && !exact && !wildcard)
	{
		egress_reason(reason, reasonlen,
					  "address %s is not in ductape.allowed_hosts", text);
		return false;
	}
	return true;
}

bool
EgressCheckAddress(const char *host, const struct sockaddr *addr,
				   char *reason, size_t reasonlen)
{
	EgressAddr	a;

	if (!egress_from_sockaddr(addr, &a))
	{
		egress_reason(reason, reasonlen, "address family %d is not allowed",
					  addr ? (int) addr->sa_family : -1);
		return false;
	}
	return egress_check(host, &a, reason, reasonlen);
}

/*
 * Parse an IP literal: optional [brackets] (IPv6 only), and when allow_zone
 * an optional %zone, which is dropped.
 */
static bool
egress_parse_literal(const char *s, size_t len, bool allow_zone,
					 EgressAddr *out)
{
	char		buf[INET6_ADDRSTRLEN + 1];
	bool		bracketed = false;
	const char *zone;

	if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
	{
		bracketed = true;
		s++;
		len -= 2;
	}
	zone = memchr(s, '%', len);
	if (zone != NULL)
	{
		if (!allow_zone)
			return false;
		len = zone - s;
	}
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';

	memset(out, 0, sizeof(*out));
	if (!bracketed && zone == NULL && inet_pton(AF_INET, buf, out->a) == 1)
	{
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, buf, out->a) == 1)
	{
		out->family = AF_INET6;
		return true;
	}
	return false;
}

const char *
EgressCheckUrl(const char *scheme, const char *host)
{
	const EgressPolicy *p;
	const char *pool;
	EgressAddr	addr;
	bool		exact;
	bool		wildcard;

	if (scheme == NULL ||
		(pg_strcasecmp(scheme, "http") != 0 &&
		 pg_strcasecmp(scheme, "https") != 0))
		return psprintf("scheme \"%s\" is not allowed: only http and https are allowed",
						scheme ? scheme : "");
	if (ductape_https_only && pg_strcasecmp(scheme, "http") == 0)
		return "scheme \"http\" is not allowed: ductape.https_only is on";
	if (host == NULL || host[0] == '\0')
		return "the URL has no host";

	/* An IP literal is its own (only) address: check it now. */
	if (egress_parse_literal(host, strlen(host), true, &addr))
	{
		char		reason[256];

		if (!egress_check(host, &addr, reason, sizeof(reason)))
			return pstrdup(reason);
		return NULL;
	}

	if (!egress_get_policy(&p, &pool))
		return "ductape.allowed_hosts is set but was not loaded";
	if (p == NULL || p->nentries == 0)
		return NULL;
	egress_match_name(p, pool, host, &exact, &wildcard);
	if (exact || wildcard)
		return NULL;
	/* The name might resolve into an allowed address or CIDR. */
	if (p->nnets > 0)
		return NULL;
	return psprintf("host \"%s\" is not in ductape.allowed_hosts", host);
}

/* ---- ductape.allowed_hosts parsing ---- */

/*
 * Validate a host name (no "*." and no trailing dot): letters, digits, '-'
 * and '.', non-empty labels of at most 63 characters, at most 253 in all,
 * and a last label that does not start with a digit (so nothing that a
 * resolver would read as a numeric address, like 2130706433 or 127.1).
 */
static bool
egress_valid_name(const char *s, size_t len, const char **why)
{
	size_t		label = 0;
	size_t		last_start = 0;
	size_t		i;

	if (len == 0)
	{
		*why = "is empty";
		return false;
	}
	if (len > EGRESS_NAME_MAXLEN)
	{
		*why = "is longer than 253 characters";
		return false;
	}
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '.')
		{
			if (label == 0)
			{
				*why = "has an empty label";
				return false;
			}
			label = 0;
			last_start = i + 1;
			continue;
		}
		if (c == '*')
		{
			*why = "has a wildcard that is not a leading \"*.\"";
			return false;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-'))
		{
			*why = "has a character other than letters, digits, '-' and '.'";
			return false;
		}
		if (++label > EGRESS_LABEL_MAXLEN)
		{
			*why = "has a label longer than 63 characters";
			return false;
		}
	}
	if (label == 0)
	{
		*why = "has an empty label";
		return false;
	}
	if (s[last_start] >= '0' && s[last_start] <= '9')
	{
		*why = "is neither a dotted-decimal IPv4 address nor a host name (a top-level domain never starts with a digit)";
		return false;
	}
	return true;
}

static bool
egress_parse_entry(const char *s, size_t len, EgressPolicy *p, char *pool,
				   size_t *pool_used)
{
	EgressEntry *e = &p->entries[p->nentries];
	const char *slash;

	memset(e, 0, sizeof(*e));

	if (len == 0)
	{
		GUC_check_errdetail("ductape.allowed_hosts has an empty entry.");
		return false;
	}

	slash = memchr(s, '/', len);
	if (slash != NULL || s[0] == '[' || memchr(s, ':', len) != NULL ||
		egress_parse_literal(s, len, false, &e->net))
	{
		size_t		alen = slash ? (size_t) (slash - s) : len;
		int			maxbits;
		int			bits;

		if (!egress_parse_literal(s, alen, false, &e->net))
		{
			GUC_check_errdetail("Entry \"%.*s\" of ductape.allowed_hosts is not a valid IP address or CIDR (entries are host names, *.domain patterns, IP addresses and CIDRs, with no scheme, port or path).",
								(int) len, s);
			return false;
		}
		maxbits = (e->net.family == AF_INET) ? 32 : 128;
		bits = maxbits;
		if (slash != NULL)
		{
			const char *d = slash + 1;
			size_t		dlen = len - alen - 1;
			size_t		i;

			if (dlen == 0 || dlen > 3)
				bits = -1;
			else
			{
				bits = 0;
				for (i = 0; i < dlen; i++)
				{
					if (d[i] < '0' || d[i] > '9')
					{
						bits = -1;
						break;
					}
					bits = bits * 10 + (d[i] - '0');
				}
			}
			if (bits < 0 || bits > maxbits)
			{
				GUC_check_errdetail("Entry \"%.*s\" of ductape.allowed_hosts has an invalid prefix length: it must be between 0 and %d.",
									(int) len, s, maxbits);
				return false;
			}
		}

		/* ::ffff:a.b.c.d/n (n >= 96) is the IPv4 network a.b.c.d/(n-96) */
		if (e->net.family == AF_INET6 && bits >= 96)
		{
			static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

			if (memcmp(e->net.a, mapped, 12) == 0)
			{
				uint8		v4[4];

				memcpy(v4, e->net.a + 12, 4);
				memset(e->net.a, 0, sizeof(e->net.a));
				memcpy(e->net.a, v4, 4);
				e->net.family = AF_INET;
				bits -= 96;
			}
		}

		/* Host bits are dropped: 10.1.2.3/8 means 10.0.0.0/8. */
		egress_mask(e->net.a, sizeof(e->net.a), bits);
		e->kind = EGRESS_NET;
		e->bits = bits;
		p->nnets++;
	}
	else
	{
		bool		wildcard = false;
		const char *why = NULL;
		const char *entry = s;
		size_t		entrylen = len;
		char	   *dst;
		size_t		i;

		if (len >= 2 && s[0] == '*' && s[1] == '.')
		{
			wildcard = true;
			s += 2;
			len -= 2;
		}
		if (len > 0 && s[len - 1] == '.')
			len--;
		if (wildcard && len == 0)
			why = "has no domain after \"*.\"";
		if (why != NULL || !egress_valid_name(s, len, &why))
		{
			GUC_check_errdetail("Entry \"%.*s\" of ductape.allowed_hosts %s.",
								(int) entrylen, entry, why);
			return false;
		}

		dst = pool + *pool_used;
		e->name_off = (uint32) *pool_used;
		if (wildcard)
			*dst++ = '.';
		for (i = 0; i < len; i++)
			*dst++ = egress_tolower(s[i]);
		*dst = '\0';
		e->name_len = (uint32) (len + (wildcard ? 1 : 0));
		*pool_used += e->name_len + 1;
		e->kind = wildcard ? EGRESS_WILDCARD : EGRESS_EXACT;
		p->nnames++;
	}
	p->nentries++;
	return true;
}

bool
egress_check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	const char *s = (*newval != NULL) ? *newval : "";
	size_t		slen = strlen(s);
	int			maxentries = 1;
	size_t		size;
	size_t		pool_used = 0;
	EgressPolicy *p;
	char	   *pool;
	const char *c;
	bool		blank = true;

	(void) source;
	for (c = s; *c; c++)
	{
		if (*c == ',')
			maxentries++;
		if (!egress_isspace(*c))
			blank = false;
	}

	/*
	 * Every name entry takes at most its own length plus a NUL in the pool
	 * ("*." becomes ".").
	 */
	size = offsetof(EgressPolicy, entries) +
		sizeof(EgressEntry) * maxentries + slen + maxentries + 1;
	p = malloc(size);
	if (p == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	memset(p, 0, size);
	p->pool_off = (uint32) (offsetof(EgressPolicy, entries) +
							sizeof(EgressEntry) * maxentries);
	pool = (char *) p + p->pool_off;

	if (!blank)
	{
		const char *start = s;

		for (;;)
		{
			const char *end = strchr(start, ',');
			const char *stop = end ? end : start + strlen(start);
			const char *a = start;
			const char *b = stop;

			while (a < b && egress_isspace(*a))
				a++;
			while (b > a && egress_isspace(b[-1]))
				b--;
			if (!egress_parse_entry(a, b - a, p, pool, &pool_used))
			{
				free(p);
				return false;
			}
			if (end == NULL)
				break;
			start = end + 1;
		}
	}

	Assert(pool_used <= slen + maxentries);
	*extra = p;
	return true;
}

void
egress_assign_allowed_hosts(const char *newval, void *extra)
{
	(void) newval;
	egress_policy = (const EgressPolicy *) extra;
}
