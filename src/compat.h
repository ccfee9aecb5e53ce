/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Everything that differs between PostgreSQL major versions, in one
 *	  place, so the rest of the code is written against one API.
 *
 * ductape targets PostgreSQL 15; 14 to 17 stay reachable through the
 * branches below.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_COMPAT_H
#define DUCTAPE_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 140000
#error "ductape needs PostgreSQL 14 or later"
#endif

/*
 * PostgreSQL 15 moved RequestAddinShmemSpace/RequestNamedLWLockTranche
 * into shmem_request_hook; 14 allows them directly in _PG_init.
 */
#if PG_VERSION_NUM >= 150000
#define DT_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/* MarkGUCPrefixReserved appeared in 15; 14 has EmitWarningsOnPlaceholders. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* PostgreSQL 16 added ExecInsertIndexTuples' onlySummarizing argument. */
#if PG_VERSION_NUM >= 160000
#define DtExecInsertIndexTuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define DtExecInsertIndexTuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/* Wait event class for our waits in pg_stat_activity. */
#define DT_WAIT_EVENT PG_WAIT_EXTENSION

#endif							/* DUCTAPE_COMPAT_H */
