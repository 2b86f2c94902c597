"""The compiled pipeline with every step inside the pipeline image, as the non-root user of the pod.

kfp.local.DockerRunner runs each step in a container of the image named by the YAML (compiled
with PIPELINE_IMAGE set to the freshly built test image); host networking lets the steps reach
the loopback S3 server. A model must arrive there; a step that fails must show its error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass

import pytest
import yaml
from kfp import components, local

from components.objectstore import ObjectStore, StoreSettings
from pipelines import params
from pipelines.local.runner import kfp_docker_status_kept, kfp_globals_guarded, local_arguments

from .conftest import CHECKOUT_TAG, CONTAINER_PREFIX, compile_for, docker, pipeline_env

pytestmark = [pytest.mark.integration, pytest.mark.images]

BUCKET = "image-tests"
MODEL = "diabetes-rf"
# The pipeline image's USER, and the runAsUser the cluster runs pipeline pods as.
NON_ROOT = "1000:1000"
# This checkout's step containers only: other worktrees may be running theirs on the same engine.
LABEL = {CONTAINER_PREFIX: f"pipeline-{CHECKOUT_TAG}"}


@dataclass
class DockerRun:
    ok: bool
    output: str


def run_in_docker(package, root, s3_server, **overrides) -> DockerRun:
    # kfp.local has no cluster: the deploy step is off, as in every local run.
    values = local_arguments(package, params.effective(overrides, package))
    values.update(minio_endpoint=s3_server.endpoint, minio_secure=False)
    values.pop("minio_secret")  # a cluster-only parameter: kfp.local reads no Secrets
    local.init(runner=local.DockerRunner(network_mode="host", user=NON_ROOT, cap_drop=["ALL"],
                                         security_opt=["no-new-privileges"], labels=LABEL,
                                         environment=pipeline_env(s3_server.env(), root / "registry.lock")),
               pipeline_root=str(root), raise_on_error=True)
    out = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(out), kfp_globals_guarded(), kfp_docker_status_kept():
        try:
            components.load_component_from_file(str(package))(**values)
        except RuntimeError as exc:  # kfp.local: "... finished with status FAILURE"
            print(exc)
            ok = False
    return DockerRun(ok, out.getvalue())


@pytest.fixture(scope="module")
def compiled(images, tmp_path_factory):
    return compile_for(images["pipeline"], tmp_path_factory.mktemp("compiled") / "pipeline.yaml")


@pytest.fixture(autouse=True, scope="module")
def _remove_leftover_containers(engine):
    yield
    leftovers = docker("ps", "-aq", "--filter", f"label={CONTAINER_PREFIX}={LABEL[CONTAINER_PREFIX]}").stdout.split()
    if leftovers:
        docker("rm", "-f", *leftovers)


@pytest.fixture(scope="module")
def pushed(compiled, s3_server, shared_dir) -> DockerRun:
    """One good run into the loopback store."""
    return run_in_docker(compiled, shared_dir(), s3_server, bucket=BUCKET, model_name=MODEL)


def test_compiled_yaml_names_the_built_image(compiled, images):
    spec = next(yaml.safe_load_all(compiled.read_text()))
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {images["pipeline"]}


def test_every_step_runs_in_the_image_and_the_model_reaches_the_store(pushed, s3_server, images):
    assert pushed.ok, pushed.output[-4000:]
    store = ObjectStore(StoreSettings.from_env(env=s3_server.env()))
    metadata = json.loads(store.get_bytes(BUCKET, f"{MODEL}/production/metadata.json"))
    assert metadata["model_name"] == MODEL and metadata["framework"] == "scikit-learn"
    model = store.get_bytes(BUCKET, f"{MODEL}/production/{metadata['model_file']}")
    assert hashlib.sha256(model).hexdigest() == metadata["sha256"]


def test_a_failing_step_shows_its_error(compiled, s3_server, shared_dir, capfd):
    # kfp.local's task logs and the containers' output bypass redirect_stdout: read the file descriptors.
    run = run_in_docker(compiled, shared_dir(), s3_server, bucket=BUCKET, model_name="never-pushed",
                        source="/data/missing.csv")
    seen = run.output + "".join(capfd.readouterr())
    assert not run.ok
    assert "ingest" in seen and "FAILURE" in seen
    assert "/data/missing.csv" in seen  # the component's own message, from inside the container
    assert not (s3_server.data_dir / BUCKET / "never-pushed").exists()
