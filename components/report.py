"""Evaluate's HTML report: plots of the held-out test, the candidates' CV scores, feature importances.

Each figure is a PNG in the plots folder and an <img> in one self-contained HTML page (the PNGs
inlined as data: URIs, because the Kubeflow UI renders an HTML artifact as a single file).
matplotlib draws headless with its Agg backend: no display, no browser.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a pipeline pod or a CI runner
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402

# Permutation importance refits nothing but predicts repeats x features times: enough for a ranking.
PERMUTATION_REPEATS = 5
MAX_DECILE_FEATURES = 6


def _figure(width: float = 6.0, height: float = 4.2) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    return fig, ax


def predicted_vs_actual(y, predicted, target: str) -> Figure:
    """Scatter of predictions against true values, with the diagonal.

    Args:
        y: the test split's true values.
        predicted: the model's predictions.
        target: the target's name, for the axes.

    Returns:
        The figure (the caller saves and closes it).
    """
    fig, ax = _figure()
    ax.scatter(y, predicted, s=12, alpha=0.6)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="perfect")
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Predicted vs actual (test split)")
    ax.legend()
    return fig


def residuals(y, predicted, target: str) -> Figure:
    """Residuals (true - predicted) against the predictions.

    Args:
        y: the test split's true values.
        predicted: the model's predictions.
        target: the target's name, for the axes.

    Returns:
        The figure (the caller saves and closes it).
    """
    fig, ax = _figure()
    ax.scatter(predicted, y - predicted, s=12, alpha=0.6)
    ax.axhline(0, color="k", linestyle="--", linewidth=1)
    ax.set(xlabel=f"predicted {target}", ylabel=f"residual (actual - predicted, {target} units)",
           title="Residuals (test split)")
    return fig


def error_by_decile(x, y, predicted, names: list[str], order: list[int]) -> Figure:
    """Mean absolute error per decile of each of the most important features.

    Args:
        x: the test features.
        y: the test split's true values.
        predicted: the model's predictions.
        names: the feature names.
        order: feature indices, most important first.

    Returns:
        The figure (the caller saves and closes it).
    """
    shown = order[:MAX_DECILE_FEATURES]
    fig, ax = _figure(7.0, 4.5)
    errors = np.abs(y - predicted)
    for i in shown:
        column = x[:, i].astype(float)
        edges = np.unique(np.nanquantile(column, np.linspace(0, 1, 11)))
        bins = np.clip(np.searchsorted(edges, column, side="right") - 1, 0, max(len(edges) - 2, 0))
        means = [errors[bins == b].mean() for b in range(max(len(edges) - 1, 1)) if (bins == b).any()]
        ax.plot(range(1, len(means) + 1), means, marker="o", label=names[i])
    ax.set(xlabel="feature decile (1 = lowest values)", ylabel="mean absolute error",
           title="Error by feature decile (test split)")
    ax.legend(fontsize=8)
    return fig


def confusion(y, predicted, classes: list) -> Figure:
    """The confusion matrix on the test split.

    Args:
        y: the true labels.
        predicted: the model's predictions.
        classes: every class, in the schema's order.

    Returns:
        The figure (the caller saves and closes it).
    """
    fig, ax = _figure(5.0, 4.5)
    skm.ConfusionMatrixDisplay.from_predictions(y, predicted, labels=classes, ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (test split)")
    return fig


def _binary_scores(model, x, y) -> tuple[np.ndarray, np.ndarray, Any]:
    proba = model.predict_proba(x)
    positive = model.classes_[-1]
    return (y == positive).astype(int), proba[:, -1], positive


def roc(model, x, y) -> Figure:
    """The ROC curve of the positive class.

    Args:
        model: the fitted binary classifier.
        x: the test features.
        y: the true labels.

    Returns:
        The figure (the caller saves and closes it).
    """
    truth, score, positive = _binary_scores(model, x, y)
    fig, ax = _figure()
    skm.RocCurveDisplay.from_predictions(truth, score, ax=ax, name=f"class {positive}")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_title("ROC curve (test split)")
    return fig


def precision_recall(model, x, y) -> Figure:
    """The precision-recall curve of the positive class.

    Args:
        model: the fitted binary classifier.
        x: the test features.
        y: the true labels.

    Returns:
        The figure (the caller saves and closes it).
    """
    truth, score, positive = _binary_scores(model, x, y)
    fig, ax = _figure()
    skm.PrecisionRecallDisplay.from_predictions(truth, score, ax=ax, name=f"class {positive}")
    ax.set_title("Precision-recall curve (test split)")
    return fig


def calibration(model, x, y) -> Figure:
    """Observed against predicted probability of the positive class (quantile bins).

    Args:
        model: the fitted binary classifier.
        x: the test features.
        y: the true labels.

    Returns:
        The figure (the caller saves and closes it).
    """
    truth, score, positive = _binary_scores(model, x, y)
    observed, predicted = calibration_curve(truth, score, n_bins=10, strategy="quantile")
    fig, ax = _figure()
    ax.plot(predicted, observed, marker="o", label=f"class {positive}")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Calibration (test split)")
    ax.legend()
    return fig


def cv_scores(selection: dict) -> Figure:
    """Every successful candidate's CV mean and std, the winner marked.

    Args:
        selection: the selection JSON.

    Returns:
        The figure (the caller saves and closes it).
    """
    ok = [r for r in selection["results"] if r["status"] == "ok"]
    fig, ax = _figure(7.0, 0.6 * len(ok) + 1.8)
    winner = selection["winner"].get("index")
    labels = [("* " if r.get("index") == winner else "") + r["label"] for r in ok]
    ax.barh(range(len(ok)), [r["mean"] for r in ok], xerr=[r["std"] for r in ok],
            color=["tab:green" if r.get("index") == winner else "tab:gray" for r in ok], capsize=4)
    ax.set_yticks(range(len(ok)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=f"CV {selection['metric']} (mean ± std over {ok[0]['folds']} folds)",
           title="Candidates (training split, * = selected)")
    fig.tight_layout()
    return fig


def importances(model, x, y, names: list[str], scoring: str, seed: int) -> tuple[np.ndarray, str]:
    """The model's own importances (trees: impurity, linear: |coefficient| of scaled inputs), else permutation.

    Args:
        model: the fitted model (a Pipeline or not).
        x: the test features.
        y: the test split's true values.
        names: the feature names.
        scoring: the scorer for permutation importance.
        seed: its seed.

    Returns:
        (importance per feature, what kind they are, for the plot's title).
    """
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    own = getattr(estimator, "feature_importances_", None)
    if own is None and hasattr(estimator, "coef_") and np.ndim(estimator.coef_) <= 2:
        coef = np.abs(np.atleast_2d(estimator.coef_)).mean(axis=0)
        own = coef if len(coef) == len(names) else None  # one-hot columns do not map back one to one
    if own is not None and len(own) == len(names):
        kind = "impurity" if hasattr(estimator, "feature_importances_") else "|coefficient| (scaled inputs)"
        return np.asarray(own, dtype=float), kind
    result = permutation_importance(model, x, y, scoring=scoring, n_repeats=PERMUTATION_REPEATS, random_state=seed)
    return result.importances_mean, f"permutation ({scoring} drop, test split)"


def importance_plot(values: np.ndarray, kind: str, names: list[str]) -> Figure:
    """The importances as horizontal bars, largest on top.

    Args:
        values: one importance per feature.
        kind: what kind they are (for the title).
        names: the feature names.

    Returns:
        The figure (the caller saves and closes it).
    """
    order = np.argsort(values)[::-1]
    fig, ax = _figure(6.5, 0.35 * len(names) + 1.6)
    ax.barh(range(len(names)), values[order])
    ax.set_yticks(range(len(names)), [names[i] for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=kind, title="Feature importances")
    fig.tight_layout()
    return fig


def plots(task: str, model, x, y, schema: dict, selection: dict | None, seed: int) -> list[tuple[str, str, Figure]]:
    """[(file stem, caption, figure)] for the task; the caller saves and closes them.

    Args:
        task: regression or classification.
        model: the fitted model.
        x: the test features.
        y: the test split's true values.
        schema: the ingested schema.
        selection: the selection JSON, or None (no CV plot).
        seed: seed of the permutation importance.

    Returns:
        The list, in page order.
    """
    names = [f["name"] for f in schema["features"]]
    target = schema["target"]["name"]
    figures: list[tuple[str, str, Callable[[], Figure]]] = []
    values, kind = importances(model, x, y, names, "r2" if task == "regression" else "f1_macro", seed)
    order = list(np.argsort(values)[::-1])
    if task == "regression":
        predicted = model.predict(x)
        figures += [("predicted_vs_actual", "Predicted against actual", lambda: predicted_vs_actual(y, predicted, target)),
                    ("residuals", "Residuals", lambda: residuals(y, predicted, target)),
                    ("error_by_decile", "Error by feature decile",
                     lambda: error_by_decile(x, y, predicted, names, order))]
    else:
        classes = schema["target"]["classes"]
        predicted = model.predict(x)
        figures.append(("confusion_matrix", "Confusion matrix", lambda: confusion(y, predicted, classes)))
        if hasattr(model, "predict_proba"):
            # Multi-class: the curves are drawn for the last class against the rest.
            figures += [("roc", "ROC curve", lambda: roc(model, x, y)),
                        ("precision_recall", "Precision-recall curve", lambda: precision_recall(model, x, y)),
                        ("calibration", "Calibration", lambda: calibration(model, x, y))]
    if selection is not None and any(r["status"] == "ok" for r in selection["results"]):
        figures.append(("cv_scores", "Candidates' cross-validation scores", lambda: cv_scores(selection)))
    figures.append(("feature_importances", f"Feature importances ({kind})",
                    lambda: importance_plot(values, kind, names)))
    return [(stem, caption, make()) for stem, caption, make in figures]


def write(figures: list[tuple[str, str, Figure]], plots_dir: str | Path, html_path: str | Path, title: str,
          summary_html: str) -> list[Path]:
    """Save each figure as plots_dir/<stem>.png and write the page; returns the PNG paths.

    Args:
        figures: (stem, caption, figure) triples; each is closed once saved.
        plots_dir: the PNG folder.
        html_path: the page.
        title: its title.
        summary_html: an HTML fragment shown above the plots.

    Returns:
        The PNG paths.
    """
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    sections, pngs = [], []
    for stem, caption, fig in figures:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        path = plots_dir / f"{stem}.png"
        path.write_bytes(buffer.getvalue())
        pngs.append(path)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        sections.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>body{{font-family:sans-serif;margin:2em;}}"
            "figure{display:inline-block;margin:1em;vertical-align:top;}table{border-collapse:collapse;}"
            "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right;}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{summary_html}\n" + "\n".join(sections) + "\n</body>\n</html>\n")
    Path(html_path).parent.mkdir(parents=True, exist_ok=True)
    Path(html_path).write_text(page)
    return pngs


def summary_table(rows: list[tuple[str, str]]) -> str:
    """Key/value rows as an HTML table, escaped.

    Args:
        rows: (key, value) pairs.

    Returns:
        The table's HTML.
    """
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
