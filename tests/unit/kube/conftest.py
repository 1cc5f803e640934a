"""Tests of the cnpg tier's harness code that need no cluster: rendering and CNPG's rules, the
checks over pod and CNPG objects, the ImageVolume decision, the client against a stand-in API
server, kind's commands, the probe script.

Some exercise the tier's own helpers (``tests/cnpg/cluster_setup.py``): that folder is appended
to ``sys.path`` here, so they import the one module the tier imports, also under ``-m unit``,
where ``tests/cnpg`` is not collected.
"""

from __future__ import annotations

import sys
from pathlib import Path

CNPG_TESTS = Path(__file__).resolve().parents[2] / "cnpg"

if str(CNPG_TESTS) not in sys.path:
    sys.path.append(str(CNPG_TESTS))
