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

pytestmark = pytest.mark.xdist_group("kit")  # one worker makes the kit clusters one at a time


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
            lambda: operator.ensure_operator(api, pin.version.lstrip("v"), Path("/nonexistent"), manifest_file=manifest),
        )
        assert info.installed_by_harness
        assert info.version == pin.version.lstrip("v"), info
        assert info.image == f"localhost/extharness/cloudnative-pg:{pin.version.lstrip('v')}", info
    finally:
        problems = operator.uninstall(api, objects)
        assert not problems, problems
