"""Fixtures of the cnpg tier: kind cluster -> operator -> ImageVolume detection -> deployment.

Everything here that needs a cluster skips, in well under a second and with one line, when
kind or Docker is missing (``kind.available()``). One kind cluster serves the whole session
and every xdist worker (``SharedKindCluster``); each test module deploys into its own
namespace, removed afterwards unless ``--keep-cluster``. When a test fails, the deployment's
diagnostics are written under ``--artifacts-dir`` and attached to that test's report.
"""

from __future__ import annotations

import platform
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cluster_setup import ClusterSetup

from extharness.checks.upgrade import UpgradeRecord
from extharness.config import HarnessConfig
from extharness.errors import HarnessError
from extharness.inspect.model import PlatformImage
from extharness.kube import kind
from extharness.kube.cluster import ExistingCluster, ImageLoader
from extharness.kube.deploy import CnpgDeployment, DeploymentSpec, build_fallback_operand, spec_for
from extharness.kube.imagevolume import IMAGEVOLUME, Decision, Signals, decide, gather_signals
from extharness.kube.operator import OperatorInfo, ensure_operator, release_objects, uninstall
from extharness.kube.session import operator_release, run_dir, shared_cluster, sigterm_as_interrupt
from extharness.postgres.profiles import Profile, load_profile, profile_for_extension
from extharness.pytest_plugin import (
    NO_UPGRADE_FROM,
    NO_UPGRADE_FROM_REASON,
    HarnessFindingWarning,
    ImageUnderTest,
    harness_config_of,
    harness_step,
    read_previous_release,
    upgrade_source_id,
    upgrade_source_label,
    upgrade_sources,
)
from extharness.runtime.locks import held_lock

DEPLOYMENT = pytest.StashKey[tuple[CnpgDeployment, Path]]()  # the module's deployment, its artifacts dir
DIAGNOSED = pytest.StashKey[bool]()


def host_platform() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}.get(
        machine, f"linux/{machine}"
    )


# -- the platform image and profile of the image under test ------------------------------------------
@pytest.fixture(scope="session")
def platform_image(image_under_test: ImageUnderTest) -> PlatformImage:
    """The image for this machine's architecture (what kind nodes and local containers run)."""
    wanted = host_platform()
    found = image_under_test.image.for_platform(wanted)
    if found is None:
        have = ", ".join(str(p) for p in image_under_test.image.platforms)
        pytest.skip(f"{image_under_test.acquired.description} has no {wanted} image (has {have})")
    return found


@pytest.fixture(scope="session")
def cnpg_profile(harness_config: HarnessConfig, image_under_test: ImageUnderTest) -> Profile | None:
    if harness_config.profile:
        return harness_step("loading the extension profile", lambda: load_profile(harness_config.profile))  # type: ignore[arg-type,return-value]
    return profile_for_extension(image_under_test.name)


@pytest.fixture(scope="session")
def expected_version(
    harness_config: HarnessConfig, image_under_test: ImageUnderTest, platform_image: PlatformImage
) -> str | None:
    if harness_config.expect_version:
        return harness_config.expect_version
    from extharness.inspect.extension import describe

    control = describe(platform_image, image_under_test.name).control
    return control.default_version if control else None


# -- kind and the operator ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kind_cluster(harness_config: HarnessConfig, tmp_path_factory: pytest.TempPathFactory):
    """The cluster the tier deploys to (a ``KindCluster`` or, with --kubeconfig, an ``ExistingCluster``)."""
    if harness_config.kubeconfig:
        existing: ExistingCluster = harness_step(
            f"using the cluster of {harness_config.kubeconfig}",
            lambda: ExistingCluster(
                harness_config.kubeconfig,  # type: ignore[arg-type]
                harness_config.kube_context,
                ImageLoader.parse(harness_config.image_loader),
            ),
        )  # type: ignore[assignment]
        yield existing
        if not harness_config.keep_cluster:
            problems = existing.remove_added_images()
            if problems:
                warnings.warn(HarnessFindingWarning(f"images left on the nodes: {'; '.join(problems)}"), stacklevel=1)  # type: ignore[arg-type]
        return
    shared = shared_cluster(harness_config, tmp_path_factory)
    with sigterm_as_interrupt():
        try:
            cluster = harness_step(f"getting a kind cluster ({shared.node_image})", shared.acquire)
            yield cluster
        finally:
            shared.release()


@pytest.fixture(scope="session")
def kube_api(kind_cluster: kind.KindCluster):
    return kind_cluster.api_client()


@pytest.fixture(scope="session")
def cnpg_operator(
    kube_api, kind_cluster, harness_config: HarnessConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorInfo]:
    """The operator found in the cluster, or the one installed from ``operator_release``; on a
    cluster the harness did not create (--kubeconfig), an operator it installed is removed again
    at the end unless --keep-cluster (one found installed is never touched). Only the tests of
    the ``cnpg-deployment`` xdist group use it, so one worker installs and removes it."""
    release = harness_step("choosing the CloudNativePG release", lambda: operator_release(harness_config))

    def load() -> None:
        if release.archive is not None:  # type: ignore[union-attr]
            harness_step(f"loading {release} into the cluster", lambda: kind_cluster.load_archive(release.archive))  # type: ignore[union-attr]

    def install() -> OperatorInfo:
        with held_lock(run_dir(tmp_path_factory) / "extharness-cnpg-operator.lock", "installing the CNPG operator"):
            return ensure_operator(
                kube_api, release.version, harness_config.cache_dir,  # type: ignore[union-attr]
                manifest_file=release.manifest, before_install=load,  # type: ignore[union-attr]
            )  # fmt: skip

    info: OperatorInfo = harness_step(f"getting {release} ready", install)  # type: ignore[assignment]
    yield info
    if info.installed_by_harness and isinstance(kind_cluster, ExistingCluster) and not harness_config.keep_cluster:
        objects = release_objects(release.version, harness_config.cache_dir, release.manifest)  # type: ignore[union-attr]
        problems = harness_step(f"removing the {release} it installed", lambda: uninstall(kube_api, objects))
        if problems:
            warnings.warn(
                HarnessFindingWarning(f"could not remove all of the operator: {'; '.join(problems)}"), stacklevel=1
            )  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def extension_in_cluster(kind_cluster: kind.KindCluster, image_under_test: ImageUnderTest) -> str:
    """The reference kind nodes use for the extension image (loaded as an archive, or pulled)."""
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    acquired = image_under_test.acquired
    return harness_step(
        "loading the extension image into kind",
        lambda: kind.stage_image(  # type: ignore[return-value]
            kind_cluster,
            engine_ref=acquired.engine_ref if engine else None,
            reader_ref=acquired.reader_ref,
            engine_cli=engine.cli if engine else None,
        ),
    )


@pytest.fixture(scope="session")
def next_extension_in_cluster(
    kind_cluster: kind.KindCluster, image_under_test: ImageUnderTest, harness_config: HarnessConfig
) -> str:
    """A second image of the extension, as a release would ship it: the image under test plus a
    label, so another image ID under another reference; loaded into the cluster. The rolling
    update test changes the Cluster to it."""
    import hashlib

    from extharness.source.engine import detect_engine

    engine = detect_engine()
    ref = image_under_test.acquired.engine_ref
    if engine is None or not ref:
        pytest.skip(
            "the rolling-update test builds a second extension image: needs podman or docker and the image in it"
        )

    def build() -> str:
        key = hashlib.sha256(f"{ref}|{engine.image_id(ref)}".encode()).hexdigest()[:12]
        tag = f"localhost/extharness/rollout-{image_under_test.name.replace('_', '-')}:{key}"
        folder = harness_config.cache_dir / "rollout" / key
        folder.mkdir(parents=True, exist_ok=True)
        with held_lock(folder / "build.lock", f"building {tag}"):
            if not engine.image_exists(tag):
                (folder / "Containerfile").write_text(f"FROM {ref}\nLABEL io.extharness.rollout={key}\n")
                engine.build(folder, folder / "Containerfile", tag, extra_args=("--pull=never",))
        return kind_cluster.load_image(tag, engine.cli)

    return harness_step("building and loading a second extension image for the rolling update", build)  # type: ignore[return-value]


# -- ImageVolume detection -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def operand_in_cluster(kind_cluster, harness_config: HarnessConfig) -> str:
    """The operand image as the nodes see it: CNPG's, or the local stand-in loaded into the cluster."""
    from extharness.postgres.base_images import resolve_operand_image
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    if engine is None:
        return harness_config.operand_image  # the nodes pull it

    def load() -> str:
        ref = resolve_operand_image(harness_config.operand_image, engine, harness_config.cache_dir)
        return kind_cluster.load_image(ref, engine.cli)

    return harness_step("loading the operand image into the cluster", load)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def imagevolume_signals(
    kube_api,
    operand_in_cluster: str,
    extension_in_cluster: str,
    harness_config: HarnessConfig,
    image_under_test: ImageUnderTest,
) -> Signals:
    from kubernetes import client

    namespace = f"extharness-probe-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)

    def gather() -> Signals:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        try:
            return gather_signals(
                kube_api,
                namespace=namespace,
                extension_image=extension_in_cluster,
                operand_image=operand_in_cluster,
                extension=image_under_test.name,
            )
        finally:
            core.delete_namespace(namespace)

    return harness_step("detecting ImageVolume support", gather)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def imagevolume_decision(imagevolume_signals: Signals, harness_config: HarnessConfig) -> Decision:
    """imagevolume or fallback-composite; --cnpg-mode imagevolume on a cluster without support fails here."""
    return harness_step(
        "deciding between ImageVolume and the composite fallback",  # type: ignore[return-value]
        lambda: decide(imagevolume_signals, harness_config.cnpg_mode),
    )


# -- the deployment ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def deployment_spec(
    imagevolume_decision: Decision,
    kind_cluster: kind.KindCluster,
    extension_in_cluster: str,
    operand_in_cluster: str,
    cnpg_operator: OperatorInfo,
    harness_config: HarnessConfig,
    image_under_test: ImageUnderTest,
    platform_image: PlatformImage,
    cnpg_profile: Profile | None,
    expected_version: str | None,
) -> DeploymentSpec:
    if imagevolume_decision.image_problem:
        raise HarnessError(f"no Cluster made: {imagevolume_decision.image_problem}")
    common = {
        "extension": image_under_test.name,
        "profile": cnpg_profile,
        "expected_version": expected_version,
        "cnpg_version": cnpg_operator.version,
    }
    if imagevolume_decision.mode == IMAGEVOLUME:
        return spec_for(IMAGEVOLUME, operand_image=operand_in_cluster, extension_image=extension_in_cluster, **common)

    def composite() -> str:
        from extharness.postgres.mount import ImageVolumeMount
        from extharness.source.engine import require_engine

        engine = require_engine("building the fallback composite operand image")
        name = cnpg_profile.cnpg_name if cnpg_profile else image_under_test.name
        with ImageVolumeMount(platform_image, name) as mount:
            tag = build_fallback_operand(engine, harness_config.operand_image, mount, harness_config.cache_dir)
        return kind_cluster.load_image(tag, engine.cli)

    tag = harness_step("building and loading the fallback composite operand image", composite)
    return spec_for(imagevolume_decision.mode, operand_image=tag, **common)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cnpg_deployment(
    request: pytest.FixtureRequest,
    kube_api,
    cnpg_operator: OperatorInfo,
    deployment_spec: DeploymentSpec,
    harness_config: HarnessConfig,
) -> Iterator[CnpgDeployment]:
    deployment = CnpgDeployment(kube_api, deployment_spec, keep=harness_config.keep_cluster)
    request.node.stash[DEPLOYMENT] = (deployment, harness_config.artifacts_dir)
    harness_step("applying the Cluster and Database", deployment.__enter__)
    try:
        yield deployment
    finally:
        deployment.__exit__(None, None, None)


@pytest.fixture(scope="module")
def cluster_setup(cnpg_deployment: CnpgDeployment) -> ClusterSetup:
    """The module's Cluster and Database, waited for by each test that needs them; a failure is
    reported once, as a ``cnpg.cluster.healthy`` / ``cnpg.database.applied`` finding."""
    return ClusterSetup(cnpg_deployment)


# -- the upgrade CNPG users make: old image -> candidate image, then the Database version ----------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cluster_upgrade_source" in metafunc.fixturenames:
        sources = upgrade_sources(harness_config_of(metafunc.config))
        metafunc.parametrize(
            "cluster_upgrade_source", sources, ids=[upgrade_source_id(s) for s in sources], scope="module"
        )


@dataclass
class ClusterUpgrade:
    """What the cluster upgrade saw, or why it broke off (kept, not raised: reported once)."""

    record: UpgradeRecord | None
    broke_off: str | None = None
    reported_by: str | None = None


@pytest.fixture(scope="module")
def cluster_upgrade(
    request: pytest.FixtureRequest,
    cluster_upgrade_source: str,
    kube_api,
    kind_cluster,
    cnpg_operator: OperatorInfo,
    deployment_spec: DeploymentSpec,
    extension_in_cluster: str,
    harness_config: HarnessConfig,
    image_under_test: ImageUnderTest,
    platform_image: PlatformImage,
    cnpg_profile: Profile | None,
) -> Iterator[ClusterUpgrade]:
    """A Cluster on the old release's image, its data written, rolled onto the candidate image and
    its Database version bumped (``kube.upgrade``); the namespace goes at the module's end."""
    import psycopg
    from kubernetes.client.exceptions import ApiException

    from extharness.inspect.extension import describe
    from extharness.kube.upgrade import replay_cluster_upgrade
    from extharness.source.engine import detect_engine

    if cluster_upgrade_source == NO_UPGRADE_FROM:
        pytest.skip(NO_UPGRADE_FROM_REASON)
    if deployment_spec.mode != IMAGEVOLUME:
        pytest.skip("fallback-composite path: the upgrade changes an image volume's reference, which needs ImageVolume")
    old: ImageUnderTest = harness_step(  # type: ignore[assignment]
        f"getting the release to upgrade from ({cluster_upgrade_source})",
        lambda: read_previous_release(cluster_upgrade_source, harness_config, image_under_test.name),
    )
    old_image = old.image.for_platform(host_platform())
    if old_image is None:
        pytest.skip(f"{old.acquired.description} has no {host_platform()} image")
    old_layout = describe(old_image, image_under_test.name)
    if old_layout.control is None:
        pytest.fail(f"{old.acquired.description}: no usable {image_under_test.name}.control", pytrace=False)
    engine = detect_engine()
    old_ref: str = harness_step(  # type: ignore[assignment]
        "loading the release to upgrade from into the cluster",
        lambda: kind.stage_image(
            kind_cluster,
            engine_ref=old.acquired.engine_ref if engine else None,
            reader_ref=old.acquired.reader_ref,
            engine_cli=engine.cli if engine else None,
        ),
    )
    if old_ref == extension_in_cluster:
        pytest.fail(f"the release to upgrade from is the candidate image itself ({old_ref})", pytrace=False)
    spec = replace(
        deployment_spec,
        extension_image=old_ref,
        expected_version=old_layout.control.default_version,
        superuser_access=True,
        cluster_name="extharness-upgrade",
    )
    deployment = CnpgDeployment(kube_api, spec, keep=harness_config.keep_cluster)
    request.node.stash[DEPLOYMENT] = (deployment, harness_config.artifacts_dir)
    label = upgrade_source_label(cluster_upgrade_source)
    started = time.monotonic()
    try:
        try:
            deployment.__enter__()
            outcome = ClusterUpgrade(
                replay_cluster_upgrade(
                    deployment,
                    extension_in_cluster,
                    old=label,
                    old_layout=old_layout,
                    new_layout=describe(platform_image, image_under_test.name),
                    profile=cnpg_profile,
                    preload=list(deployment_spec.preload),
                )
            )
            outcome.record.seconds = time.monotonic() - started  # type: ignore[union-attr]
        except (HarnessError, psycopg.Error, ApiException) as exc:  # what the cluster or the server said
            outcome = ClusterUpgrade(None, f"upgrading from {label} on a Cluster: {' '.join(str(exc).split())}")
        yield outcome
    finally:
        deployment.__exit__(None, None, None)


# -- diagnostics on failure -------------------------------------------------------------------------------
def _folder_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    module = item.getparent(pytest.Module)
    stashed = module.stash.get(DEPLOYMENT, None) if module is not None else None
    if stashed is None or (report.when == "setup" and module.stash.get(DIAGNOSED, False)):
        return
    module.stash[DIAGNOSED] = True
    deployment, artifacts_dir = stashed
    folder = artifacts_dir / _folder_name(item.nodeid)
    try:
        diagnostics = deployment.collect_diagnostics(folder, extra={"spec": repr(deployment.spec)})
    except (HarnessError, OSError) as exc:
        report.sections.append(("cnpg diagnostics", f"could not collect diagnostics: {exc}"))
        return
    report.sections.append(("cnpg diagnostics", diagnostics.summary))
    report.user_properties.append(("extharness_cnpg_artifacts", str(diagnostics.folder)))
