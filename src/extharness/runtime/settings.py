"""Every ``EXTHARNESS_*`` limit in one table, read when it is used (not at import).

``limit_of(name)`` gives a limit's value: the environment variable if set, else its default; a
value that is not a number is one HarnessError line naming the variable. The table is also the
source of the "every setting" section of docs/timeouts.md::

    python -m extharness.runtime.settings --write docs/timeouts.md

(``tests/unit/test_settings.py`` fails when that section is out of date, or when the code reads
an ``EXTHARNESS_*`` limit that the table does not list, or reads one from ``os.environ`` itself.)
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from extharness.errors import HarnessError


@dataclass(frozen=True)
class Limit:
    name: str
    default: float
    what: str
    where: str
    unit: str = "s"  # s | bytes

    def value(self) -> float:
        raw = os.environ.get(self.name, "").strip()
        if not raw:
            return self.default
        try:
            number = float(raw)
        except ValueError:
            raise HarnessError(f"{self.name}={raw!r}: expected a number of {_UNITS[self.unit]}") from None
        if number != number or number < 0:
            raise HarnessError(f"{self.name}={raw!r}: expected a number of {_UNITS[self.unit]}, 0 or more")
        return number


_UNITS = {"s": "seconds", "bytes": "bytes"}

LIMITS: tuple[Limit, ...] = (
    Limit("EXTHARNESS_ENGINE_TIMEOUT", 120, "any container engine call", "source/engine.py"),
    Limit("EXTHARNESS_BUILD_TIMEOUT", 3600, "image builds, save, load", "source/engine.py"),
    Limit("EXTHARNESS_LOCK_TIMEOUT", 3600, "waiting for a cache file lock", "runtime/locks.py"),
    Limit("EXTHARNESS_MAKE_TIMEOUT", 300, "make / make install of the sample, pg_config", "source/sample.py"),
    Limit("EXTHARNESS_BASE_IMAGE_TIMEOUT", 1800, "each step of an offline stand-in build", "postgres/base_images.py"),
    Limit(
        "EXTHARNESS_BASE_IMAGE_LOCK_TIMEOUT", 3600, "another process building the stand-ins", "postgres/base_images.py"
    ),
    Limit(
        "EXTHARNESS_PULL_TIMEOUT",
        20,
        "pulling postgres/the operand before a stand-in (0: never)",
        "postgres/base_images.py",
    ),
    Limit(
        "EXTHARNESS_INITDB_TIMEOUT",
        300,
        "initdb of a data directory template, copying it",
        "postgres/native.py, containers.py",
    ),
    Limit("EXTHARNESS_PG_START_TIMEOUT", 60, "a native server becoming ready", "postgres/native.py"),
    Limit(
        "EXTHARNESS_CONTAINER_START_TIMEOUT",
        120,
        "PostgreSQL in a container accepting a login",
        "postgres/containers.py",
    ),
    Limit("EXTHARNESS_REGISTRY_TIMEOUT", 30, "each registry request (connect or read)", "source/registry.py"),
    Limit("EXTHARNESS_REGISTRY_START_TIMEOUT", 30, "the local test registry starting", "source/local_registry.py"),
    Limit(
        "EXTHARNESS_REGISTRY_PUSH_TIMEOUT", 300, "skopeo copy to the local test registry", "source/local_registry.py"
    ),
    Limit("EXTHARNESS_MAX_LAYER_BYTES", 1 << 30, "largest layer or blob read", "inspect/oci_reader.py", "bytes"),
    Limit("EXTHARNESS_MAX_IMAGE_BYTES", 4 << 30, "all layers of an image unpacked", "inspect/oci_reader.py", "bytes"),
    Limit("EXTHARNESS_KIND_CREATE_TIMEOUT", 600, "kind create cluster", "kube/kind.py"),
    Limit("EXTHARNESS_KIND_LOAD_TIMEOUT", 600, "kind load image-archive, saving the image for it", "kube/kind.py"),
    Limit("EXTHARNESS_KIND_DELETE_TIMEOUT", 180, "kind delete cluster", "kube/kind.py"),
    Limit(
        "EXTHARNESS_SAMPLE_RS_LOCK_TIMEOUT",
        5400,
        "waiting for another pg_ticker_rs (pgrx) sample build",
        "source/sample_rs.py",
    ),
    Limit(
        "EXTHARNESS_KIT_BUILD_TIMEOUT",
        3600,
        "one Go build of the cluster kit (Kubernetes, CNPG, kind, etcd)",
        "kube/kit.py",
    ),
    Limit(
        "EXTHARNESS_KIT_STEP_TIMEOUT",
        1200,
        "any other step of the cluster kit (debootstrap, image builds)",
        "kube/kit.py",
    ),
    Limit("EXTHARNESS_FETCH_TIMEOUT", 60, "downloading the CNPG operator manifest", "kube/operator.py"),
    Limit(
        "EXTHARNESS_CNPG_READY_TIMEOUT",
        300,
        "operator deployment Available, webhook endpoints ready",
        "kube/operator.py",
    ),
    Limit("EXTHARNESS_CNPG_HEALTHY_TIMEOUT", 600, "a Cluster becoming healthy", "kube/deploy.py"),
    Limit("EXTHARNESS_CNPG_DATABASE_TIMEOUT", 300, "a Database applied with the extension", "kube/deploy.py"),
    Limit(
        "EXTHARNESS_CNPG_DATABASE_RETRY",
        45,
        "a failed Database staying failed through CNPG's 30 s retry before it counts",
        "kube/deploy.py",
    ),
    Limit("EXTHARNESS_CNPG_WORKER_TIMEOUT", 60, "background workers in the pod's pg_stat_activity", "kube/deploy.py"),
    Limit("EXTHARNESS_IMAGEVOLUME_PROBE_TIMEOUT", 180, "the ImageVolume probe pod", "kube/imagevolume.py"),
)

_BY_NAME = {entry.name: entry for entry in LIMITS}


def limit_of(name: str) -> float:
    """The limit ``name`` (an ``EXTHARNESS_*`` variable of the table) as it is set now."""
    return _BY_NAME[name].value()


def markdown_table() -> str:
    lines = ["| setting | default | limits | read in |", "|---|---:|---|---|"]
    for entry in LIMITS:
        default = f"{entry.default:g}" if entry.unit == "s" else f"{int(entry.default)} bytes"
        lines.append(f"| `{entry.name}` | {default} | {entry.what} | `{entry.where}` |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- every setting: generated by `python -m extharness.runtime.settings --write docs/timeouts.md` -->"
END = "<!-- end of the generated section -->"


def with_generated_section(doc: str) -> str:
    """``doc`` with the generated section replaced (or appended when it has none)."""
    section = f"{BEGIN}\n## Every setting at a glance\n\nTimes are seconds. Each is read when it is used, except those read in `kube/` and `inspect/oci_reader.py`,\nwhich their modules still read once, at import.\n\n{markdown_table()}{END}\n"
    if BEGIN in doc and END in doc:
        head, _, rest = doc.partition(BEGIN)
        return head + section + rest.partition(END)[2].lstrip("\n")
    return doc.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extharness.runtime.settings")
    parser.add_argument("--write", type=Path, help="rewrite the generated section of this Markdown file")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(with_generated_section(args.write.read_text()))
    else:
        sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
