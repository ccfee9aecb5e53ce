/*-------------------------------------------------------------------------
 *
 * http.h
 *	  What the transport (http.c) shows the SQL entry points that send one
 *	  request and wait for it (run.c): the outcome of an attempt, the result
 *	  of a call with its retries, and the URL helpers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_HTTP_H
#define DUCTAPE_HTTP_H

#include "ductape.h"

#define DT_EXCERPT 1024			/* bytes of a body quoted in an error */

/* What one attempt ended with. */
typedef struct Outcome
{
	OutcomeKind kind;
	bool		sent;			/* did any byte of the request leave? */
	bool		final;			/* never worth retrying (bad URL, redirect loop) */
	long		status;
	char	   *body;
	size_t		body_len;
	char	   *content_type;
	char	   *error;
	double		retry_after_ms; /* -1 when the response had none */
	double		t_dns,
				t_connect,
				t_tls,
				t_first,
				t_total;		/* milliseconds, of the last hop */
	char	   *final_url;
} Outcome;

struct CallResult
{
	Outcome		o;
	int			attempts;
	double		duration_ms;
	int64		call_id;
};

extern bool UrlParts(const char *url, char **scheme, char **host);
extern char *UrlForMessage(const char *url, List *sensitive);
extern void AddUrlCredentials(DtRequest *req);
extern void Execute(DtRequest *req, CallResult *cr);
extern Jsonb *Envelope(DtRequest *req, CallResult *cr);
extern Jsonb *BodyToJsonb(Outcome *o);

#endif							/* DUCTAPE_HTTP_H */
