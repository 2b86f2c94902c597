"""The training data profile: what the model learned from, kept in its version's metadata.json.

Drift (components.drift) compares later data with it: logged traffic (the monitor) and the next
run's training data (evaluate). It holds summaries, never rows, so metadata.json stays small:

    {"version": 1, "rows": n,
     "features": {name: numeric summary, ... in schema order},
     "target": numeric summary (regression) | class shares (classification),
     "predictions": the model's own predictions on its training rows, summarised the same way}

A numeric summary has count, missing_fraction, mean, std, min, max, the percentiles (101 values,
what the KS test reads back as a CDF) and a histogram: the interior decile edges and the share of
rows in each bin (what PSI compares). Class shares follow the schema's class order.
Versions pushed before profiles were recorded have none; every reader treats it as optional.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PROFILE_VERSION = 1
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
HISTOGRAM_BINS = 10


def _floats(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """values as float64, None (a JSON null) as NaN."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def label_key(label: Any) -> Any:
    """A class label compared across sources: 1, 1.0 and numpy's 1 are one class; strings stay strings."""
    if isinstance(label, str):
        return label
    number = float(label)
    return int(number) if number.is_integer() else number


def bin_index(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Histogram bin of each value: bin i holds edges[i-1] <= v < edges[i] (bin 0 and the last are open)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of values in each of the len(edges) + 1 bins; all zeros for no values."""
    counts = np.bincount(bin_index(values, edges), minlength=len(edges) + 1).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def bin_edges(present: np.ndarray) -> np.ndarray:
    """Interior decile edges, each moved to the midpoint below the nearest value at or above it.

    A coded or binary column has few values and most rows sit exactly on an edge: an edge there
    would send a row to the other bin when a client sends it one float step off (a parser's last
    digit). Between two values no such noise moves a row. Ties collapse edges: each is kept once.
    """
    distinct = np.unique(present)
    quantiles = np.quantile(present, np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1))[1:-1]
    above = np.clip(np.searchsorted(distinct, quantiles, side="left"), 1, len(distinct) - 1)
    if len(distinct) < 2:
        return np.array([], dtype=np.float64)
    return np.unique((distinct[above - 1] + distinct[above]) / 2)


def numeric(values: Sequence[Any] | np.ndarray) -> dict:
    """The numeric summary of one column (NaN and None count as missing)."""
    values = _floats(values)
    present = values[~np.isnan(values)]
    summary: dict[str, Any] = {
        "kind": "numeric",
        "count": int(len(values)),
        "missing_fraction": float(1.0 - len(present) / len(values)) if len(values) else 0.0,
    }
    if not len(present):
        return {**summary, "mean": None, "std": None, "min": None, "max": None, "quantiles": [],
                "bin_edges": [], "bin_shares": []}
    edges = bin_edges(present)
    return {
        **summary,
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
        "quantiles": [float(q) for q in np.quantile(present, QUANTILE_LEVELS)],
        "bin_edges": [float(e) for e in edges],
        "bin_shares": [float(s) for s in bin_shares(present, edges)],
    }


def classes(labels: Sequence[Any] | np.ndarray, known: Sequence[Any]) -> dict:
    """Share of each known class among labels (the schema's order); labels outside it are counted apart."""
    labels = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    total = len(labels)
    counts = {label_key(c): 0 for c in known}
    for label in labels:
        key = label_key(label)
        if key in counts:
            counts[key] += 1
    inside = sum(counts.values())
    return {
        "kind": "classes",
        "count": total,
        "classes": list(known),
        "shares": [counts[label_key(c)] / total if total else 0.0 for c in known],
        "unknown_fraction": (total - inside) / total if total else 0.0,
    }


def of_training(x: np.ndarray, y: np.ndarray, predicted: np.ndarray, schema: dict) -> dict:
    """The profile of a training split: x in schema order, y the target, predicted the model's outputs on x."""
    features = [feature["name"] for feature in schema["features"]]
    if x.shape[1] != len(features):
        raise ValueError(f"profile: x has {x.shape[1]} columns, the schema names {len(features)} features")
    known = (schema.get("target") or {}).get("classes")
    if schema["target"]["type"] == "continuous" or not known:
        target, predictions = numeric(y), numeric(predicted)
    else:
        target, predictions = classes(y, known), classes(predicted, known)
    return {
        "version": PROFILE_VERSION,
        "rows": int(x.shape[0]),
        "features": {name: numeric(x[:, i]) for i, name in enumerate(features)},
        "target": target,
        "predictions": predictions,
    }
