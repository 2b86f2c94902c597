"""`make report`: every version of a model on one static page, read through the registry."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from components.registry import Registry
from pipelines import registry_report

from .memstore import MemStore, seed_pointer, seed_version


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images += 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None


def meta(estimator: str, r2: float, source: str, sha: str, **hyperparameters) -> dict:
    return {"estimator": estimator, "hyperparameters": hyperparameters, "created_at": "2026-12-01T10:00:00Z",
            "data_source": source, "lineage": {"data_sha256": sha}, "metrics": {"r2": r2, "rmse": 50.0 + r2},
            "primary_metric": {"name": "r2", "value": r2, "higher_is_better": True}}


def test_the_page_compares_every_version_and_marks_production(tmp_path):
    store = MemStore()
    seed_version(store, "models", "m", 1, meta("ridge", 0.41, "sklearn:diabetes", "a" * 64, alpha=1.0))
    seed_version(store, "models", "m", 2, meta("random_forest", 0.46, "s3://data/d.csv", "b" * 64,
                                               n_estimators=100), model=b"v2")
    seed_pointer(store, "models", "m", 2, model=b"v2")
    path = registry_report.write(Registry(store, "models", "m"), "m", "models", tmp_path / "r.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    cells = Cells()
    cells.feed(text)
    header, *rows = cells.rows
    assert header == ["", "version", "state", "created (UTC)", "estimator", "hyperparameters", "data source",
                      "data sha256", "r2", "rmse"]
    assert rows[0] == ["", "v1", "complete", "2026-12-01T10:00:00Z", "ridge", "alpha=1.0", "sklearn:diabetes",
                       "a" * 12, "0.4100", "50.4100"]
    assert rows[1][:2] == ["★ production", "v2"] and rows[1][5] == "n_estimators=100" and rows[1][8] == "0.4600"
    assert cells.images == 1  # the metrics-over-versions plot
    assert re.search(r"2 versions; production: v2", text)


def test_an_empty_registry_says_so(tmp_path):
    store = MemStore()
    store.ensure_bucket("models")
    text = registry_report.write(Registry(store, "models", "none"), "none", "models", tmp_path / "r.html").read_text()
    assert "No versions yet" in text and "production: none yet" in text
