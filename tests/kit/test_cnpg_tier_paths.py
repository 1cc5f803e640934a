"""The whole cnpg tier, as a user runs it, on the kit's 1.34 clusters with both CNPG lines.

Together with the tier in the main session (1.36, CNPG 1.29) and tests/kit/test_existing_cluster.py
(1.36, CNPG 1.28 through --kubeconfig) this covers: the ImageVolume path on 1.36 and on 1.34 with
the gate on, the composite fallback on 1.34 with the gate off, both supported CNPG lines, and
the rolling update. Each case is a nested ``pytest tests/cnpg/test_cluster.py`` that makes its
own cluster and must pass on the path the cluster allows (``EXTHARNESS_EXPECT_CNPG_PATH``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nested import REPO, nested_pytest

from extharness.kube import kit
from extharness.kube.imagevolume import FALLBACK, IMAGEVOLUME, ProbeResult

pytestmark = pytest.mark.xdist_group("kit")  # one worker makes the kit clusters one at a time

EXPECTED_PROBE = {IMAGEVOLUME: ProbeResult.MOUNTED_AND_FOUND, FALLBACK: ProbeResult.VOLUME_DROPPED}

CASES = [
    # (kit cluster, CNPG line, path the harness must take, tests that must pass)
    ("1.34", "1.29", IMAGEVOLUME, 11),
    ("1.34-gate-off", "1.28", FALLBACK, 8),  # no image volume: mounts, search paths, rollout skip
]


@pytest.mark.parametrize(("variant", "line", "path", "passed"), CASES, ids=[f"{c[0]}-cnpg{c[1]}" for c in CASES])
def test_cnpg_tier_passes_on_the_path_the_cluster_allows(
    variant: str, line: str, path: str, passed: int, tmp_path: Path
) -> None:
    reason = kit.unavailable(kit.VARIANTS[variant])
    if reason:
        pytest.skip(reason)
    if kit.built_cnpg_operator(kit.CNPG[line]) is None:
        pytest.skip(f"CloudNativePG {kit.CNPG[line].version} is not built on this machine (./harness cluster build)")
    result = nested_pytest(
        [str(REPO / "tests" / "cnpg" / "test_cluster.py"), "--kit-cluster", variant, "--cnpg-version", line],
        tmp_path, env={"EXTHARNESS_EXPECT_CNPG_PATH": path},
    )  # fmt: skip
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert f"{passed} passed" in result.stdout, output
    assert "failed" not in result.stdout.splitlines()[-1], output
    # What the nested tier detected, against what this cluster really is (the probe has the final word).
    detection = json.loads((tmp_path / "artifacts" / "cnpg-detection-main.json").read_text())
    assert detection["server_version"] == kit.VARIANTS[variant].pin.version, detection
    assert all(r.startswith("containerd://2.1.") for r in detection["node_runtimes"]), detection
    assert (detection["mode"], detection["probe"]) == (path, EXPECTED_PROBE[path].value), detection
