"""SQL tier: shared_preload_libraries with the bare library name, loaded modules, background workers."""

from __future__ import annotations

import pytest

from extharness.postgres.sqlchecks import backend_types, loaded_modules, wait_for_backend_types

WORKER_TIMEOUT = 20.0


def test_server_starts_with_preload(backend, preload_server, target, sql_findings):
    with preload_server.connect() as conn:
        value = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    if value != ",".join(target.preload):
        sql_findings.fail(
            "sql.preload",
            "shared_preload_libraries",
            f"the server shows {value!r}, started with {','.join(target.preload)!r}",
        )


def test_library_in_loaded_modules(backend, preload_server, target, sql_findings):
    with preload_server.connect() as conn:
        modules = loaded_modules(conn)
    files = {m["file_name"].rsplit("/", 1)[-1]: m for m in modules if m["file_name"]}
    missing = [lib for lib in target.preload if f"{lib}.so" not in files]
    if missing:
        sql_findings.fail(
            "sql.loaded-module",
            ", ".join(f"{lib}.so" for lib in missing),
            f"pg_get_loaded_modules() lists {sorted(files) or 'nothing'}, not {missing}",
        )
    profile = target.profile
    if profile and profile.module_name:
        module = files[f"{target.preload[0]}.so"]
        if (module["module_name"], module["version"]) != (profile.module_name, profile.module_version):
            sql_findings.fail(
                "sql.loaded-module",
                f"{target.preload[0]}.so",
                f"PG_MODULE_MAGIC_EXT reports {module['module_name']} {module['version']}, the profile expects "
                f"{profile.module_name} {profile.module_version}",
            )


def test_background_workers_running(backend, preload_server, target, sql_findings):
    expected = target.profile.background_workers if target.profile else []
    if not expected:
        pytest.skip(f"no background workers expected for {target.name} (the profile lists none)")
    with preload_server.connect() as conn:
        missing = wait_for_backend_types(conn, expected, WORKER_TIMEOUT)
        seen = sorted(set(backend_types(conn)))
    if missing:
        sql_findings.fail(
            "sql.workers",
            ", ".join(missing),
            f"not in pg_stat_activity after {WORKER_TIMEOUT:.0f}s with shared_preload_libraries="
            f"{','.join(target.preload)} (seen: {seen}); server log: {preload_server.log_tail(8)}",
        )
