"""The probe's reading of pods as a real cluster reports them (recorded on a cluster-kit
cluster, Kubernetes v1.36.3 + containerd 2.1.9, with ``tests/unit/recorded/probe-pod-*.json``).

A real kubelet reports the probe container as terminated while the pod's phase still says
Running: the harness must read the log then, not call the probe failed for lack of output.
"""

from __future__ import annotations

import json
from pathlib import Path

from extharness.kube import imagevolume as iv

RECORDED = Path(__file__).parent / "recorded"
LOG = "EXTHARNESS_PROBE=found /ext/share/extension/pg_ticker.control\n"  # the probe's real output


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"probe-pod-{name}.json").read_text())


def test_a_terminated_container_in_a_running_pod_counts_as_finished() -> None:
    pod = recorded("running-terminated")
    assert pod["status"]["phase"] == "Running"
    assert iv._finished(pod)
    assert iv.classify_probe(pod, LOG) == iv.ProbeOutcome(
        iv.ProbeResult.MOUNTED_AND_FOUND, "/ext/share/extension/pg_ticker.control"
    )


def test_a_running_probe_is_not_finished_and_has_no_verdict() -> None:
    pod = recorded("running")
    assert not iv._finished(pod)
    assert iv.classify_probe(pod, "") is None


def test_a_succeeded_probe_with_its_log_is_found() -> None:
    pod = recorded("succeeded")
    assert iv._finished(pod)
    assert iv.classify_probe(pod, LOG).result == iv.ProbeResult.MOUNTED_AND_FOUND
