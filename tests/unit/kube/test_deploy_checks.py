"""Reading CNPG and pod objects: health, Database status, mounts, stuck pods, psql rows (pure);
the checks on the primary over what psql prints, as findings."""

from __future__ import annotations

import pytest

from extharness.errors import HarnessError
from extharness.kube.deploy import (
    HEALTHY_PHASE,
    CnpgDeployment,
    cluster_health,
    database_state,
    describe_pod,
    expectation_problem,
    mount_problems,
    parse_rows,
    pod_failure,
    spec_for,
    typed,
)
from extharness.kube.imagevolume import IMAGEVOLUME
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


# -- the checks on the primary, over what psql -A -t prints -----------------------------------------------
def _deployment(answers: dict[str, str]) -> CnpgDeployment:
    """The sample's ImageVolume deployment (not applied: no cluster), its psql answering ``answers``
    (SQL -> the text ``psql -A -t -F '\\t'`` prints)."""
    spec = spec_for(
        IMAGEVOLUME, extension="pg_ticker", operand_image="op:18", extension_image="x:1",
        profile=load_profile("pg_ticker"), expected_version="1.1",
    )  # fmt: skip
    deployment = CnpgDeployment(None, spec, namespace="extharness-t")
    deployment.psql = lambda sql, database=None, pod=None: parse_rows(answers[sql])  # type: ignore[method-assign]
    return deployment


EXTENSION_SQL = "SELECT extname, extversion FROM pg_extension WHERE extname = 'pg_ticker'"
GOOD = {
    EXTENSION_SQL: "pg_ticker\t1.1\n",
    "SHOW extension_control_path": "$system:/extensions/pg-ticker/share\n",
    "SHOW dynamic_library_path": "$libdir:/extensions/pg-ticker/lib\n",
    "SHOW shared_preload_libraries": "pg_ticker\n",
    "SELECT DISTINCT backend_type FROM pg_stat_activity": "client backend\npg_ticker ticker\ncheckpointer\n",
    **{step.sql: "" for step in load_profile("pg_ticker").smoke},
    "SELECT ticker.add(2, 3), ticker.mul(6, 7)": "5\t42\n",
    "SELECT ticker.module_version()": "1.1.0\n",
    "SELECT events FROM ticker.event_count": "2\n",
    "SELECT current_setting('pg_ticker.interval_ms')": "200ms\n",
}


def test_a_working_deployment_has_no_findings() -> None:
    assert _deployment(GOOD).verify_sql() == []


def test_each_check_on_the_primary_reports_its_rule_and_subject() -> None:
    bad = {
        **GOOD,
        EXTENSION_SQL: "pg_ticker\t1.0\n",
        "SHOW extension_control_path": "$system\n",  # PostgreSQL's default: CNPG did not set it
        "SHOW shared_preload_libraries": "\n",
        "SELECT DISTINCT backend_type FROM pg_stat_activity": "client backend\n",
        "SELECT ticker.add(2, 3), ticker.mul(6, 7)": "5\t41\n",
    }
    deployment = _deployment(bad)
    found = deployment.check_extension() + deployment.check_cnpg_settings() + deployment.check_preload()
    found += deployment.wait_workers(timeout=0) + deployment.check_smoke()
    assert [(f.rule, f.severity, f.path) for f in found] == [
        ("cnpg.extension.version", "error", "pg_ticker"),
        ("cnpg.settings.search-path", "error", "extension_control_path"),
        ("cnpg.preload", "error", "pg_ticker"),
        ("cnpg.workers", "error", "pg_ticker ticker"),
        ("cnpg.smoke", "error", "smoke[0]"),
    ]
    messages = [f.message for f in found]
    assert messages[0] == "pg_ticker version 1.0, expected 1.1"
    assert (
        messages[1] == "extension_control_path is '$system', CNPG should have set '$system:/extensions/pg-ticker/share'"
    )
    assert messages[2] == "pg_ticker is not in shared_preload_libraries ()"
    assert "background worker 'pg_ticker ticker' not in pg_stat_activity" in messages[3]
    assert messages[4] == "'SELECT ticker.add(2, 3), ticker.mul(6, 7)': expected rows [[5, 42]], got [['5', '41']]"
    workers = "SELECT DISTINCT backend_type FROM pg_stat_activity"
    all_but_workers = _deployment({**bad, workers: GOOD[workers]})  # verify_sql waits its 60 s for workers
    assert all_but_workers.verify_sql() == [f for f in found if f.rule != "cnpg.workers"]  # those checks together


def test_a_missing_extension_and_a_failing_smoke_statement_are_named() -> None:
    deployment = _deployment({**GOOD, EXTENSION_SQL: ""})
    assert [str(f) for f in deployment.check_extension()] == [
        "cnpg.extension.version error: pg_ticker: pg_extension has no pg_ticker in database app"
    ]

    def psql(sql: str, database: str | None = None, pod: str | None = None) -> list[list[str]]:
        if sql == "SELECT ticker.module_version()":
            raise HarnessError(f"psql on extharness-1: {sql!r} failed (exit 1): ERROR:  function does not exist")
        return parse_rows(GOOD[sql])

    deployment.psql = psql  # type: ignore[method-assign]
    (finding,) = deployment.check_smoke()
    assert (finding.rule, finding.path) == ("cnpg.smoke", "smoke[1]")
    assert "function does not exist" in finding.message
