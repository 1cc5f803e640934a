"""Recording what the real cluster and operator produce, for the harness's unit tests.

``EXTHARNESS_RECORD_TO=tests/unit/recorded pytest tests/kit/test_cnpg_failures.py`` writes the
API objects the tests met (as the API returned them, without ``managedFields``) into that
folder; tests/unit/test_recorded_cnpg.py then checks the pure functions against those shapes,
never against hand-written ones. Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def record(name: str, obj: Any, api_client: Any = None) -> None:
    folder = os.environ.get("EXTHARNESS_RECORD_TO")
    if not folder:
        return
    data = api_client.sanitize_for_serialization(obj) if api_client is not None else obj
    data = json.loads(json.dumps(data, default=str))
    (data.get("metadata") or {}).pop("managedFields", None)
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
