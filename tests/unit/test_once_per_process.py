"""The config is built once per process and the image under test is read once per process.

A run of this repository's layout tests plus the sql tier's collection (which needs the image's
update pairs) with ``-n 2`` and a counting plugin that wraps the reader and the config builder:
every process (the controller and each worker) reports its own counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from crafted import REPO_ROOT, CraftedImage

COUNTER = """
import json, os
import pytest
import extharness.config as config
import extharness.inspect.oci_reader as oci_reader
import extharness.source.registry as registry

counts = {"reads": 0, "builds": 0}

def counted(fn, key):
    def wrapper(*args, **kwargs):
        counts[key] += 1
        return fn(*args, **kwargs)
    return wrapper

oci_reader.read_image = counted(oci_reader.read_image, "reads")
registry.read_registry_image = counted(registry.read_registry_image, "reads")
config.HarnessConfig.from_values = classmethod(counted(config.HarnessConfig.from_values.__func__, "builds"))

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):  # before an xdist worker reports back and may be ended
    role = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    with open(os.environ["XH_COUNTS"], "a") as out:
        out.write(json.dumps({"role": role, **counts}) + "\\n")
"""


def test_image_read_and_config_built_once_per_process(tmp_path: Path, sample: CraftedImage, layout_cache: Path) -> None:
    (tmp_path / "xh_counter.py").write_text(COUNTER)
    reference = sample.write_archive(tmp_path / "image.tar")
    counts = tmp_path / "counts.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update(PYTHONPATH=str(tmp_path), XH_COUNTS=str(counts), EXTHARNESS_CACHE_DIR=str(layout_cache))
    env["EXTHARNESS_ENGINE"] = "none"
    cmd = [sys.executable, "-m", "pytest", "-p", "xh_counter", "-p", "no:cacheprovider", "-q", "-n", "2"]
    cmd += ["-m", "layout", "--ext-image", reference, "tests/layout/test_tree.py", "tests/sql"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    per_process = sorted((json.loads(line) for line in counts.read_text().splitlines()), key=lambda c: c["role"])
    assert [c["role"] for c in per_process] == ["controller", "gw0", "gw1"], per_process
    # the controller reads the archive once to reject a bad one up front; each worker once for everything
    assert all(c["reads"] == 1 and c["builds"] == 1 for c in per_process), per_process
