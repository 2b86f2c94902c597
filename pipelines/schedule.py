"""`make schedule` / `make unschedule`: one KFP recurring run of a pipeline, created or replaced, never two.

    python -m pipelines.schedule --host URL [--pipeline sklearn-training|sklearn-monitor] [--cron "0 0 3 * * *"]
                                 [--name NAME] [--param name=value ...] [--namespace NS] [--experiment E]
    python -m pipelines.schedule --host URL --remove [--pipeline ...] [--name NAME]

The pipeline is published first as `make upload` does (pipelines.upload: same YAML, same version,
same credentials: --token/KF_PIPELINES_TOKEN, KF_PIPELINES_SA_TOKEN_PATH, --cookies/KF_PIPELINES_COOKIES).
The recurring run is found by its name (default `<pipeline>-schedule`). One that already runs
that version with that cron and those parameters is left alone; otherwise it is deleted and
created again (the KFP v2beta1 API has no update of a recurring run), with max_concurrency 1
and no catch-up, so a paused schedule never starts a backlog of training runs. Duplicates
found by name (made by hand, or by an older tool) are removed.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.errors import PipelineError
from pipelines import params, upload

# KFP cron has six fields, seconds first: every day at 03:00 (UTC on a standard install).
DEFAULT_CRON = "0 0 3 * * *"
PAGE_SIZE = 100
ALIASES = {"training": upload.PIPELINE_NAME, "monitor": "sklearn-monitor"}


@dataclass(frozen=True)
class Scheduled:
    recurring_run_id: str
    action: str  # "created" | "replaced" | "unchanged"
    version_name: str
    removed_duplicates: int = 0


def schedule_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-schedule"


def check_cron(cron: str) -> None:
    fields = cron.split()
    if len(fields) != 6:
        raise PipelineError(f"cron={cron!r} is invalid: expected KFP's six fields, seconds first "
                            f"(e.g. {DEFAULT_CRON!r}: every day at 03:00), found {len(fields)}")


def find(client, name: str, namespace: str | None) -> list:
    """Every recurring run named exactly `name` (the filter is the server's; the name is checked again here)."""
    found, token = [], ""
    while True:
        response = client.list_recurring_runs(page_token=token, page_size=PAGE_SIZE, namespace=namespace,
                                              filter=upload._name_filter(name))
        found += [r for r in (response.recurring_runs or []) if r.display_name == name]
        token = response.next_page_token or ""
        if not token:
            return found


def _same(run, version_id: str, experiment_id: str, cron: str, arguments: dict[str, Any]) -> bool:
    reference = run.pipeline_version_reference
    trigger = run.trigger.cron_schedule if run.trigger is not None else None
    parameters = (run.runtime_config.parameters if run.runtime_config is not None else None) or {}
    return (reference is not None and reference.pipeline_version_id == version_id
            and run.experiment_id == experiment_id and trigger is not None and trigger.cron == cron
            and str(run.max_concurrency) == "1" and bool(run.no_catchup) and str(run.mode).upper() == "ENABLE"
            and parameters == arguments)


def schedule(client, package: Path, pipeline_name: str, name: str, cron: str, arguments: dict[str, Any],
             experiment: str, namespace: str | None = None, description: str = "") -> Scheduled:
    """Publish the YAML, then leave, replace or create the recurring run `name` so exactly one runs it."""
    check_cron(cron)
    published = upload.publish(client, package, pipeline_name, namespace, description)
    experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
    existing = find(client, name, namespace)
    if len(existing) == 1 and _same(existing[0], published.version_id, experiment_id, cron, arguments):
        return Scheduled(existing[0].recurring_run_id, "unchanged", published.version_name)
    # Deleted first: if the create below fails, there is none rather than two.
    for run in existing:
        client.delete_recurring_run(run.recurring_run_id)
    created = client.create_recurring_run(
        experiment_id=experiment_id, job_name=name, description=description, cron_expression=cron,
        max_concurrency=1, no_catchup=True, params=arguments, pipeline_id=published.pipeline_id,
        version_id=published.version_id, enabled=True)
    return Scheduled(created.recurring_run_id, "replaced" if existing else "created", published.version_name,
                     max(len(existing) - 1, 0))


def unschedule(client, name: str, namespace: str | None = None) -> int:
    """Delete every recurring run named `name`; returns how many there were."""
    existing = find(client, name, namespace)
    for run in existing:
        client.delete_recurring_run(run.recurring_run_id)
    return len(existing)


def client_for(host: str, namespace: str | None = None, token: str | None = None, cookies: str | None = None):
    """kfp.Client with make upload's credential options (pipelines.upload.client_options), after one short
    probe of the host as make upload does: upload.NoPipelinesAPI, not kfp.Client's half minute of retries."""
    import kfp

    options = upload.client_options(host, namespace, token, cookies)
    upload.probe_host(host, options)
    with warnings.catch_warnings():
        # "only works with KFP v2.0.0-beta.2 and later": true of every Kubeflow this targets.
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(**options)


def start_training(host: str, namespace: str | None, pipeline_name: str, experiment: str, parameters: str) -> str:
    """A run of the newest version of an uploaded pipeline (the monitor's retraining); returns the run id."""
    try:
        arguments = json.loads(parameters or "{}")
    except ValueError as exc:
        raise PipelineError(f"training parameters {parameters!r} are not a JSON object: {exc}") from None
    client = client_for(host, namespace)
    pipeline_id = upload._pipeline_id(client, pipeline_name, namespace)
    if pipeline_id is None:
        raise PipelineError(f"no pipeline named {pipeline_name!r}{upload._in(namespace)} at {host}: "
                            "upload it first (make upload)")
    versions = client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=1, sort_by="created_at desc")
    newest = (versions.pipeline_versions or [None])[0]
    if newest is None:
        raise PipelineError(f"pipeline {pipeline_name!r} has no version: upload one first (make upload)")
    published = upload.Published(pipeline_id, newest.pipeline_version_id, newest.display_name, "version exists")
    return upload.start_run(client, published, arguments, experiment, namespace, pipeline_name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True,
                        help="KFP API endpoint, e.g. http://localhost:3000 (a port-forward of svc/ml-pipeline-ui)")
    parser.add_argument("--namespace", help="profile namespace on a multi-user Kubeflow")
    parser.add_argument("--token", help=f"bearer token (default: ${upload.TOKEN_ENV})")
    parser.add_argument("--cookies", help=f"cookie header of a browser login (default: ${upload.COOKIES_ENV})")
    parser.add_argument("--pipeline", default=upload.PIPELINE_NAME,
                        help=f"{', '.join(sorted(upload.PIPELINES))} (or training, monitor) (default: %(default)s)")
    parser.add_argument("--name", help="the recurring run's name (default: <pipeline>-schedule)")
    parser.add_argument("--cron", default=DEFAULT_CRON, help="KFP cron, six fields, seconds first (default: %(default)s)")
    parser.add_argument("--experiment", help="experiment of the runs (default: the pipeline's name)")
    parser.add_argument("--image", default=upload.PIPELINE_IMAGE, help="pipeline image the YAML must run")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="parameter of every scheduled run (repeatable)")
    parser.add_argument("--remove", action="store_true", help="delete the recurring run instead (make unschedule)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    pipeline = ALIASES.get(args.pipeline, args.pipeline)
    name = args.name or schedule_name(pipeline)
    try:
        if pipeline not in upload.PIPELINES:
            raise PipelineError(f"--pipeline {args.pipeline!r} is unknown: expected one of "
                                f"{', '.join(sorted(upload.PIPELINES))} (or training, monitor)")
        kind = upload.PIPELINES[pipeline]
        check_cron(args.cron)
        overrides = params.parse_overrides(args.param, kind.package)
        if not args.remove:
            kind.check(params.effective(overrides, kind.package))
            upload.check_image(kind.package, args.image)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def act(client) -> str:
        if args.remove:
            removed = unschedule(client, name, args.namespace)
            return f"removed {removed} recurring run(s) named {name}{upload._in(args.namespace)}"
        done = schedule(client, kind.package, pipeline, name, args.cron, overrides, args.experiment or pipeline,
                        args.namespace, kind.description)
        extra = f", {done.removed_duplicates} duplicate(s) removed" if done.removed_duplicates else ""
        return (f"{done.action}: recurring run {name} ({done.recurring_run_id}) of {pipeline} version "
                f"{done.version_name}, cron {args.cron!r}, max_concurrency 1, no catch-up{extra}")

    return _reporting_kfp_errors(args.host, lambda: act(client_for(args.host, args.namespace, args.token, args.cookies)))


def _reporting_kfp_errors(host: str, action) -> int:
    """Print action()'s line: 0; no KFP API at the host: one line on stderr, 2 (as make upload); an API or
    connection error, or a refusal, is one line on stderr: 1."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        print(action())
        return 0
    except upload.NoPipelinesAPI as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        message = str(exc)
    except (ApiException, urllib3.exceptions.HTTPError) as exc:
        denied = getattr(exc, "status", None) in (401, 403)
        message = (f"Kubeflow Pipelines at {host}: {getattr(exc, 'reason', None) or exc}"
                   + ("; on a multi-user Kubeflow pass --namespace and a token (KF_PIPELINES_TOKEN) or --cookies"
                      if denied else ""))
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
