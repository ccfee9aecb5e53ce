/*-------------------------------------------------------------------------
 *
 * egress.h
 *	  The egress policy: which URLs, hosts and addresses outbound HTTP may
 *	  reach (ductape.allowed_hosts, ductape.allow_private_networks,
 *	  ductape.https_only).  See egress.c for the rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_EGRESS_H
#define DUCTAPE_EGRESS_H

#include "postgres.h"

#include <sys/socket.h>

#include "utils/guc.h"

/* Settings; defined in egress.c, registered as GUCs in ductape.c. */
extern char *ductape_allowed_hosts;
extern bool ductape_allow_private_networks;
extern bool ductape_https_only;

/*
 * GUC hooks for ductape.allowed_hosts.  The check hook parses the list into
 * one malloc'd block in *extra (guc_malloc is not exported to extensions in
 * PostgreSQL 15; the GUC machinery frees *extra with free()), and returns
 * false with GUC_check_errdetail naming the entry when an entry is bad.  The
 * assign hook installs the parsed list.
 */
extern bool egress_check_allowed_hosts(char **newval, void **extra,
									   GucSource source);
extern void egress_assign_allowed_hosts(const char *newval, void *extra);

/*
 * Check before any connection.  scheme is "http" or "https" (lower case, as
 * libcurl's URL API returns it); host is the host as in the URL (possibly a
 * bracketed IPv6 literal, or a numeric form libcurl already normalised).
 * Returns NULL when allowed, else a static or palloc'd English reason such
 * as "scheme \"ftp\" is not allowed: only http and https are allowed",
 * "scheme \"http\" is not allowed: ductape.https_only is on" or
 * "host \"evil.com\" is not in ductape.allowed_hosts".  A host that is an IP
 * literal is also checked as an address (EgressCheckAddress); a host name
 * that matches no name entry passes here when allowed_hosts has address or
 * CIDR entries, because only its resolved addresses can tell.
 */
extern const char *EgressCheckUrl(const char *scheme, const char *host);

/*
 * Check of one resolved address, called from libcurl's open-socket callback
 * for every connection.  host is the URL host of the request being made (for
 * name matching; may be NULL).  Never ereports and never pallocs.  Returns
 * true when allowed; false when refused, with the reason written into
 * reason[reasonlen] (truncated if needed; reason may be NULL), e.g.
 * "address 127.0.0.1 is loopback (private networks are not allowed)" or
 * "address 93.184.216.34 is not in ductape.allowed_hosts".
 */
extern bool EgressCheckAddress(const char *host, const struct sockaddr *addr,
							   char *reason, size_t reasonlen);

/*
 * Classify an address: NULL for a public address, else a short class name:
 * "unspecified", "loopback", "private (RFC 1918)", "carrier-grade NAT",
 * "link-local", "documentation", "benchmarking", "multicast", "reserved",
 * "unique-local", "site-local", "discard", or "unsupported address family".
 * Handles AF_INET and AF_INET6; for IPv6 it first unwraps IPv4-mapped
 * ::ffff:0:0/96, IPv4-compatible ::/96 (except :: and ::1), NAT64
 * 64:ff9b::/96 and 64:ff9b:1::/48 (the last 32 bits) and 6to4 2002::/16
 * (bits 16..47), and classifies the embedded IPv4 address.  IPv6 outside
 * 2000::/3 that is not otherwise named is "reserved".  Pure: safe inside
 * libcurl callbacks.
 */
extern const char *EgressAddressClass(const struct sockaddr *addr);

#endif							/* DUCTAPE_EGRESS_H */
