"""The example manifests shipped under cnpg/ pass CloudNativePG's rules and say what pg_trickle needs.

``cnpg/cluster-example.yaml`` and ``cnpg/database-example.yaml`` are what a pg_trickle user
applies; they are checked with the rules the harness applies to its own manifests (CNPG's CRD
patterns and webhook, ``extharness.kube.manifests``). No cluster needed. The rules themselves,
on crafted bad manifests, are tested in ``tests/unit/kube/test_manifest_rules.py``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from extharness.kube import manifests as m

EXAMPLES = Path(__file__).resolve().parents[2] / "cnpg"


def _example(name: str) -> dict:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    assert len(docs) == 1, f"{name}: one object per file"
    return docs[0]


def test_cluster_example_passes_cnpg_rules(harness_findings) -> None:
    harness_findings.check(m.check_cluster(_example("cluster-example.yaml")).findings)


def test_database_example_passes_cnpg_rules_and_targets_the_example_cluster(harness_findings) -> None:
    cluster = _example("cluster-example.yaml")
    database = _example("database-example.yaml")
    report = m.check_database(database, cluster["metadata"]["name"])
    harness_findings.check(report.findings + m.check_pair(cluster, database, "pg_trickle"))


def test_cluster_example_is_what_the_packaging_plan_asks_for() -> None:
    spec = _example("cluster-example.yaml")["spec"]
    assert spec["instances"] == 3
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie"
    assert spec["postgresql"]["shared_preload_libraries"] == ["pg_trickle"]
    (ext,) = spec["postgresql"]["extensions"]
    assert ext["name"] == "pg-trickle"
    assert ext["image"]["reference"] == "ghcr.io/trickle-labs/pg_trickle-ext:0.67.0", "pg_trickle's current image"
    assert int(spec["postgresql"]["parameters"]["max_worker_processes"]) > 8, "raise the worker budget above 8"
    assert spec["storage"]["size"]
    header = (EXAMPLES / "cluster-example.yaml").read_text().split("apiVersion")[0]
    for prerequisite in ("Kubernetes 1.33", "ImageVolume", "CloudNativePG 1.28", "PostgreSQL 18", "0.67.0"):
        assert prerequisite in header, f"header must mention {prerequisite}"


def test_database_example_installs_pg_trickle_in_app_owned_by_app() -> None:
    spec = _example("database-example.yaml")["spec"]
    assert (spec["name"], spec["owner"], spec["cluster"]["name"]) == ("app", "app", "pg-trickle")
    assert [e["name"] for e in spec["extensions"]] == ["pg_trickle"]


def test_example_mounts_where_cnpg_will_point_postgres() -> None:
    extensions = _example("cluster-example.yaml")["spec"]["postgresql"]["extensions"]
    assert m.cnpg_settings(extensions) == {
        "extension_control_path": "$system:/extensions/pg-trickle/share",
        "dynamic_library_path": "$libdir:/extensions/pg-trickle/lib",
    }
    assert m.volume_name("pg-trickle") == "ext-pg-trickle"
