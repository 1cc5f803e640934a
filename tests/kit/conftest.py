"""The kit cluster the tests/kit modules share: Kubernetes 1.36 (skips where the kit is not built).

A new cluster for each module (modules install and remove operators: sharing one cluster
made a module meet the previous one's operator namespace still terminating). It is never the
cnpg tier's cluster, nor the one a module of the other kit xdist group uses at the same time on
the other worker (``purpose``: one per group)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extharness.config import HarnessConfig
from extharness.kube import kind, kit
from extharness.kube.session import kit_cluster, sigterm_as_interrupt
from extharness.pytest_plugin import harness_step


@pytest.fixture(scope="module")
def cluster_136(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, harness_config: HarnessConfig
) -> Iterator[kind.KindCluster]:
    group = request.node.get_closest_marker("xdist_group")
    purpose = "t" if group is None or group.args[:1] == ("kit",) else "b"  # "kit-b": a cluster of its own
    shared = kit_cluster(kit.VARIANTS["1.36"], tmp_path_factory, harness_config.keep_cluster, purpose=purpose)
    with sigterm_as_interrupt():
        try:
            yield harness_step("starting the kit cluster 1.36", shared.acquire)  # type: ignore[misc]
        finally:
            shared.release()
