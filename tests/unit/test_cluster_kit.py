"""The cluster kit's pure parts: pins, the kind config it writes, the image loaders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from extharness.errors import HarnessError
from extharness.kube import kit
from extharness.kube.cluster import ExistingCluster, ImageLoader


@pytest.mark.parametrize("name", list(kit.VARIANTS))
def test_kind_config_keeps_the_api_server_on_loopback_and_fits_cgroup_v1(name: str) -> None:
    variant = kit.VARIANTS[name]
    config = yaml.safe_load(kit.kind_config(variant))
    assert config["kind"] == "Cluster"
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"
    assert config["networking"]["kubeProxyMode"] == "nftables"  # Services resolve inside the node
    patches = [yaml.safe_load(p) for p in config["kubeadmConfigPatches"]]
    kubelet = next(p for p in patches if p["kind"] == "KubeletConfiguration")
    assert kubelet["failCgroupV1"] is False
    assert any("restrict_oom_score_adj = true" in p for p in config["containerdConfigPatches"])
    init = next(p for p in patches if p["kind"] == "InitConfiguration")
    assert "preflight" in init["skipPhases"]  # kind's own skip, kept by our patch


def test_the_gate_is_on_for_1_34_off_for_the_negative_case_and_default_on_1_36() -> None:
    gates = {name: yaml.safe_load(kit.kind_config(v)).get("featureGates") for name, v in kit.VARIANTS.items()}
    assert gates == {"1.36": None, "1.34": {"ImageVolume": True}, "1.34-gate-off": {"ImageVolume": False}}


def test_every_pin_has_a_version_and_a_checksum() -> None:
    for module in (*kit.KUBERNETES.values(), *kit.CNPG.values(), kit.KIND, kit.CRI_TOOLS, kit.ETCD):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", module.version), module
        assert re.fullmatch(r"h1:[A-Za-z0-9+/]{43}=", module.sum), module
    for deb in kit.NODE_DEBS:
        assert re.fullmatch(r"[0-9a-f]{64}", deb.sha256), deb
        assert deb.version and deb.suite in ("trixie", "forky"), deb
    assert kit.KUBERNETES["1.36"].version.startswith("v1.36.")
    assert kit.KUBERNETES["1.34"].version.startswith("v1.34.")


def test_pods_cannot_send_traffic_beyond_the_node() -> None:
    assert 'iifname "cni0" oifname != "cni0" drop' in kit.POD_EGRESS_RULES
    assert "ExecStart=/usr/sbin/nft -f /etc/extharness-pod-egress.nft" in kit.POD_EGRESS_UNIT


def test_cluster_names_are_dns_labels_unique_per_variant() -> None:
    names = [v.cluster_name for v in kit.VARIANTS.values()]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in names), names


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [(None, "none", ""), ("kind:demo", "kind", "demo"), ("ctr:demo-control-plane", "ctr", "demo-control-plane"),
     ("registry:127.0.0.1:5000", "registry", "127.0.0.1:5000")],
)  # fmt: skip
def test_image_loaders_parse(text: str | None, kind: str, target: str) -> None:
    loader = ImageLoader.parse(text)
    assert (loader.kind, loader.target) == (kind, target)


@pytest.mark.parametrize(
    ("text", "words"),
    [("scp:host", "expected kind:CLUSTER"), ("kind", "needs a target"), ("registry:10.0.0.5:5000", "on this machine")],
)
def test_bad_image_loaders_are_one_clear_line(text: str, words: str) -> None:
    with pytest.raises(HarnessError, match=words):
        ImageLoader.parse(text)


def test_a_missing_kubeconfig_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no such file"):
        ExistingCluster(tmp_path / "nope.kubeconfig")


def test_cluster_cli_rejects_an_unknown_variant(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        kit.main(["config", "1.99"])
    assert exit_info.value.code == 2
    assert "unknown variant 1.99" in capsys.readouterr().err


def test_a_go_string_constant_is_read_with_its_identifiers_replaced() -> None:
    source = 'package x\n\nconst other = "o"\n\nconst manifest = `a: 1\nimage: ` + img + `\nb: ` +\n\thelper + `\n`\n\nfunc f() {}\n'
    assert kit.go_string_constant(source, "manifest", {"img": "I", "helper": "H"}) == "a: 1\nimage: I\nb: H\n"


def test_a_go_string_constant_with_an_unknown_identifier_or_missing_is_an_error() -> None:
    with pytest.raises(HarnessError, match="uses other"):
        kit.go_string_constant("const m = `a` + other\n", "m", {})
    with pytest.raises(HarnessError, match="not found"):
        kit.go_string_constant("const n = `a`\n", "m", {})


def test_the_storage_manifest_is_kinds_own_with_the_images_built_here() -> None:
    source = kit.go_module(kit.KIND, Path("/dev/null")) if kit.built_kind_binary() else None
    if source is None:
        pytest.skip("the kind module is not downloaded on this machine (./harness cluster build)")
    text = kit.storage_manifest()
    assert "docker.io" not in text
    assert f"image: {kit.STORAGE_PROVISIONER_IMAGE}" in text and f"image: {kit.STORAGE_HELPER_IMAGE}" in text
    assert "storageclass.kubernetes.io/is-default-class" in text


def test_the_default_cnpg_version_is_the_newest_line_the_kit_builds() -> None:
    from extharness.config import DEFAULT_CNPG_VERSION

    newest = max(kit.CNPG_BUILT, key=lambda line: tuple(int(x) for x in line.split(".")))
    assert DEFAULT_CNPG_VERSION == kit.CNPG[newest].version.lstrip("v")


def test_a_cnpg_line_means_the_newest_patch_the_kit_pins() -> None:
    from extharness.kube.session import resolve_cnpg_version

    assert resolve_cnpg_version("1.28") == kit.CNPG["1.28"].version.lstrip("v")
    assert resolve_cnpg_version("v1.29.1") == "1.29.1"
    with pytest.raises(HarnessError, match="knows the lines"):
        resolve_cnpg_version("1.20")
    with pytest.raises(HarnessError, match="expected a release"):
        resolve_cnpg_version("latest")


def test_the_operator_comes_from_the_manifest_given_first(tmp_path: Path) -> None:
    from extharness.config import HarnessConfig
    from extharness.kube.session import operator_release

    manifest = tmp_path / "cnpg.yaml"
    release = operator_release(HarnessConfig.from_values({"cnpg_manifest": str(manifest), "cnpg_version": "1.28"}))
    assert (release.manifest, release.archive, release.version) == (
        manifest,
        None,
        kit.CNPG["1.28"].version.lstrip("v"),
    )
    other = operator_release(HarnessConfig.from_values({"cnpg_version": "1.27.4"}))  # not a kit build
    assert (other.manifest, other.archive) == (None, None)
