"""The manifests the harness applies pass CloudNativePG's rules, and the rules catch what CNPG refuses.

No cluster needed: rendering is pure, and the rules are CNPG's own (CRD pattern and webhook
``validateExtensions`` / ``validateConfiguration``), each crafted violation failing with CNPG's
wording in the message. The shipped examples under cnpg/ are checked by the cnpg tier
(``tests/cnpg/test_manifests.py``).
"""

from __future__ import annotations

import pytest

from extharness.kube import manifests as m
from extharness.kube.deploy import fallback_operand_name, render, spec_for
from extharness.kube.imagevolume import FALLBACK, IMAGEVOLUME
from extharness.postgres.profiles import builtin_names, load_profile

OPERAND = "ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie"


def _cluster_with(extensions: list[dict], **postgresql: object) -> dict:
    doc = m.render_cluster("demo", image_name=OPERAND)
    doc["spec"]["postgresql"] = {"extensions": extensions, **postgresql}
    return doc


def _messages(report: m.ManifestReport) -> str:
    return "\n".join(str(f) for f in report.findings)


def _rules(report: m.ManifestReport) -> set[str]:
    return {f.rule for f in report.findings}


# -- what the harness applies ---------------------------------------------------------------
@pytest.mark.parametrize("profile_name", builtin_names())
@pytest.mark.parametrize("mode", [IMAGEVOLUME, FALLBACK])
def test_rendered_manifests_pass_cnpg_rules(profile_name: str, mode: str, harness_findings) -> None:
    profile = load_profile(profile_name)
    spec = spec_for(
        mode,
        extension=profile.extension,
        operand_image=OPERAND if mode == IMAGEVOLUME else "localhost/extharness/cnpg-fallback-x:18-abc",
        extension_image="localhost/x-ext:1.0",
        profile=profile,
    )
    cluster, database = render(spec, namespace="extharness-test")
    reports = [m.check_cluster(cluster), m.check_database(database, cluster["metadata"]["name"])]
    harness_findings.check(
        [f for r in reports for f in r.findings] + m.check_pair(cluster, database, profile.extension)
    )


def _pg_trickle(mode: str, operand_image: str, **image: str) -> tuple[dict, dict]:
    """The Cluster and Database of the pg_trickle profile in ``mode``."""
    return render(
        spec_for(mode, extension="pg_trickle", operand_image=operand_image, profile=load_profile("pg_trickle"), **image)
    )


def test_imagevolume_cluster_declares_the_extension_image() -> None:
    cluster, _ = _pg_trickle(IMAGEVOLUME, OPERAND, extension_image="ghcr.io/o/pg_trickle-ext:0.2.0")
    postgresql = cluster["spec"]["postgresql"]
    assert postgresql["extensions"] == [
        {"name": "pg-trickle", "image": {"reference": "ghcr.io/o/pg_trickle-ext:0.2.0", "pullPolicy": "IfNotPresent"}}
    ]
    assert postgresql["shared_preload_libraries"] == ["pg_trickle"]
    assert "shared_preload_libraries" not in postgresql.get("parameters", {})
    assert cluster["spec"]["imageName"] == OPERAND


def test_fallback_cluster_has_no_extensions_but_the_same_preload() -> None:
    cluster, database = _pg_trickle(FALLBACK, "localhost/extharness/cnpg-fallback-x:18-abc")
    postgresql = cluster["spec"]["postgresql"]
    assert "extensions" not in postgresql
    assert postgresql["shared_preload_libraries"] == ["pg_trickle"]
    assert database["spec"]["extensions"] == [{"name": "pg_trickle", "ensure": "present"}]


@pytest.mark.parametrize("key", ["0a1b2c3d", "b7d95bd93a56babb"])  # a content hash may start with a letter
def test_the_fallback_operand_name_passes_cnpg_rules(key: str, harness_findings) -> None:
    """The name build_fallback_operand gives the composite (the cnpg tier checks it on the image
    under test once the engine has built it, tests/cnpg/test_fallback_image.py)."""
    image = fallback_operand_name("pg-trickle", key)
    cluster, _ = render(
        spec_for(FALLBACK, extension="pg_trickle", operand_image=image, profile=load_profile("pg_trickle"))
    )
    assert cluster["spec"]["imageName"] == image
    harness_findings.check(m.check_cluster(cluster).findings)  # imageName: cnpg.manifest.image-tag


def test_preload_in_settings_moves_to_its_own_field_as_a_bare_name() -> None:
    preload, parameters = m.split_settings(
        {"shared_preload_libraries": "'$libdir/pg_trickle', auto_explain", "work_mem": "8MB"}, ["pg_trickle"]
    )
    assert preload == ["pg_trickle", "auto_explain"]
    assert parameters == {"work_mem": "8MB"}


# -- crafted bad names and paths fail with CNPG's rule ---------------------------------------
@pytest.mark.parametrize("bad", ["Pg-Trickle", "-pg", "pg-", "pg.trickle", "pg trickle", "_pg", "pg_", "ü"])
def test_bad_extension_name_fails_with_cnpg_pattern(bad: str) -> None:
    report = m.check_cluster(_cluster_with([{"name": bad, "image": {"reference": "r:1"}}]))
    assert _rules(report) == {"cnpg.manifest.extension-name"}
    assert m.EXTENSION_NAME_PATTERN in _messages(report)
    assert "[cnpg]" in _messages(report)


@pytest.mark.parametrize("good", ["pg-trickle", "pg_trickle", "a", "a1", "postgis-3", "x" * 59])
def test_good_extension_names_pass(good: str) -> None:
    report = m.check_cluster(_cluster_with([{"name": good, "image": {"reference": "r:1"}}]))
    assert report.ok, str(report)


def test_extension_name_longer_than_59_fails() -> None:
    report = m.check_cluster(_cluster_with([{"name": "x" * 60, "image": {"reference": "r:1"}}]))
    assert "may not be longer than 59" in _messages(report)


def test_empty_extension_name_fails_as_cnpg_says() -> None:
    report = m.check_cluster(_cluster_with([{"name": "", "image": {"reference": "r:1"}}]))
    assert "value cannot be empty" in _messages(report)


def test_duplicate_extension_names_fail() -> None:
    report = m.check_cluster(
        _cluster_with([{"name": "a", "image": {"reference": "r:1"}}, {"name": "a", "image": {"reference": "r:2"}}])
    )
    assert "Duplicate value: 'a'" in _messages(report)
    assert _rules(report) == {"cnpg.manifest.extension-duplicate"}


def test_names_equal_after_underscore_to_hyphen_collide() -> None:
    report = m.check_cluster(
        _cluster_with(
            [{"name": "pg_ivm", "image": {"reference": "r:1"}}, {"name": "pg-ivm", "image": {"reference": "r:2"}}]
        )
    )
    text = _messages(report)
    assert 'extension name results in duplicate volume name "pg-ivm"' in text.replace("'", '"')
    assert "underscores are converted to hyphens" in text
    assert _rules(report) == {"cnpg.manifest.volume-collision"}


def test_missing_image_reference_fails_as_cnpg_says() -> None:
    report = m.check_cluster(_cluster_with([{"name": "a", "image": {}}]))
    assert "An image reference is required" in _messages(report)


@pytest.mark.parametrize("key", ["extension_control_path", "dynamic_library_path", "ld_library_path"])
def test_empty_path_fails_as_cnpg_says(key: str) -> None:
    report = m.check_cluster(_cluster_with([{"name": "a", "image": {"reference": "r:1"}, key: [""]}]))
    assert "value cannot be empty" in _messages(report)


def test_duplicate_control_path_fails() -> None:
    report = m.check_cluster(
        _cluster_with([{"name": "a", "image": {"reference": "r:1"}, "extension_control_path": ["share", "share"]}])
    )
    assert "Duplicate value: 'share'" in _messages(report)


@pytest.mark.parametrize("path", ["../etc", "share/../../x", "../../lib"])
def test_path_leaving_the_image_fails(path: str) -> None:
    report = m.check_cluster(
        _cluster_with([{"name": "geo", "image": {"reference": "r:1"}, "dynamic_library_path": [path]}])
    )
    text = _messages(report)
    assert "outside the image mounted at /extensions/geo" in text
    assert "filepath.Join" in text
    assert _rules(report) == {"cnpg.manifest.path-outside"}
    assert "[harness]" in text


def test_absolute_path_fails_and_says_what_cnpg_makes_of_it() -> None:
    report = m.check_cluster(
        _cluster_with([{"name": "geo", "image": {"reference": "r:1"}, "ld_library_path": ["/usr/lib"]}])
    )
    assert "means /extensions/geo/usr/lib" in _messages(report)


def test_relative_paths_inside_the_image_pass() -> None:
    entry = {
        "name": "geospatial",
        "image": {"reference": "r:1"},
        "extension_control_path": ["postgis/share", "pgrouting/share"],
        "dynamic_library_path": ["postgis/lib"],
        "ld_library_path": ["system"],
    }
    report = m.check_cluster(_cluster_with([entry]))
    assert report.ok, str(report)
    assert m.cnpg_settings([entry]) == {
        "extension_control_path": "$system:/extensions/geospatial/postgis/share:/extensions/geospatial/pgrouting/share",
        "dynamic_library_path": "$libdir:/extensions/geospatial/postgis/lib",
    }
    assert m.ld_library_path([entry]) == "/extensions/geospatial/system"


def test_shared_preload_libraries_under_parameters_is_refused() -> None:
    report = m.check_cluster(_cluster_with([], parameters={"shared_preload_libraries": "pg_trickle"}))
    assert "Can't set fixed configuration parameter" in _messages(report)
    assert _rules(report) == {"cnpg.manifest.parameters-fixed"}


def test_other_fixed_parameters_are_refused() -> None:
    report = m.check_cluster(_cluster_with([], parameters={"listen_addresses": "127.0.0.1"}))
    assert "spec.postgresql.parameters.listen_addresses" in _messages(report)


def test_libdir_prefix_in_preload_fails() -> None:
    report = m.check_cluster(_cluster_with([], shared_preload_libraries=["$libdir/pg_trickle"]))
    assert "give the bare library name 'pg_trickle'" in _messages(report)
    assert _rules(report) == {"cnpg.manifest.preload-name"}


def test_unquoted_parameter_value_fails() -> None:
    report = m.check_cluster(_cluster_with([], parameters={"max_worker_processes": 32}))
    assert "must be strings" in _messages(report)


def test_cluster_name_over_50_characters_fails() -> None:
    doc = m.render_cluster("c" * 51, image_name=OPERAND)
    assert "the maximum length of a cluster name is 50 characters" in _messages(m.check_cluster(doc))


def test_standard_operand_image_with_extensions_is_flagged() -> None:
    doc = _cluster_with([{"name": "a", "image": {"reference": "r:1"}}])
    doc["spec"]["imageName"] = "ghcr.io/cloudnative-pg/postgresql:18-standard-trixie"
    assert "use a -minimal- image" in _messages(m.check_cluster(doc))


def test_database_extension_list_must_be_well_formed() -> None:
    doc = m.render_database("d", cluster="c", extensions=[m.DatabaseExtension("x")])
    doc["spec"]["extensions"] += [
        {"name": "x"},
        {"name": "y", "ensure": "maybe"},
        {"name": "z", "version": 1.0},
        {"ensure": "present"},
        {"name": "w", "cascade": True},
    ]
    doc_report = m.check_database(doc)
    text = _messages(doc_report)
    assert "Duplicate value: 'x'" in text
    assert 'supported values: "present", "absent"' in text
    assert "must be a string" in text
    assert "spec.extensions[4].name: Required value" in text
    assert "unknown field(s) cascade" in text
    assert _rules(doc_report) == {
        "cnpg.manifest.extension-duplicate",
        "cnpg.manifest.extension-ensure",
        "cnpg.manifest.extension-version",
        "cnpg.manifest.extension-name",
        "cnpg.manifest.unknown-field",
    }


def test_database_on_a_reserved_name_fails() -> None:
    doc = m.render_database("d", cluster="c", database="postgres", extensions=[])
    assert "the name postgres is reserved" in _messages(m.check_database(doc))


# -- what CNPG derives ----------------------------------------------------------------------------
def test_cnpg_settings_follow_list_order_and_append_user_values() -> None:
    entries = [m.ImageVolumeExtension("a", "r:1"), m.ImageVolumeExtension("b_c", "r:2")]
    assert m.cnpg_settings(entries, {"dynamic_library_path": "/opt/lib"}) == {
        "extension_control_path": "$system:/extensions/a/share:/extensions/b_c/share",
        "dynamic_library_path": "$libdir:/extensions/a/lib:/extensions/b_c/lib:/opt/lib",
    }
    assert m.cnpg_settings([]) == {}


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("/extensions", "a", "/lib"), "/extensions/a/lib"),
        (("/extensions", "a", "./lib/"), "/extensions/a/lib"),
        (("/extensions", "a", "../../etc"), "/etc"),
        (("/extensions", "a", ""), "/extensions/a"),
    ],
)
def test_go_join_matches_filepath_join(parts: tuple[str, ...], joined: str) -> None:
    assert m.go_join(*parts) == joined


def test_volume_and_mount_names() -> None:
    assert m.volume_name("pg_trickle") == "ext-pg-trickle"
    assert m.mount_path("pg_trickle") == "/extensions/pg_trickle"
    assert m.cnpg_name_for("pg_trickle") == "pg-trickle"
    assert m.cnpg_name_for("PostGIS_3") == "postgis-3"


def test_probe_pod_mounts_the_image_into_the_operand_as_uid_26() -> None:
    pod = m.render_probe_pod("p", extension_image="localhost/x-ext:1", operand_image=OPERAND, extension="x")
    assert pod["spec"]["volumes"] == [
        {"name": "ext", "image": {"reference": "localhost/x-ext:1", "pullPolicy": "IfNotPresent"}}
    ]
    container = pod["spec"]["containers"][0]
    assert container["image"] == OPERAND
    assert container["volumeMounts"][0]["mountPath"] == "/ext"
    assert container["command"][:2] == ["/bin/sh", "-c"]  # the extension image has no shell: the operand runs it
    assert "/ext/share/extension/x.control" in container["command"][2]
    assert pod["spec"]["securityContext"]["runAsUser"] == 26


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("ghcr.io/cloudnative-pg/postgresql:latest", "Can't use 'latest' as image tag"),
        ("ghcr.io/cloudnative-pg/postgresql", "Can't use 'latest' as image tag"),
        ("ghcr.io/cloudnative-pg/postgresql@sha256:" + "a" * 64, "Can't use just the image sha"),
        ("localhost/extharness/composite-x:0a1b2c3d", None),
        ("localhost/extharness/composite-x:b7d95bd93a56babb", "invalid version tag"),
    ],
)
def test_image_name_tag_must_carry_the_postgres_version(image: str, message: str | None) -> None:
    problems = m.check_image_name(image)
    if message is None:
        assert not problems  # starts with digits: CNPG accepts it (and would misread the major)
    else:
        assert message in "\n".join(map(str, problems))


@pytest.mark.parametrize(
    "image",
    [
        OPERAND,
        "ghcr.io/cloudnative-pg/postgresql:18.1-minimal-trixie@sha256:" + "b" * 64,
        "localhost/extharness/cnpg-fallback-pg-trickle:18-0123abcd",
        "registry.local:5000/pg:18",
    ],
)
def test_version_tags_pass(image: str) -> None:
    assert m.check_image_name(image) == []


@pytest.mark.parametrize(
    ("version", "volume"),
    [
        ("1.27.2", "pg_trickle"), ("1.28.0", "pg_trickle"),  # pkg/specs/volumes.go by tag
        ("1.27.3", "pg-trickle"), ("1.28.1", "pg-trickle"),
        ("1.27.4", "ext-pg-trickle"), ("1.28.2", "ext-pg-trickle"), ("1.29.1", "ext-pg-trickle"),
        (None, "ext-pg-trickle"),
    ],
)  # fmt: skip
def test_the_volume_name_follows_the_cnpg_version(version: str | None, volume: str) -> None:
    assert m.volume_name("pg_trickle", version) == volume


def test_underscores_are_refused_where_that_cnpg_version_refuses_them() -> None:
    assert "1.28.0 accepts no '_'" in (m.name_problem("pg_trickle", "1.28.0") or "")
    assert "'pg-trickle'" in (m.name_problem("pg_trickle", "1.27.2") or "")
    assert m.name_problem("pg_trickle", "1.28.1") is None
    assert m.name_problem("pg_trickle", "1.29.1") is None
    assert m.name_problem("pg-trickle", "1.28.0") is None
    assert "longer than 59" in (m.name_problem("a" * 60, "1.29.1") or "")
    assert m.name_problem("Bad", None) is not None
