"""On a kind cluster with CloudNativePG: the extension deploys, loads and works.

Needs Docker and kind (``docs/cnpg-tier.md``); without them every test here skips with one
line in well under a second. The path (ImageVolume or the composite fallback) is detected,
recorded in the report, and can be forced with ``--cnpg-mode``. What a test finds wrong is a
finding (``deploy.RULES``: ``cnpg.cluster.healthy``, ``cnpg.imagevolume.mount``, ...) naming the
pod, setting, library or smoke step; a Cluster or Database that never gets ready is reported
once, by the first test that needs it (``cluster_setup``).
"""

from __future__ import annotations

import json
import os
import warnings

import pytest
from cluster_setup import ClusterSetup

from extharness.checks.findings import Severity
from extharness.config import HarnessConfig
from extharness.errors import HarnessError
from extharness.kube.deploy import CnpgDeployment, DeploymentSpec, cluster_finding
from extharness.kube.imagevolume import FALLBACK, IMAGEVOLUME, Decision, Signals
from extharness.kube.operator import OperatorInfo
from extharness.pytest_plugin import FindingRecorder, HarnessFindingWarning

pytestmark = pytest.mark.xdist_group("cnpg-deployment")  # one deployment per module, on one worker

#: CI sets this to the path a node version must take (e.g. fallback-composite on v1.32).
EXPECT_PATH = os.environ.get("EXTHARNESS_EXPECT_CNPG_PATH", "").strip()


def test_operator_is_available(cnpg_operator: OperatorInfo, record_property) -> None:
    record_property("cnpg_operator", str(cnpg_operator))
    assert cnpg_operator.version, f"cannot tell the operator's version from its image ({cnpg_operator.image})"
    major, minor = (int(x) for x in cnpg_operator.version.split(".")[:2])
    assert (major, minor) >= (1, 27), f"{cnpg_operator}: image volume extensions need CloudNativePG 1.27+"


def test_imagevolume_support_is_detected_and_recorded(
    harness_findings: FindingRecorder,
    record_property,
    harness_config: HarnessConfig,
    imagevolume_signals: Signals,
    imagevolume_decision: Decision,
) -> None:
    detection = {
        **imagevolume_signals.as_dict(),
        "mode": imagevolume_decision.mode,
        "reason": imagevolume_decision.reason,
        "requested": harness_config.cnpg_mode,
    }
    record_property("cnpg_imagevolume", json.dumps(detection))
    harness_config.artifacts_dir.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (harness_config.artifacts_dir / f"cnpg-detection-{worker}.json").write_text(json.dumps(detection, indent=2) + "\n")
    severity = Severity.INFO if imagevolume_decision.mode == IMAGEVOLUME else Severity.WARNING
    finding = cluster_finding(
        "cnpg.imagevolume.path",
        "cluster",
        f"{imagevolume_decision.mode}: {imagevolume_decision.reason} [{imagevolume_signals.summary()}]",
        severity,
    )
    harness_findings.record(finding)
    if severity == Severity.WARNING and harness_config.cnpg_mode == "auto":
        warnings.warn(HarnessFindingWarning(str(finding)), stacklevel=1)
    if EXPECT_PATH:
        assert imagevolume_decision.mode == EXPECT_PATH, (
            f"expected the {EXPECT_PATH} path on this cluster, the harness chose {imagevolume_decision}"
        )


def test_cluster_becomes_healthy(cluster_setup: ClusterSetup, harness_findings: FindingRecorder) -> None:
    cluster_setup.healthy(harness_findings)


def test_database_applies_the_extension(cluster_setup: ClusterSetup, harness_findings: FindingRecorder) -> None:
    cluster_setup.ready(harness_findings)


def test_extension_image_is_mounted_in_every_instance(
    cnpg_deployment: CnpgDeployment,
    cluster_setup: ClusterSetup,
    deployment_spec: DeploymentSpec,
    harness_findings: FindingRecorder,
) -> None:
    if deployment_spec.mode == FALLBACK:
        pytest.skip("fallback-composite path: the extension is inside the operand image, no image volume")
    cluster_setup.healthy(harness_findings)
    harness_findings.check(cnpg_deployment.verify_mounts())


def test_postgres_searches_the_mounted_extension(
    cnpg_deployment: CnpgDeployment,
    cluster_setup: ClusterSetup,
    deployment_spec: DeploymentSpec,
    harness_findings: FindingRecorder,
) -> None:
    if deployment_spec.mode == FALLBACK:
        pytest.skip("fallback-composite path: the extension is in $system/$libdir")
    cluster_setup.ready(harness_findings)
    harness_findings.check(cnpg_deployment.check_cnpg_settings())


def test_extension_is_installed_at_the_expected_version(
    cnpg_deployment: CnpgDeployment, cluster_setup: ClusterSetup, harness_findings: FindingRecorder
) -> None:
    cluster_setup.ready(harness_findings)
    harness_findings.check(cnpg_deployment.check_extension())


def test_libraries_are_preloaded(
    cnpg_deployment: CnpgDeployment,
    cluster_setup: ClusterSetup,
    deployment_spec: DeploymentSpec,
    harness_findings: FindingRecorder,
) -> None:
    if not deployment_spec.preload:
        pytest.skip("the profile preloads nothing")
    cluster_setup.ready(harness_findings)
    harness_findings.check(cnpg_deployment.check_preload())


def test_background_workers_run(
    cnpg_deployment: CnpgDeployment,
    cluster_setup: ClusterSetup,
    deployment_spec: DeploymentSpec,
    harness_findings: FindingRecorder,
) -> None:
    if not deployment_spec.background_workers:
        pytest.skip("the profile names no background workers")
    cluster_setup.ready(harness_findings)
    harness_findings.check(cnpg_deployment.wait_workers())


def test_smoke_sql_on_the_primary(
    cnpg_deployment: CnpgDeployment,
    cluster_setup: ClusterSetup,
    deployment_spec: DeploymentSpec,
    harness_findings: FindingRecorder,
) -> None:
    if not deployment_spec.smoke:
        pytest.skip("no profile with smoke SQL for this extension (--ext-profile)")
    cluster_setup.ready(harness_findings)
    harness_findings.check(cnpg_deployment.check_smoke())


def test_rolling_update_lands_a_new_extension_image(
    cnpg_deployment: CnpgDeployment,
    cluster_setup: ClusterSetup,
    deployment_spec: DeploymentSpec,
    harness_findings: FindingRecorder,
    request: pytest.FixtureRequest,
) -> None:
    """Last in the module: it changes the deployment. As a user ships a new image: change the
    extension's image reference in the Cluster; CNPG rolls every instance onto it."""
    if deployment_spec.mode == FALLBACK:
        pytest.skip("fallback-composite path: the extension ships inside the operand image, no image volume to roll")
    cluster_setup.ready(harness_findings)
    new_ref = request.getfixturevalue("next_extension_in_cluster")
    assert new_ref != deployment_spec.extension_image
    try:
        cnpg_deployment.roll_extension_image(new_ref)
        not_rolled = None
    except HarnessError as exc:
        not_rolled = cluster_finding("cnpg.rollout", new_ref, str(exc))
    if not_rolled is not None:  # outside the except block: the report shows the finding, not a traceback
        harness_findings.fail(not_rolled)
    findings = cnpg_deployment.verify_mounts()
    cluster_setup.ready(harness_findings)
    findings += cnpg_deployment.verify_sql(smoke=False)  # its data is there from the smoke test
    harness_findings.check(findings)
