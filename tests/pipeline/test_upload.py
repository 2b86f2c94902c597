"""Upload decisions against an in-memory Kubeflow Pipelines that keeps the server's rules.

FakeKFP stores pipelines and versions, answers kfp.Client's calls with the API's own model
objects, and rejects what the real server rejects (a second pipeline or version with a name
already taken), so a wrong decision in publish() fails here as it would against Kubeflow.
"""

from __future__ import annotations

import http.server
import itertools
import json
from pathlib import Path

import kfp_server_api as api
import pytest
from kfp_server_api.exceptions import ApiException

from pipelines import params, upload
from pipelines.local.s3server import free_port
from pipelines.training_pipeline import PACKAGE_PATH, PIPELINE_NAME

from .helpers import loopback_http


class FakeKFP:
    def __init__(self) -> None:
        self.store: dict[str, api.V2beta1Pipeline] = {}
        self.versions: dict[str, list[api.V2beta1PipelineVersion]] = {}
        self.experiments: dict[tuple[str, str | None], api.V2beta1Experiment] = {}
        self.runs: list[dict] = []
        self._ids = (f"id-{n}" for n in itertools.count(1))
        self.pipelines = self  # kfp.Client exposes the generated PipelineService API as client.pipelines

    def pipeline_service_create_pipeline(self, pipeline: api.V2beta1Pipeline) -> api.V2beta1Pipeline:
        if any(p.display_name == pipeline.display_name and p.namespace == pipeline.namespace
               for p in self.store.values()):
            raise ApiException(status=409, reason=f"pipeline {pipeline.display_name!r} already exists")
        created = api.V2beta1Pipeline(pipeline_id=next(self._ids), display_name=pipeline.display_name,
                                      description=pipeline.description, namespace=pipeline.namespace)
        self.store[created.pipeline_id] = created
        self.versions[created.pipeline_id] = []  # CreatePipeline makes no version
        return created

    def list_pipelines(self, page_size: int, filter: str | None, namespace: str | None):
        (predicate,) = json.loads(filter)["predicates"]
        found = [p for p in self.store.values()
                 if p.namespace == namespace and p.display_name == predicate["stringValue"]]
        return api.V2beta1ListPipelinesResponse(pipelines=found[:page_size] or None)

    def upload_pipeline_version(self, pipeline_package_path: str, pipeline_version_name: str, pipeline_id: str,
                                description: str):
        if any(v.display_name == pipeline_version_name for v in self.versions[pipeline_id]):
            raise ApiException(status=409, reason=f"version name {pipeline_version_name!r} already exists")
        Path(pipeline_package_path).read_bytes()  # the server needs the file
        version = api.V2beta1PipelineVersion(pipeline_id=pipeline_id, pipeline_version_id=next(self._ids),
                                             display_name=pipeline_version_name)
        self.versions[pipeline_id].append(version)
        return version

    def list_pipeline_versions(self, pipeline_id: str, page_size: int, sort_by: str, filter: str | None):
        assert sort_by == "created_at desc"
        found = list(reversed(self.versions[pipeline_id]))
        if filter:
            (predicate,) = json.loads(filter)["predicates"]
            found = [v for v in found if v.display_name == predicate["stringValue"]]
        return api.V2beta1ListPipelineVersionsResponse(pipeline_versions=found[:page_size] or None)

    def create_experiment(self, name: str, namespace: str | None):
        if (name, namespace) not in self.experiments:
            self.experiments[name, namespace] = api.V2beta1Experiment(experiment_id=next(self._ids),
                                                                      display_name=name, namespace=namespace)
        return self.experiments[name, namespace]

    def run_pipeline(self, experiment_id: str, job_name: str, params: dict, pipeline_id: str, version_id: str):
        assert any(v.pipeline_version_id == version_id for v in self.versions[pipeline_id])
        self.runs.append({"experiment_id": experiment_id, "job_name": job_name, "params": params,
                          "version_id": version_id})
        return api.V2beta1Run(run_id=next(self._ids), display_name=job_name)


@pytest.fixture
def package(tmp_path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(PACKAGE_PATH.read_bytes())
    return path


def test_first_upload_creates_the_pipeline_with_the_named_version(package):
    kfp = FakeKFP()
    published = upload.publish(kfp, package)
    assert published.action == "created pipeline"
    assert kfp.store[published.pipeline_id].display_name == PIPELINE_NAME
    (version,) = kfp.versions[published.pipeline_id]
    assert version.display_name == published.version_name == upload.version_name(package)
    assert published.version_id == version.pipeline_version_id


def test_same_yaml_again_reuses_its_version_from_the_first_upload_on(package):
    kfp = FakeKFP()
    first = upload.publish(kfp, package)
    again = upload.publish(kfp, package)
    assert again.action == "version exists" and again.version_id == first.version_id
    assert len(kfp.versions[first.pipeline_id]) == 1


def test_namespaced_pipelines_and_runs_stay_in_their_namespace(package):
    kfp = FakeKFP()
    shared = upload.publish(kfp, package)
    mine = upload.publish(kfp, package, namespace="team-a")
    assert mine.action == "created pipeline" and mine.pipeline_id != shared.pipeline_id
    assert kfp.store[mine.pipeline_id].namespace == "team-a"
    assert upload.publish(kfp, package, namespace="team-a").action == "version exists"
    upload.start_run(kfp, mine, {}, experiment="exp", namespace="team-a")
    assert list(kfp.experiments) == [("exp", "team-a")]


def test_changed_yaml_becomes_a_new_version(package):
    kfp = FakeKFP()
    upload.publish(kfp, package)
    first = upload.publish(kfp, package)
    package.write_text(package.read_text() + "\n# changed\n")
    second = upload.publish(kfp, package)
    assert second.action == "added version" and second.version_name != first.version_name
    assert second.version_name.endswith(upload.version_name(package).split("-")[-1])


def test_run_starts_the_published_version_with_the_overrides(package):
    kfp = FakeKFP()
    published = upload.publish(kfp, package)
    overrides = params.parse_overrides(["threshold=0.3", "minio_secret=team-a-minio"], package)
    run_id = upload.start_run(kfp, published, overrides, experiment="exp")
    upload.start_run(kfp, published, {}, experiment="exp")
    assert run_id.startswith("id-") and len(kfp.experiments) == 1
    assert kfp.runs[0]["version_id"] == published.version_id
    assert kfp.runs[0]["params"] == {"threshold": 0.3, "minio_secret": "team-a-minio"}
    assert kfp.runs[0]["job_name"].startswith(PIPELINE_NAME)


def test_cli_refuses_missing_package_and_bad_params(tmp_path, capsys):
    assert upload.main(["--host", "http://127.0.0.1:1", "--package", str(tmp_path / "none.yaml")]) == 2
    assert "make compile" in capsys.readouterr().err
    assert upload.main(["--host", "http://127.0.0.1:1", "--run", "--param", "estimator=svm"]) == 2
    assert "estimator 'svm' is unknown" in capsys.readouterr().err
    assert upload.main(["--host", "http://127.0.0.1:1", "--param", "threshold=0.3"]) == 2
    assert "--param sets run parameters: add --run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, env, expected",
    [
        ({}, {}, {"host": "http://kfp"}),
        ({"namespace": "team-a", "token": "t0k", "cookies": "authservice_session=c"}, {},
         {"host": "http://kfp", "namespace": "team-a", "existing_token": "t0k", "cookies": "authservice_session=c"}),
        ({}, {upload.TOKEN_ENV: "from-env", upload.COOKIES_ENV: "authservice_session=e"},
         {"host": "http://kfp", "existing_token": "from-env", "cookies": "authservice_session=e"}),
        ({"token": "flag"}, {upload.TOKEN_ENV: "env"}, {"host": "http://kfp", "existing_token": "flag"}),
    ],
)
def test_client_options_take_flags_then_environment(flags, env, expected):
    assert upload.client_options("http://kfp", env=env, **flags) == expected


def test_a_service_account_token_file_becomes_kfp_credentials(tmp_path):
    from kfp.client import ServiceAccountTokenVolumeCredentials

    token = tmp_path / "token"
    token.write_text("sa-token")
    options = upload.client_options("http://kfp", env={upload.SA_TOKEN_PATH_ENV: str(token)})
    assert isinstance(options["credentials"], ServiceAccountTokenVolumeCredentials)
    config = api.Configuration()
    options["credentials"].refresh_api_key_hook(config)  # what kfp.Client calls before each request
    assert config.api_key["authorization"] == "sa-token"


@pytest.fixture
def unauthorized_kfp():
    """A loopback HTTP server answering 401 to every call, as Kubeflow's auth proxy does without a login."""
    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def _deny(self):
            body = b'{"error": "unauthenticated"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _deny  # noqa: N815 (http.server's naming)

    with loopback_http(Unauthorized) as host:
        yield f"http://{host}"


@pytest.mark.integration
def test_cli_says_how_to_authenticate_when_refused(unauthorized_kfp, capsys, monkeypatch):
    for name in (upload.TOKEN_ENV, upload.COOKIES_ENV, upload.SA_TOKEN_PATH_ENV):
        monkeypatch.delenv(name, raising=False)
    assert upload.main(["--host", unauthorized_kfp, "--namespace", "team-a"]) == 1
    err = capsys.readouterr().err
    assert f"error: Kubeflow Pipelines at {unauthorized_kfp}: Unauthorized" in err
    assert "pass --namespace and a token (KF_PIPELINES_TOKEN) or --cookies" in err


def test_cli_names_an_unreachable_host_once_with_exit_2(capsys):
    host = f"http://127.0.0.1:{free_port()}"
    assert upload.main(["--host", host]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no Kubeflow Pipelines API at {host} (got: [Errno 111] Connection refused)")
    assert "port-forward svc/ml-pipeline-ui 3000:80" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "healthz info" not in err


def _answering(status: int, content_type: str, body: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

    return Answer


# What answers on a port that is not the KFP API: the local model server (make serve on 8080 answers
# unknown paths with FastAPI's 404) and a web page.
@pytest.mark.parametrize("status, content_type, body, got", [
    (404, "application/json", b'{"detail":"Not Found"}',
     "HTTP 404 application/json for /apis/v2beta1/healthz: '{\"detail\":\"Not Found\"}'"),
    (200, "text/html", b"<html><body>Welcome</body></html>",
     "HTTP 200 text/html for /apis/v2beta1/healthz: '<html><body>Welcome</body></html>'"),
])
def test_cli_says_no_kfp_api_when_another_service_answers(capsys, status, content_type, body, got):
    with loopback_http(_answering(status, content_type, body)) as address:
        host = f"http://{address}"
        assert upload.main(["--host", host]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: no Kubeflow Pipelines API at {host} (got: {got}); check --host / KFP_HOST, "
                   f"e.g. {upload.PORT_FORWARD_HINT}\n")


def test_probe_passes_the_kfp_healthz_and_an_auth_proxy():
    healthz = json.dumps({"commit_sha": "abc", "tag_name": "2.5.0", "multi_user": True}).encode()
    for handler in (_answering(200, "application/json", healthz),
                    _answering(401, "application/json", b'{"error": "unauthenticated"}')):
        with loopback_http(handler) as address:
            assert upload.probe_host(f"http://{address}") is None


def test_a_redirect_to_a_login_page_asks_for_credentials():
    class ToLogin(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(302)
            self.send_header("Location", "/dex/auth?client_id=kubeflow-oidc-authservice")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with loopback_http(ToLogin) as address:
        with pytest.raises(upload.NoPipelinesAPI) as refused:
            upload.probe_host(f"http://{address}")
    assert str(refused.value) == (
        f"no Kubeflow Pipelines API at http://{address} (got: HTTP 302 redirect to "
        "/dex/auth?client_id=kubeflow-oidc-authservice, a login page): pass a token (KF_PIPELINES_TOKEN) "
        "or the session cookie (KF_PIPELINES_COOKIES / --cookies)")


def test_probe_gives_up_on_a_silent_host_after_its_timeout():
    import socket

    with socket.socket() as silent:  # accepts (the backlog does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(upload.NoPipelinesAPI, match=r"no Kubeflow Pipelines API at .* \(got: .*timed out"):
            upload.probe_host(host, timeout=0.3)
