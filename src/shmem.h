/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared-memory set-up (shmem.c): each subsystem registers its segment;
 *	  shmem.c requests the space and the locks and creates the segments.
 *	  The locking protocol of all of ductape's shared state is written at
 *	  the top of shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_SHMEM_H
#define DUCTAPE_SHMEM_H

#include "storage/lwlock.h"

/*
 * One subsystem's shared memory.  The subsystem keeps the struct (static,
 * in its own file) and registers it from _PG_init.
 */
typedef struct DtShmemSegment
{
	const char *name;			/* ShmemInitStruct key; also the name of its
								 * LWLock tranche (pg_stat_activity shows it
								 * as the wait event) */
	int			nlocks;			/* LWLocks of its own; 0: none (atomics only) */
	Size		(*size) (void);
	/* called once, when the segment is created zeroed; locks: its tranche */
	void		(*init) (void *mem, LWLockPadded *locks);
	void	  **mem;			/* the subsystem's pointer to the segment,
								 * set in every process */
} DtShmemSegment;

extern void DtShmemRegister(const DtShmemSegment *seg);
extern void DtShmemInstallHooks(void);
extern void DtShmemAttach(void);

#endif							/* DUCTAPE_SHMEM_H */
