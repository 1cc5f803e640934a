"""The kube code's pure checks against objects the real CloudNativePG operator produced.

Recorded on a cluster-kit cluster (Kubernetes v1.36.3, containerd 2.1.9) with CloudNativePG
1.29.1 built here, by ``EXTHARNESS_RECORD_TO=tests/unit/recorded pytest tests/kit/test_cnpg_failures.py
tests/kit/test_cnpg_operator.py`` (tests/kit/recording.py); ``cnpg-initdb-permission-denied.log``
is the initdb log of a real run on a node whose default StorageClass made root-owned host paths.
No shape here is written by hand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from extharness.kube import deploy, operator

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> dict:
    path = RECORDED / f"{name}.json"
    return json.loads(path.read_text())


def test_a_failed_database_is_seen_at_once_with_postgresqls_words() -> None:
    database = recorded("cnpg-database-failed")
    status = database["status"]
    assert status["applied"] is False and "observedGeneration" not in status  # CNPG's real failure shape
    state, why = deploy.database_state(database, ["pg_ticker"])
    assert state is False
    assert "extharness_no_such_function" in why, why


def test_an_applied_database_is_applied() -> None:
    database = recorded("cnpg-database-applied")
    assert database["status"]["observedGeneration"] == database["metadata"]["generation"]
    assert deploy.database_state(database, ["hstore"]) == (True, "applied: hstore")
    assert deploy.database_state(database, ["pg_ticker"])[0] is None  # not one it was asked for


def test_a_healthy_cluster_is_healthy() -> None:
    healthy, summary = deploy.cluster_health(recorded("cnpg-cluster-healthy"))
    assert healthy, summary
    assert "1/1 ready" in summary


def test_the_instance_pod_mounts_the_image_under_the_volume_name_of_its_cnpg_version() -> None:
    pod = recorded("cnpg-instance-pod")
    reference = next(v["image"]["reference"] for v in pod["spec"]["volumes"] if v.get("image"))
    assert deploy.mount_problems(pod, "pg-ticker", reference, "1.29.1") == []
    assert deploy.mount_problems(pod, "pg-ticker", reference, None) == []  # version unknown: any CNPG name
    problems = deploy.mount_problems(pod, "pg-ticker", reference, "1.28.0")  # 1.28.0 named it pg-ticker
    assert problems and "pg-ticker" in problems[0].message, problems
    assert problems[0].rule == "cnpg.imagevolume.mount" and problems[0].path == pod["metadata"]["name"]
    assert deploy.pod_failure(pod) is None


def test_a_rolling_update_has_landed_only_on_new_ready_pods_that_mount_the_new_image() -> None:
    pod = recorded("cnpg-instance-pod")  # Running and Ready, mounting the image of its Cluster
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    reference = next(v["image"]["reference"] for v in pod["spec"]["volumes"] if v.get("image"))
    assert deploy.rollout_problems([pod], "pg-ticker", reference, {name: "the uid before"}, 1) == []

    def said(found: list) -> list[tuple[str, str, str]]:
        assert all(f.rule == "cnpg.rollout" and f.severity == "error" for f in found), found
        return [(f.path, f.message, str(f)) for f in found]

    assert said(deploy.rollout_problems([pod], "pg-ticker", reference, {name: uid}, 1)) == [
        (name, "not restarted yet", f"cnpg.rollout error: {name}: not restarted yet")
    ]
    assert said(deploy.rollout_problems([pod], "pg-ticker", "localhost/x:2", {}, 1)) == [
        (
            name,
            f"mounts {reference}, not localhost/x:2",
            f"cnpg.rollout error: {name}: mounts {reference}, not localhost/x:2",
        )
    ]
    assert [(f.path, f.message) for f in deploy.rollout_problems([pod], "pg-ticker", reference, {}, 2)] == [
        ("instance pods", "1/2 there")
    ]
    pending = recorded("cnpg-initdb-pod-pull-error")  # a pod whose Ready condition is False
    pending_ref = next(v["image"]["reference"] for v in pending["spec"]["volumes"] if v.get("image"))
    assert said(deploy.rollout_problems([pending], "pg-ticker", pending_ref, {}, 1)) == [
        (
            pending["metadata"]["name"],
            "not Ready (Pending)",
            f"cnpg.rollout error: {pending['metadata']['name']}: not Ready (Pending)",
        )
    ]


def test_the_pods_the_harness_lists_carry_the_labels_it_selects_by() -> None:
    for name in ("cnpg-instance-pod", "cnpg-initdb-pod-pull-error"):
        assert recorded(name)["metadata"]["labels"]["cnpg.io/cluster"] == "extharness", name
    initdb = recorded("cnpg-initdb-pod-pull-error")
    assert "job-name" in initdb["metadata"]["labels"]
    assert "job-name" not in recorded("cnpg-instance-pod")["metadata"]["labels"]
    assert deploy.failed_job_pods([initdb]) == []  # Pending, not Failed
    failed = copy.deepcopy(initdb)
    failed["status"]["phase"] = "Failed"  # what a failed initdb pod's phase reads
    assert deploy.failed_job_pods([failed]) == [initdb["metadata"]["name"]]


def test_an_unpullable_extension_image_is_a_stuck_pod() -> None:
    """The image volume is on the initdb pod already: its init container waits in ImagePullBackOff."""
    failure = deploy.pod_failure(recorded("cnpg-initdb-pod-pull-error"))
    assert failure and "ImagePullBackOff" in failure and "not-there" in failure, failure


def test_initdb_errors_are_read_from_the_instance_managers_log() -> None:
    errors = deploy.log_errors((RECORDED / "cnpg-initdb-permission-denied.log").read_text())
    assert errors and 'could not create directory "/var/lib/postgresql/data/pgdata": Permission denied' in errors[0]


@pytest.mark.parametrize("how", ["release manifest", "helm name", "no label"])
def test_the_operator_deployment_is_recognised_however_it_is_named(how: str) -> None:
    dep = recorded("cnpg-operator-deployment")
    assert dep["metadata"]["name"] == operator.DEPLOYMENT
    if how != "release manifest":
        dep["metadata"]["name"] = "cnpg-cloudnative-pg"
        dep["metadata"]["namespace"] = "somewhere"
    if how == "no label":
        dep["metadata"]["labels"] = {}
    assert operator.is_operator_deployment(dep)
    assert operator.availability_problem(dep) is None
    other = copy.deepcopy(dep)
    other["metadata"]["labels"] = {}
    for container in other["spec"]["template"]["spec"]["containers"]:
        container["command"], container["args"] = ["/manager"], ["instance", "run"]
    assert not operator.is_operator_deployment(other)
