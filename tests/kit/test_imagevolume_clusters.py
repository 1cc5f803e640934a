"""The ImageVolume detection on real clusters built by the cluster kit (``./harness cluster``).

On the kit's 1.36 cluster (ImageVolume GA) the harness's own detection runs against the real
API server, kubelet and containerd 2.1: a probe pod mounts the extension image under test and
looks for its control file. The 1.34 clusters (gate on, gate off) are checked the same way by
tests/kit/test_cnpg_tier_paths.py from the detection its nested tier run records. Where the kit's node image is not built on this machine, each test skips with one line
saying so (``./harness setup --provision`` builds it).
"""

from __future__ import annotations

import uuid

import pytest

from extharness.config import HarnessConfig
from extharness.kube import kind, kit
from extharness.kube.imagevolume import FALLBACK, IMAGEVOLUME, ProbeResult, decide, gather_signals
from extharness.pytest_plugin import ImageUnderTest, harness_step

pytestmark = pytest.mark.xdist_group("kit")  # one worker makes the kit clusters one at a time

#: What the harness must conclude on each kit cluster, and what its probe must see.
EXPECTED = {
    "1.36": (IMAGEVOLUME, ProbeResult.MOUNTED_AND_FOUND),
    "1.34": (IMAGEVOLUME, ProbeResult.MOUNTED_AND_FOUND),
    "1.34-gate-off": (FALLBACK, ProbeResult.VOLUME_DROPPED),
}


#: The 1.34 clusters run in tests/kit/test_cnpg_tier_paths.py, which checks the same figures
#: from the nested tier's detection record (one cluster each instead of two).
IN_THIS_MODULE = ("1.36",)


@pytest.fixture(scope="module", params=IN_THIS_MODULE)
def variant_cluster(
    request: pytest.FixtureRequest, cluster_136: kind.KindCluster
) -> tuple[kit.Variant, kind.KindCluster]:
    return kit.VARIANTS[request.param], cluster_136


@pytest.fixture(scope="module")
def detection(variant_cluster, image_under_test: ImageUnderTest, harness_config: HarnessConfig):
    from kubernetes import client

    from extharness.postgres.base_images import resolve_operand_image
    from extharness.source.engine import require_engine

    variant, cluster = variant_cluster
    engine = require_engine("loading images into the kit cluster")
    extension = harness_step(
        "loading the extension image", lambda: kind.stage_image(
            cluster, engine_ref=image_under_test.acquired.engine_ref, reader_ref=image_under_test.acquired.reader_ref,
            engine_cli=engine.cli,
        ),
    )  # fmt: skip
    operand = harness_step(
        "loading the operand image",
        lambda: cluster.load_image(
            resolve_operand_image(harness_config.operand_image, engine, harness_config.cache_dir)
        ),
    )
    api = cluster.api_client()
    namespace = f"extharness-probe-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        signals = gather_signals(
            api, namespace=namespace, extension_image=extension, operand_image=operand, extension=image_under_test.name
        )
    finally:
        core.delete_namespace(namespace)
    return variant, signals, decide(signals)


def test_the_api_server_is_the_kit_version(detection) -> None:
    variant, signals, _ = detection
    assert signals.server_version == variant.pin.version, signals.summary()


def test_the_node_runs_containerd_2_1(detection) -> None:
    _, signals, _ = detection
    assert signals.node_runtimes and all(r.startswith("containerd://2.1.") for r in signals.node_runtimes), (
        signals.summary()
    )


def test_the_probe_sees_what_the_cluster_really_does(detection) -> None:
    variant, signals, _ = detection
    assert signals.probe.result == EXPECTED[variant.name][1], signals.summary()


def test_the_decision_matches_the_cluster(detection, record_property) -> None:
    variant, signals, decision = detection
    record_property(f"kit_{variant.name}_decision", str(decision))
    assert decision.mode == EXPECTED[variant.name][0], f"{decision} [{signals.summary()}]"
    if decision.mode == FALLBACK:
        assert "dropped" in decision.reason, decision.reason
