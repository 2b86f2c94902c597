"""Sources that carry secrets: fetched with them, recorded and logged without them."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import logging

import pytest
from kfp.dsl import Artifact, Dataset
from sklearn.datasets import load_diabetes

from components import evaluate, ingest, kfp_components, push, train
from components.errors import DataError
from components.sources import SOURCE_URL_ENV, read_source, redact_source, resolve_source, secret_parts
from pipelines.local.s3server import free_port

from .helpers import loopback_http, run_ingest

USER, PASSWORD, SIGNATURE = "reader", "pa55-w0rd", "c0ffee5ignature"


@pytest.mark.parametrize(
    "source, shown",
    [
        ("https://user:pass@data.example/t.csv", "https://data.example/t.csv"),
        ("https://user@data.example:8443/t.csv", "https://data.example:8443/t.csv"),
        ("https://bucket.s3.amazonaws.com/t.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261125"
         "&X-Amz-Signature=abc123", "https://bucket.s3.amazonaws.com/t.csv"),
        ("http://h/t.csv#access_token=abc", "http://h/t.csv"),
        ("http://u:p%40ss@h/a/b.csv.gz?sig=1#frag", "http://h/a/b.csv.gz"),
        ("s3://models/data/t.csv", "s3://models/data/t.csv"),
        ("s3://models/data/t.csv?versionId=3", "s3://models/data/t.csv"),
        ("sklearn:diabetes", "sklearn:diabetes"),
        ("data/t.csv", "data/t.csv"),
        ("/abs/path/t.csv", "/abs/path/t.csv"),
        ("  https://u:p@h/t.csv  ", "https://h/t.csv"),
    ],
)
def test_redact_source_drops_user_info_query_and_fragment(source, shown):
    assert redact_source(source) == shown


@pytest.fixture
def protected_csv():
    """A loopback HTTP server that serves the diabetes CSV only with basic auth reader:pa55-w0rd."""
    body = load_diabetes(as_frame=True).frame.to_csv(index=False).encode()
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Protected(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            ok = self.headers.get("Authorization") == expected
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body)

    with loopback_http(Protected) as host:
        yield host


def secret_source(host: str, password: str = PASSWORD) -> str:
    return f"http://{USER}:{password}@{host}/diabetes.csv?X-Amz-Signature={SIGNATURE}#token={SIGNATURE}"


@pytest.mark.integration
def test_credentials_in_the_url_are_used_to_fetch_and_never_recorded(protected_csv, tmp_path, caplog,
                                                                      monkeypatch):
    source = secret_source(protected_csv)
    shown = f"http://{protected_csv}/diabetes.csv"
    monkeypatch.setenv(SOURCE_URL_ENV, source)  # the Secret's url; the parameter is the redacted URL
    train_data, test_data = Dataset(uri=str(tmp_path / "train.csv")), Dataset(uri=str(tmp_path / "test.csv"))
    with caplog.at_level(logging.DEBUG):
        kfp_components.ingest.python_func(source=shown, target="target", task="auto", test_fraction=0.2, seed=42,
                                          missing_values="error", categorical_features="", minio_endpoint="",
                                          minio_secure=False, train_data=train_data, test_data=test_data,
                                          schema=Artifact(uri=str(tmp_path / "schema.json")))
    assert train_data.metadata["source"] == test_data.metadata["source"] == shown
    assert train_data.metadata["rows"] + test_data.metadata["rows"] == 442  # the fetch used the credentials

    ingested = run_ingest(tmp_path / "again", shown)
    model_dir = tmp_path / "model"
    train.run(train_path=ingested.train, schema_path=ingested.schema, model_dir=model_dir, estimator="ridge",
              hyperparameters="{}", seed=42)
    with caplog.at_level(logging.DEBUG):
        evaluation = evaluate.run(test_path=ingested.test, schema_path=ingested.schema, model_dir=model_dir,
                                  threshold=-1.0, model_name="m", bucket="models", store=None, data_source=source,
                                  seed=42, test_fraction=0.2, evaluation_path=tmp_path / "evaluation.json",
                                  report_path=tmp_path / "report.md")
    metadata = push.build_metadata("m", 1, (model_dir / "model.joblib").read_bytes(),
                                   json.loads((model_dir / "training.json").read_text()),
                                   json.loads(ingested.schema.read_text()), evaluation, "run-1",
                                   dt.datetime.now(dt.timezone.utc))
    assert evaluation["data_source"] == metadata["data_source"] == shown
    recorded = [caplog.text, json.dumps(metadata), *(p.read_text() for p in tmp_path.rglob("*.json")),
                (tmp_path / "report.md").read_text()]
    for text in recorded:
        assert PASSWORD not in text and SIGNATURE not in text


@pytest.mark.integration
def test_rejected_credentials_are_named_without_the_password(protected_csv):
    with pytest.raises(DataError) as caught:
        read_source(secret_source(protected_csv, password="wrong-one"))
    message = str(caught.value)
    assert message == f"source http://{protected_csv}/diabetes.csv answered HTTP 401 Unauthorized"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_unreachable_source_error_is_redacted():
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(DataError) as caught:
        read_source(secret_source(host))
    assert str(caught.value).startswith(f"cannot reach source http://{host}/diabetes.csv: ")
    assert PASSWORD not in str(caught.value) and SIGNATURE not in str(caught.value)


@pytest.mark.integration
def test_validation_errors_name_the_redacted_source(protected_csv, tmp_path, monkeypatch):
    monkeypatch.setenv(SOURCE_URL_ENV, secret_source(protected_csv))
    with pytest.raises(DataError) as caught:
        ingest.run(source=redact_source(secret_source(protected_csv)), config=ingest.IngestConfig(target="y"),
                   train_path=tmp_path / "a", test_path=tmp_path / "b", schema_path=tmp_path / "c")
    assert str(caught.value).startswith(f"target column 'y' not found in http://{protected_csv}/diabetes.csv; ")


def test_same_split_compares_redacted_sources():
    production = {"data_source": "https://u:p@h/t.csv?sig=old", "split": {"seed": 1, "test_fraction": 0.2}}
    assert evaluate._same_split(production, "https://h/t.csv", {"seed": 1, "test_fraction": 0.2})


SECRET_FORMS = [
    pytest.param("https://reader:pa55-w0rd@h.example/t.csv", ["pa55-w0rd", "reader:pa55-w0rd"], id="user-password"),
    pytest.param("https://h.example/t.csv?X-Amz-Signature=c0ffee5ig&X-Amz-Credential=AKIA%2Fx",
                 ["c0ffee5ig", "AKIA%2Fx", "AKIA/x"], id="signed-query"),
    pytest.param("https://h.example/t.csv#access_token=t0ken-in-fragment", ["t0ken-in-fragment"], id="fragment"),
]


@pytest.mark.parametrize("full, secrets", SECRET_FORMS)
def test_a_parameter_carrying_credentials_is_refused_naming_the_way_instead(full, secrets):
    with pytest.raises(DataError) as caught:
        resolve_source(full, environ={})
    message = str(caught.value)
    assert "https://h.example/t.csv carries credentials" in message and SOURCE_URL_ENV in message
    assert "source_secret" in message and not any(secret in message for secret in secrets)


@pytest.mark.parametrize("full, secrets", SECRET_FORMS)
def test_the_full_url_comes_from_source_url_when_it_names_the_same_url(full, secrets):
    assert resolve_source("https://h.example/t.csv", environ={SOURCE_URL_ENV: full}) == full
    assert all(any(secret in part for part in secret_parts(full)) for secret in secrets)


def test_source_url_for_another_url_is_an_error_and_other_sources_ignore_it():
    env = {SOURCE_URL_ENV: "https://u:p@other.example/t.csv"}
    with pytest.raises(DataError, match="SOURCE_URL is a URL for https://other.example/t.csv, but source is "
                                        "https://h.example/t.csv"):
        resolve_source("https://h.example/t.csv", environ=env)
    assert resolve_source("sklearn:diabetes", environ=env) == "sklearn:diabetes"
    assert resolve_source("https://h.example/t.csv", environ={}) == "https://h.example/t.csv"
