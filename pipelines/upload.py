"""Upload the compiled pipeline to Kubeflow Pipelines, as a new pipeline or a new version of it.

    python -m pipelines.upload --host http://localhost:8080 [--run] [--param name=value ...]

The version name is the project version plus a hash of the YAML, so uploading the same
YAML twice reuses the existing version instead of failing on a duplicate name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from components.errors import PipelineError
from pipelines import params
from pipelines.training_pipeline import PACKAGE_PATH, PIPELINE_DESCRIPTION, PIPELINE_NAME

DEFAULT_EXPERIMENT = "sklearn-training"
PROJECT = "sklearn-kserve-mlops"


class PipelinesClient(Protocol):
    """The part of kfp.Client this module uses (kfp.Client satisfies it)."""

    def get_pipeline_id(self, name: str) -> str | None: ...
    def upload_pipeline(self, pipeline_package_path: str, pipeline_name: str, description: str) -> Any: ...
    def upload_pipeline_version(self, pipeline_package_path: str, pipeline_version_name: str, pipeline_id: str,
                                description: str) -> Any: ...
    def list_pipeline_versions(self, pipeline_id: str, page_size: int, sort_by: str, filter: str | None) -> Any: ...
    def create_experiment(self, name: str) -> Any: ...
    def run_pipeline(self, experiment_id: str, job_name: str, params: dict, pipeline_id: str,
                     version_id: str) -> Any: ...


@dataclass(frozen=True)
class Published:
    pipeline_id: str
    version_id: str
    version_name: str
    action: str  # "created pipeline" | "added version" | "version exists"


def version_name(package: Path) -> str:
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    try:
        release = metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        release = "dev"
    return f"{release}-{digest}"


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _versions(client: PipelinesClient, pipeline_id: str, name: str | None = None) -> list:
    response = client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=1, sort_by="created_at desc",
                                             filter=_name_filter(name) if name else None)
    return list(response.pipeline_versions or [])


def publish(client: PipelinesClient, package: Path, pipeline_name: str = PIPELINE_NAME) -> Published:
    """Create the pipeline, or add this YAML as a version, or find the version that already holds it."""
    name = version_name(package)
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        created = client.upload_pipeline(str(package), pipeline_name=pipeline_name, description=PIPELINE_DESCRIPTION)
        latest = _versions(client, created.pipeline_id)
        if not latest:
            raise PipelineError(f"pipeline {pipeline_name!r} was created but lists no version")
        return Published(created.pipeline_id, latest[0].pipeline_version_id, latest[0].display_name,
                         "created pipeline")
    existing = _versions(client, pipeline_id, name)
    if existing:
        return Published(pipeline_id, existing[0].pipeline_version_id, name, "version exists")
    version = client.upload_pipeline_version(str(package), pipeline_version_name=name, pipeline_id=pipeline_id,
                                             description=PIPELINE_DESCRIPTION)
    return Published(pipeline_id, version.pipeline_version_id, name, "added version")


def start_run(client: PipelinesClient, published: Published, arguments: dict[str, Any],
              experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Start a run of the published version; returns the run id."""
    experiment_id = client.create_experiment(name=experiment).experiment_id
    job_name = f"{PIPELINE_NAME}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    run = client.run_pipeline(experiment_id=experiment_id, job_name=job_name, params=arguments,
                              pipeline_id=published.pipeline_id, version_id=published.version_id)
    return run.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    parser.add_argument("--package", default=str(PACKAGE_PATH), help="compiled pipeline YAML (default: %(default)s)")
    parser.add_argument("--name", default=PIPELINE_NAME, help="pipeline name in the UI (default: %(default)s)")
    parser.add_argument("--run", action="store_true", help="also start a run of the uploaded version")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment of the run")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="run parameter override (repeatable), e.g. --param minio_endpoint=seaweedfs.kubeflow:9000")
    args = parser.parse_args(argv)
    package = Path(args.package)
    try:
        if not package.is_file():
            raise PipelineError(f"compiled pipeline {package} not found: run `make compile` first")
        overrides = params.parse_overrides(args.param, package)
        params.check(params.effective(overrides, package))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import kfp  # the client is needed only here; tests pass their own
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        with warnings.catch_warnings():
            # "only works with KFP v2.0.0-beta.2 and later": true of every Kubeflow this targets.
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=args.host)
        published = publish(client, package, args.name)
        print(f"{published.action}: {args.name} version {published.version_name} "
              f"(pipeline {published.pipeline_id}, version {published.version_id})")
        if args.run:
            run_id = start_run(client, published, overrides, args.experiment)
            print(f"started run {run_id} in experiment {args.experiment}")
    except (ApiException, urllib3.exceptions.HTTPError) as exc:
        reason = getattr(exc, "reason", None) or exc
        print(f"error: Kubeflow Pipelines at {args.host}: {reason}", file=sys.stderr)
        return 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
