"""Reading CNPG and pod objects: health, Database status, mounts, stuck pods, psql rows (pure)."""

from __future__ import annotations

import pytest

from extharness.kube.deploy import (
    HEALTHY_PHASE,
    cluster_health,
    database_state,
    describe_pod,
    expectation_problem,
    mount_problems,
    parse_rows,
    pod_failure,
    typed,
)
from extharness.postgres.profiles import SmokeStep, load_profile


def _cluster(phase: str | None, ready: int, instances: int = 1) -> dict:
    status = {"readyInstances": ready, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if phase:
        status["phase"] = phase
    return {"spec": {"instances": instances}, "status": status}


def test_cluster_health_needs_the_phase_and_every_instance() -> None:
    assert cluster_health(_cluster(HEALTHY_PHASE, 3, 3))[0]
    assert not cluster_health(_cluster(HEALTHY_PHASE, 2, 3))[0]
    healthy, summary = cluster_health(_cluster("Setting up primary", 0))
    assert not healthy and "'Setting up primary'" in summary and "Ready=False" in summary
    assert "no phase yet" in cluster_health({"spec": {}})[1]


def test_database_state_waits_for_reconciliation_then_reads_each_extension() -> None:
    assert database_state({"metadata": {"generation": 1}, "status": {}}, ["x"])[0] is None
    assert (
        database_state({"metadata": {"generation": 2}, "status": {"applied": True, "observedGeneration": 1}}, ["x"])[0]
        is None
    )
    ok = {
        "metadata": {"generation": 1},
        "status": {"applied": True, "observedGeneration": 1, "extensions": [{"name": "x", "applied": True}]},
    }
    assert database_state(ok, ["x"]) == (True, "applied: x")
    failed = {
        "status": {
            "applied": True,
            "extensions": [
                {"name": "x", "applied": False, "message": 'could not access file "x": No such file or directory'}
            ],
        }
    }
    state, why = database_state(failed, ["x"])
    assert state is False and "No such file" in why
    refused = {"status": {"applied": False, "message": "role app does not exist"}}
    assert database_state(refused, ["x"]) == (False, "Database not applied: role app does not exist")


def _pod(volumes: list[dict], mounts: list[dict], name: str = "extharness-1") -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": name}}, *volumes],
            "containers": [
                {
                    "name": "postgres",
                    "image": "op:18",
                    "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql/data"}, *mounts],
                }
            ],
        },
    }


def test_mounted_extension_passes() -> None:
    pod = _pod(
        [{"name": "ext-pg-trickle", "image": {"reference": "r:1"}}],
        [{"name": "ext-pg-trickle", "mountPath": "/extensions/pg-trickle"}],
    )
    assert mount_problems(pod, "pg-trickle", "r:1") == []


def test_cnpg_127_volume_names_without_prefix_pass() -> None:
    pod = _pod(
        [{"name": "pg-trickle", "image": {"reference": "r:1"}}],
        [{"name": "pg-trickle", "mountPath": "/extensions/pg-trickle"}],
    )
    assert mount_problems(pod, "pg-trickle") == []


def test_dropped_image_volume_is_named() -> None:
    problems = mount_problems(_pod([], []), "pg-trickle")
    assert {(f.rule, f.path) for f in problems} == {("cnpg.imagevolume.mount", "extharness-1")}
    assert any("no image volume ext-pg-trickle" in f.message and "drops it silently" in f.message for f in problems)
    assert any("no mount at /extensions/pg-trickle" in f.message for f in problems)


def test_wrong_reference_and_wrong_mount_source_are_named() -> None:
    pod = _pod(
        [{"name": "ext-x", "image": {"reference": "other:1"}}], [{"name": "scratch-data", "mountPath": "/extensions/x"}]
    )
    problems = mount_problems(pod, "x", "r:1")
    assert any("mounts 'other:1', not 'r:1'" in f.message for f in problems)
    assert any("mounted from volume 'scratch-data'" in f.message for f in problems)


def test_underscore_names_mount_under_their_own_name_from_a_hyphenated_volume() -> None:
    pod = _pod(
        [{"name": "ext-pg-ivm", "image": {"reference": "r:1"}}],
        [{"name": "ext-pg-ivm", "mountPath": "/extensions/pg_ivm"}],
    )
    assert mount_problems(pod, "pg_ivm") == []


@pytest.mark.parametrize("reason", ["CreateContainerError", "ImagePullBackOff", "CrashLoopBackOff"])
def test_stuck_containers_are_reported(reason: str) -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [{"name": "postgres", "state": {"waiting": {"reason": reason, "message": "m"}}}]
        },
    }
    assert pod_failure(pod) == f"pod p container postgres: {reason}: m"


def test_starting_containers_are_not_stuck() -> None:
    pod = {
        "status": {"containerStatuses": [{"name": "postgres", "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    }
    assert pod_failure(pod) is None


def test_psql_rows_and_expectations_compare_like_the_sql_tier() -> None:
    rows = parse_rows("5\t42\n")
    assert rows == [["5", "42"]]
    assert expectation_problem(SmokeStep("SELECT 5, 42", [[5, 42]]), rows) is None
    assert expectation_problem(SmokeStep("SELECT 'on'", [["on"]]), [["on"]]) is None
    assert expectation_problem(SmokeStep("SELECT true", [[True]]), [["t"]]) is None
    assert expectation_problem(SmokeStep("SELECT NULL", [[None]]), [[""]]) is None
    problem = expectation_problem(SmokeStep("SELECT 1", [[2]]), [["1"]])
    assert problem and "expected rows [[2]]" in problem
    assert expectation_problem(SmokeStep("SELECT 1", [[1], [2]]), [["1"]])
    assert expectation_problem(SmokeStep("CREATE TABLE t ()"), []) is None
    assert typed("1.5", 1.5) == 1.5 and typed("abc", 1) == "abc"


def test_every_builtin_profile_smoke_expectation_is_comparable_as_psql_text() -> None:
    for name in ("pg_ticker", "pg_trickle"):
        for step in load_profile(name).smoke:
            if step.expect:
                text_rows = [
                    ["t" if v is True else "f" if v is False else "" if v is None else str(v) for v in row]
                    for row in step.expect
                ]
                assert expectation_problem(step, text_rows) is None, step.sql


def test_describe_pod_shows_volumes_mounts_states_and_events() -> None:
    pod = _pod(
        [{"name": "ext-x", "image": {"reference": "r:1"}}],
        [{"name": "ext-x", "mountPath": "/extensions/x", "readOnly": True}],
    )
    pod["status"] = {
        "phase": "Pending",
        "containerStatuses": [
            {"name": "postgres", "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerError"}}}
        ],
    }
    text = describe_pod(pod, ["Warning Failed Pod/extharness-1: failed to mkdir"])
    assert "ext-x: image r:1" in text
    assert "mount /extensions/x <- ext-x (ro)" in text
    assert "CreateContainerError" in text and "failed to mkdir" in text
