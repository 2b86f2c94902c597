"""Mutation testing of the modules where a silent bug hurts most (`make mutate`), with mutmut.

Each module in MODULES is mutated on its own, in a throw-away copy of the project (mutmut writes a
`mutants/` tree and reads its settings from setup.cfg; neither touches the worktree). Only the fast
tier (`-m "not integration"`) of the test files listed for the module runs, and mutmut runs for
each mutant only the tests that reached the mutated function. Every module has a time limit and
the whole run a budget; a module cut short reports what it finished.

Per module it prints killed / survived / no tests, and the score: killed over the mutants that
count, i.e. all but
- the ones in EQUIVALENT (a change no test can see; each says why), and
- "prose" mutants: a string literal with a space in it (an error message, a log line) changed.
  Messages are checked where they carry a field name or value (tests match on those), not word
  for word; they are counted apart so that logic survivors stand out.
Then each survivor that counts: file:line, the line before and after.

    python -m tools.mutate [--module components/gate.py ...] [--module-timeout 600] [--budget 3600]
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a copy of the project needs to import the code and run its tests.
# manifests/ and helm/: the registry's tests check the object store's writer policy in both.
COPIED = ("components", "contract", "serving", "scoring", "pipelines", "tests", "manifests", "helm", "pyproject.toml")
# What mutmut copies beside the mutated packages into its mutants/ tree (the tests run there).
ALSO_COPIED = ("pipelines", "contract", "manifests", "helm")
SOURCE_PACKAGES = ("components", "serving", "scoring")

# The one list: module -> the test files whose fast tier pins it down.
MODULES: dict[str, tuple[str, ...]] = {
    "components/gate.py": ("tests/pipeline/test_gate.py",),
    "components/push.py": ("tests/pipeline/test_push_logic.py", "tests/pipeline/test_registry.py",
                           "tests/pipeline/test_push.py", "tests/pipeline/test_push_skops.py"),
    "components/registry.py": ("tests/pipeline/test_registry.py", "tests/pipeline/test_registry_report.py",
                               "tests/pipeline/test_writer_policy.py", "tests/pipeline/test_store_killed.py"),
    # v2 holds the binary tensor extension (split_binary and the raw-bytes codecs) too.
    "serving/v2.py": ("tests/serving/test_v2.py", "tests/serving/test_routes.py", "tests/serving/test_model.py"),
    "serving/engine.py": ("tests/serving/test_engine.py", "tests/serving/test_model.py",
                          "tests/serving/test_limits.py"),
    # The engine's parts split out of engine.py: the flat tree walk, the steps' numpy twins, the input range.
    "serving/flatforest.py": ("tests/serving/test_engine.py",),
    "serving/transforms.py": ("tests/serving/test_engine.py",),
    "serving/inputrange.py": ("tests/serving/test_engine.py", "tests/serving/test_limits.py"),
    "serving/rows.py": ("tests/serving/test_v2.py", "tests/serving/test_model.py", "tests/batch/test_library.py"),
    "scoring/batch.py": ("tests/batch/test_batch.py",),
    "scoring/library.py": ("tests/batch/test_library.py",),
}

# Survivors no test can tell apart from the original: (module, original line, mutated line) -> why.
# Lines are compared stripped of surrounding blanks.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("components/push.py", "json.dumps(metadata, allow_nan=False)", "json.dumps(metadata, allow_nan=None)"):
        "None is falsy: json.dumps refuses NaN exactly as with False",
    ("components/push.py", "text=True, timeout=5, check=False)", "text=True, timeout=5, check=None)"):
        "None is falsy: subprocess.run raises on a failed git either way (it does not)",
    ("components/push.py", "text=True, timeout=5, check=False)", "text=True, timeout=6, check=False)"):
        "git rev-parse answers in milliseconds: a 5 or 6 s limit cannot be told apart",
    # serving modules
    ("serving/engine.py", 'if X.shape[0] == 0 or X.dtype.kind not in "fiu" or not np.isfinite(X).all():',
     'if X.shape[0] == 0 or X.dtype.kind not in "XXfiuXX" or not np.isfinite(X).all():'):
        "a dtype kind is one letter and X is none: the same kinds pass",
    ("serving/engine.py", 'if method not in (("predict", "predict_proba") if is_classifier else ("predict",)):',
     'if method not in (("predict", "predict_proba") if (is_classifier) or True else ("predict",)):'):
        "a regressor has no predict_proba: compile_predictor's getattr(model, method) raises before any kernel",
    ("serving/engine.py",
     "(t.feature, t.threshold, t.children_left, t.children_right, t.children_left < 0, v, t.max_depth)",
     "(t.feature, t.threshold, t.children_left, t.children_right, t.children_left <= 0, v, t.max_depth)"):
        "children_left is -1 at a leaf, else a node index >= 1 (node 0 is the root, no node's child)",
    ("serving/engine.py",
     "(t.feature, t.threshold, t.children_left, t.children_right, t.children_left < 0, v, t.max_depth)",
     "(t.feature, t.threshold, t.children_left, t.children_right, t.children_left < 1, v, t.max_depth)"):
        "children_left is -1 at a leaf, else a node index >= 1 (node 0 is the root, no node's child)",
    ("serving/engine.py",
     "finish = _compose(mean, lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, axis=0))",
     "finish = _compose(lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, axis=0))"):
        "argmax of the class sums and of the sums / n_trees differ only where the division rounds two "
        "different sums to one value (one ulp apart); no fitted forest gives such a tie to test with",
    ("serving/engine.py",
     "finish = _compose(mean, lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, axis=0))",
     "finish = _compose(mean, lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, axis=None))"):
        "a single-output classifier's classes_ is 1-D: take along axis 0 and from the flattened array agree",
    ("serving/engine.py",
     "finish = _compose(mean, lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, axis=0))",
     "finish = _compose(mean, lambda proba: np.argmax(proba, axis=1), lambda i: forest.classes_.take(i, ))"):
        "a single-output classifier's classes_ is 1-D: take along axis 0 and from the flattened array agree",
    ("serving/engine.py",
     'n["feature_idx"], n["num_threshold"], n["left"].astype(np.intp), n["right"].astype(np.intp),',
     'n["feature_idx"], n["num_threshold"], n["left"].astype(None), n["right"].astype(np.intp),'):
        "float64 child indices: FlatForest stores them into its intp child array, the same integers",
    ("serving/engine.py",
     'n["feature_idx"], n["num_threshold"], n["left"].astype(np.intp), n["right"].astype(np.intp),',
     'n["feature_idx"], n["num_threshold"], n["left"].astype(np.intp), n["right"].astype(None),'):
        "float64 child indices: FlatForest stores them into its intp child array, the same integers",
    ("serving/engine.py", 'n["is_leaf"].astype(bool), n["value"][:, None], int(n["depth"].max()),',
     'n["is_leaf"].astype(None), n["value"][:, None], int(n["depth"].max()),'):
        "is_leaf as 0.0/1.0: np.where and FlatForest's bool is_leaf array read the same truth values",
    ("serving/engine.py", "np.dtype(np.float64),  # the histogram booster compares float64 features to float64 thresholds",
     "np.dtype(None),  # the histogram booster compares float64 features to float64 thresholds"):
        "np.dtype(None) is float64",
    ("serving/engine.py", "start=0.0 + np.asarray(model._baseline_prediction, np.float64).ravel(),",
     "start=0.0 + np.asarray(model._baseline_prediction, None).ravel(),"):
        "the booster's baseline is a float64 array already",
    ("serving/engine.py", "start=0.0 + np.asarray(model._baseline_prediction, np.float64).ravel(),",
     "start=0.0 + np.asarray(model._baseline_prediction, ).ravel(),"):
        "the booster's baseline is a float64 array already",
    ("serving/engine.py",
     "return _EnsembleKernel(flat, np.dtype(np.float64), finish, getattr(model, method), _name(model, method, flat))",
     "return _EnsembleKernel(flat, np.dtype(None), finish, getattr(model, method), _name(model, method, flat))"):
        "np.dtype(None) is float64",
    ("serving/engine.py",
     "return _EnsembleKernel(flat, np.dtype(np.float64), finish, getattr(model, method), _name(model, method, flat))",
     "return _EnsembleKernel(flat, None, finish, getattr(model, method), _name(model, method, flat))"):
        "no cast: what reaches a booster is float64 (a step's output) or the request's int/float array, and "
        "comparing it with float64 thresholds promotes it to float64 exactly as sklearn's own cast does",
    ("serving/rows.py", 'if dtype.kind in "iu":', 'if dtype.kind in "XXiuXX":'):
        "a dtype kind is one letter and X is none: the same kinds pass",
    ("serving/rows.py", "return array.astype(np.float64, copy=False).ravel()",
     "return array.astype(None, copy=False).ravel()"):
        "astype(None) is astype(float64)",
    ("serving/rows.py", "return array.astype(np.float64, copy=False).ravel()",
     "return array.astype(np.float64, copy=None).ravel()"):
        "copy=None copies only when needed, as copy=False does for astype",
    ("serving/rows.py", "bound = np.full(n, default) if value is None else np.asarray(value, np.float64)",
     "bound = np.full(n, default) if value is None else np.asarray(value, None)"):
        "bounds given as ints or float32 stay so; numpy compares them with the float64 rows after an exact "
        "promotion and formats them the same with :.7g (nothing else reads spec.low/high)",
    ("serving/rows.py", "bound = np.full(n, default) if value is None else np.asarray(value, np.float64)",
     "bound = np.full(n, default) if value is None else np.asarray(value, )"):
        "bounds given as ints or float32 stay so; numpy compares them with the float64 rows after an exact "
        "promotion and formats them the same with :.7g (nothing else reads spec.low/high)",
    ("serving/v2.py", 'array = _json_values(instances, body, "instances", "FP64", count)',
     'array = _json_values(instances, body, "instances", None, count)'):
        '_json_values compares the datatype only with UINT64 (so any other name reads the same)',
    ("serving/v2.py", 'array = _json_values(instances, body, "instances", "FP64", count)',
     'array = _json_values(instances, body, "instances", "XXFP64XX", count)'):
        '_json_values compares the datatype only with UINT64 (so any other name reads the same)',
    ("serving/v2.py", 'array = _json_values(instances, body, "instances", "FP64", count)',
     'array = _json_values(instances, body, "instances", "fp64", count)'):
        '_json_values compares the datatype only with UINT64 (so any other name reads the same)',
    ("serving/v2.py", 'array = _json_values(instances, body, "instances", "FP64", count)',
     'array = _json_values(instances, body, "instances", "FP64", None)'):
        '_json_values does not read the count (it is in its signature for the values(datatype, count) protocol; as_float checks it)',
    ("serving/v2.py", '_check_range(x, spec, ["instances"] * spec.n_features, ["FP64"] * spec.n_features)',
     '_check_range(x, spec, ["instances"] * spec.n_features, ["XXFP64XX"] * spec.n_features)'):
        'the datatype shows only in the NaN/Inf message, and V1 values are finite: orjson refuses NaN, Infinity and numbers beyond float64 as malformed JSON',
    ("serving/v2.py", '_check_range(x, spec, ["instances"] * spec.n_features, ["FP64"] * spec.n_features)',
     '_check_range(x, spec, ["instances"] * spec.n_features, ["fp64"] * spec.n_features)'):
        'the datatype shows only in the NaN/Inf message, and V1 values are finite: orjson refuses NaN, Infinity and numbers beyond float64 as malformed JSON',
    ("serving/v2.py", 'x = None',
     'x = ""'):
        "x is set from the first input's shape, before any use",
    ("serving/v2.py", 'wheres, datatypes = [""] * spec.n_features, [""] * spec.n_features',
     'wheres, datatypes = ["XXXX"] * spec.n_features, [""] * spec.n_features'):
        'every column is filled: each feature comes exactly once (missing and repeated inputs are refused above)',
    ("serving/v2.py", 'wheres, datatypes = [""] * spec.n_features, [""] * spec.n_features',
     'wheres, datatypes = [""] * spec.n_features, ["XXXX"] * spec.n_features'):
        'every column is filled: each feature comes exactly once (missing and repeated inputs are refused above)',
    ("serving/v2.py", 'if array.dtype.kind not in "iuf" or ((b"true" in body or b"false" in body) and _has_bool(data)):',
     'if array.dtype.kind not in "XXiufXX" or ((b"true" in body or b"false" in body) and _has_bool(data)):'):
        'a dtype kind is one letter and X is none: the same kinds pass',
    ("serving/v2.py", 'if values.dtype.kind in "biuf":',
     'if values.dtype.kind in "XXbiufXX":'):
        'a dtype kind is one letter and X is none: the same kinds pass (raw_bytes and output_tensor)',
    ('scoring/library.py', 'x = rows.as_float(array, datatype, array.size, "array").reshape(array.shape)',
     'x = rows.as_float(array, datatype, array.size, None).reshape(array.shape)'):
        "the label shows only in as_float's refusals, and it cannot refuse here: the datatype is the array's own dtype, so the count and the type's range fit",
    ('scoring/library.py', 'x = rows.as_float(array, datatype, array.size, "array").reshape(array.shape)',
     'x = rows.as_float(array, datatype, array.size, "XXarrayXX").reshape(array.shape)'):
        "the label shows only in as_float's refusals, and it cannot refuse here: the datatype is the array's own dtype, so the count and the type's range fit",
    ('scoring/library.py', 'x = rows.as_float(array, datatype, array.size, "array").reshape(array.shape)',
     'x = rows.as_float(array, datatype, array.size, "ARRAY").reshape(array.shape)'):
        "the label shows only in as_float's refusals, and it cannot refuse here: the datatype is the array's own dtype, so the count and the type's range fit",
    ('scoring/library.py', 'x[:, column] = rows.as_float(values, datatype, n, f"{where} column \'{name}\'")',
     'x[:, column] = rows.as_float(values, datatype, n, None)'):
        "the label shows only in as_float's refusals, and it cannot refuse here: the datatype is the column's own dtype (FP64 for longdouble), so the count and the type's range fit",
    ('scoring/library.py', 'datatype = rows.datatype_of_dtype(values.dtype) or "FP64"',
     'datatype = rows.datatype_of_dtype(None) or "FP64"'):
        "every numeric column (int, uint, float of any width) converts to the same float64 values through as_float's FP64 path as through its own type's",
    ('scoring/library.py', 'array = array.reshape(1, -1)  # one row',
     'array = array.reshape(1, -2)  # one row'):
        "numpy reads any negative size as 'the rest', as -1",
    ('scoring/library.py', 'x = np.empty((n, self.spec.n_features), np.float64)',
     'x = np.empty((n, self.spec.n_features), None)'):
        "np.empty's default dtype is float64",
    ('scoring/library.py', 'x = np.empty((n, self.spec.n_features), np.float64)',
     'x = np.empty((n, self.spec.n_features), )'):
        "np.empty's default dtype is float64",
    ('scoring/library.py', 'first_column = np.argmax(~accepted[bad], axis=1) if bad.size else ()',
     'first_column = np.argmax(~accepted[bad], axis=1) if (bad.size) or True else ()'):
        'argmax along axis 1 of no rows is an empty array, which zips like ()',
    ('scoring/library.py', 'ok[list(reasons)] = False',
     'ok[list(reasons)] = None'):
        'None stored into a bool array is False',
    ('scoring/library.py', 'return ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)',
     'return ptypes.is_object_dtype(None) or ptypes.is_string_dtype(dtype)'):
        "pandas' is_string_dtype is true for the object dtype itself (it is given dtypes, never arrays)",
    ('scoring/library.py', 'with tempfile.TemporaryDirectory(prefix="model-") as folder:',
     'with tempfile.TemporaryDirectory(prefix=None) as folder:'):
        'the name of a scratch folder deleted before load_model returns',
    ('scoring/library.py', 'with tempfile.TemporaryDirectory(prefix="model-") as folder:',
     'with tempfile.TemporaryDirectory(prefix="XXmodel-XX") as folder:'):
        'the name of a scratch folder deleted before load_model returns',
    ('scoring/library.py', 'with tempfile.TemporaryDirectory(prefix="model-") as folder:',
     'with tempfile.TemporaryDirectory(prefix="MODEL-") as folder:'):
        'the name of a scratch folder deleted before load_model returns',
    ('scoring/library.py', 'prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""',
     'prefix = prefix.rstrip("/") + "/" if prefix.strip("XX/XX") else ""'):
        "strip takes a set of characters: X and / strip to empty exactly when / does, but for a folder named with X's and slashes alone",
    ('scoring/library.py', 'values = series.to_numpy(dtype=np.float64, na_value=np.nan) if ptypes.is_extension_array_dtype(',
     'values = series.to_numpy(dtype=np.float64, na_value=np.nan) if (ptypes.is_extension_array_dtype('):
        "pandas 2.3 (pinned below 3) already turns a nullable or Arrow numeric column into float64 with NaN for missing values, and into its own numpy dtype without them; the explicit dtype and na_value only keep that so if pandas' default changes",
    ('scoring/library.py', 'values = series.to_numpy(dtype=np.float64, na_value=np.nan) if ptypes.is_extension_array_dtype(',
     'values = series.to_numpy(dtype=None, na_value=np.nan) if ptypes.is_extension_array_dtype('):
        "pandas 2.3 (pinned below 3) already turns a nullable or Arrow numeric column into float64 with NaN for missing values, and into its own numpy dtype without them; the explicit dtype and na_value only keep that so if pandas' default changes",
    ('scoring/library.py', 'values = series.to_numpy(dtype=np.float64, na_value=np.nan) if ptypes.is_extension_array_dtype(',
     'values = series.to_numpy(dtype=np.float64, na_value=None) if ptypes.is_extension_array_dtype('):
        "pandas 2.3 (pinned below 3) already turns a nullable or Arrow numeric column into float64 with NaN for missing values, and into its own numpy dtype without them; the explicit dtype and na_value only keep that so if pandas' default changes",
    ('scoring/library.py', 'values = series.to_numpy(dtype=np.float64, na_value=np.nan) if ptypes.is_extension_array_dtype(',
     'values = series.to_numpy(na_value=np.nan) if ptypes.is_extension_array_dtype('):
        "pandas 2.3 (pinned below 3) already turns a nullable or Arrow numeric column into float64 with NaN for missing values, and into its own numpy dtype without them; the explicit dtype and na_value only keep that so if pandas' default changes",
    ('scoring/library.py', 'values = series.to_numpy(dtype=np.float64, na_value=np.nan) if ptypes.is_extension_array_dtype(',
     'values = series.to_numpy(dtype=np.float64, ) if ptypes.is_extension_array_dtype('):
        "pandas 2.3 (pinned below 3) already turns a nullable or Arrow numeric column into float64 with NaN for missing values, and into its own numpy dtype without them; the explicit dtype and na_value only keep that so if pandas' default changes",
    ('scoring/library.py', 'series.dtype) else series.to_numpy()',
     'None) else series.to_numpy()'):
        "pandas 2.3 (pinned below 3) already turns a nullable or Arrow numeric column into float64 with NaN for missing values, and into its own numpy dtype without them; the explicit dtype and na_value only keep that so if pandas' default changes",
    ('scoring/library.py', 'checked = self.check_frame(data, "the DataFrame")',
     'checked = self.check_frame(data, None)'):
        "the label shows only in check_frame's column-type refusal, and check_columns, run first on the same DataFrame, refuses those columns already",
    ('components/registry.py', 'lock_file = env.get(LOCK_FILE_ENV, "")',
     'lock_file = env.get(LOCK_FILE_ENV, None)'):
        "an unset variable is refused by `if not lock_file` whether it reads as '' or None",
    ('components/registry.py', 'lock_file = env.get(LOCK_FILE_ENV, "")',
     'lock_file = env.get(LOCK_FILE_ENV, )'):
        "an unset variable is refused by `if not lock_file` whether it reads as '' or None",
    ('components/registry.py', 'return sorted(entries, key=lambda e: e.get("seq", 0))',
     'return sorted(entries, key=lambda e: e.get(None, 0))'):
        'the entries are read in key order (S3 lists keys sorted) and each key is its seq in 8 digits, so they come in seq order already; the sort only keeps that explicit',
    ('components/registry.py', 'return sorted(entries, key=lambda e: e.get("seq", 0))',
     'return sorted(entries, key=lambda e: e.get("seq", None))'):
        'the entries are read in key order (S3 lists keys sorted) and each key is its seq in 8 digits, so they come in seq order already; the sort only keeps that explicit',
    ('components/registry.py', 'return sorted(entries, key=lambda e: e.get("seq", 0))',
     'return sorted(entries, key=lambda e: e.get("seq", ))'):
        'the entries are read in key order (S3 lists keys sorted) and each key is its seq in 8 digits, so they come in seq order already; the sort only keeps that explicit',
    ('components/registry.py', 'return sorted(entries, key=lambda e: e.get("seq", 0))',
     'return sorted(entries, key=lambda e: e.get("XXseqXX", 0))'):
        'the entries are read in key order (S3 lists keys sorted) and each key is its seq in 8 digits, so they come in seq order already; the sort only keeps that explicit',
    ('components/registry.py', 'return sorted(entries, key=lambda e: e.get("seq", 0))',
     'return sorted(entries, key=lambda e: e.get("SEQ", 0))'):
        'the entries are read in key order (S3 lists keys sorted) and each key is its seq in 8 digits, so they come in seq order already; the sort only keeps that explicit',
    ('components/registry.py', 'return sorted(entries, key=lambda e: e.get("seq", 0))',
     'return sorted(entries, key=lambda e: e.get("seq", 1))'):
        'the entries are read in key order (S3 lists keys sorted) and each key is its seq in 8 digits, so they come in seq order already; the sort only keeps that explicit',
    ('components/registry.py', 'stack.append(current.version)  # entries lost or from a legacy adoption: the pointer wins',
     'stack.append(None)  # entries lost or from a legacy adoption: the pointer wins'):
        "only the stack's length and stack[-2] are read after this append, never the value appended",
    ('components/registry.py', 'info = self.inspect(number, verify=True)',
     'info = self.inspect(number, )'):
        "inspect's verify defaults to True",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if (etag != "0" * 32) and False else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if (etag != "0" * 32) or True else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "XX0XX" * 32 if etag != "0" * 32 else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 33 if etag != "0" * 32 else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if etag == "0" * 32 else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if etag != "XX0XX" * 32 else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if etag != "0" * 33 else "1" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if etag != "0" * 32 else "1" / 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if etag != "0" * 32 else "XX1XX" * 32'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'stale = "0" * 32 if etag != "0" * 32 else "1" * 32',
     'stale = "0" * 32 if etag != "0" * 32 else "1" * 33'):
        "any ETag but the probe object's own is stale, and its own is its MD5 (never 32 zeros): every variant of this line still sends a stale one",
    ('components/registry.py', 'return json.dumps(obj, indent=2, allow_nan=False).encode() + b"\\n"',
     'return json.dumps(obj, indent=2, allow_nan=None).encode() + b"\\n"'):
        'None is falsy: json.dumps refuses NaN exactly as with False',
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="TEXT/PLAIN", if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="XXtext/plainXX", if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", )'):
        "the probe's first write goes to a fresh uuid key: with or without If-None-Match nothing is there to keep",
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=False)'):
        "the probe's first write goes to a fresh uuid key: with or without If-None-Match nothing is there to keep",
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=None)'):
        "the probe's first write goes to a fresh uuid key: with or without If-None-Match nothing is there to keep",
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type=None, if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'etag = store.put_bytes(bucket, key, b"probe 1\\n", content_type="text/plain", if_absent=True)',
     'etag = store.put_bytes(bucket, key, b"probe 1\\n", if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'honoured = _PROBED.get(cache_key) if url else None',
     'honoured = _PROBED.get(cache_key) if (url) or True else None'):
        'without a url nothing is stored in _PROBED, so looking up (None, uri) finds nothing, as not looking',
    ('components/registry.py', 'known = [v.number for v in self.versions(verify=False) if v.complete]',
     'known = [v.number for v in self.versions(verify=None) if v.complete]'):
        'None is falsy: inspect/versions skip the hash check exactly as with False',
    ('components/registry.py', 'production = self.inspect(current.version, verify=False)',
     'production = self.inspect(current.version, verify=None)'):
        'None is falsy: inspect/versions skip the hash check exactly as with False',
    ('components/registry.py', 'return [info.number for info in Registry(store, bucket, model_name).versions(verify=False) if info.complete]',
     'return [info.number for info in Registry(store, bucket, model_name).versions(verify=None) if info.complete]'):
        'None is falsy: inspect/versions skip the hash check exactly as with False',
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 2\\n", content_type="text/plain", if_absent=True)',
     'store.put_bytes(bucket, key, b"probe 2\\n", content_type="TEXT/PLAIN", if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 2\\n", content_type="text/plain", if_absent=True)',
     'store.put_bytes(bucket, key, b"probe 2\\n", content_type="XXtext/plainXX", if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 2\\n", content_type="text/plain", if_absent=True)',
     'store.put_bytes(bucket, key, b"probe 2\\n", content_type=None, if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 2\\n", content_type="text/plain", if_absent=True)',
     'store.put_bytes(bucket, key, b"probe 2\\n", if_absent=True)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 3\\n", content_type="text/plain", if_match=stale)',
     'store.put_bytes(bucket, key, b"probe 3\\n", content_type="TEXT/PLAIN", if_match=stale)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 3\\n", content_type="text/plain", if_match=stale)',
     'store.put_bytes(bucket, key, b"probe 3\\n", content_type="XXtext/plainXX", if_match=stale)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 3\\n", content_type="text/plain", if_match=stale)',
     'store.put_bytes(bucket, key, b"probe 3\\n", content_type=None, if_match=stale)'):
        "the probe object's content type: it is deleted before anything reads it",
    ('components/registry.py', 'store.put_bytes(bucket, key, b"probe 3\\n", content_type="text/plain", if_match=stale)',
     'store.put_bytes(bucket, key, b"probe 3\\n", if_match=stale)'):
        "the probe object's content type: it is deleted before anything reads it",
    # pipeline and batch modules
    ("components/push.py", "text=True, timeout=5, check=False)", "text=True, timeout=5, check=True)"):
        "a failing git then raises CalledProcessError, a SubprocessError, which is caught: 'unknown' either way",
    ("components/push.py", "text=True, timeout=5, check=False)", "text=True, timeout=5, )"):
        "check defaults to False",
    ("components/push.py", '"allow_schema_change": bool(evaluation.get("allow_schema_change", False)),',
     '"allow_schema_change": bool(evaluation.get("allow_schema_change", None)),'):
        "bool(None) is False, as bool(False)",
    ("components/push.py", '"allow_schema_change": bool(evaluation.get("allow_schema_change", False)),',
     '"allow_schema_change": bool(evaluation.get("allow_schema_change", )),'):
        "get's default is None: bool(None) is False",
    ("components/push.py", 'allow_schema_change = bool(evaluation.get("allow_schema_change", False))',
     'allow_schema_change = bool(evaluation.get("allow_schema_change", None))'):
        "bool(None) is False, as bool(False)",
    ("components/push.py", 'allow_schema_change = bool(evaluation.get("allow_schema_change", False))',
     'allow_schema_change = bool(evaluation.get("allow_schema_change", ))'):
        "get's default is None: bool(None) is False",
    ("components/push.py", "created_at = now or dt.datetime.now(dt.timezone.utc)",
     "created_at = now or dt.datetime.now(None)"):
        "a naive local time, which build_metadata's astimezone(utc) reads as local: the same UTC instant",
    ("components/push.py",
     "base = build_metadata(model_name, 0, model, training, schema, evaluation, run_id, created_at, bucket, skops)",
     "base = build_metadata(model_name, None, model, training, schema, evaluation, run_id, created_at, bucket, skops)"):
        "base's version is a placeholder: every attempt's metadata replaces it with its own number",
    ("components/push.py",
     "base = build_metadata(model_name, 0, model, training, schema, evaluation, run_id, created_at, bucket, skops)",
     "base = build_metadata(model_name, 1, model, training, schema, evaluation, run_id, created_at, bucket, skops)"):
        "base's version is a placeholder: every attempt's metadata replaces it with its own number",
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "killed", None: "not run"}


@dataclass
class Mutant:
    name: str
    status: str
    line: int
    before: str
    after: str
    kind: str = "logic"  # logic | prose | equivalent
    why: str = ""


@dataclass
class ModuleResult:
    module: str
    mutants: list[Mutant] = field(default_factory=list)
    note: str = ""

    def count(self, status: str, kind: str = "logic") -> int:
        """Mutants of one status and kind.

        Args:
            status: killed, survived, timeout, not run, ...
            kind: logic (counted), equivalent or prose.

        Returns:
            How many.
        """
        return sum(1 for m in self.mutants if m.status == status and m.kind == kind)

    @property
    def score(self) -> float | None:
        """Killed over the mutants that count (timeouts count as killed: the suite did notice).

        Returns:
            The killed share (0..1) of the logic mutants run, None when none ran.
        """
        counted = [m for m in self.mutants if m.kind == "logic" and m.status != "not run"]
        if not counted:
            return None
        return sum(m.status in ("killed", "timeout") for m in counted) / len(counted)


def setup_cfg(module: str, tests: tuple[str, ...]) -> str:
    """mutmut's settings for one module: mutate only it, run only the fast tier of its tests.

    Args:
        module: the module's path, as in MODULES.
        tests: its test files or folders.

    Returns:
        setup.cfg's text.
    """
    def lines(values: list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)
    return ("[mutmut]\n"
            f"source_paths ={lines(list(SOURCE_PACKAGES))}\n"
            f"only_mutate ={lines([module])}\n"
            f"also_copy ={lines(list(ALSO_COPIED))}\n"
            f"pytest_add_cli_args ={lines(['-m', 'not integration', '-q', '-p', 'no:cacheprovider'])}\n"
            f"pytest_add_cli_args_test_selection ={lines(list(tests))}\n")


def copy_project(into: Path) -> None:
    """Copy what the tests need (COPIED) into a scratch folder, where mutmut may rewrite files.

    Args:
        into: the scratch folder.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)


def string_only_change(before: str, after: str) -> bool:
    """True when the two lines differ only inside string literals that hold prose (a space).

    Args:
        before: the original line.
        after: the mutated line.

    Returns:
        True for a prose-only change (not counted), False otherwise.
    """
    def tokens(line: str) -> list[tokenize.TokenInfo] | None:
        # A diff line is often part of a statement (an unclosed bracket): keep the tokens read up to the
        # error that the missing rest causes.
        found = []
        try:
            for token in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
                if token.type == tokenize.ERRORTOKEN and token.string.strip():
                    return None
                if token.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT,
                                      tokenize.DEDENT, tokenize.ERRORTOKEN):
                    found.append(token)
        except (tokenize.TokenError, SyntaxError, IndentationError):
            pass
        return found
    ours, theirs = tokens(before), tokens(after)
    if ours is None or theirs is None or len(ours) != len(theirs):
        return False
    changed = [(a, b) for a, b in zip(ours, theirs) if a.string != b.string]
    return bool(changed) and all(a.type == b.type == tokenize.STRING and " " in a.string for a, b in changed)


def classify(module: str, mutant: Mutant) -> Mutant:
    """Mark a mutant equivalent (listed in EQUIVALENT, with why) or prose-only; other mutants stay logic.

    Args:
        module: the mutated module.
        mutant: the mutant, changed in place.

    Returns:
        The same mutant.
    """
    why = EQUIVALENT.get((module, mutant.before.strip(), mutant.after.strip()))
    if why:
        mutant.kind, mutant.why = "equivalent", why
    elif string_only_change(mutant.before, mutant.after):
        mutant.kind = "prose"
    return mutant


def collect(workdir: Path, module: str) -> list[Mutant]:
    """Read mutmut's verdicts and each mutant's diff (runs inside the copy, where mutmut's state is).

    Args:
        workdir: mutmut's scratch copy.
        module: the mutated module.

    Returns:
        The mutants with status and diff lines, classified.
    """
    completed = subprocess.run([sys.executable, "-m", "tools.mutate", "--collect", module], cwd=workdir,
                               capture_output=True, text=True, check=False,
                               env={**_env(), "PYTHONPATH": str(ROOT)})
    if completed.returncode != 0:
        raise RuntimeError(f"collecting results for {module} failed:\n{completed.stderr[-2000:]}")
    return [classify(module, Mutant(**item)) for item in json.loads(completed.stdout)]


def _collect_here(module: str) -> None:
    """--collect: print the mutants of `module` as JSON (cwd: a copy mutmut has run in)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    meta = Path("mutants") / f"{module}.meta"
    verdicts = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    tree = ast.parse(Path(module).read_text())
    starts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    starts[f"x\u01c1{node.name}\u01c1{item.name}"] = _first_line(item)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.col_offset == 0:
            starts[f"x_{node.name}"] = _first_line(node)
    out = []
    for name, code in verdicts.items():
        function = name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
        diff = get_diff_for_mutant(name, path=Path(module))
        line, before, after = _changed_line(diff)
        out.append({"name": name, "status": STATUS.get(code, f"exit {code}"),
                    "line": starts.get(function, 1) + line, "before": before, "after": after})
    print(json.dumps(out))


def _first_line(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return min([node.lineno] + [d.lineno for d in node.decorator_list])


def _changed_line(diff: str) -> tuple[int, str, str]:
    """(offset from the function's first line, first removed line, first added line) of a diff."""
    offset, before, after = 0, "", ""
    position = None
    for text in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)", text)
        if hunk:
            position = int(hunk.group(1)) - 1
            continue
        if position is None or text.startswith(("---", "+++")):
            continue
        if text.startswith("-"):
            if not before:
                offset, before = position, text[1:]
            position += 1
        elif text.startswith("+"):
            after = after or text[1:]
        else:
            position += 1
    return offset, before, after


def _tail(path: Path) -> str:
    return path.read_text(errors="replace").strip()[-1500:]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    # mutmut forks each mutant's worker from a process that already ran the tests; once OpenMP
    # (libgomp: HistGradientBoosting) has started its thread pool there, a forked child that enters a
    # parallel region waits forever on it (seen: every engine mutant "timed out" in futex_wait).
    # With one thread no pool is started; on 2 shared cores one thread is also the faster choice.
    return {**env, "OMP_NUM_THREADS": "1"}


def mutate(module: str, tests: tuple[str, ...], *, timeout: float, jobs: int, keep: bool) -> ModuleResult:
    """Run mutmut on one module in a scratch copy, bounded by ``timeout`` (its workers stop with it).

    Args:
        module: the module's path.
        tests: the tests that should kill its mutants (fast tier).
        timeout: seconds for the module; mutants not reached are 'not run'.
        jobs: mutmut's parallel children.
        keep: keep the scratch copy and print where.

    Returns:
        The ModuleResult (with a note when mutmut failed or was stopped).
    """
    workdir = Path(tempfile.mkdtemp(prefix="mutate-"))
    result = ModuleResult(module)
    try:
        copy_project(workdir)
        (workdir / "setup.cfg").write_text(setup_cfg(module, tests))
        mutmut = Path(sys.executable).with_name("mutmut")
        # Its own session, so that the time limit stops mutmut's forked workers with it.
        with open(workdir / "mutmut.log", "w") as log:
            run = subprocess.Popen([str(mutmut), "run", "--max-children", str(jobs)], cwd=workdir, env=_env(),
                                   stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
            try:
                if run.wait(timeout=timeout) != 0:
                    result.note = f"mutmut exited {run.returncode}: {_tail(workdir / 'mutmut.log')}"
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGTERM)
                run.wait()
                result.note = f"stopped at the {timeout:.0f} s limit; mutants not reached are 'not run'"
        result.mutants = collect(workdir, module)
    finally:
        if keep:
            print(f"  (mutmut's copy kept in {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(result: ModuleResult, seconds: float) -> list[str]:
    """The lines printed for one module: counts per status, the score, each survivor.

    Args:
        result: the module's result.
        seconds: how long it took.

    Returns:
        The lines.
    """
    score = result.score
    lines = [f"{result.module}: {len(result.mutants)} mutants in {seconds:.0f} s; "
             f"logic: {result.count('killed')} killed, {result.count('timeout')} timed out, "
             f"{result.count('survived')} survived, "
             f"{result.count('no tests')} no tests, {result.count('not run')} not run; "
             f"score {'n/a' if score is None else f'{score:.0%}'}; "
             f"prose: {result.count('killed', 'prose')} killed, {result.count('survived', 'prose')} survived; "
             f"equivalent: {sum(m.kind == 'equivalent' for m in result.mutants)}"]
    if result.note:
        lines.append(f"  note: {result.note}")
    for m in sorted(result.mutants, key=lambda m: m.line):
        if m.kind == "logic" and m.status in ("survived", "no tests"):
            lines.append(f"  {m.status}: {result.module}:{m.line}  {m.before.strip()}  ->  {m.after.strip()}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``make mutate``: mutation testing of the modules in MODULES, one summary per module.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        0 when every module ran and has a score, else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES),
                        help="only this module (repeatable); default: all")
    parser.add_argument("--module-timeout", type=float, default=900, help="seconds per module (default 900)")
    parser.add_argument("--budget", type=float, default=3600, help="seconds for the whole run (default 3600)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep mutmut's copy of the project (to `mutmut show`)")
    parser.add_argument("--collect", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.collect:
        _collect_here(args.collect)
        return 0
    deadline = time.monotonic() + args.budget
    scores = []
    for module in args.module or list(MODULES):
        left = deadline - time.monotonic()
        if left < 30:
            print(f"{module}: not run, the {args.budget:.0f} s budget is spent")
            continue
        started = time.monotonic()
        result = mutate(module, MODULES[module], timeout=min(args.module_timeout, left), jobs=args.jobs,
                        keep=args.keep)
        print("\n".join(report(result, time.monotonic() - started)), flush=True)
        scores.append(result.score)
    return 0 if scores and all(s is not None for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
