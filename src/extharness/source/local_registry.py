"""A throwaway OCI registry on 127.0.0.1: Debian's ``docker-registry``, pushed to with skopeo.

For CI and tests of the release gate: the gate reads an image by reference exactly as it
would from ghcr.io, but the registry lives in a temporary folder and listens on loopback only.
``LocalRegistry`` is a context manager: leaving it stops the registry and deletes its storage.

    with LocalRegistry() as registry:
        ref = registry.push_layout(layout_dir, "pg_ticker-ext", "1.1")
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.runtime.processes import last_lines, run
from extharness.runtime.settings import limit_of
from extharness.runtime.waits import Gone, wait_until
from extharness.source.oci_writer import OCIImageBlobs, write_oci_layout

_CONFIG = """\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: extharness-local-registry
health:
  storagedriver:
    enabled: false
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tools() -> tuple[str, str]:
    """(docker-registry, skopeo) paths, or EnvironmentMissing naming the apt packages."""
    registry, skopeo = shutil.which("docker-registry"), shutil.which("skopeo")
    missing = [name for name, path in (("docker-registry", registry), ("skopeo", skopeo)) if path is None]
    if missing:
        raise EnvironmentMissing(
            f"{' and '.join(missing)} not installed: apt-get install -y {' '.join(missing)} "
            "(a local registry for the release gate)"
        )
    assert registry is not None and skopeo is not None
    return registry, skopeo


class LocalRegistry:
    """``docker-registry serve`` on 127.0.0.1:<free port> with its own config and storage."""

    def __init__(self) -> None:
        self.binary, self.skopeo = require_tools()
        self.port = 0
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "storage"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "registry.log"

    def reference(self, name: str, tag: str) -> str:
        return f"{self.host}/{name}:{tag}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalRegistry:
        self.workdir = Path(tempfile.mkdtemp(prefix="extharness-registry-"))
        self.storage.mkdir()
        last = ""
        for _attempt in range(3):  # another process may take the free port before we bind it
            self.port = _free_port()
            config = self.workdir / "config.yml"
            config.write_text(_CONFIG.format(storage=self.storage, port=self.port))
            self._log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [self.binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._wait_ready():
                return self
            last = self._tail()
            self._terminate()
        self.stop()
        raise HarnessError(
            f"docker-registry did not start on 127.0.0.1 within {limit_of('EXTHARNESS_REGISTRY_START_TIMEOUT'):g}s "
            f"(EXTHARNESS_REGISTRY_START_TIMEOUT): {last or 'no output'}"
        )

    def _wait_ready(self) -> bool:
        """Whether the registry answers within EXTHARNESS_REGISTRY_START_TIMEOUT (False: it ended or not)."""

        def answers() -> bool | None:
            assert self._process is not None
            if self._process.poll() is not None:
                raise Gone
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as response:
                    return True if response.status == 200 else None
            except (urllib.error.URLError, OSError):
                return None

        try:
            return wait_until(
                answers,
                limit_of("EXTHARNESS_REGISTRY_START_TIMEOUT"),
                "docker-registry answering",
                "EXTHARNESS_REGISTRY_START_TIMEOUT",
            )
        except (Gone, HarnessError):  # the caller tries another port, then reports with the log
            return False

    def _tail(self) -> str:
        return last_lines(self.log_path, count=5, default="")

    def _terminate(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the registry and delete its config, storage and log."""
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- pushing -------------------------------------------------------------------------------
    def push_layout(self, layout: Path, name: str, tag: str, source_tag: str | None = None) -> str:
        """Copy an OCI layout (every platform of an index, byte for byte) to ``name:tag``."""
        source = f"oci:{layout}" + (f":{source_tag}" if source_tag else "")
        dest = f"docker://{self.reference(name, tag)}"
        cmd = [self.skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--quiet", source, dest]
        run(
            cmd,
            what=f"pushing {source} to {dest}",
            timeout=limit_of("EXTHARNESS_REGISTRY_PUSH_TIMEOUT"),
            setting="EXTHARNESS_REGISTRY_PUSH_TIMEOUT",
        )
        return self.reference(name, tag)

    def push_image(self, image: OCIImageBlobs, name: str, tag: str) -> str:
        """Write ``image`` as a temporary OCI layout and push it."""
        with tempfile.TemporaryDirectory(prefix="extharness-push-") as tmp:
            return self.push_layout(write_oci_layout(image, Path(tmp) / "layout"), name, tag)

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry keeps a blob (for tests that corrupt one on purpose)."""
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"


def main(argv: list[str] | None = None) -> int:
    """``python -m extharness.source.local_registry``: serve the multi-arch sample to try the gate."""
    import argparse

    from extharness.runtime.cache import default_cache_dir
    from extharness.source.multiarch import build_multiarch_sample

    parser = argparse.ArgumentParser(
        prog="python -m extharness.source.local_registry",
        description="Start a registry on 127.0.0.1 holding the amd64+arm64 sample "
        "under 1.1, 1 and latest; stop it with Ctrl-C (its storage is deleted).",
    )
    parser.add_argument("--name", default="pg_ticker-ext", help="repository name (default: %(default)s)")
    args = parser.parse_args(argv)
    layout = build_multiarch_sample(default_cache_dir())
    with LocalRegistry() as registry:
        for tag in ("1.1", "1", "latest"):
            registry.push_layout(layout, args.name, tag)
        ref = registry.reference(args.name, "1.1")
        print(
            f"serving {ref} (also :1 and :latest); try:\n  extharness-gate {ref} --version 1.1 --tags 1.1,1,latest",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
