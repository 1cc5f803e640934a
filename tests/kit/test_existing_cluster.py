"""``--kubeconfig``: the cnpg tier on a cluster the harness did not create, left as it was.

A kit cluster stands in for a user's own cluster: a nested ``pytest -m cnpg`` is pointed at it
with ``--kubeconfig`` and ``--image-loader kind:NAME``; its ImageVolume detection must run for
real there, and afterwards the cluster must still run with exactly the namespaces and the
node it had before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from extharness.kube import kind, kit

pytestmark = pytest.mark.xdist_group("kit")  # one worker makes the kit clusters one at a time

REPO = Path(__file__).resolve().parents[2]


def _state(cluster: kind.KindCluster) -> tuple[set[str], set[str]]:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    namespaces = {n.metadata.name for n in core.list_namespace().items if n.status.phase != "Terminating"}
    nodes = {n.metadata.name for n in core.list_node().items}
    return namespaces, nodes


def test_kubeconfig_cluster_is_used_and_left_as_it_was(cluster_136: kind.KindCluster, tmp_path: Path) -> None:
    before = _state(cluster_136)
    env = dict(os.environ, PATH=f"{kit.built_kind_binary().parent}{os.pathsep}{os.environ['PATH']}")  # type: ignore[union-attr]
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_TESTRUNUID", None)
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-x",
        str(REPO / "tests" / "cnpg" / "test_cluster.py"), "-k", "imagevolume_support",
        "--kubeconfig", str(cluster_136.kubeconfig), "--image-loader", f"kind:{cluster_136.name}",
        "--artifacts-dir", str(tmp_path / "artifacts"), "--basetemp", str(tmp_path / "nested"),
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert "1 passed" in result.stdout, output
    assert any((tmp_path / "artifacts").glob("cnpg-detection-*.json")), output
    assert cluster_136.exists(), "the cluster behind --kubeconfig is gone"
    assert _state(cluster_136) == before, "the nested run left namespaces or nodes behind, or removed some"
