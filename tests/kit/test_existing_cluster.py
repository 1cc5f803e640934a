"""``--kubeconfig``: the cnpg tier on a cluster the harness did not create, left as it was.

A kit cluster stands in for a user's own cluster: a nested ``pytest -m cnpg`` is pointed at it
with ``--kubeconfig`` and ``--image-loader kind:NAME``; its ImageVolume detection must run for
real there, and afterwards the cluster must still run with exactly the namespaces and the
node it had before.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from nested import REPO, finish_nested_pytest, nested_pytest, start_nested_pytest

from extharness.kube import kind
from extharness.source.acquire import build_sample_release, default_cache_dir

pytestmark = pytest.mark.xdist_group("kit-b")  # the kit clusters the other worker makes (conftest.LONG_GROUPS)


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
    assert_left_as_it_was(cluster_136, before)


def assert_left_as_it_was(cluster: kind.KindCluster, before: tuple[set[str], set[str], set[str]]) -> None:
    assert cluster.exists(), "the cluster behind --kubeconfig is gone"
    deadline = time.monotonic() + 120
    while _state(cluster) != before and time.monotonic() < deadline:
        time.sleep(2)  # namespaces being deleted are counted as gone; give the API a moment
    after = _state(cluster)
    assert after[:2] == before[:2], (
        f"namespaces or nodes left behind: {sorted((after[0] | after[1]) - (before[0] | before[1]))}, "
        f"removed: {sorted((before[0] | before[1]) - (after[0] | after[1]))}"
    )
    assert after[2] == before[2], (
        f"images added: {sorted(after[2] - before[2])}, removed: {sorted(before[2] - after[2])}"
    )


def _cnpg_clusters(cluster: kind.KindCluster) -> list[str]:
    from kubernetes import client

    try:
        found = client.CustomObjectsApi(cluster.api_client()).list_cluster_custom_object(
            "postgresql.cnpg.io", "v1", "clusters"
        )
    except client.ApiException:
        return []  # no CRD yet: the operator is still being installed
    return [f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in found.get("items", [])]


def test_failing_run_leaves_the_cluster_as_it_was(cluster_136: kind.KindCluster, tmp_path: Path) -> None:
    """A run whose extension cannot be created (the sample's install script calls a function that
    does not exist): the Database fails with PostgreSQL's error, and the namespace, Cluster,
    Database, PVCs, operator and loaded images go all the same."""
    folder = tmp_path / "broken-sample"
    shutil.copytree(
        build_sample_release(default_cache_dir(), None), folder, ignore=shutil.ignore_patterns(".lock", ".complete")
    )
    script = next((folder / "artifact" / "extension").glob("pg_ticker--1.1.sql"))
    script.write_text(script.read_text() + "\nSELECT extharness_no_such_function();\n")
    before = _state(cluster_136)
    result = nested_pytest(
        [str(REPO / "tests" / "cnpg" / "test_cluster.py"), "-k", "database_applies_the_extension",
         "--ext-artifacts", str(folder), "--kubeconfig", str(cluster_136.kubeconfig),
         "--image-loader", f"kind:{cluster_136.name}"],
        tmp_path,
    )  # fmt: skip
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 1, output
    assert "1 failed" in result.stdout and "extharness_no_such_function" in result.stdout, output
    assert_left_as_it_was(cluster_136, before)


def test_interrupted_run_leaves_the_cluster_as_it_was(cluster_136: kind.KindCluster, tmp_path: Path) -> None:
    """Ctrl-C while the Cluster is coming up: the session stops and still removes everything it
    made on the cluster."""
    before = _state(cluster_136)
    proc = start_nested_pytest(
        [str(REPO / "tests" / "cnpg" / "test_cluster.py"), "--kubeconfig", str(cluster_136.kubeconfig),
         "--image-loader", f"kind:{cluster_136.name}"],
        tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not _cnpg_clusters(cluster_136) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(2)
    running = proc.poll() is None
    clusters = _cnpg_clusters(cluster_136)
    proc.send_signal(signal.SIGINT)
    result = finish_nested_pytest(proc, timeout=400)
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert running and clusters, f"no CNPG Cluster appeared before the session ended or 600 s passed: {output}"
    assert result.returncode == 2, output  # pytest's exit code for an interrupted session
    assert "KeyboardInterrupt" in output, output
    assert_left_as_it_was(cluster_136, before)
