"""Failures on the real CloudNativePG operator fail fast, in CNPG's own words, with diagnostics.

Each case deploys a broken image of our own (the sample with one thing broken) on a kit 1.36
cluster with CNPG built here, and checks that the harness stops within 60 s of the problem
being visible (CNPG's status, the pod's waiting reason) instead of waiting for a timeout, that
its message carries CNPG's or the kubelet's words, and that the diagnostics files are written.
Skips with one line where the kit or its CNPG build is missing.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from extharness.errors import HarnessError
from extharness.inspect.operand import DEFAULT_OPERAND_IMAGE
from extharness.kube import kind, kit, operator
from extharness.kube.deploy import CnpgDeployment, database_state, pod_failure, spec_for
from extharness.kube.imagevolume import IMAGEVOLUME, decide, gather_signals
from extharness.kube.manifests import DatabaseExtension, render_database
from extharness.pytest_plugin import harness_step
from extharness.runtime.settings import limit_of
from extharness.source.acquire import build_sample_release, default_cache_dir

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from crafted import CONTROL, CraftedImage  # noqa: E402
from recording import record  # noqa: E402

pytestmark = pytest.mark.xdist_group("kit")  # one worker makes the kit clusters one at a time

LINE = "1.29"
FAIL_FAST = 60.0  # seconds from the problem being visible to the harness reporting it


@pytest.fixture(scope="module")
def cnpg_build() -> tuple[Path, str]:
    built = kit.built_cnpg_operator(kit.CNPG[LINE])
    if built is None:
        pytest.skip(f"CloudNativePG {kit.CNPG[LINE].version} is not built on this machine (./harness cluster build)")
    return built


@pytest.fixture(scope="module")
def operand(cluster_136: kind.KindCluster) -> str:
    from extharness.postgres.base_images import resolve_operand_image
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    if engine is None:
        pytest.skip("the operand stand-in needs podman or docker")
    ref = resolve_operand_image(DEFAULT_OPERAND_IMAGE, engine, default_cache_dir())
    return harness_step("loading the operand image", lambda: cluster_136.load_image(ref, engine.cli))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def cnpg(cluster_136: kind.KindCluster, cnpg_build: tuple[Path, str], operand: str) -> Iterator[operator.OperatorInfo]:
    archive, manifest = cnpg_build
    api = cluster_136.api_client()
    info = harness_step(
        f"installing CloudNativePG {kit.CNPG[LINE].version}",
        lambda: operator.ensure_operator(
            api, kit.CNPG[LINE].version.lstrip("v"), Path("/nonexistent"), manifest_file=Path(manifest),
            before_install=lambda: cluster_136.load_archive(archive),
        ),
    )  # fmt: skip
    dep = next(d for d in operator._operator_deployments(api) if d["metadata"]["name"] == info.deployment)  # type: ignore[union-attr]
    record("cnpg-operator-deployment", dep)
    yield info  # type: ignore[misc]
    operator.uninstall(api, operator.load_manifest(Path(manifest).read_text()), timeout=300)


@pytest.fixture(scope="module")
def sample() -> CraftedImage:
    return CraftedImage.from_release_folder(build_sample_release(default_cache_dir(), None))


def load_crafted(cluster: kind.KindCluster, image: CraftedImage, tmp_path: Path, what: str) -> str:
    tag = f"localhost/extharness/broken-{what}:{uuid.uuid4().hex[:8]}"
    ref = image.write_docker_archive(tmp_path / f"{what}.tar", repo_tag=tag)
    return cluster.load_archive(Path(ref.split(":", 1)[1]))[0]


def deployment(api, extension_image: str, operand: str) -> CnpgDeployment:
    spec = spec_for(IMAGEVOLUME, extension="pg_ticker", operand_image=operand, extension_image=extension_image,
                    cnpg_version=kit.CNPG[LINE].version.lstrip("v"))  # fmt: skip
    return CnpgDeployment(api, spec)


def applied_database(dep: CnpgDeployment, extension: str, timeout: float = FAIL_FAST) -> dict:
    """A second Database of the deployment's cluster with ``extension``; returned once CNPG applied it."""
    from kubernetes import client

    name = f"{dep.spec.cluster_name}-good"
    doc = render_database(name, cluster=dep.spec.cluster_name, database="good", owner="app",
                          extensions=[DatabaseExtension(extension)], namespace=dep.namespace)  # fmt: skip
    custom = client.CustomObjectsApi(dep.api_client)
    custom.create_namespaced_custom_object("postgresql.cnpg.io", "v1", dep.namespace, "databases", doc)
    deadline = time.monotonic() + timeout
    while True:
        found = custom.get_namespaced_custom_object("postgresql.cnpg.io", "v1", dep.namespace, "databases", name)
        state, why = database_state(found, [extension])
        if state is not None or time.monotonic() > deadline:
            assert state is True, f"Database {name}: {why}"
            return found
        time.sleep(2)


def assert_diagnostics(dep: CnpgDeployment, folder: Path, words: str) -> None:
    diagnostics = dep.collect_diagnostics(folder)
    names = {p.relative_to(folder).as_posix() for p in diagnostics.files}
    for wanted in ("cluster.json", "database.json", "events.txt", "SUMMARY.txt"):
        assert wanted in names, f"{wanted} not written ({sorted(names)})"
    assert any(n.startswith("pods/") for n in names), sorted(names)
    assert any(n.startswith("operator/") for n in names), f"no operator log ({sorted(names)})"
    assert words in diagnostics.summary, diagnostics.summary


def test_database_whose_extension_fails_reports_cnpgs_message(
    cluster_136: kind.KindCluster, cnpg: operator.OperatorInfo, operand: str, sample: CraftedImage, tmp_path: Path
) -> None:
    broken = sample.copy().append("share/extension/pg_ticker--1.1.sql", "\nSELECT extharness_no_such_function();\n")
    api = cluster_136.api_client()
    ref = load_crafted(cluster_136, broken, tmp_path, "failing-script")
    with deployment(api, ref, operand) as dep:
        harness_step("waiting for the Cluster", dep.wait_healthy)
        started = time.monotonic()
        with pytest.raises(HarnessError) as failed:
            dep.wait_database()
        elapsed = time.monotonic() - started
        # the harness waits on purpose through one retry of the operator (a failure can pass)
        allowed = FAIL_FAST + limit_of("EXTHARNESS_CNPG_DATABASE_RETRY")
        assert elapsed < allowed, f"the failed Database took {elapsed:.0f}s to be reported"
        message = str(failed.value)
        assert "extharness_no_such_function" in message, message  # PostgreSQL's words, through CNPG's status
        assert "not applied" in message, message
        assert_diagnostics(dep, tmp_path / "diagnostics", "extharness_no_such_function")
        database = dep.database()
        record("cnpg-database-failed", database)
        record("cnpg-cluster-healthy", dep.cluster())
        record("cnpg-instance-pod", next(p for p in dep.pods() if "job-name" not in p["metadata"].get("labels", {})))
        good = applied_database(dep, "hstore")  # the success shape, same cluster, an extension the operand has
        record("cnpg-database-applied", good)
        assert database_state(good, ["hstore"])[0] is True, good
    status = database.get("status") or {}
    # The shape CNPG really produces on failure (api/v1/database_funcs.go): no observedGeneration.
    assert status.get("applied") is False and "observedGeneration" not in status, status


def test_image_without_control_file_is_refused_before_a_cluster(
    cluster_136: kind.KindCluster, cnpg: operator.OperatorInfo, operand: str, sample: CraftedImage, tmp_path: Path
) -> None:
    from kubernetes import client

    broken = sample.copy().remove(CONTROL)
    api = cluster_136.api_client()
    ref = load_crafted(cluster_136, broken, tmp_path, "no-control")
    namespace = f"extharness-probe-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        started = time.monotonic()
        signals = gather_signals(
            api, namespace=namespace, extension_image=ref, operand_image=operand, extension="pg_ticker"
        )
        decision = decide(signals)
        elapsed = time.monotonic() - started
        clusters = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "postgresql.cnpg.io", "v1", namespace, "clusters"
        )
    finally:
        core.delete_namespace(namespace)
    assert decision.image_problem and "pg_ticker.control" in decision.image_problem, decision
    assert elapsed < FAIL_FAST, f"the probe took {elapsed:.0f}s"
    assert clusters["items"] == []


def test_extension_image_that_cannot_be_pulled_fails_fast(
    cluster_136: kind.KindCluster, cnpg: operator.OperatorInfo, operand: str, tmp_path: Path
) -> None:
    api = cluster_136.api_client()
    missing = f"localhost/extharness/not-there:{uuid.uuid4().hex[:8]}"
    with deployment(api, missing, operand) as dep:
        started = time.monotonic()
        with pytest.raises(HarnessError) as failed:
            dep.wait_healthy()
        elapsed = time.monotonic() - started
        message = str(failed.value)
        assert missing in message or "pull" in message.lower(), message
        assert elapsed < FAIL_FAST + 30, f"took {elapsed:.0f}s (pod start + {FAIL_FAST:.0f}s)"
        diagnostics = dep.collect_diagnostics(tmp_path / "diagnostics")
        assert any(p.name == "events.txt" for p in diagnostics.files)
        record("cnpg-initdb-pod-pull-error", next(p for p in dep.pods() if pod_failure(p)))


def test_operator_that_never_becomes_ready_fails_fast(
    cluster_136: kind.KindCluster, cnpg_build: tuple[Path, str], tmp_path: Path
) -> None:
    """Last here: it needs the cluster without an operator (the module's operator is removed first)."""
    api = cluster_136.api_client()
    _, manifest = cnpg_build
    good = operator.load_manifest(Path(manifest).read_text())
    assert not operator.uninstall(api, good, timeout=300)  # the module's operator (or nothing)
    assert operator.find_installed(api) is None
    absent = f"localhost/extharness/cloudnative-pg:0.0.0-absent-{uuid.uuid4().hex[:6]}"
    text = (
        Path(manifest)
        .read_text()
        .replace(f"localhost/extharness/cloudnative-pg:{kit.CNPG[LINE].version.lstrip('v')}", absent)
    )
    broken_manifest = tmp_path / "cnpg-broken.yaml"
    broken_manifest.write_text(text)
    objects = operator.load_manifest(text)
    assert any(absent in yaml.safe_dump(o) for o in objects)
    try:
        started = time.monotonic()
        with pytest.raises(HarnessError) as failed:
            operator.ensure_operator(api, "0.0.0", Path("/nonexistent"), manifest_file=broken_manifest)
        elapsed = time.monotonic() - started
    finally:
        problems = operator.uninstall(api, objects, timeout=300)
    message = str(failed.value)
    assert "cannot start" in message and ("ErrImagePull" in message or "ImagePullBackOff" in message), message
    assert elapsed < FAIL_FAST + 30, f"took {elapsed:.0f}s"
    assert not problems, problems
