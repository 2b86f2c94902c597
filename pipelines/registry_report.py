"""`make report`: one static HTML page comparing every version of a model in the registry.

    python -m pipelines.registry_report [--model-name M] [--bucket B] [--output PATH]

Metrics over versions (a plot), and per version: state, when, estimator and hyperparameters,
data source and hash, held-out metrics, and which one production points at. The registry is
read through components.registry (as `make models` does); nothing is written to the bucket.
Opens nothing: prints the page's path. Store: MINIO_ENDPOINT's when set, else the local one.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

from components import cli
from components.artifacts import DEFAULT_MODEL_NAME
from components.errors import PipelineError
from components.objectstore import ObjectStore
from components.registry import Registry
from pipelines.local.run import _local_port, object_store
from pipelines.local.s3server import DEFAULT_DATA_DIR, LocalS3Error

DEFAULT_OUTPUT_DIR = Path("local_outputs")


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _params(hyperparameters: Any) -> str:
    if not isinstance(hyperparameters, dict) or not hyperparameters:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in hyperparameters.items())


def rows(registry: Registry) -> tuple[list[dict[str, Any]], int | None]:
    """One dict per version (oldest first) and the production version (None if none yet).

    Args:
        registry: the model's registry (read only).

    Returns:
        (versions, production version or None).
    """
    pointer = registry.current()
    found = []
    for info in registry.versions(verify=True):
        meta = info.metadata or {}
        found.append({
            "version": info.number, "state": info.state if info.complete else f"{info.state}: {info.problem}",
            "created_at": meta.get("created_at", "-"), "estimator": meta.get("estimator", "-"),
            "hyperparameters": meta.get("hyperparameters"), "data_source": meta.get("data_source", "-"),
            "data_sha256": (meta.get("lineage") or {}).get("data_sha256") or "-",
            "metrics": meta.get("metrics") or {}, "primary": (meta.get("primary_metric") or {}).get("name"),
        })
    return found, (pointer.version if pointer is not None else None)


def metrics_plot(versions: list[dict[str, Any]]) -> str | None:
    """The metrics over versions as an inline PNG <img>; None when no version has metrics.

    Args:
        versions: rows() dicts.

    Returns:
        The <img> tag, or None.
    """
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({name for v in versions for name, value in v["metrics"].items() if isinstance(value, (int, float))})
    if not names:
        return None
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), dpi=90, sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        points = [(v["version"], v["metrics"][name]) for v in versions if isinstance(v["metrics"].get(name), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("version")
    axes[0, 0].set_title("Held-out metrics over versions")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="metrics over versions">'


def page(model_name: str, bucket: str, versions: list[dict[str, Any]], production: int | None) -> str:
    """The registry report as one self-contained HTML page (table of versions, metrics plot).

    Args:
        model_name: the model's name.
        bucket: its bucket.
        versions: rows() dicts.
        production: the production version, None when none.

    Returns:
        The HTML.
    """
    metric_names = sorted({name for v in versions for name in v["metrics"]})
    head = ["", "version", "state", "created (UTC)", "estimator", "hyperparameters", "data source", "data sha256",
            *metric_names]
    body = []
    for v in versions:
        cells = ["★ production" if v["version"] == production else "", f"v{v['version']}", v["state"],
                 v["created_at"], v["estimator"], _params(v["hyperparameters"]), v["data_source"],
                 str(v["data_sha256"])[:12], *(_number(v["metrics"].get(name)) for name in metric_names)]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    plot = metrics_plot(versions) if versions else None
    title = f"Model {model_name}: every version in s3://{bucket}/{model_name}/"
    summary = (f"<p>{len(versions)} versions; production: "
               f"{'v' + str(production) if production is not None else 'none yet'}.</p>")
    table = ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
             + "".join(body) + "</tbody></table>") if versions else "<p>No versions yet: run `make run`.</p>"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>body{{font-family:sans-serif;margin:2em;}}"
            "table{border-collapse:collapse;}td,th{border:1px solid #ccc;padding:0.2em 0.6em;}</style>\n"
            f"</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{summary}\n{plot or ''}\n{table}\n</body>\n</html>\n")


def write(registry: Registry, model_name: str, bucket: str, output: str | Path) -> Path:
    """Write the report page for a registry.

    Args:
        registry: the model's registry.
        model_name: the model's name.
        bucket: its bucket.
        output: the HTML file (its folder is created).

    Returns:
        The written path.
    """
    versions, production = rows(registry)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page(model_name, bucket, versions, production))
    return output


def main(argv: list[str] | None = None) -> int:
    """``make report``: write the registry's HTML report.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        0, or cli.EXIT_BAD_INPUT for a bad argument or an unusable local S3 server.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--bucket", default="models")
    parser.add_argument("--output", help="where to write the page (default: local_outputs/report-<model>.html)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="local S3 data folder")
    args = parser.parse_args(argv)
    output = Path(args.output or DEFAULT_OUTPUT_DIR / f"report-{args.model_name}.html")

    def report() -> None:
        with object_store(Path(args.data_dir), _local_port()):
            registry = Registry(ObjectStore.from_env(), args.bucket, args.model_name)
            print(f"report: {write(registry, args.model_name, args.bucket, output)}")

    return cli.run(report, ((PipelineError, cli.EXIT_BAD_INPUT, ""),
                            (LocalS3Error, cli.EXIT_BAD_INPUT, "local S3 server: ")))


if __name__ == "__main__":
    sys.exit(main())
