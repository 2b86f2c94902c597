"""Upload decisions against an in-memory Kubeflow Pipelines that keeps the server's rules.

FakeKFP stores pipelines and versions, answers kfp.Client's calls with the API's own model
objects, and rejects what the real server rejects (a second pipeline or version with a name
already taken), so a wrong decision in publish() fails here as it would against Kubeflow.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import kfp_server_api as api
import pytest
from kfp_server_api.exceptions import ApiException

from pipelines import upload
from pipelines.local.s3server import free_port
from pipelines.training_pipeline import PACKAGE_PATH, PIPELINE_NAME


class FakeKFP:
    def __init__(self) -> None:
        self.pipelines: dict[str, api.V2beta1Pipeline] = {}
        self.versions: dict[str, list[api.V2beta1PipelineVersion]] = {}
        self.experiments: dict[str, api.V2beta1Experiment] = {}
        self.runs: list[dict] = []
        self._ids = (f"id-{n}" for n in itertools.count(1))

    def get_pipeline_id(self, name: str) -> str | None:
        return next((p.pipeline_id for p in self.pipelines.values() if p.display_name == name), None)

    def _add_version(self, pipeline_id: str, package: str, name: str) -> api.V2beta1PipelineVersion:
        if any(v.display_name == name for v in self.versions[pipeline_id]):
            raise ApiException(status=409, reason=f"version name {name!r} already exists")
        Path(package).read_bytes()  # the server needs the file
        version = api.V2beta1PipelineVersion(pipeline_id=pipeline_id, pipeline_version_id=next(self._ids),
                                             display_name=name)
        self.versions[pipeline_id].append(version)
        return version

    def upload_pipeline(self, pipeline_package_path: str, pipeline_name: str, description: str):
        if self.get_pipeline_id(pipeline_name):
            raise ApiException(status=409, reason=f"pipeline {pipeline_name!r} already exists")
        pipeline = api.V2beta1Pipeline(pipeline_id=next(self._ids), display_name=pipeline_name,
                                       description=description)
        self.pipelines[pipeline.pipeline_id] = pipeline
        self.versions[pipeline.pipeline_id] = []
        self._add_version(pipeline.pipeline_id, pipeline_package_path, pipeline_name)  # the server's default version
        return pipeline

    def upload_pipeline_version(self, pipeline_package_path: str, pipeline_version_name: str, pipeline_id: str,
                                description: str):
        return self._add_version(pipeline_id, pipeline_package_path, pipeline_version_name)

    def list_pipeline_versions(self, pipeline_id: str, page_size: int, sort_by: str, filter: str | None):
        assert sort_by == "created_at desc"
        found = list(reversed(self.versions[pipeline_id]))
        if filter:
            (predicate,) = json.loads(filter)["predicates"]
            found = [v for v in found if v.display_name == predicate["stringValue"]]
        return api.V2beta1ListPipelineVersionsResponse(pipeline_versions=found[:page_size] or None)

    def create_experiment(self, name: str):
        if name not in self.experiments:
            self.experiments[name] = api.V2beta1Experiment(experiment_id=next(self._ids), display_name=name)
        return self.experiments[name]

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


def test_first_upload_creates_the_pipeline(package):
    kfp = FakeKFP()
    published = upload.publish(kfp, package)
    assert published.action == "created pipeline"
    assert kfp.pipelines[published.pipeline_id].display_name == PIPELINE_NAME
    assert published.version_id == kfp.versions[published.pipeline_id][0].pipeline_version_id


def test_same_yaml_again_reuses_its_version(package):
    kfp = FakeKFP()
    upload.publish(kfp, package)
    added = upload.publish(kfp, package)
    again = upload.publish(kfp, package)
    assert (added.action, again.action) == ("added version", "version exists")
    assert again.version_id == added.version_id
    assert len(kfp.versions[added.pipeline_id]) == 2


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
    run_id = upload.start_run(kfp, published, {"threshold": 0.3}, experiment="exp")
    upload.start_run(kfp, published, {}, experiment="exp")
    assert run_id.startswith("id-") and len(kfp.experiments) == 1
    assert kfp.runs[0]["version_id"] == published.version_id
    assert kfp.runs[0]["params"] == {"threshold": 0.3}
    assert kfp.runs[0]["job_name"].startswith(PIPELINE_NAME)


def test_cli_refuses_missing_package_and_bad_params(tmp_path, capsys):
    assert upload.main(["--host", "http://127.0.0.1:1", "--package", str(tmp_path / "none.yaml")]) == 2
    assert "make compile" in capsys.readouterr().err
    assert upload.main(["--host", "http://127.0.0.1:1", "--param", "estimator=svm"]) == 2
    assert "estimator 'svm' is unknown" in capsys.readouterr().err


def test_cli_names_an_unreachable_host(capsys):
    host = f"http://127.0.0.1:{free_port()}"
    assert upload.main(["--host", host]) == 1
    err = capsys.readouterr().err
    assert f"error: Kubeflow Pipelines at {host}" in err and "Connection refused" in err
