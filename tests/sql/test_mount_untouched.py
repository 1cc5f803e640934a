"""SQL tier: PostgreSQL writes nothing under /extensions/<name> (CNPG mounts it read-only)."""

from __future__ import annotations

import hashlib

import pytest

from extharness.inspect.model import FileType


def _expected_listing(target) -> dict[str, str]:
    files = target.layout.image.files
    return {e.path.lstrip("/"): hashlib.sha256(e.content or b"").hexdigest() for e in files if e.type == FileType.FILE}


@pytest.mark.mounted_backends_only
def test_nothing_written_under_mount(backend, server, target, database, install, extension_mount, sql_findings):
    # Exercise the extension first: create, use, update paths, drop.
    with server.connect(database(server)) as conn:
        install(conn)
        conn.execute(f'DROP EXTENSION "{target.name}"')
    if getattr(backend, "how", None) == "image mount":
        listing = server.run_tool(["sh", "-c", f"cd {server.mount_path} && find . -type f -exec sha256sum {{}} +"])
        assert listing.returncode == 0, listing.stderr.decode(errors="replace")
        seen = {}
        for line in listing.stdout.decode().splitlines():
            digest, _, path = line.partition("  ")
            seen[path.removeprefix("./")] = digest
        expected = _expected_listing(target)
        if seen != expected:
            sql_findings.fail(
                "sql.mount-untouched",
                server.mount_path,
                "in the container it does not hold exactly the image's files: "
                f"extra {sorted(set(seen) - set(expected))}, "
                f"changed/missing {sorted(k for k, v in expected.items() if seen.get(k) != v)}",
            )
        probe = server.run_tool(["sh", "-c", f"touch {server.mount_path}/.extharness-write-probe"])
        if probe.returncode == 0:
            sql_findings.fail("sql.mount-untouched", server.mount_path, "writable inside the container")
    else:
        changes = extension_mount.changes()
        if changes:
            sql_findings.fail("sql.mount-untouched", str(extension_mount.path), f"written: {'; '.join(changes)}")
