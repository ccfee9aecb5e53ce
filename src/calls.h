/*-------------------------------------------------------------------------
 *
 * calls.h
 *	  The shared-memory ring of call records (calls.c): every process that
 *	  sends HTTP appends to it; each database's worker (worker.c) collects
 *	  its database's records and stores them in ductape.calls.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_CALLS_H
#define DUCTAPE_CALLS_H

#include "utils/timestamp.h"

#define DT_CALL_SLOTS 4096

/* What a call record says, as the transport gives it (http.c). */
typedef struct DtCallInfo
{
	const char *app;
	const char *action;
	const char *env;
	const char *product;
	const char *method;
	const char *url;
	int			status;
	int			attempts;
	double		duration_ms;
	const char *error;
	int64		job_id;
	Oid			roleid;			/* InvalidOid: the current user */
} DtCallInfo;

/* One record in the ring, as the worker collects it. */
typedef struct DtCallSlot
{
	Oid			dbid;
	Oid			roleid;
	int64		id;
	TimestampTz at;
	int32		status;
	int32		attempts;
	double		duration_ms;
	int64		job_id;
	bool		has_error;
	bool		consumed;
	char		app[64];
	char		action[64];
	char		env[64];
	char		product[64];
	char		method[8];
	char		url[1024];
	char		error[512];
} DtCallSlot;

extern void CallsShmemRegister(void);

/* every process that sends HTTP */
extern int64 CallsRecord(const DtCallInfo *info);

/* a database's worker */
extern bool CallsPendingFor(Oid dbid);
extern int	CallsCollect(Oid dbid, DtCallSlot *buf, int max);
extern void CallsCountDropped(int n);

/* records dropped since server start: the ring was full, or their
 * database got no worker (health, ductape._stats_info) */
extern int64 CallsDropped(void);

/* the launcher, DROP DATABASE */
extern int	CallsPendingDatabases(Oid *dbs, int max);
extern int	CallsDiscard(Oid dbid, bool count_dropped);

#endif							/* DUCTAPE_CALLS_H */
