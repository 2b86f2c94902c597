"""Upload the compiled pipeline to Kubeflow Pipelines, as a new pipeline or a new version of it.

    python -m pipelines.upload --host http://localhost:3000 [--pipeline sklearn-training|batch-scoring]
                               [--namespace NS] [--run] [--param name=value ...]

Every version, the first included, is named `<project version>-<sha256 of the YAML>`: uploading
the same YAML again finds that version instead of adding a duplicate.

Multi-user Kubeflow: --namespace is the profile namespace (the pipeline is uploaded there and
runs go there). Credentials, first found wins: --token or KF_PIPELINES_TOKEN (a bearer token,
e.g. from `kubectl create token`); kfp's own KF_PIPELINES_SA_TOKEN_PATH (a projected
service-account token file, inside a cluster); --cookies or KF_PIPELINES_COOKIES (the
`authservice_session=...` cookie of a browser login through Dex/oauth2-proxy). Prefer the
environment variables: a command-line token is visible to other users of the machine.

Before any call, the host is probed once (GET /apis/v2beta1/healthz, a few seconds at most): what
answers there is not Kubeflow Pipelines' API is one line and exit 2, not kfp's retries. The KFP
API is usually port-forwarded: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 3000:80.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Protocol

import yaml

from components.errors import PipelineError
from components.kfp_components import PIPELINE_IMAGE
from pipelines import params
from pipelines import batch_scoring_pipeline as batch
from pipelines import monitor_pipeline as monitor
from pipelines.training_pipeline import PACKAGE_PATH, PIPELINE_DESCRIPTION, PIPELINE_NAME

DEFAULT_EXPERIMENT = "sklearn-training"
PROJECT = "sklearn-kserve-mlops"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
COOKIES_ENV = "KF_PIPELINES_COOKIES"
# kfp's own variable, read by kfp.client.ServiceAccountTokenVolumeCredentials.
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
HEALTHZ_PATH = "/apis/v2beta1/healthz"
PROBE_TIMEOUT_S = 5.0
# Fields of the KFP API server's healthz answer; any one of them tells it from another service.
HEALTHZ_FIELDS = ("commit_sha", "tag_name", "multi_user")
PORT_FORWARD_HINT = "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 3000:80, then --host http://localhost:3000"


class NoPipelinesAPI(PipelineError):
    """What answers at the host is not Kubeflow Pipelines' API (or nothing answers)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to report (a login page), not one to follow."""

    def redirect_request(self, *args, **kwargs):
        return None


def probe_host(host: str, options: Mapping[str, Any] | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One GET of the KFP healthz with a short timeout; NoPipelinesAPI says what answered instead.

    kfp.Client's own check retries for about half a minute and prints a traceback per try. A 401 or
    403 passes: an auth proxy stands in front of the API, and the call that follows names the fix.
    A redirect (Kubeflow's gateway sends one to its login page) is refused with the credentials to pass.

    Args:
        host: the KFP API's URL.
        options: kfp.Client options from client_options (token, cookies, TLS).
        timeout: seconds for the one GET.
    """
    options = options or {}
    headers = {"Accept": "application/json"}
    if options.get("existing_token"):
        headers["Authorization"] = f"Bearer {options['existing_token']}"
    if options.get("cookies"):
        headers["Cookie"] = options["cookies"]
    url = host.rstrip("/") + HEALTHZ_PATH
    request = urllib.request.Request(url, headers=headers)

    def refuse(got: str) -> NoPipelinesAPI:
        return NoPipelinesAPI(f"no Kubeflow Pipelines API at {host} (got: {got}); check --host / KFP_HOST, "
                              f"e.g. {PORT_FORWARD_HINT}")

    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=timeout) as response:
            status, kind, body = response.status, response.headers.get_content_type(), response.read(4096)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return
        if 300 <= exc.code < 400:
            raise NoPipelinesAPI(
                f"no Kubeflow Pipelines API at {host} (got: HTTP {exc.code} redirect to "
                f"{exc.headers.get('Location', '?')}, a login page): pass a token (KF_PIPELINES_TOKEN) "
                f"or the session cookie (KF_PIPELINES_COOKIES / --cookies)") from None
        status, kind, body = exc.code, exc.headers.get_content_type(), exc.read(4096)
    except urllib.error.URLError as exc:
        raise refuse(str(exc.reason)) from None
    except (OSError, ValueError) as exc:  # a timeout mid-read, a malformed URL
        raise refuse(str(exc) or type(exc).__name__) from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status == 200 and isinstance(answer, dict) and any(field in answer for field in HEALTHZ_FIELDS):
        return
    excerpt = " ".join(body.decode("utf-8", "replace").split())[:80]
    raise refuse(f"HTTP {status} {kind} for {HEALTHZ_PATH}: {excerpt!r}")


@dataclass(frozen=True)
class PipelineKind:
    """A pipeline this project compiles: its YAML, its description and its parameter check."""

    package: Path
    description: str
    check: Any  # Callable[[dict], None], raises PipelineError


PIPELINES = {
    PIPELINE_NAME: PipelineKind(PACKAGE_PATH, PIPELINE_DESCRIPTION, params.check),
    batch.PIPELINE_NAME: PipelineKind(batch.PACKAGE_PATH, batch.PIPELINE_DESCRIPTION, params.check_batch),
    monitor.PIPELINE_NAME: PipelineKind(monitor.PACKAGE_PATH, monitor.PIPELINE_DESCRIPTION, monitor.check),
}


class PipelinesClient(Protocol):
    """The part of kfp.Client this module uses (kfp.Client satisfies it)."""

    pipelines: Any  # the generated PipelineService API: pipeline_service_create_pipeline(pipeline=...)

    def list_pipelines(self, page_size: int, filter: str | None, namespace: str | None) -> Any:
        """One page of the pipelines visible here.

        Args:
            page_size: the most pipelines to return.
            filter: a KFP filter (JSON), e.g. on the display name; None: all.
            namespace: the namespace (multi-user Kubeflow), None for the default.

        Returns:
            kfp's list response (``.pipelines``, None when empty).
        """
        ...

    def upload_pipeline_version(self, pipeline_package_path: str, pipeline_version_name: str, pipeline_id: str,
                                description: str) -> Any:
        """Add a compiled YAML as a new version of an existing pipeline.

        Args:
            pipeline_package_path: the compiled YAML.
            pipeline_version_name: the version's name (unique within the pipeline).
            pipeline_id: the pipeline's id.
            description: the version's description.

        Returns:
            The created version (``.pipeline_version_id``).
        """
        ...

    def list_pipeline_versions(self, pipeline_id: str, page_size: int, sort_by: str, filter: str | None) -> Any:
        """One page of a pipeline's versions.

        Args:
            pipeline_id: the pipeline's id.
            page_size: the most versions to return.
            sort_by: a KFP sort order, e.g. "created_at desc".
            filter: a KFP filter (JSON), e.g. on the display name; None: all.

        Returns:
            kfp's list response (``.pipeline_versions``, None when empty).
        """
        ...

    def create_experiment(self, name: str, namespace: str | None) -> Any:
        """The experiment with this name, created when missing.

        Args:
            name: the experiment's name.
            namespace: the namespace (multi-user Kubeflow), None for the default.

        Returns:
            The experiment (``.experiment_id``).
        """
        ...

    def run_pipeline(self, experiment_id: str, job_name: str, params: dict, pipeline_id: str,
                     version_id: str) -> Any:
        """Start a run of one pipeline version.

        Args:
            experiment_id: the experiment the run belongs to.
            job_name: the run's display name.
            params: the pipeline's parameters for this run.
            pipeline_id: the pipeline's id.
            version_id: the version to run.

        Returns:
            The run (``.run_id``).
        """
        ...


@dataclass(frozen=True)
class Published:
    pipeline_id: str
    version_id: str
    version_name: str
    action: str  # "created pipeline" | "added version" | "version exists"


def version_name(package: Path) -> str:
    """The pipeline version's name: the project's release and the YAML's hash, so the same YAML is one version.

    Args:
        package: the compiled pipeline YAML.

    Returns:
        ``<release>-<12 hex digits of sha256>`` (release 'dev' when the project is not installed).
    """
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    try:
        release = metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        release = "dev"
    return f"{release}-{digest}"


def executor_images(package: Path) -> set[str]:
    """The container images the compiled YAML's steps run (deploymentSpec.executors.*.container.image).

    Args:
        package: the compiled pipeline YAML.

    Returns:
        The image names (empty when no step runs a container).
    """
    spec = next(yaml.safe_load_all(package.read_text()), None) or {}
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return {executor["container"]["image"] for executor in executors.values() if "container" in executor}


def check_image(package: Path, expected: str) -> None:
    """Refuse YAML compiled for another image than the one asked for (make upload PIPELINE_IMAGE=...).

    Args:
        package: the compiled pipeline YAML.
        expected: the image every step must run.
    """
    found = executor_images(package)
    if found != {expected}:
        raise PipelineError(
            f"{package} runs image {', '.join(sorted(found)) or '(none)'}, but the pipeline image asked for is "
            f"{expected}: run `make compile PIPELINE_IMAGE={expected}` (or the same REGISTRY=/VERSION=) first")


def client_options(host: str, namespace: str | None = None, token: str | None = None, cookies: str | None = None,
                   env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """kfp.Client keyword arguments: flags first, then the environment.

    Args:
        host: the KFP API's URL.
        namespace: --namespace, None when not given.
        token: --token (a bearer token), None when not given.
        cookies: --cookies (a Cookie header, e.g. Dex's session), None when not given.
        env: the environment to read the fallbacks from (default os.environ).

    Returns:
        The keyword arguments for kfp.Client.
    """
    env = os.environ if env is None else env
    options: dict[str, Any] = {"host": host}
    if namespace:
        options["namespace"] = namespace
    token = token or env.get(TOKEN_ENV)
    if token:
        options["existing_token"] = token
    elif env.get(SA_TOKEN_PATH_ENV):
        from kfp.client import ServiceAccountTokenVolumeCredentials

        options["credentials"] = ServiceAccountTokenVolumeCredentials(path=env[SA_TOKEN_PATH_ENV])
    cookies = cookies or env.get(COOKIES_ENV)
    if cookies:
        options["cookies"] = cookies
    return options


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _pipeline_id(client: PipelinesClient, name: str, namespace: str | None) -> str | None:
    found = list(client.list_pipelines(page_size=2, filter=_name_filter(name), namespace=namespace).pipelines or [])
    if len(found) > 1:
        raise PipelineError(f"{len(found)} pipelines are named {name!r}{_in(namespace)}: rename or delete one")
    return found[0].pipeline_id if found else None


def _in(namespace: str | None) -> str:
    return f" in namespace {namespace}" if namespace else ""


def _versions(client: PipelinesClient, pipeline_id: str, name: str) -> list:
    response = client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=1, sort_by="created_at desc",
                                             filter=_name_filter(name))
    return list(response.pipeline_versions or [])


def publish(client: PipelinesClient, package: Path, pipeline_name: str = PIPELINE_NAME,
            namespace: str | None = None, description: str = PIPELINE_DESCRIPTION) -> Published:
    """Create the pipeline with this YAML as its named version, add it as a version, or find it.

    Args:
        client: the KFP client.
        package: the compiled pipeline YAML.
        pipeline_name: the pipeline's display name.
        namespace: the namespace, None for the default.
        description: the pipeline's description.

    Returns:
        Published: the ids, the version's name and what was done (created pipeline, added version, version exists).
    """
    import kfp_server_api  # kfp's own API models; imported here so the CLI's --help stays fast

    name = version_name(package)
    pipeline_id = _pipeline_id(client, pipeline_name, namespace)
    action = "added version"
    if pipeline_id is None:
        # Created empty, then given the named version: the upload API would name the first
        # version after the pipeline, and the same YAML uploaded again would not be recognised.
        created = client.pipelines.pipeline_service_create_pipeline(pipeline=kfp_server_api.V2beta1Pipeline(
            display_name=pipeline_name, description=description, namespace=namespace))
        pipeline_id, action = created.pipeline_id, "created pipeline"
    else:
        existing = _versions(client, pipeline_id, name)
        if existing:
            return Published(pipeline_id, existing[0].pipeline_version_id, name, "version exists")
    version = client.upload_pipeline_version(str(package), pipeline_version_name=name, pipeline_id=pipeline_id,
                                             description=description)
    return Published(pipeline_id, version.pipeline_version_id, name, action)


def start_run(client: PipelinesClient, published: Published, arguments: dict[str, Any],
              experiment: str = DEFAULT_EXPERIMENT, namespace: str | None = None,
              pipeline_name: str = PIPELINE_NAME) -> str:
    """Start a run of the published version.

    Args:
        client: the KFP client.
        published: what publish() returned.
        arguments: the run's parameters.
        experiment: the experiment's name (created when missing).
        namespace: the namespace, None for the default.
        pipeline_name: the run name's prefix (a UTC timestamp follows).

    Returns:
        The run id.
    """
    experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
    job_name = f"{pipeline_name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    run = client.run_pipeline(experiment_id=experiment_id, job_name=job_name, params=arguments,
                              pipeline_id=published.pipeline_id, version_id=published.version_id)
    return run.run_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:3000 "
                                                      "(kubectl -n kubeflow port-forward svc/ml-pipeline-ui 3000:80)")
    parser.add_argument("--namespace", help="profile namespace on a multi-user Kubeflow (pipeline and runs go there)")
    parser.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV}; else kfp's ${SA_TOKEN_PATH_ENV})")
    parser.add_argument("--cookies", help=f"cookie header of a browser login, e.g. 'authservice_session=...' "
                                          f"(default: ${COOKIES_ENV})")
    parser.add_argument("--pipeline", default=PIPELINE_NAME, choices=sorted(PIPELINES),
                        help="which of the project's pipelines (default: %(default)s)")
    parser.add_argument("--package", help="compiled pipeline YAML (default: the --pipeline's committed one)")
    parser.add_argument("--image", default=PIPELINE_IMAGE,
                        help="pipeline image the YAML must run; anything else is refused (default: %(default)s)")
    parser.add_argument("--name", help="pipeline name in the UI (default: the --pipeline's name)")
    parser.add_argument("--run", action="store_true", help="also start a run of the uploaded version")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment of the run")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="run parameter override (repeatable, needs --run), "
                             "e.g. --param minio_endpoint=seaweedfs.kubeflow:9000")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``make upload``: check the compiled YAML and its parameters, publish it to KFP, optionally start a run.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        0 on success, 1 when the KFP API refused or failed, 2 for a mistake found before contacting it (arguments,
        parameters, image, no API).
    """
    args = _parser().parse_args(argv)
    kind = PIPELINES[args.pipeline]
    package = Path(args.package) if args.package else kind.package
    args.name = args.name or args.pipeline
    try:
        if not package.is_file():
            raise PipelineError(f"compiled pipeline {package} not found: run `make compile` first")
        if args.param and not args.run:
            raise params.ParamError("--param sets run parameters: add --run (an upload alone takes none)")
        overrides = params.parse_overrides(args.param, package)
        kind.check(params.effective(overrides, package))
        check_image(package, args.image)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import kfp  # the client is needed only here; tests pass their own
    import urllib3
    from kfp_server_api.exceptions import ApiException

    options = client_options(args.host, args.namespace, args.token, args.cookies)
    try:
        probe_host(args.host, options)
    except NoPipelinesAPI as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            # "only works with KFP v2.0.0-beta.2 and later": true of every Kubeflow this targets.
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(**options)
        published = publish(client, package, args.name, args.namespace, kind.description)
        print(f"{published.action}: {args.name} version {published.version_name}{_in(args.namespace)} "
              f"(pipeline {published.pipeline_id}, version {published.version_id})")
        if args.run:
            run_id = start_run(client, published, overrides, args.experiment, args.namespace, args.name)
            print(f"started run {run_id} in experiment {args.experiment}{_in(args.namespace)}")
    except (ApiException, urllib3.exceptions.HTTPError) as exc:
        reason = getattr(exc, "reason", None) or exc
        hint = ("; on a multi-user Kubeflow pass --namespace and a token (KF_PIPELINES_TOKEN) or --cookies"
                if getattr(exc, "status", None) in (401, 403) else "")
        print(f"error: Kubeflow Pipelines at {args.host}: {reason}{hint}", file=sys.stderr)
        return 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
