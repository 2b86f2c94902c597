"""Helpers shared by the pipeline tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components import ingest


@dataclass(frozen=True)
class Ingested:
    train: Path
    test: Path
    schema: Path
    config: ingest.IngestConfig
    source: str


def run_ingest(folder: Path, source: str, **config) -> Ingested:
    cfg = ingest.IngestConfig(**config)
    paths = folder / "train.csv", folder / "test.csv", folder / "schema.json"
    ingest.run(source, cfg, *paths)
    return Ingested(*paths, cfg, source)
