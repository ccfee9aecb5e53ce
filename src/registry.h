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

/* anyone */
extern pid_t RegistryWorkerPid(Oid dbid);
extern void RegistryWakeWorker(Oid dbid);
extern void RegistryWantWorker(Oid dbid);
extern void RegistryNotify(Oid dbid);

#endif							/* DUCTAPE_REGISTRY_H */
