"""Stand-in ``kind`` and ``docker`` executables for the harness's tests of kind clusters (none is made).

Both append each call (``kind create cluster --name ...``) to ``$FAKE_STATE/calls``; ``kind``
keeps the clusters it "created" in ``$FAKE_STATE/clusters``, the state ``KindCluster`` reads
back with ``kind get clusters``. Environment knobs, each off when unset:

- ``FAKE_KIND_VERSION``: what ``kind version`` reports (default v0.30.0, new enough);
- ``FAKE_CREATE_SECONDS``: ``kind create cluster`` sleeps this long after registering the
  cluster and writing ``$FAKE_STATE/creating`` (a test interrupts the session then);
- ``FAKE_DOCKER_DOWN``: ``docker info`` fails as a stopped daemon does.
"""

from __future__ import annotations

from pathlib import Path

KIND = r"""#!/usr/bin/env bash
state="$FAKE_STATE"; echo "kind $*" >> "$state/calls"
case "$1 $2" in
  "version "*) echo "kind ${FAKE_KIND_VERSION:-v0.30.0} go1.24.6 linux/amd64" ;;
  "get clusters") cat "$state/clusters" 2>/dev/null || true ;;
  "get kubeconfig") echo "apiVersion: v1"; echo "kind: Config" ;;
  "create cluster")
     while [ $# -gt 0 ]; do case "$1" in --name) n=$2;; --kubeconfig) k=$2;; esac; shift; done
     echo "$n" >> "$state/clusters"; echo "apiVersion: v1" > "$k"; echo "creating" > "$state/creating"
     [ -z "$FAKE_CREATE_SECONDS" ] || sleep "$FAKE_CREATE_SECONDS" ;;
  "delete cluster")
     while [ $# -gt 0 ]; do case "$1" in --name) n=$2;; esac; shift; done
     grep -vx "$n" "$state/clusters" > "$state/c.tmp" || true; mv "$state/c.tmp" "$state/clusters" ;;
  "load image-archive") test -f "$3" ;;
  *) echo "fake kind: unknown $*" >&2; exit 1 ;;
esac
"""

DOCKER = r"""#!/usr/bin/env bash
state="$FAKE_STATE"; echo "docker $*" >> "$state/calls"
case "$1" in
  info) [ -z "$FAKE_DOCKER_DOWN" ] || { echo "Cannot connect to the Docker daemon" >&2; exit 1; }; echo 28.1.1 ;;
  save) python3 - "$3" "$4" <<'EOF'
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], "w") as tar:
    data = json.dumps([{"Config": "c.json", "RepoTags": [sys.argv[2]], "Layers": []}]).encode()
    info = tarfile.TarInfo("manifest.json"); info.size = len(data); tar.addfile(info, io.BytesIO(data))
EOF
  ;;
  *) exit 1 ;;
esac
"""


def install_kind_and_docker(bindir: Path) -> None:
    """Write the stand-in ``kind`` and ``docker`` into ``bindir`` (put it first on PATH and set
    ``FAKE_STATE`` to an existing folder)."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name, text in (("kind", KIND), ("docker", DOCKER)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)


def recorded_calls(state: Path) -> list[str]:
    """The calls recorded in ``state``, oldest first."""
    path = state / "calls"
    return path.read_text().splitlines() if path.exists() else []
