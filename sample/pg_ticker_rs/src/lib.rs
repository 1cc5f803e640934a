//! pg_ticker_rs: the harness's Rust/pgrx sample extension.
//!
//! pg_trickle's runtime shape in a few lines: a bare `module_pathname`, PostgreSQL 18's
//! `PG_MODULE_MAGIC_EXT` (name and version), a GUC that exists with or without preloading,
//! a background worker registered only under `shared_preload_libraries`, its own schema
//! with a config-dump table, and an update script in `sql/`.

use std::ffi::CStr;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

// Pg_magic_func with .name = CARGO_PKG_NAME and .version = CARGO_PKG_VERSION:
// pg_get_loaded_modules() shows pg_ticker_rs, 0.2.0. The version is given explicitly:
// pgrx 0.18.0's bare `version` key writes the version into .name and leaves .version NULL
// (its field_update! arm for `version` expands to `name = ...`; the sql tier caught it).
const MODULE_VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(version) => version,
    Err(_) => panic!("CARGO_PKG_VERSION contains a NUL byte"),
};
::pgrx::pg_module_magic!(name, version = MODULE_VERSION);

/// The background worker's name and `backend_type` in pg_stat_activity.
const WORKER_NAME: &str = "pg_ticker_rs ticker";

/// `pg_ticker_rs.interval_ms`: how often the worker wakes up.
static INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

// #[pg_guard] exports _PG_init itself (an extra #[unsafe(no_mangle)] is an unused attribute).
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    GucRegistry::define_int_guc(
        c"pg_ticker_rs.interval_ms",
        c"How often the pg_ticker_rs ticker wakes up.",
        c"Only read by the background worker, which runs when pg_ticker_rs is preloaded.",
        &INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    // Like pg_trickle's launcher: only a library loaded by shared_preload_libraries may
    // register a static background worker; loaded later, the extension runs without it.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        BackgroundWorkerBuilder::new(WORKER_NAME)
            .set_type(WORKER_NAME)
            .set_library("pg_ticker_rs")
            .set_function("pg_ticker_rs_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(10)))
            .load();
    }
}

/// The ticker: connects without a database (so it shows in pg_stat_activity) and sleeps on
/// its latch until SIGTERM.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_ticker_rs_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let interval = || Duration::from_millis(INTERVAL_MS.get().max(10) as u64);
    while BackgroundWorker::wait_latch(Some(interval())) {}
}

#[pg_schema]
mod ticker_rs {
    use pgrx::prelude::*;

    /// The sum of two integers.
    #[pg_extern(immutable, parallel_safe)]
    pub fn add(a: i32, b: i32) -> i32 {
        a + b
    }

    /// The product of two integers (new in 0.2.0: `sql/pg_ticker_rs--0.1.0--0.2.0.sql`).
    #[pg_extern(immutable, parallel_safe)]
    pub fn mul(a: i32, b: i32) -> i32 {
        a * b
    }

    /// The version compiled into the library (Cargo.toml's).
    #[pg_extern(immutable, parallel_safe)]
    pub fn module_version() -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

extension_sql!(
    r#"
CREATE TABLE ticker_rs.events (
    id bigint PRIMARY KEY,
    payload text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('ticker_rs.events', '');
CREATE VIEW ticker_rs.event_count AS SELECT count(*) AS events FROM ticker_rs.events;
"#,
    name = "events",
    requires = [ticker_rs::add],
);
