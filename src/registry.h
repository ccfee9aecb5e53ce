/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  The registry of database workers (registry.c): which database has a
 *	  worker, how to wake it, which databases want one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_REGISTRY_H
#define DUCTAPE_REGISTRY_H

#include "storage/latch.h"

/* at most this many databases have a worker at once */
#define DT_MAX_DB_WORKERS 64

/*
 * User code that ended a database's worker (it kept catching its cancel
 * past ductape.user_code_timeout, gate.c): kept here past the worker's exit,
 * so that the next worker of the database refuses it once instead of
 * running it again at once, and ending again, for good.
 */
typedef struct DtUserCode
{
	Oid			role;			/* who runs it; InvalidOid: none */
	Oid			fn;				/* a callback or handler; InvalidOid: sql */
	uint32		sql_hash;		/* a workflow sql step: its statement */
	uint32		sql_len;
} DtUserCode;

extern void RegistryShmemRegister(void);

/* the launcher */
extern void RegistrySetLauncherLatch(Latch *latch);
extern bool RegistryClaim(Oid dbid);
extern Oid	RegistryClaimWanted(void);
extern int	RegistryReapStale(Oid *reaped, int max);

/* a database worker */
extern void RegistryAttach(Oid dbid);
extern void RegistryRelease(Oid dbid);
extern void RegistryWakeAtCommit(void);
extern void RegistryClearNotified(Oid dbid);

extern void RegistryNoteEndedBy(Oid dbid, const DtUserCode *code);
extern bool RegistryTakeEndedBy(Oid dbid, DtUserCode *code);

/* anyone */
extern pid_t RegistryWorkerPid(Oid dbid);
extern void RegistryWakeWorker(Oid dbid);
extern void RegistryWantWorker(Oid dbid);
extern void RegistryNotify(Oid dbid);

#endif							/* DUCTAPE_REGISTRY_H */
