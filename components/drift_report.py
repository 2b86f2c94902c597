"""The drift report's pages: a summary table per feature and one plot per drifting feature.

Each plot puts the training distribution (from the profile: its histogram shares and its CDF read
from the percentiles) beside the observed one. Written with components.report's page writer, so
the page is one self-contained HTML file the Kubeflow UI renders, and the PNGs sit beside it.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from components.drift import reference_cdf
from components.profile import bin_shares


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2e}" if value and abs(value) < 1e-3 else f"{value:.{digits}f}"


def markdown(report: dict, title: str, verdicts: tuple[str, str] = ("Retrain recommended", "No retraining")) -> str:
    """The report as Markdown: the decision (verdicts: its words for yes and no), then one row per feature."""
    lines = [f"## {title}", "", f"**{verdicts[0] if report['retrain_recommended'] else verdicts[1]}"
             f"** — {report['reason']} ({report['rows']} rows against {report['reference_rows']} training rows)", "",
             "| | feature | PSI | KS | KS p-value | out of range | why |", "|---|---|---|---|---|---|---|"]
    for name, result in report["features"].items():
        lines.append(f"| {'⚠' if result['drifting'] else ''} | {name} | {_number(result['psi'])} | "
                     f"{_number(result['ks_statistic'])} | {_number(result['ks_pvalue'])} | "
                     f"{_number(result['out_of_range_share'])} | {'; '.join(result['reasons'])} |")
    for part in ("prediction", "target"):
        result = report.get(part)
        if result:
            lines.append(f"| {'⚠' if result['drifting'] else ''} | *{part}* | {_number(result['psi'])} | "
                         f"{_number(result.get('ks_statistic'))} | {_number(result.get('ks_pvalue'))} | | "
                         f"{'; '.join(result['reasons'])} |")
    return "\n".join(lines) + "\n"


def _summary_html(report: dict, facts: list[tuple[str, str]]) -> str:
    from components import report as page  # matplotlib: only for the HTML page, not for markdown()

    decision = "RETRAIN RECOMMENDED" if report["retrain_recommended"] else "no retraining"
    head = page.summary_table([("decision", f"{decision}: {report['reason']}"),
                               ("rows", f"{report['rows']} (training: {report['reference_rows']})"), *facts])
    rows = "".join(
        f"<tr><th>{'⚠ ' if r['drifting'] else ''}{html.escape(name)}</th><td>{_number(r['psi'])}</td>"
        f"<td>{_number(r['ks_statistic'])}</td><td>{_number(r['ks_pvalue'])}</td>"
        f"<td>{_number(r['out_of_range_share'])}</td><td>{html.escape('; '.join(r['reasons']))}</td></tr>"
        for name, r in report["features"].items())
    return (f"{head}\n<h2>Features</h2><table><tr><th>feature</th><th>PSI</th><th>KS</th><th>KS p-value</th>"
            f"<th>out of range</th><th>why</th></tr>{rows}</table>")


def feature_plot(name: str, reference: dict, values: np.ndarray):
    """Training vs observed: shares per training bin (left) and the two CDFs (right)."""
    import matplotlib.pyplot as plt

    present = values[~np.isnan(values)]
    fig, (bins_ax, cdf_ax) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=90)
    edges = reference["bin_edges"]
    positions = np.arange(len(edges) + 1)
    labels = ["< " + _number(edges[0])] + [f"≥ {_number(e)}" for e in edges] if edges else ["all"]
    bins_ax.bar(positions - 0.2, reference["bin_shares"], width=0.4, label="training")
    bins_ax.bar(positions + 0.2, bin_shares(present, edges), width=0.4, label="observed")
    bins_ax.set_xticks(positions, labels, rotation=45, ha="right", fontsize=7)
    bins_ax.set(ylabel="share of rows", title=f"{name}: rows per training decile")
    bins_ax.legend()
    grid = np.linspace(min(reference["min"], present.min()), max(reference["max"], present.max()), 200)
    cdf_ax.plot(grid, reference_cdf(reference["quantiles"], grid), label="training")
    cdf_ax.plot(grid, np.searchsorted(np.sort(present), grid, side="right") / len(present), label="observed")
    cdf_ax.set(xlabel=name, ylabel="cumulative share", title=f"{name}: CDF")
    cdf_ax.legend()
    fig.tight_layout()
    return fig


def write_html(report: dict, profile: dict, names: list[str], x: np.ndarray, html_path: str | Path,
               plots_dir: str | Path, title: str, facts: list[tuple[str, str]] = ()) -> list[Path]:
    """The page: summary, the per-feature table, one plot per drifting feature. Returns the PNG paths."""
    from components import report as page

    return page.write(figures(report, profile, names, x), plots_dir, html_path, title,
                      _summary_html(report, list(facts)))


def figures(report: dict, profile: dict, names: list[str], x: np.ndarray) -> list:
    """(stem, caption, figure) of each drifting feature, as components.report.write takes them."""
    return [(f"drift_{name}", f"{name}: {'; '.join(report['features'][name]['reasons'])}",
             feature_plot(name, profile["features"][name], x[:, names.index(name)]))
            for name in report["drifting_features"]]
