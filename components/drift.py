"""Drift: how far new data has moved from the training data profile (components.profile).

Per feature:
  - PSI (population stability index) over the profile's histogram bins:
    sum((observed - expected) * ln(observed / expected)), shares floored at PSI_FLOOR so an empty
    bin does not make it infinite. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 shifted.
  - The two-sample Kolmogorov-Smirnov statistic: the largest gap between the observed empirical
    CDF and the training CDF, read back from the profile's 101 percentiles (so it is exact to
    about 0.01: the profile keeps no rows). Its p-value is scipy's asymptotic two-sample one
    (kstwo at n*m/(n+m)), as scipy.stats.ks_2samp computes in its "asymp" mode.
  - The out-of-range share: rows outside the training [min, max].
Predictions (logged outputs, or none) are compared the same way: numeric for regression, PSI
over the class shares for classification.

A feature drifts when its PSI reaches `psi`, or its KS statistic reaches `ks_statistic` with a
p-value below `ks_pvalue` (both: with many rows a tiny, harmless shift is "significant"), or its
out-of-range share reaches `out_of_range`. Retraining is recommended when at least
`min_drifting_features` features drift, or the predictions do; never on fewer than `min_rows` rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np
from scipy import stats

from components.errors import DriftError
from components.profile import QUANTILE_LEVELS, bin_shares, classes, label_key

PSI_FLOOR = 1e-4
RANGE_SLACK = 1e-9  # relative to the training range


@dataclass(frozen=True)
class Thresholds:
    """When a feature, the predictions and the whole window count as drifted (the module docstring says how)."""

    psi: float = 0.2
    ks_statistic: float = 0.1
    ks_pvalue: float = 0.01
    out_of_range: float = 0.05
    prediction_psi: float = 0.2
    min_drifting_features: int = 1
    min_rows: int = 50

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            whole = field.type == "int"
            valid = (not isinstance(value, bool) and isinstance(value, int if whole else (int, float))
                     and math.isfinite(value) and value >= (1 if whole else 0))
            if not valid:
                raise DriftError(f"drift threshold {field.name}={value!r} is invalid: expected "
                                 f"{'a whole number >= 1' if whole else 'a number >= 0'}")
        if self.ks_pvalue > 1:
            raise DriftError(f"drift threshold ks_pvalue={self.ks_pvalue!r} is invalid: expected a p-value in 0..1")


def psi(expected: Sequence[float], observed: Sequence[float]) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    o = np.maximum(np.asarray(observed, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((o - e) * np.log(o / e)))


def reference_cdf(quantiles: Sequence[float], points: np.ndarray) -> np.ndarray:
    """The training CDF at points, from its percentiles.

    A value several percentiles share is an atom (a coded column's value, a rounded reading): the
    CDF jumps there from the lowest of those levels to the highest. At the value it is the highest
    (F(v) counts v); between two values it runs linearly from the first's highest level to the
    next one's lowest, never up an atom's jump before reaching it.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    values, first, counts = np.unique(q, return_index=True, return_counts=True)
    low, high = QUANTILE_LEVELS[first], QUANTILE_LEVELS[first + counts - 1]
    below = np.searchsorted(values, points, side="right") - 1  # the largest value <= point; -1: none
    inside = (below >= 0) & (below < len(values) - 1)
    i = np.where(inside, below, 0)
    width = np.where(inside, values[np.minimum(i + 1, len(values) - 1)] - values[i], 1.0)
    ramp = high[i] + (low[np.minimum(i + 1, len(values) - 1)] - high[i]) * (points - values[i]) / width
    return np.where(below < 0, 0.0, np.where(inside, ramp, 1.0))


def _slack(low: float, high: float) -> float:
    """How far off a value may be and still be the training value there (a float step or a parser's digit)."""
    return RANGE_SLACK * max(high - low, abs(high), abs(low))


def _snap(sample: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each sample value within _slack of one of values becomes that value (coded columns sit on their values)."""
    if not len(values):
        return sample
    upper = np.clip(np.searchsorted(values, sample), 0, len(values) - 1)
    lower = np.clip(upper - 1, 0, len(values) - 1)
    nearest = np.where(np.abs(values[lower] - sample) < np.abs(values[upper] - sample), values[lower], values[upper])
    return np.where(np.abs(nearest - sample) <= _slack(values[0], values[-1]), nearest, sample)


def ks_against_profile(quantiles: Sequence[float], reference_rows: int, sample: np.ndarray) -> tuple[float, float]:
    """(KS statistic, p-value) of sample against the profiled training column."""
    sample = np.sort(_snap(np.asarray(sample, dtype=np.float64), np.unique(np.asarray(quantiles, dtype=np.float64))))
    grid = np.union1d(sample, np.asarray(quantiles, dtype=np.float64))
    observed = np.searchsorted(sample, grid, side="right") / len(sample)
    statistic = float(np.max(np.abs(observed - reference_cdf(quantiles, grid))))
    n, m = len(sample), max(int(reference_rows), 1)
    pvalue = float(stats.distributions.kstwo.sf(statistic, max(1, round(n * m / (n + m)))))
    return statistic, pvalue


def numeric_drift(reference: dict, values: np.ndarray, thresholds: Thresholds, psi_limit: float) -> dict:
    """One numeric column against its profile: the statistics and whether (and why) it drifts."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    result: dict[str, Any] = {"rows": int(len(values)),
                              "missing_fraction": float(1 - len(present) / len(values)) if len(values) else 0.0,
                              "reference_missing_fraction": reference.get("missing_fraction", 0.0),
                              "psi": None, "ks_statistic": None, "ks_pvalue": None, "out_of_range_share": None,
                              "mean": float(present.mean()) if len(present) else None,
                              "reference_mean": reference.get("mean"), "drifting": False, "reasons": []}
    if not len(present) or not reference.get("quantiles"):
        return result
    result["psi"] = psi(reference["bin_shares"], bin_shares(present, reference["bin_edges"]))
    result["ks_statistic"], result["ks_pvalue"] = ks_against_profile(reference["quantiles"], reference["count"],
                                                                     present)
    # A float step beyond the training range (a client's parser) is not out of range.
    slack = _slack(reference["min"], reference["max"])
    outside = (present < reference["min"] - slack) | (present > reference["max"] + slack)
    result["out_of_range_share"] = float(np.mean(outside))
    reasons = result["reasons"]
    if result["psi"] >= psi_limit:
        reasons.append(f"PSI {result['psi']:.3f} >= {psi_limit}")
    if result["ks_statistic"] >= thresholds.ks_statistic and result["ks_pvalue"] < thresholds.ks_pvalue:
        reasons.append(f"KS {result['ks_statistic']:.3f} >= {thresholds.ks_statistic} (p {result['ks_pvalue']:.2g})")
    if result["out_of_range_share"] >= thresholds.out_of_range:
        reasons.append(f"{result['out_of_range_share']:.1%} of rows outside the training range")
    result["drifting"] = bool(reasons)
    return result


def class_drift(reference: dict, labels: Sequence[Any], psi_limit: float) -> dict:
    """Class shares against the profile's (PSI over the classes; labels it never saw count as drift)."""
    observed = classes(labels, reference["classes"])
    expected = list(reference["shares"]) + [reference.get("unknown_fraction", 0.0)]
    value = psi(expected, observed["shares"] + [observed["unknown_fraction"]]) if observed["count"] else None
    reasons = [f"PSI {value:.3f} >= {psi_limit}"] if value is not None and value >= psi_limit else []
    return {"rows": observed["count"], "psi": value, "shares": dict(zip(map(str, reference["classes"]),
                                                                        observed["shares"], strict=True)),
            "reference_shares": dict(zip(map(str, reference["classes"]), reference["shares"], strict=True)),
            "unknown_fraction": observed["unknown_fraction"], "drifting": bool(reasons), "reasons": reasons}


def _summary_drift(reference: dict | None, values: Sequence[Any] | None, thresholds: Thresholds) -> dict | None:
    if reference is None or values is None or not len(values):
        return None
    if reference.get("kind") == "classes":
        return class_drift(reference, [label_key(v) for v in values if v is not None], thresholds.prediction_psi)
    floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return numeric_drift(reference, floats, thresholds, thresholds.prediction_psi)


def compare(profile: dict, feature_names: Sequence[str], x: np.ndarray, thresholds: Thresholds | None = None,
            predictions: Sequence[Any] | None = None, targets: Sequence[Any] | None = None) -> dict:
    """The drift report of rows x (columns in feature_names order) against a training profile.

    predictions: the model outputs for those rows (logged traffic); targets: their true labels
    (new training data). Either is compared with the profile's "predictions" / "target".
    """
    thresholds = thresholds or Thresholds()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise DriftError(f"drift: rows have {x.shape[-1] if x.ndim else 0} values, expected {len(feature_names)} "
                         f"({', '.join(feature_names)})")
    profiled = profile.get("features") or {}
    unknown = [name for name in feature_names if name not in profiled]
    if unknown:
        raise DriftError(f"drift: the training profile has no feature {', '.join(map(repr, unknown))}; it profiles "
                         f"{', '.join(profiled) or 'none'} (the input schema changed: compare with a matching version)")
    features = {name: numeric_drift(profiled[name], x[:, i], thresholds, thresholds.psi)
                for i, name in enumerate(feature_names)}
    drifting = [name for name, result in features.items() if result["drifting"]]
    prediction = _summary_drift(profile.get("predictions"), predictions, thresholds)
    target = _summary_drift(profile.get("target"), targets, thresholds)
    rows = int(x.shape[0])
    if rows < thresholds.min_rows:
        recommended, reason = False, f"only {rows} rows (fewer than min_rows={thresholds.min_rows}): no decision"
    else:
        parts = []
        if len(drifting) >= thresholds.min_drifting_features:
            parts.append(f"{len(drifting)} of {len(features)} features drift ({', '.join(drifting)})")
        if prediction is not None and prediction["drifting"]:
            parts.append(f"predictions drift ({'; '.join(prediction['reasons'])})")
        recommended = bool(parts)
        reason = "; ".join(parts) if parts else (
            f"no drift: {len(drifting)} of {len(features)} features drift (min_drifting_features="
            f"{thresholds.min_drifting_features})" + ("" if prediction is None else ", predictions stable"))
    return {"rows": rows, "reference_rows": profile.get("rows"), "thresholds": asdict(thresholds),
            "features": features, "drifting_features": drifting, "prediction": prediction, "target": target,
            "retrain_recommended": recommended, "reason": reason}


def summary(report: dict) -> dict[str, float]:
    """The few drift numbers a training run logs as KFP Metrics (evaluate's data vs production's profile).

    Args:
        report: a ``compare`` report.

    Returns:
        rows, drifting_features (count), retrain_recommended (1 or 0), max_psi and max_out_of_range_share
        over the features, and target_psi when the target was compared; missing statistics are left out.
    """
    flat = {"rows": float(report["rows"]), "drifting_features": float(len(report["drifting_features"])),
            "retrain_recommended": 1.0 if report["retrain_recommended"] else 0.0}
    for key, name in (("psi", "max_psi"), ("out_of_range_share", "max_out_of_range_share")):
        values = [result[key] for result in report["features"].values() if result[key] is not None]
        if values:
            flat[name] = float(max(values))
    if report.get("target") and report["target"]["psi"] is not None:
        flat["target_psi"] = float(report["target"]["psi"])
    return flat


def metrics(report: dict) -> dict[str, float]:
    """The report's numbers as flat KFP Metrics (scalars only; a missing statistic is left out)."""
    flat = {"rows": float(report["rows"]), "drifting_features": float(len(report["drifting_features"])),
            "retrain_recommended": 1.0 if report["retrain_recommended"] else 0.0}
    for name, result in report["features"].items():
        for key in ("psi", "ks_statistic", "ks_pvalue", "out_of_range_share"):
            if result[key] is not None:
                flat[f"{name}_{key}"] = float(result[key])
    for part in ("prediction", "target"):
        if report.get(part) and report[part]["psi"] is not None:
            flat[f"{part}_psi"] = float(report[part]["psi"])
    return flat
