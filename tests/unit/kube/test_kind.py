"""The kind cluster resource: config per node version, fast skips, and never deleting what it did not make.

The lifecycle tests drive ``KindCluster`` through stand-in ``kind`` and ``docker`` scripts on
PATH that record their calls (no cluster is created): what is checked is which commands the
harness runs, with which arguments, and when it deletes.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from standins import install_kind_and_docker, recorded_calls

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.kube import kind
from extharness.kube.kind import KindCluster, SharedKindCluster


# -- the generated kind config ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "gate"),
    [
        ("kindest/node:v1.33.1", True),
        ("kindest/node:v1.34.0@sha256:" + "a" * 64, True),
        ("kindest/node:v1.35.0", False),
        ("kindest/node:v1.36.1", False),
        ("kindest/node:v1.32.5", False),
        ("registry.local:5000/kindest/node:v1.33.4", True),
        ("kindest/node:latest", False),
        ("kindest/node", False),
    ],
)
def test_imagevolume_gate_only_where_it_is_off_by_default(image: str, gate: bool) -> None:
    config = yaml.safe_load(kind.render_kind_config(image))
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert ("featureGates" in config) is gate
    if gate:
        assert config["featureGates"] == {"ImageVolume": True}
    assert [n["image"] for n in config["nodes"]] == [image]


def test_workers_use_the_same_node_image() -> None:
    config = kind.kind_config("kindest/node:v1.36.1", workers=2)
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]


def test_config_header_says_what_happens_on_an_old_node() -> None:
    assert "composite fallback" in kind.render_kind_config("kindest/node:v1.32.5")


def test_default_node_image_is_a_136_node() -> None:
    from extharness.config import DEFAULT_KIND_NODE_IMAGE

    assert kind.node_version(DEFAULT_KIND_NODE_IMAGE)[:2] == (1, 36)
    assert kind.DEFAULT_NODE_IMAGE == DEFAULT_KIND_NODE_IMAGE


def test_session_cluster_names_are_valid_and_distinct() -> None:
    a, b = kind.session_cluster_name("gw0-ABC123def456"), kind.session_cluster_name("f00d")
    assert a != b and a.startswith("extharness-") and len(a) <= 32 and a == a.lower()


# -- stand-in CLIs (tests/unit/standins.py) ---------------------------------------------------------
@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir, state = tmp_path / "bin", tmp_path / "state"
    state.mkdir()
    install_kind_and_docker(bindir)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.delenv("KIND_EXPERIMENTAL_PROVIDER", raising=False)
    return state


# -- available(): one line, fast --------------------------------------------------------------------
def test_without_kind_the_reason_is_one_line_and_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    started = time.monotonic()
    reason = kind.available()
    assert time.monotonic() - started < 0.5
    assert reason is not None and "\n" not in reason
    assert reason.startswith("kind not found: install kind >= 0.29 and Docker")


def test_without_docker_the_reason_names_docker(fake_bin: Path) -> None:
    (fake_bin.parent / "bin" / "docker").unlink()
    assert kind.available().startswith("docker not found")


def test_a_stopped_docker_daemon_is_reported(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    assert "Cannot connect to the Docker daemon" in kind.available()


def test_an_old_kind_is_reported(fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KIND_VERSION", "v0.27.0")
    assert "too old" in kind.available()


def test_kind_and_docker_present(fake_bin: Path) -> None:
    assert kind.available() is None


# -- lifecycle ----------------------------------------------------------------------------------------
def test_created_cluster_is_deleted(fake_bin: Path, tmp_path: Path) -> None:
    with KindCluster("mine", node_image="kindest/node:v1.33.1", workdir=tmp_path / "w") as cluster:
        assert cluster.created and cluster.kubeconfig.exists()
        config = yaml.safe_load(cluster.config_file.read_text())
        assert config["featureGates"] == {"ImageVolume": True}
    calls = recorded_calls(fake_bin)
    create = next(c for c in calls if c.startswith("kind create cluster"))
    assert "--name mine" in create and "--image kindest/node:v1.33.1" in create and "--config" in create
    assert any(c.startswith("kind delete cluster --name mine") for c in calls)


def test_existing_cluster_is_reused_and_never_deleted(fake_bin: Path, tmp_path: Path) -> None:
    (fake_bin / "clusters").write_text("theirs\n")
    with KindCluster("theirs", workdir=tmp_path / "w") as cluster:
        assert not cluster.created
    cluster = KindCluster("theirs", workdir=tmp_path / "w")
    cluster.reuse()
    cluster.delete()
    assert not any(c.startswith("kind delete") for c in recorded_calls(fake_bin))
    assert not any(c.startswith("kind create") for c in recorded_calls(fake_bin))


def test_reusing_a_missing_cluster_says_so(fake_bin: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="kind cluster .nope. does not exist"):
        KindCluster("nope", workdir=tmp_path).reuse()


def test_keep_leaves_a_created_cluster(fake_bin: Path, tmp_path: Path) -> None:
    with KindCluster("kept", workdir=tmp_path / "w", keep=True):
        pass
    assert not any(c.startswith("kind delete") for c in recorded_calls(fake_bin))


def test_workers_share_one_cluster_and_the_last_one_deletes_it(fake_bin: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    gw0 = SharedKindCluster(state_dir, session_id="abc123", node_image="kindest/node:v1.35.0")
    gw1 = SharedKindCluster(state_dir, session_id="abc123", node_image="kindest/node:v1.35.0")
    first, second = gw0.acquire(), gw1.acquire()
    assert first.name == second.name == "extharness-abc123"
    assert sum(c.startswith("kind create") for c in recorded_calls(fake_bin)) == 1
    gw0.release()
    assert not any(c.startswith("kind delete") for c in recorded_calls(fake_bin))
    gw1.release()
    assert sum(c.startswith("kind delete cluster --name extharness-abc123") for c in recorded_calls(fake_bin)) == 1
    assert not (state_dir / "extharness-kind.json").exists()


def test_shared_reuse_by_name_never_deletes(fake_bin: Path, tmp_path: Path) -> None:
    (fake_bin / "clusters").write_text("dev\n")
    shared = SharedKindCluster(tmp_path / "run", session_id="x", reuse_name="dev")
    assert shared.acquire().name == "dev"
    shared.release()
    assert not any(c.startswith(("kind delete", "kind create")) for c in recorded_calls(fake_bin))


def test_shared_keep_never_deletes(fake_bin: Path, tmp_path: Path) -> None:
    shared = SharedKindCluster(tmp_path / "run", session_id="k", keep=True)
    shared.acquire()
    shared.release()
    assert not any(c.startswith("kind delete") for c in recorded_calls(fake_bin))


# -- images -----------------------------------------------------------------------------------------------
def _tar(path: Path, members: dict[str, object]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, doc in members.items():
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_names_from_docker_and_oci_archives(tmp_path: Path) -> None:
    docker = _tar(tmp_path / "d.tar", {"manifest.json": [{"RepoTags": ["localhost/x-ext:1.0"]}]})
    oci = _tar(
        tmp_path / "o.tar",
        {
            "index.json": {
                "manifests": [
                    {
                        "annotations": {
                            "io.containerd.image.name": "ghcr.io/o/x-ext:1.0",
                            "org.opencontainers.image.ref.name": "1.0",
                        }
                    },
                    {"annotations": {"org.opencontainers.image.ref.name": "latest"}},
                ]
            }
        },
    )
    assert kind.archive_image_names(docker) == ["localhost/x-ext:1.0"]
    assert kind.archive_image_names(oci) == ["ghcr.io/o/x-ext:1.0"]


def test_engine_images_go_in_through_an_archive(fake_bin: Path, tmp_path: Path) -> None:
    cluster = KindCluster("c", workdir=tmp_path / "w")
    assert cluster.load_image("localhost/x-ext:1.0") == "localhost/x-ext:1.0"
    calls = recorded_calls(fake_bin)
    assert any(c.startswith("docker save -o") and c.endswith("localhost/x-ext:1.0") for c in calls)
    assert any(c.startswith("kind load image-archive") and "--name c" in c for c in calls)
    assert not any("docker-image" in c for c in calls)


def test_staging_archives_and_registry_references(fake_bin: Path, tmp_path: Path) -> None:
    cluster = KindCluster("c", workdir=tmp_path / "w")
    archive = _tar(tmp_path / "d.tar", {"manifest.json": [{"RepoTags": ["localhost/x-ext:2"]}]})
    assert kind.stage_image(cluster, engine_ref=None, reader_ref=f"docker-archive:{archive}") == "localhost/x-ext:2"
    assert kind.stage_image(cluster, engine_ref=None, reader_ref="ghcr.io/o/x-ext:1") == "ghcr.io/o/x-ext:1"
    with pytest.raises(EnvironmentMissing, match="needs a container engine"):
        kind.stage_image(cluster, engine_ref=None, reader_ref="oci-archive:/tmp/x.tar")


def test_kubeconfig_is_private(fake_bin: Path, tmp_path: Path) -> None:
    (fake_bin / "clusters").write_text("theirs\n")
    cluster = KindCluster("theirs", workdir=tmp_path / "w")
    cluster.reuse()
    assert stat.S_IMODE(os.stat(cluster.kubeconfig).st_mode) == 0o600


# What `kind create cluster` said on a fresh machine (kind v0.33.0, podman 4.3) when another
# session's `kind create` made kind's network at the same moment (a real run, 2026-12-02).
NETWORK_RACE_OUTPUT = (
    "creating kind cluster extharness-856bc40dcb-kit136t (localhost/extharness/kind-node:v1.36.3): "
    "`kind create cluster --name ...` failed (exit 1): • Ensuring node image (localhost/extharness/kind-node:v1.36.3) "
    '🖼️  ... | ERROR: failed to create cluster: failed to ensure podman network: command "podman network create '
    '-d=bridge --ipv6 --subnet fc00:f853:ccd:e793::/64 kind" failed with error: exit status 125 | Command Output: '
    "Error: network name kind already used: network already exists"
)


def test_a_lost_race_for_kinds_network_is_retried_and_other_failures_are_not() -> None:
    from extharness.runtime.processes import CommandTimedOut

    calls: list[int] = []

    def lose_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise HarnessError(NETWORK_RACE_OUTPUT)
        return "created"

    assert kind.create_retrying_network_race(lose_once) == "created" and len(calls) == 2

    def always(exc: HarnessError):
        def create() -> str:
            calls.append(1)
            raise exc

        return create

    for exc, tries in (
        (HarnessError("creating kind cluster x: ERROR: failed to create cluster: node(s) already exist"), 1),
        (CommandTimedOut("creating kind cluster x: did not finish within 600s (network already exists)"), 1),
        (HarnessError(NETWORK_RACE_OUTPUT), 3),  # the network never settles: give up with kind's words
    ):
        calls.clear()
        with pytest.raises(HarnessError) as raised:
            kind.create_retrying_network_race(always(exc))
        assert raised.value is exc and len(calls) == tries
