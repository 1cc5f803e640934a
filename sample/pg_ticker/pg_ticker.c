/*-------------------------------------------------------------------------
 *
 * pg_ticker.c
 *		A small sample extension with pg_trickle's runtime shape.
 *
 * Like pg_trickle it
 *	- declares its name and version with PG_MODULE_MAGIC_EXT (PostgreSQL 18),
 *	  so pg_get_loaded_modules() can report them;
 *	- always defines its GUCs, but registers its background worker only when
 *	  loaded through shared_preload_libraries;
 *	- runs a worker that wakes up every pg_ticker.interval_ms and exits
 *	  cleanly on SIGTERM or postmaster death;
 *	- exposes a few SQL-callable C functions whose results are exact.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "common/int.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

/*
 * One definition: the module magic and pg_ticker_module_version() must agree.
 * A build of an earlier release passes its own (make PG_CPPFLAGS=...), see
 * extharness.source.sample.RELEASES.
 */
#ifndef PG_TICKER_MODULE_VERSION
#define PG_TICKER_MODULE_VERSION "1.1.0"
#endif
#define PG_TICKER_WORKER_NAME "pg_ticker ticker"

PG_MODULE_MAGIC_EXT(.name = "pg_ticker", .version = PG_TICKER_MODULE_VERSION);

/* GUC: how long the ticker sleeps between ticks, in milliseconds. */
static int	pg_ticker_interval_ms = 1000;

/* Custom wait event name, shown in pg_stat_activity.wait_event. */
static uint32 pg_ticker_wait_event = 0;

PGDLLEXPORT void pg_ticker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(pg_ticker_add);
PG_FUNCTION_INFO_V1(pg_ticker_mul);
PG_FUNCTION_INFO_V1(pg_ticker_module_version);

void
_PG_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("pg_ticker.interval_ms",
							"Time between two ticks of the pg_ticker background worker.",
							NULL,
							&pg_ticker_interval_ms,
							1000,
							10,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL,
							NULL,
							NULL);
	MarkGUCPrefixReserved("pg_ticker");

	if (!process_shared_preload_libraries_in_progress)
	{
		/* Functions work without preload; only the worker needs it. */
		elog(DEBUG1, "pg_ticker: not in shared_preload_libraries, no background worker");
		return;
	}

	memset(&worker, 0, sizeof(worker));
	/*
	 * A worker with only BGWORKER_SHMEM_ACCESS runs but never appears in
	 * pg_stat_activity: its entry is made by InitPostgres(), which only
	 * BackgroundWorkerInitializeConnection() calls.  So ask for a connection
	 * and then connect to no database (like the logical replication launcher).
	 */
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, MAXPGPATH, "pg_ticker");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_ticker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, PG_TICKER_WORKER_NAME);
	snprintf(worker.bgw_type, BGW_MAXLEN, PG_TICKER_WORKER_NAME);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;

	RegisterBackgroundWorker(&worker);
}

void
pg_ticker_main(Datum main_arg)
{
	/* SIGTERM sets the interrupt flags; CHECK_FOR_INTERRUPTS() then exits. */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* No database: this only makes the worker visible in pg_stat_activity. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	pg_ticker_wait_event = WaitEventExtensionNew("PgTickerMain");

	elog(LOG, "%s started with interval %d ms", PG_TICKER_WORKER_NAME,
		 pg_ticker_interval_ms);

	for (;;)
	{
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 pg_ticker_interval_ms,
						 pg_ticker_wait_event);
		ResetLatch(MyLatch);

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

Datum
pg_ticker_add(PG_FUNCTION_ARGS)
{
	int32		a = PG_GETARG_INT32(0);
	int32		b = PG_GETARG_INT32(1);
	int32		result;

	if (pg_add_s32_overflow(a, b, &result))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("integer out of range")));
	PG_RETURN_INT32(result);
}

Datum
pg_ticker_mul(PG_FUNCTION_ARGS)
{
	int32		a = PG_GETARG_INT32(0);
	int32		b = PG_GETARG_INT32(1);
	int32		result;

	if (pg_mul_s32_overflow(a, b, &result))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("integer out of range")));
	PG_RETURN_INT32(result);
}

Datum
pg_ticker_module_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(PG_TICKER_MODULE_VERSION));
}
