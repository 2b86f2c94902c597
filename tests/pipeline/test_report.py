"""Evaluate's reports: a valid self-contained HTML page with one image per plot, PNGs beside it, readable Markdown."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from components import candidates, evaluate, selection

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}


class Checker(HTMLParser):
    """Tags must nest and close; collects the <img> sources."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.doctype = ""
        self.errors: list[str] = []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")


def evaluated(ingested, task: str, tmp_path, estimators: int = 2):
    plan = [json.loads(c) for c in candidates.plan(task, "", "", "{}")][:estimators]
    results = [selection.run(train_path=ingested.train, schema_path=ingested.schema, candidate=c, seed=42, k=3)
               for c in plan]
    selection.refit(ingested.train, ingested.schema, tmp_path / "model", results, 42, tmp_path / "selection.json")
    evaluate.run(test_path=ingested.test, schema_path=ingested.schema, model_dir=tmp_path / "model", threshold=0.1,
                 model_name="m", bucket="models", store=None, data_source=ingested.source, seed=42, test_fraction=0.2,
                 evaluation_path=tmp_path / "evaluation.json", report_path=tmp_path / "report.md",
                 selection_path=tmp_path / "selection.json", html_path=tmp_path / "report.html",
                 plots_dir=tmp_path / "plots")
    return tmp_path / "report.html", tmp_path / "plots", tmp_path / "report.md"


EXPECTED = {
    "regression": {"predicted_vs_actual", "residuals", "error_by_decile", "cv_scores", "feature_importances"},
    "classification": {"confusion_matrix", "roc", "precision_recall", "calibration", "cv_scores",
                       "feature_importances"},
}


@pytest.mark.parametrize("dataset, task", [("diabetes", "regression"), ("breast_cancer", "classification")])
def test_html_report_is_valid_and_holds_one_image_per_plot(dataset, task, request, tmp_path):
    page, plots, _ = evaluated(request.getfixturevalue(dataset), task, tmp_path)
    checker = Checker()
    checker.feed(page.read_text())
    checker.close()
    assert checker.doctype.lower() == "doctype html" and not checker.errors and not checker.stack
    pngs = sorted(plots.glob("*.png"))
    assert {p.stem for p in pngs} == EXPECTED[task]
    assert len(checker.images) == len(pngs)
    inlined = sorted(base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in checker.images)
    assert inlined == sorted(p.read_bytes() for p in pngs) and all(b.startswith(PNG_MAGIC) for b in inlined)


def test_markdown_report_has_units_and_no_python_structures(breast_cancer, tmp_path):
    _, _, markdown = evaluated(breast_cancer, "classification", tmp_path)
    text = markdown.read_text()
    assert not re.search(r"[{\[]['\"]|\{'|': |None\b|True\b|False\b", text), text
    assert "| accuracy | 0." in text and "share of rows" in text
    assert re.search(r"\| ★ \| \S+.* \| 0\.\d{4} ± 0\.\d{4} \| \d+\.\d{3} \| \d+\.\d \|", text)


def test_a_recorded_production_metric_is_shown_as_text_not_a_dict():
    assert evaluate._metric_text({"name": "r2", "value": 0.45412}) == "r2 0.4541"


def test_permutation_importance_where_the_model_has_none(diabetes):
    from sklearn.ensemble import HistGradientBoostingRegressor

    from components.datasets import read_dataset
    from components.report import importances

    x, y = read_dataset(diabetes.train, json.loads(diabetes.schema.read_text()))
    model = HistGradientBoostingRegressor(max_iter=20).fit(x, y)
    values, kind = importances(model, x, y, [f"f{i}" for i in range(x.shape[1])], "r2", 0)
    assert kind.startswith("permutation") and len(values) == x.shape[1] and np.argmax(values) in (2, 8)  # bmi, s5


def test_headless_chromium_renders_the_report_not_blank(diabetes, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from matplotlib import image

    page, _, _ = evaluated(diabetes, "regression", tmp_path)
    shot = tmp_path / "shot.png"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,1800", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = image.imread(shot)[..., :3]
    # Not blank: many distinct colours, and a good share of the page is not background white.
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02
