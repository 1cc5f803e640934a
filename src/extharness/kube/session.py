"""The cnpg tier's cluster for one pytest session, shared by its xdist workers.

``shared_cluster`` picks the cluster by the order of docs/cnpg-tier.md (``--kind-cluster``,
the cluster kit's node image when it is built here, kind with Docker) and returns a
``SharedKindCluster``: the first worker creates it, the last one out deletes it.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from extharness.config import HarnessConfig
from extharness.kube import kind, kit


def session_id() -> str:
    """Shared by the xdist workers of one run (xdist sets the run uid), new for every run."""
    value = os.environ.get("PYTEST_XDIST_TESTRUNUID") or os.environ.get("EXTHARNESS_CNPG_SESSION")
    if not value:
        value = uuid.uuid4().hex
        os.environ["EXTHARNESS_CNPG_SESSION"] = value
    return value


def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder common to all xdist workers of this run (the parent of each worker's basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def kit_cluster(
    variant: kit.Variant, tmp_path_factory: pytest.TempPathFactory, keep: bool = False, purpose: str = ""
) -> kind.SharedKindCluster:
    """The session's cluster of one kit variant (skips with the kit's reason where it cannot run).
    ``purpose`` makes it another cluster than the cnpg tier's of the same variant (tests/kit
    install and remove operators: they must never share the tier's cluster)."""
    reason = kit.unavailable(variant)
    if reason:
        pytest.skip(reason)
    kit.use_podman_provider()
    return kind.SharedKindCluster(
        run_dir(tmp_path_factory),
        session_id=session_id(),
        node_image=kit.built_node_image(variant),  # type: ignore[arg-type]
        key=f"kit{variant.name}{purpose}",
        kind_cli=str(kit.built_kind_binary()),
        config_text=kit.kind_config(variant),
        keep=keep,
    )


def shared_cluster(harness_config: HarnessConfig, tmp_path_factory: pytest.TempPathFactory) -> kind.SharedKindCluster:
    """The session's cluster: --kind-cluster, else the kit's (when built here), else kind with Docker."""
    kit_reason = "--kind-cluster given" if harness_config.kind_cluster else None
    if kit_reason is None:
        variant = kit.VARIANTS[harness_config.kit_cluster]
        kit_reason = kit.unavailable(variant)
        if kit_reason is None:
            return kit_cluster(variant, tmp_path_factory, harness_config.keep_cluster)
    reason = kind.available()
    if reason:
        pytest.skip(f"no Kubernetes cluster: {kit_reason}; kind/Docker not available: {reason}")
    return kind.SharedKindCluster(
        run_dir(tmp_path_factory),
        session_id=session_id(),
        node_image=harness_config.kind_node_image,
        reuse_name=harness_config.kind_cluster,
        keep=harness_config.keep_cluster,
    )


@dataclass(frozen=True)
class OperatorRelease:
    """Where the CNPG operator the tier installs comes from (when none is installed yet)."""

    version: str
    manifest: Path | None = None  # None: the release manifest downloaded for ``version``
    archive: Path | None = None  # the operator image to load into the cluster first

    def __str__(self) -> str:
        if self.manifest is None:
            return f"CloudNativePG {self.version} (release manifest)"
        built = " built here by the cluster kit" if self.archive else ""
        return f"CloudNativePG {self.version}{built} ({self.manifest})"


def operator_release(harness_config: HarnessConfig) -> OperatorRelease:
    """--cnpg-manifest, else the cluster kit's own build of --cnpg-version, else its release manifest."""
    version = resolve_cnpg_version(harness_config.cnpg_version)
    if harness_config.cnpg_manifest:
        return OperatorRelease(version, harness_config.cnpg_manifest)
    pin = kit.CNPG.get(".".join(version.split(".")[:2]))
    if pin is not None and pin.version.lstrip("v") == version:
        built = kit.built_cnpg_operator(pin)
        if built is not None:
            return OperatorRelease(version, Path(built[1]), built[0])
    return OperatorRelease(version)


def resolve_cnpg_version(text: str) -> str:
    """``1.29`` -> the newest 1.29 patch the kit pins; ``1.28.2`` as given (checked by the operator code)."""
    from extharness.errors import HarnessError
    from extharness.kube.operator import parse_version

    text = text.strip().lstrip("v")
    if text.count(".") == 1:
        pin = kit.CNPG.get(text)
        if pin is None:
            known = ", ".join(sorted(kit.CNPG))
            raise HarnessError(f"--cnpg-version {text}: the harness knows the lines {known}; give a full X.Y.Z")
        return pin.version.lstrip("v")
    parse_version(text)
    return text


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """CI cancels with SIGTERM: turn it into KeyboardInterrupt so teardown still deletes the cluster."""
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
