"""What a pipeline step's own, short-lived process does before its work (the KFP component bodies).

Every step runs in a fresh interpreter (a pod in Kubeflow, a subprocess on kfp.local) that imports
scikit-learn, SciPy and pandas, about 1.5 s of CPU, then works for a fraction of that and exits.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from typing import Iterator


@contextlib.contextmanager
def libraries_frozen(*modules: str) -> Iterator[None]:
    """Import the step's libraries with the cyclic collector off, then freeze what they created.

    Module objects never die, yet while the heap grows during the imports the collector walks it
    again and again, and at exit CPython's finalisation collects over all of it once more (about
    0.5 s of CPU per step, measured with bench/pipeline_bench.py). gc.freeze() moves them to the
    permanent generation, which every later collection, those at exit included, skips. What the
    step creates afterwards is collected as usual.

    Args:
        *modules: libraries the step imports only later, in the middle of its work, imported here first.

    Yields:
        Nothing: the step's work runs inside; the freeze happens on leaving.
    """
    gc.disable()
    try:
        for module in modules:
            importlib.import_module(module)
        yield
    finally:
        gc.freeze()
        gc.enable()
