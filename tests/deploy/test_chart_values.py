"""The chart refuses bad values with a message naming the field, and its NOTES show the way in."""

from __future__ import annotations

import ast
import base64
import shutil
import textwrap

import pytest
import yaml

from . import render
from .tools import CHART, CommandFailed, run

BAD_VALUES = [
    # values.schema.json: one field at a time
    (("autoscaling.minReplicas=-1",), "autoscaling.minReplicas"),
    (("autoscaling.maxReplicas=0",), "autoscaling.maxReplicas"),
    (("mode=knative",), "mode"),
    (("runtime.kind=mlserver",), "runtime.kind"),
    (("autoscaling.serverless.scaleMetric=cpu",), "autoscaling.serverless.scaleMetric"),
    (("autoscaling.raw.scaleMetric=concurrency",), "autoscaling.raw.scaleMetric"),
    (("autoscaling.raw.scaleTarget=150",), "autoscaling.raw.scaleTarget"),
    (("canaryTrafficPercent=101",), "canaryTrafficPercent"),
    (("canaryTrafficPercent=-5",), "canaryTrafficPercent"),
    (("model.storageUri=gs://models/diabetes-rf/production/",), "model.storageUri"),
    # Without the trailing slash KServe's prefix download also pulls v40..v49 / production-*.
    (("model.storageUri=s3://models/diabetes-rf/v4",), "model.storageUri"),
    (("model.storageUri=s3://models/diabetes-rf/production",), "model.storageUri"),
    (("runtime.kind=stock", "runtime.stockVersion="), "runtime.stockVersion"),
    (("namespace.name=Not_A_Name",), "namespace.name"),
    (("namespace.podSecurity.enforce=strict",), "namespace.podSecurity.enforce"),
    (("model.name=Diabetes_RF",), "model.name"),
    (("objectStore.endpoint=http://minio:9000",), "objectStore.endpoint"),
    (("minio.image=minio/minio",), "minio.image"),
    (("minio.rootPassword=short",), "minio.rootPassword"),
    (("replicas=3",), "replicas"),
    (("protocol=http2",), "protocol"),
    (("deployer.serviceAccountName=Model_Deployer",), "deployer.serviceAccountName"),
    (("deployer.boundServiceAccounts[0].namespace=Kube_Flow",), "deployer.boundServiceAccounts.0.namespace"),
    (("deployer.verbs=list",), "deployer"),
    (("inferenceLog.uri=/var/log/traffic",), "inferenceLog.uri"),
    (("inferenceLog.sample=1.5",), "inferenceLog.sample"),
    # templates/_helpers.tpl: rules across fields
    (("autoscaling.minReplicas=6",), "autoscaling.minReplicas=6 is greater than autoscaling.maxReplicas=5"),
    (("mode=raw", "autoscaling.minReplicas=0"), "autoscaling.minReplicas=0 with mode=raw"),
    (("mode=raw", "canaryTrafficPercent=10"), "canaryTrafficPercent=10 with mode=raw"),
    (("objectStore.accessKey=null",), "objectStore.accessKey"),
    (("namespace.create=true",), "namespace.create=true with namespace.name empty"),
    # Helm writes the release into its own namespace before it creates any object.
    (("namespace.create=true", f"namespace.name={render.NAMESPACE}"),
     f"namespace.create=true with namespace.name={render.NAMESPACE}, the release namespace"),
    (("protocol=grpc", "runtime.kind=stock"), "protocol=grpc with runtime.kind=stock"),
    (("minio.enabled=true", "minio.writer.accessKey=CHANGE-ME"), "minio.writer.accessKey=CHANGE-ME equals objectStore"),
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[" ".join(v) for v, _ in BAD_VALUES])
def test_bad_values_are_rejected(helm, values, field):
    with pytest.raises(CommandFailed) as failure:
        render.helm_template(helm, values)
    assert field in failure.value.output


@pytest.fixture
def notes_chart(tmp_path):
    """helm template skips NOTES.txt: a copy of the chart that renders it through tpl instead."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "NOTES.src")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n'
        'data:\n  notes: {{ tpl (.Files.Get "NOTES.src") . | quote }}\n'
    )
    return chart


def _render_notes(helm, chart, values: tuple[str, ...], allow_placeholders: bool = True) -> str:
    argv = [helm, "template", render.RELEASE, str(chart), "--show-only", "templates/zz-notes.yaml",
            *render.helm_args(values, render.NAMESPACE, allow_placeholders)]
    return yaml.safe_load(run(argv))["data"]["notes"]


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_notes_show_curl_with_host_header_and_hey(helm, notes_chart, mode):
    notes = _render_notes(helm, notes_chart, (f"mode={mode}",))
    assert f"({mode} mode" in notes
    assert 'curl -sS -H "Host: ${SERVICE_HOSTNAME}"' in notes
    assert '-host "${SERVICE_HOSTNAME}"' in notes and "hey -z" in notes
    assert "/v2/models/diabetes-rf/infer" in notes
    assert f"-n {render.NAMESPACE} get inferenceservice diabetes-rf" in notes


READER_KEYS = ("objectStore.accessKey=reader", "objectStore.secretKey=reader-secret")
MINIO_KEYS = ("minio.enabled=true", "minio.rootUser=admin", "minio.rootPassword=admin-password",
              "minio.writer.accessKey=writer", "minio.writer.secretKey=writer-secret")


@pytest.mark.parametrize(
    ("values", "fields"),
    [
        ((), "objectStore.accessKey, objectStore.secretKey"),
        (("minio.enabled=true", *READER_KEYS),
         "minio.rootPassword, minio.rootUser, minio.writer.accessKey, minio.writer.secretKey"),
        ((*READER_KEYS, *MINIO_KEYS, "minio.rootPassword=CHANGE-ME-later"), "minio.rootPassword;"),
    ],
    ids=["default", "with-minio", "one-left"],
)
def test_placeholder_credentials_are_refused_by_default(helm, values, fields):
    with pytest.raises(CommandFailed) as failure:
        render.helm_template(helm, values, allow_placeholders=False)
    assert f"CHANGE-ME placeholder credentials in {fields}" in failure.value.output
    assert "allowPlaceholderCredentials=true" in failure.value.output


@pytest.mark.parametrize("values", [READER_KEYS, (*READER_KEYS, *MINIO_KEYS)], ids=["real-keys", "real-keys-with-minio"])
def test_real_credentials_need_no_allowance(helm, values):
    secrets = render.find(render.helm_template(helm, values, allow_placeholders=False), "Secret")
    decoded = {base64.b64decode(v).decode() for secret in secrets for v in secret["data"].values()}
    assert {"reader", "reader-secret"} <= decoded  # the keys given, not placeholders
    assert not any(value.startswith("CHANGE-ME") for value in decoded)


def test_an_existing_secret_needs_no_allowance_and_renders_none(helm):
    docs = render.helm_template(helm, ("objectStore.existingSecret=mine",), allow_placeholders=False)
    assert render.find(docs, "Secret") == []  # nothing of ours to hold a placeholder
    reader = [doc for doc in render.find(docs, "ServiceAccount") if doc["metadata"]["name"] == "model-reader"]
    assert [account["secrets"] for account in reader] == [[{"name": "mine"}]]


def test_notes_warn_about_placeholder_credentials(helm, notes_chart):
    assert "placeholder credentials in objectStore.accessKey, objectStore.secretKey" in _render_notes(helm, notes_chart, ())
    assert "CHANGE-ME" not in _render_notes(helm, notes_chart, READER_KEYS, allow_placeholders=False)


@pytest.mark.parametrize("mode", ["serverless", "raw"])
def test_notes_show_grpc_clients_when_grpc_is_routed(helm, notes_chart, mode):
    notes = _render_notes(helm, notes_chart, (f"mode={mode}", "protocol=grpc"))
    assert 'grpcurl -plaintext -proto grpc_predict_v2.proto -authority "${SERVICE_HOSTNAME}"' in notes
    assert "inference.GRPCInferenceService/ModelInfer" in notes and '"model_name": "diabetes-rf"' in notes
    assert "curl -sS" not in notes and "hey -z" not in notes  # REST is not routed
    # The tritonclient example is Python that parses, with the model's name and the Host as :authority.
    snippet = textwrap.dedent(notes.split("python - <<'PY'\n", 1)[1].split("\n   PY", 1)[0])
    tree = ast.parse(snippet)
    assert 'client.infer("diabetes-rf"' in snippet and '"grpc.default_authority"' in snippet, snippet
    assert any(isinstance(node, ast.Import) for node in tree.body)
