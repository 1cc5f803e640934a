"""CloudNativePG built here from its Go module and installed from its own release manifest on a
kit cluster: the operator must become Available (deployment and webhook) from the local image.

The manifest is ``releases/cnpg-X.Y.Z.yaml`` of that version's module, with only the image
reference pointed at the local build (and ``imagePullPolicy: IfNotPresent``, as no registry
has it). Where the kit or that operator build is missing, the test skips with one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from extharness.kube import kind, kit, operator
from extharness.pytest_plugin import harness_step

pytestmark = pytest.mark.xdist_group("kit-b")  # the kit clusters the other worker makes (conftest.LONG_GROUPS)


@pytest.mark.parametrize("line", kit.CNPG_BUILT)
def test_locally_built_operator_installs_from_its_release_manifest(cluster_136: kind.KindCluster, line: str) -> None:
    pin = kit.CNPG[line]
    built = kit.built_cnpg_operator(pin)
    if built is None:
        pytest.skip(f"CloudNativePG {pin.version} is not built on this machine (./harness cluster build)")
    archive, manifest = built
    api = cluster_136.api_client()
    assert operator.find_installed(api) is None, "an operator is already installed on this fresh cluster"
    cluster_136.load_archive(archive)
    objects = operator.load_manifest(Path(manifest).read_text())
    try:
        info = harness_step(
            f"installing CloudNativePG {pin.version}",
            lambda: operator.ensure_operator(
                api, pin.version.lstrip("v"), Path("/nonexistent"), manifest_file=manifest
            ),
        )
        assert info.installed_by_harness
        assert info.version == pin.version.lstrip("v"), info
        assert info.image == f"localhost/extharness/cloudnative-pg:{pin.version.lstrip('v')}", info
    finally:
        problems = operator.uninstall(api, objects, timeout=300)  # namespaces terminate slowly under load
        assert not problems, problems


def test_an_operator_installed_another_way_is_found_and_left_alone(cluster_136: kind.KindCluster) -> None:
    """As Helm installs it: Deployment ``cnpg-cloudnative-pg`` in another namespace. The harness
    must use it (wait for it to serve) and install nothing over it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pin = kit.CNPG["1.29"]
    built = kit.built_cnpg_operator(pin)
    if built is None:
        pytest.skip(f"CloudNativePG {pin.version} is not built on this machine (./harness cluster build)")
    archive, manifest = built
    api = cluster_136.api_client()
    assert operator.find_installed(api) is None, "an operator is already installed on this cluster"
    cluster_136.load_archive(archive)
    namespace = "helm-style-cnpg"
    objects = operator.load_manifest(Path(manifest).read_text().replace("cnpg-system", namespace))
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == operator.DEPLOYMENT:
            obj["metadata"]["name"] = "cnpg-cloudnative-pg"
    try:
        operator.apply_objects(api, objects)
        info = harness_step(
            "using the operator found",
            lambda: operator.ensure_operator(
                api, pin.version.lstrip("v"), Path("/nonexistent"), manifest_file=manifest
            ),
        )
        assert not info.installed_by_harness, info
        assert (info.namespace, info.deployment) == (namespace, "cnpg-cloudnative-pg"), info
        with pytest.raises(ApiException) as missing:
            client.CoreV1Api(api).read_namespace(operator.NAMESPACE)
        assert missing.value.status == 404, f"the harness created {operator.NAMESPACE} beside the found operator"
        deployments = operator._operator_deployments(api)
        assert [d["metadata"]["name"] for d in deployments] == ["cnpg-cloudnative-pg"], deployments
    finally:
        problems = operator.uninstall(api, objects, timeout=300)  # namespaces terminate slowly under load
        assert not problems, problems
