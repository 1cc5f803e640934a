"""The ImageVolume probe's own script, run for real with podman's image mounts (no cluster).

podman mounts an image read-only into a container as Kubernetes' ImageVolume does
(``--mount type=image``). The probe pod's command runs here in the operand image as UID 26
against: the extension image (control file found), an image with an empty root (what a
runtime that mounts an empty directory shows), an image without the control file, and no
mount at all (what a pod looks like when the API server dropped its image volume). Each
verdict is read back by the same ``classify_probe`` the cluster path uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from extharness.config import HarnessConfig
from extharness.kube.imagevolume import ProbeResult, Signals, classify_probe, decide
from extharness.kube.manifests import PROBE_MOUNT, probe_script, render_probe_pod
from extharness.postgres.containers import image_mount_supported, ulimit_args
from extharness.pytest_plugin import ImageUnderTest, harness_step
from extharness.source.engine import NO_ENGINE, Engine, detect_engine


@pytest.fixture(scope="module")
def engine() -> Engine:
    found = detect_engine()
    if found is None:
        pytest.skip(f"{NO_ENGINE}: the probe script is run with podman's image mounts")
    if not image_mount_supported(found):
        pytest.skip(f"{found.kind} cannot mount images (--mount type=image needs podman or Docker 28+)")
    return found


@pytest.fixture(scope="module")
def operand(engine: Engine, harness_config: HarnessConfig) -> str:
    from extharness.postgres.base_images import resolve_operand_image

    return harness_step(
        "getting the operand image",
        lambda: resolve_operand_image(  # type: ignore[return-value]
            harness_config.operand_image, engine, harness_config.cache_dir
        ),
    )


@pytest.fixture(scope="module")
def extension_ref(engine: Engine, image_under_test: ImageUnderTest) -> str:
    ref = image_under_test.acquired.engine_ref
    if not ref or not engine.image_exists(ref):
        pytest.skip(f"{image_under_test.acquired.description} is not in the {engine.kind} image store")
    return ref


@pytest.fixture(scope="module")
def crafted(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two small images: one with an empty root, one with a library but no control file."""
    root = tmp_path_factory.mktemp("probe-images")
    (root / "empty").mkdir()
    (root / "lib").mkdir()
    (root / "lib" / "x.so").write_bytes(b"\x7fELF not really")
    made = {}
    for name, body in (("empty", "COPY empty/ /\n"), ("control-missing", "COPY lib/ /lib/\n")):
        tag = f"localhost/extharness-test/probe-{name}:{uuid.uuid4().hex[:8]}"
        recipe = root / f"{name}.Containerfile"
        recipe.write_text(f"FROM scratch\n{body}")
        engine.build(root, recipe, tag)
        made[name] = tag
    try:
        yield made
    finally:
        for tag in made.values():
            engine.remove_image(tag)


def _run_probe(engine: Engine, operand: str, extension: str, image: str | None) -> tuple[int, str]:
    args = ["run", "--rm", "--network", "none", "--user", "26", *ulimit_args(engine, operand)]
    if image:
        args += ["--mount", f"type=image,source={image},destination={PROBE_MOUNT}"]
    args += ["--entrypoint", "/bin/sh", operand, "-c", probe_script(extension)]
    result = engine.run(*args, check=False)
    return result.returncode, result.stdout


def _verdict(code: int, log: str, extension: str) -> ProbeResult:
    pod = render_probe_pod("p", extension_image="x", operand_image="o", extension=extension)
    pod["status"] = {"phase": "Succeeded" if code == 0 else "Failed"}
    outcome = classify_probe(pod, log)
    assert outcome is not None, f"no verdict from exit {code} and output {log!r}"
    return outcome.result


def test_the_extension_image_is_found(
    engine: Engine, operand: str, extension_ref: str, image_under_test: ImageUnderTest
) -> None:
    code, log = _run_probe(engine, operand, image_under_test.name, extension_ref)
    assert _verdict(code, log, image_under_test.name) is ProbeResult.MOUNTED_AND_FOUND, log
    assert code == 0


def test_an_empty_mount_is_told_apart(engine: Engine, operand: str, crafted: dict[str, str]) -> None:
    code, log = _run_probe(engine, operand, "x", crafted["empty"])
    result = _verdict(code, log, "x")
    assert result is ProbeResult.EMPTY_MOUNT, log
    assert (
        decide(
            Signals(
                "v1.36.1",
                1.0,
                ("containerd://2.1.3",),
                classify_probe({"spec": {"volumes": [{"name": "ext", "image": {"reference": "x"}}]}}, log),
            )
        ).mode
        == "fallback-composite"
    )


def test_a_mount_without_the_control_file_is_told_apart(engine: Engine, operand: str, crafted: dict[str, str]) -> None:
    code, log = _run_probe(engine, operand, "x", crafted["control-missing"])
    assert _verdict(code, log, "x") is ProbeResult.CONTROL_MISSING, log
    assert "x.so" in log


def test_no_mount_reads_as_a_dropped_volume(engine: Engine, operand: str) -> None:
    code, log = _run_probe(engine, operand, "x", None)
    assert _verdict(code, log, "x") is ProbeResult.VOLUME_DROPPED, log


def test_probe_script_only_needs_posix_sh() -> None:
    script = probe_script("pg_trickle")
    assert "/ext/share/extension/pg_trickle.control" in script
    assert not any(tool in script for tool in ("bash", "busybox", "find ", "stat "))
