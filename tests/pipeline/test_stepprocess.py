"""components.stepprocess: a step's libraries are imported with the collector off, then frozen."""

from __future__ import annotations

import subprocess
import sys

# In a fresh interpreter: this test process has long imported everything, and freezing its heap
# would change how the rest of the suite collects garbage.
PROBE = """
import gc, sys
from components.stepprocess import libraries_frozen
frozen_before = gc.get_freeze_count()
with libraries_frozen("json.tool"):
    assert not gc.isenabled(), "the collector runs during the imports"
    import fractions
assert gc.isenabled(), "the collector stays off after the imports"
assert "json.tool" in sys.modules, "the named module was not imported"
assert gc.get_freeze_count() > frozen_before + 100, (frozen_before, gc.get_freeze_count())
print("ok", gc.get_freeze_count())
"""

FAILING = """
import gc
from components.stepprocess import libraries_frozen
try:
    with libraries_frozen("no_such_module_here"):
        pass
except ModuleNotFoundError as exc:
    assert gc.isenabled(), "a failed import leaves the collector off"
    print("raised", exc.name)
"""


def probe(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_imports_run_without_the_collector_and_end_frozen():
    assert probe(PROBE).startswith("ok ")


def test_a_failing_import_raises_and_turns_the_collector_back_on():
    assert probe(FAILING).strip() == "raised no_such_module_here"
