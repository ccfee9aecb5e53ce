/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  What the database's worker deletes as it ages: finished jobs, finished
 *	  outbound messages with their deliveries, and handled or failed inbound
 *	  webhook events older than ductape.job_retention.
 *
 * Once a minute (a task of the worker, registered at load), at most 10,000
 * rows of each table per pass, each pass in one transaction, so that a
 * large backlog is worked off over several minutes instead of in one long
 * transaction.  Rows still queued, running, pending or being received are
 * never deleted, whatever their age.
 *
 * Layer 5 (features): calls the runtime and PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "ductape.h"

#define RETENTION_EVERY_MS 60000
#define RETAINED "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => %d))"

static long
RetentionRun(bool *did_work)
{
	WorkerBeginInstalledWork("ductape: deleting what is past ductape.job_retention");
	SPI_connect();
	SPI_execute(psprintf("DELETE FROM ductape.jobs WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.jobs WHERE state OPERATOR(pg_catalog.=) ANY "
						 "('{succeeded,failed,cancelled}'::ductape.job_state[]) "
						 "AND finished_at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
						 "DELETE FROM ductape.outbox WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.outbox "
						 "WHERE finished_at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
						 "DELETE FROM ductape.deliveries WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.deliveries "
						 "WHERE at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
						 "DELETE FROM ductape.messages WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT m.id FROM ductape.messages m "
						 "WHERE m.created_at OPERATOR(pg_catalog.<) " RETAINED " AND NOT EXISTS "
						 "(SELECT FROM ductape.outbox o WHERE o.message_id OPERATOR(pg_catalog.=) m.id) "
						 "LIMIT 10000)); "
						 "DELETE FROM ductape.webhook_events WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.webhook_events "
						 "WHERE state OPERATOR(pg_catalog.=) ANY ('{handled,failed}'::ductape.webhook_state[]) "
						 "AND received_at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000))",
						 ductape_job_retention_s, ductape_job_retention_s, ductape_job_retention_s,
						 ductape_job_retention_s, ductape_job_retention_s), false, 0);
	SPI_finish();
	WorkerEndWork();
	return RETENTION_EVERY_MS;
}

static const WorkerTask RetentionTask = {
	.name = "retention",
	.on_wake = false,
	.ready = NULL,
	.run = RetentionRun,
};

void
RetentionInit(void)
{
	WorkerRegisterTask(&RetentionTask);
}
