"""``--kubeconfig``: the cnpg tier on a cluster the harness did not create, left as it was.

A kit cluster stands in for a user's own cluster: a nested ``pytest -m cnpg`` is pointed at it
with ``--kubeconfig`` and ``--image-loader kind:NAME``; its ImageVolume detection must run for
real there, and afterwards the cluster must still run with exactly the namespaces and the
node it had before.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from nested import REPO, nested_pytest

from extharness.kube import kind

pytestmark = pytest.mark.xdist_group("kit")  # one worker makes the kit clusters one at a time

def _state(cluster: kind.KindCluster) -> tuple[set[str], set[str], set[str]]:
    """Namespaces, nodes, and the images in the nodes' containerd."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    namespaces = {n.metadata.name for n in core.list_namespace().items if n.status.phase != "Terminating"}
    nodes = {n.metadata.name for n in core.list_node().items}
    images = set()
    for node in nodes:
        out = subprocess.run(["podman", "exec", node, "ctr", "--namespace=k8s.io", "images", "ls", "-q"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        images |= {f"{node}/{line}" for line in out.split()}
    return namespaces, nodes, images


def test_kubeconfig_cluster_is_used_and_left_as_it_was(cluster_136: kind.KindCluster, tmp_path: Path) -> None:
    """The whole cnpg tier, CNPG 1.28 line, on a cluster it did not make: it passes (ImageVolume
    path and rolling update) and leaves the cluster with the namespaces it had (its test
    namespaces, the operator it installed and the images it loaded are removed)."""
    before = _state(cluster_136)
    result = nested_pytest(
        [str(REPO / "tests" / "cnpg" / "test_cluster.py"), "--cnpg-version", "1.28",
         "--kubeconfig", str(cluster_136.kubeconfig), "--image-loader", f"kind:{cluster_136.name}"],
        tmp_path, env={"EXTHARNESS_EXPECT_CNPG_PATH": "imagevolume"},
    )  # fmt: skip
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert "11 passed" in result.stdout, output
    assert any((tmp_path / "artifacts").glob("cnpg-detection-*.json")), output
    assert cluster_136.exists(), "the cluster behind --kubeconfig is gone"
    deadline = time.monotonic() + 120
    while _state(cluster_136) != before and time.monotonic() < deadline:
        time.sleep(2)  # namespaces being deleted are counted as gone; give the API a moment
    after = _state(cluster_136)
    assert after[:2] == before[:2], "the nested run left namespaces or nodes behind, or removed some"
    assert after[2] == before[2], f"images added: {sorted(after[2] - before[2])}, removed: {sorted(before[2] - after[2])}"
