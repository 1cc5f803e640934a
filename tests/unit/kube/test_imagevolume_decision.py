"""ImageVolume or the composite fallback: the decision over recorded signals, and reading them.

Named cases for what goes wrong in practice (old server, gate off, old runtime, empty mount,
dropped volume) and everything fine; hypothesis properties over all signal combinations.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extharness.kube.imagevolume import (
    FALLBACK,
    IMAGEVOLUME,
    Decision,
    ImageVolumeUnsupported,
    ProbeOutcome,
    ProbeResult,
    RuntimeInfo,
    Signals,
    classify_probe,
    decide,
    parse_feature_metric,
    parse_server_version,
    signals_from_dict,
)
from extharness.kube.manifests import render_probe_pod

FOUND = ProbeOutcome(ProbeResult.MOUNTED_AND_FOUND, "/ext/share/extension/pg_trickle.control")
GOOD = Signals("v1.36.1", 1.0, ("containerd://2.1.3",), FOUND)


# -- named cases --------------------------------------------------------------------------------
def test_everything_fine_takes_imagevolume() -> None:
    decision = decide(GOOD)
    assert decision.mode == IMAGEVOLUME
    assert "found the control file" in decision.reason


def test_old_server_takes_fallback() -> None:
    decision = decide(Signals("v1.32.5", None, ("containerd://2.1.1",), ProbeOutcome(ProbeResult.VOLUME_DROPPED)))
    assert decision.mode == FALLBACK
    assert "dropped" in decision.reason and "v1.32.5 < 1.33" in decision.reason


def test_old_server_without_probe_takes_fallback() -> None:
    decision = decide(Signals("v1.30.0", None, ("containerd://2.1.1",)))
    assert decision == Decision(FALLBACK, decision.reason)
    assert "1.33" in decision.reason


def test_gate_off_on_133_takes_fallback() -> None:
    decision = decide(Signals("v1.33.1", 0.0, ("containerd://2.1.1",), ProbeOutcome(ProbeResult.VOLUME_DROPPED)))
    assert decision.mode == FALLBACK
    assert "gate off" in decision.reason


def test_gate_on_134_without_probe_takes_imagevolume() -> None:
    decision = decide(Signals("v1.34.0", 1.0, ("containerd://2.1.4",)))
    assert decision.mode == IMAGEVOLUME
    assert "probe not run" in decision.reason


def test_unreadable_metric_on_133_needs_the_probe() -> None:
    assert decide(Signals("v1.33.1", None, ("containerd://2.1.1",))).mode == FALLBACK
    assert decide(Signals("v1.33.1", None, ("containerd://2.1.1",), FOUND)).mode == IMAGEVOLUME


def test_old_runtime_takes_fallback() -> None:
    decision = decide(
        Signals(
            "v1.35.0",
            1.0,
            ("containerd://1.7.27",),
            ProbeOutcome(ProbeResult.CREATE_CONTAINER_ERROR, 'failed to mkdir ""'),
        )
    )
    assert decision.mode == FALLBACK
    assert "CreateContainerError" in decision.reason and "containerd < 2.1.0" in decision.reason


def test_old_runtime_without_probe_takes_fallback() -> None:
    decision = decide(Signals("v1.35.0", 1.0, ("containerd://2.0.5",)))
    assert decision.mode == FALLBACK and "2.0.5" in decision.reason


def test_cri_dockerd_takes_fallback() -> None:
    assert decide(Signals("v1.36.0", 1.0, ("docker://28.1.1",))).mode == FALLBACK


def test_empty_mount_takes_fallback_even_when_everything_else_looks_fine() -> None:
    decision = decide(Signals("v1.36.1", 1.0, ("containerd://2.1.3",), ProbeOutcome(ProbeResult.EMPTY_MOUNT)))
    assert decision.mode == FALLBACK
    assert "EMPTY directory" in decision.reason


def test_volume_dropped_takes_fallback() -> None:
    decision = decide(Signals("v1.36.1", 1.0, ("containerd://2.1.3",), ProbeOutcome(ProbeResult.VOLUME_DROPPED)))
    assert decision.mode == FALLBACK and "dropped" in decision.reason


def test_the_probe_is_the_final_word() -> None:
    decision = decide(Signals("v1.33.1", 0.0, ("containerd://2.0.0",), FOUND))
    assert decision.mode == IMAGEVOLUME
    assert "although" in decision.reason


def test_control_missing_keeps_imagevolume_but_blames_the_image() -> None:
    decision = decide(
        Signals("v1.36.1", 1.0, ("containerd://2.1.3",), ProbeOutcome(ProbeResult.CONTROL_MISSING, "lib/x.so"))
    )
    assert decision.mode == IMAGEVOLUME
    assert "-m layout" in decision.reason


def test_forcing_imagevolume_on_an_unsupported_cluster_fails_loudly() -> None:
    signals = Signals("v1.32.0", None, ("containerd://2.1.1",), ProbeOutcome(ProbeResult.VOLUME_DROPPED))
    with pytest.raises(ImageVolumeUnsupported, match=r"--cnpg-mode imagevolume, but this cluster cannot mount"):
        decide(signals, "imagevolume")


def test_forcing_fallback_always_takes_it() -> None:
    decision = decide(GOOD, "fallback")
    assert decision.mode == FALLBACK and "forced by --cnpg-mode fallback" in decision.reason


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(Exception, match="--cnpg-mode"):
        decide(GOOD, "sometimes")


# -- properties over every combination ----------------------------------------------------------
versions = st.one_of(
    st.none(),
    st.builds(
        lambda a, b, c: f"v1.{a}.{b}{c}",
        st.integers(25, 40),
        st.integers(0, 9),
        st.sampled_from(["", "-gke.100", "+k3s1"]),
    ),
)
metrics = st.one_of(st.none(), st.sampled_from([0.0, 1.0]))
runtimes = st.lists(
    st.sampled_from(
        [
            "containerd://1.7.27",
            "containerd://2.0.5",
            "containerd://2.1.0",
            "containerd://2.1.3",
            "cri-o://1.30.2",
            "cri-o://1.31.0",
            "cri-o://1.33.1",
            "docker://28.1.1",
            "weird://x",
        ]
    ),
    max_size=3,
).map(tuple)
probes = st.builds(ProbeOutcome, st.sampled_from(list(ProbeResult)), st.text(max_size=20))
signals = st.builds(Signals, versions, metrics, runtimes, probes)


@settings(max_examples=400, deadline=None)
@given(signals)
def test_auto_always_decides_with_a_reason(s: Signals) -> None:
    decision = decide(s, "auto")
    assert decision.mode in (IMAGEVOLUME, FALLBACK)
    assert decision.reason.strip()


@settings(max_examples=400, deadline=None)
@given(signals)
def test_forcing_imagevolume_raises_exactly_when_auto_falls_back(s: Signals) -> None:
    auto = decide(s, "auto")
    if auto.mode == IMAGEVOLUME:
        assert decide(s, "imagevolume") == auto
    else:
        with pytest.raises(ImageVolumeUnsupported):
            decide(s, "imagevolume")


@settings(max_examples=200, deadline=None)
@given(signals)
def test_forced_fallback_is_always_fallback(s: Signals) -> None:
    assert decide(s, "fallback").mode == FALLBACK


@settings(max_examples=300, deadline=None)
@given(versions, metrics, runtimes, st.text(max_size=10))
def test_a_found_control_file_always_means_imagevolume(v, metric, rts, detail) -> None:
    assert decide(Signals(v, metric, rts, ProbeOutcome(ProbeResult.MOUNTED_AND_FOUND, detail))).mode == IMAGEVOLUME


@settings(max_examples=300, deadline=None)
@given(
    versions,
    metrics,
    runtimes,
    st.sampled_from(
        [
            ProbeResult.EMPTY_MOUNT,
            ProbeResult.VOLUME_DROPPED,
            ProbeResult.CREATE_CONTAINER_ERROR,
            ProbeResult.PULL_ERROR,
        ]
    ),
)
def test_a_failed_probe_always_means_fallback(v, metric, rts, result) -> None:
    assert decide(Signals(v, metric, rts, ProbeOutcome(result))).mode == FALLBACK


@settings(max_examples=300, deadline=None)
@given(metrics, runtimes, st.integers(0, 32), st.integers(0, 20))
def test_without_a_probe_servers_before_133_never_take_imagevolume(metric, rts, minor, patch) -> None:
    assert decide(Signals(f"v1.{minor}.{patch}", metric, rts)).mode == FALLBACK


@settings(max_examples=300, deadline=None)
@given(versions, metrics, runtimes, probes)
def test_signals_round_trip_through_the_report(v, metric, rts, probe) -> None:
    s = Signals(v, metric, rts, probe)
    assert signals_from_dict(s.as_dict()) == s
    assert decide(signals_from_dict(s.as_dict())) == decide(s)


# -- reading the signals ------------------------------------------------------------------------
METRICS = """\
# HELP kubernetes_feature_enabled [BETA] This metric records the data about the stage and enablement of a k8s feature.
# TYPE kubernetes_feature_enabled gauge
kubernetes_feature_enabled{name="InPlacePodVerticalScaling",stage="BETA"} 1
kubernetes_feature_enabled{name="ImageVolume",stage="BETA"} 0
kubernetes_feature_enabled{name="ImageVolumeWithDigest",stage="ALPHA"} 1
"""


def test_feature_metric_is_read_by_exact_name() -> None:
    assert parse_feature_metric(METRICS) == 0.0
    assert parse_feature_metric(METRICS.replace('"ImageVolume",stage="BETA"} 0', '"ImageVolume",stage="BETA"} 1')) == 1
    assert parse_feature_metric("apiserver_request_total 5\n") is None


@pytest.mark.parametrize(
    ("text", "version"),
    [("v1.33.1", (1, 33, 1)), ("v1.34.0-gke.1200", (1, 34, 0)), ("1.35", (1, 35, 0)), ("garbage", None), (None, None)],
)
def test_server_versions(text, version) -> None:
    assert parse_server_version(text) == version


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("containerd://2.1.0", True),
        ("containerd://2.0.6", False),
        ("cri-o://1.31.2", True),
        ("cri-o://1.30.9", False),
        ("docker://27.0.1", False),
        ("containerd://v2.1.1-k3s1", True),
        ("remote://1", None),
    ],
)
def test_runtime_support(raw: str, ok: bool | None) -> None:
    assert RuntimeInfo(raw).support()[0] is ok


def _probe_pod(phase: str = "Succeeded", waiting: str | None = None, drop_volume: bool = False) -> dict:
    pod = render_probe_pod("p", extension_image="x:1", operand_image="op:18", extension="x")
    if drop_volume:
        pod["spec"]["volumes"] = []
    state = (
        {"waiting": {"reason": waiting, "message": 'failed to mkdir ""'}}
        if waiting
        else {"terminated": {"exitCode": 0, "reason": "Completed"}}
    )
    pod["status"] = {"phase": phase, "containerStatuses": [{"name": "probe", "state": state}]}
    return pod


def test_probe_verdicts_from_pod_and_log() -> None:
    assert (
        classify_probe(_probe_pod(), "EXTHARNESS_PROBE=found /ext/share/extension/x.control\n").result
        is ProbeResult.MOUNTED_AND_FOUND
    )
    assert classify_probe(_probe_pod("Failed"), "EXTHARNESS_PROBE=empty\n").result is ProbeResult.EMPTY_MOUNT
    assert (
        classify_probe(_probe_pod("Failed"), "EXTHARNESS_PROBE=control-missing\n/ext:\nlib\n").result
        is ProbeResult.CONTROL_MISSING
    )
    assert classify_probe(_probe_pod(drop_volume=True)).result is ProbeResult.VOLUME_DROPPED
    assert classify_probe(_probe_pod("Pending", "CreateContainerError")).result is ProbeResult.CREATE_CONTAINER_ERROR
    assert classify_probe(_probe_pod("Pending", "ImagePullBackOff")).result is ProbeResult.PULL_ERROR
    assert classify_probe(_probe_pod("Pending", "ContainerCreating")) is None
