/*-------------------------------------------------------------------------
 *
 * calls.h
 *	  The shared-memory ring of call records, shared by calls.c (writers)
 *	  and worker.c (the launcher and per-database flushers).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_CALLS_H
#define DUCTAPE_CALLS_H

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#define DT_CALL_SLOTS 4096
#define DT_MAX_DB_WORKERS 64

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

typedef struct DtDbWorker
{
	Oid			dbid;			/* InvalidOid: free slot */
	pid_t		pid;			/* 0 until the worker attached */
	Latch	   *latch;
	bool		notified;		/* latch set since the last collect */
	TimestampTz started_at;
} DtDbWorker;

/*
 * A backend's request for an OAuth2 token, served by its database's worker
 * (oauth.c).  The worker writes the new token, encrypted, into blob.
 */
#define DT_TOKEN_SLOTS 32
#define DT_TOKEN_BLOB 8192

typedef enum
{
	TOKEN_FREE = 0,
	TOKEN_PENDING,				/* waiting for the worker */
	TOKEN_WORKING,				/* the worker has it */
	TOKEN_DONE					/* result below; the requester frees it */
} DtTokenState;

typedef struct DtTokenSlot
{
	DtTokenState state;
	bool		abandoned;		/* the requester gave up (error, cancel) */
	Oid			dbid;
	pid_t		requester;
	Latch	   *latch;
	char		product[64];
	char		app[64];
	char		env[64];
	TimestampTz seen_updated_at;	/* force a refresh unless newer than this */
	bool		force;
	/* result */
	bool		ok;
	char		error[1024];
	char		detail[1024];
	int			key_version;
	TimestampTz updated_at;
	int			blob_len;
	char		blob[DT_TOKEN_BLOB];	/* encrypted access token */
} DtTokenSlot;

typedef struct CallsShared
{
	LWLock	   *lock;
	pg_atomic_uint64 next_id;
	uint64		head;
	uint64		tail;
	uint64		dropped;
	Latch	   *launcher_latch;
	pg_atomic_uint32 listener_port;	/* the webhook listener's bound port */
	pg_atomic_uint32 webhooks_pending;	/* events stored since the worker looked */
	DtDbWorker	workers[DT_MAX_DB_WORKERS];
	Oid			wanted[DT_MAX_DB_WORKERS];	/* databases asking for a worker */
	DtTokenSlot tokens[DT_TOKEN_SLOTS];
	DtCallSlot	slots[DT_CALL_SLOTS];
} CallsShared;

extern CallsShared *CallsGetShared(void);
extern int	CallsCollect(Oid dbid, DtCallSlot *buf, int max);
extern Oid	CallsClaimDatabaseWithoutWorker(void);
extern void CallsReleaseWorker(Oid dbid, bool discard_records);
extern void CallsAttachWorker(Oid dbid);
extern pid_t CallsWorkerPid(Oid dbid);
extern void CallsSetLauncherLatch(Latch *latch);
extern void CallsReapStaleWorkers(void);
extern bool CallsPendingFor(Oid dbid);
extern void CallsWakeWorker(Oid dbid);
extern void CallsWantWorker(Oid dbid);
extern int	OAuthServeRequests(Oid dbid);

#endif
