"""Object-store settings and error translation: every failure names the endpoint and what to check."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import ipaddress
import ssl

import pytest
import urllib3
from minio.error import InvalidResponseError, S3Error, ServerError

from components.errors import (
    ObjectAlreadyExists,
    ObjectNotFound,
    ObjectStoreAccessDenied,
    ObjectStoreConfigError,
    ObjectStoreError,
    ObjectStoreUnreachable,
)
from components.objectstore import ObjectStore
from components.storeerrors import translate
from contract.store import DEFAULT_ENDPOINT, StoreSettings
from pipelines.local.s3server import free_port

from .helpers import loopback_http

CREDS = {"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"}


def test_defaults_to_kubeflow_minio_without_tls():
    settings = StoreSettings.from_env(env=CREDS)
    assert (settings.endpoint, settings.secure, settings.region) == (DEFAULT_ENDPOINT, False, "us-east-1")


def test_parameters_win_over_environment():
    env = {**CREDS, "MINIO_ENDPOINT": "env-host:9000", "MINIO_SECURE": "1"}
    settings = StoreSettings.from_env("param-host:9000", False, env=env)
    assert (settings.endpoint, settings.secure) == ("param-host:9000", False)
    assert StoreSettings.from_env(env=env).endpoint == "env-host:9000"
    assert StoreSettings.from_env(env=env).secure is True


def test_aws_credentials_are_the_fallback():
    settings = StoreSettings.from_env(env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"})
    assert (settings.access_key, settings.secret_key) == ("a", "s")


def test_secret_is_not_in_repr():
    settings = StoreSettings.from_env(env={"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings)


def test_url_scheme_decides_tls():
    assert StoreSettings.from_env("https://minio.example:443", False, env=CREDS).secure is True
    assert StoreSettings.from_env("http://minio.example:80", True, env=CREDS).endpoint == "minio.example:80"


@pytest.mark.parametrize(
    "env, endpoint, expected",
    [
        ({}, None, "MINIO_ACCESS_KEY"),
        ({"MINIO_ACCESS_KEY": "a"}, None, "MINIO_SECRET_KEY"),
        ({**CREDS, "MINIO_SECURE": "maybe"}, None, "MINIO_SECURE='maybe'"),
        (CREDS, "minio:9000/bucket", "not host:port"),
        (CREDS, "ftp://minio:21", "scheme 'ftp'"),
    ],
)
def test_bad_settings_are_named(env, endpoint, expected):
    with pytest.raises(ObjectStoreConfigError, match=expected):
        StoreSettings.from_env(endpoint, env=env)


def test_unreachable_endpoint_names_it_and_fails_fast():
    port = free_port()
    store = ObjectStore(StoreSettings.from_env(f"127.0.0.1:{port}", False, env=CREDS))
    with pytest.raises(ObjectStoreUnreachable, match=rf"127\.0\.0\.1:{port}.*MINIO_ENDPOINT"):
        store.bucket_exists("models")


@pytest.mark.integration
@pytest.mark.parametrize("setting, code", [("MINIO_ACCESS_KEY", "InvalidAccessKeyId"),
                                           ("MINIO_SECRET_KEY", "SignatureDoesNotMatch")])
def test_wrong_keys_say_which_settings_to_check(s3_server, setting, code):
    store = ObjectStore(StoreSettings.from_env(env={**s3_server.env(), setting: "wrong"}))
    # bucket_exists is a HEAD, whose 403 has no body: the store asks again with a GET to get the code.
    with pytest.raises(ObjectStoreAccessDenied, match=rf"keys rejected \({code}\) to list s3://models/ at "
                                                      r".*check MINIO_ACCESS_KEY/MINIO_SECRET_KEY"):
        store.bucket_exists("models")
    # rclone answers object calls with text/xml, which minio calls "non-XML": the code is read anyway.
    with pytest.raises(ObjectStoreAccessDenied, match=rf"keys rejected \({code}\) to read s3://models/any/key"):
        store.get_bytes("models", "any/key")


@pytest.mark.integration
def test_tls_mismatch_points_at_minio_secure(s3_server):
    store = ObjectStore(StoreSettings.from_env(s3_server.endpoint, True, env=s3_server.env()))
    with pytest.raises(ObjectStoreUnreachable, match="MINIO_SECURE"):
        store.bucket_exists("models")


@pytest.mark.integration
def test_round_trip_and_missing_objects(store, bucket):
    assert store.get_json(bucket, "m/production/metadata.json") is None  # no bucket yet
    assert store.list_children(bucket, "m/") == []
    assert store.ensure_bucket(bucket) is True
    assert store.ensure_bucket(bucket) is False
    store.put_bytes(bucket, "m/v1/metadata.json", b'{"version": 1}')
    assert store.get_json(bucket, "m/v1/metadata.json") == {"version": 1}
    assert store.get_json(bucket, "m/v2/metadata.json") is None
    assert store.list_children(bucket, "m/") == ["v1/"]
    assert store.exists(bucket, "m/v1/metadata.json") and not store.exists(bucket, "m/v1/model.joblib")


@pytest.mark.integration
def test_copy_remove_and_conditional_put(store, bucket):
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "a/model.joblib", b"model")
    store.copy(bucket, "a/model.joblib", "b/model.joblib")
    assert store.get_bytes(bucket, "b/model.joblib") == b"model"
    with pytest.raises(ObjectNotFound, match=rf"copy into s3://{bucket}/c/x"):
        store.copy(bucket, "a/missing", "c/x")
    store.remove(bucket, "a/model.joblib")
    store.remove(bucket, "a/model.joblib")  # already gone: not an error
    assert not store.exists(bucket, "a/model.joblib")

    trace = io.StringIO()
    store._client.trace_on(trace)
    try:
        store.put_bytes(bucket, "c/new", b"1", if_absent=True)
        store.put_bytes(bucket, "c/plain", b"2")
    finally:
        store._client.trace_off()
    conditional, plain = trace.getvalue().split("/c/plain")
    # The condition goes out as a real header, not as X-Amz-Meta-If-None-Match user metadata.
    assert "If-None-Match: *" in conditional and "Meta-If-None-Match" not in conditional
    assert "If-None-Match" not in plain
    assert store.get_bytes(bucket, "c/new") == b"1"


TARGET, URL = "s3://models/m/v1/model.joblib", "http://minio.example:9000"


def s3_error(status: int, code: str | None, xml: bool = True) -> S3Error:
    """The S3Error minio raises: parsed from the XML body real MinIO/S3 send, or filled in for a body-less HEAD."""
    if not xml:  # what minio builds itself for a HEAD answer: no body, a code guessed from the status
        response = urllib3.HTTPResponse(body=b"", status=status)
        return S3Error(response, code, "Access denied", "/models", None, None, "models")
    body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>as the server says"
            "</Message><Resource>/models/m/v1/model.joblib</Resource><RequestId>1</RequestId></Error>").encode()
    return S3Error.fromxml(urllib3.HTTPResponse(body=body, status=status,
                                                headers={"Content-Type": "application/xml"}))


def rclone_error(status: int, code: str) -> InvalidResponseError:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>m</Message></Error>'
    return InvalidResponseError(status, "text/xml; charset=utf-8", body)


def ssl_failure(reason: str) -> urllib3.exceptions.MaxRetryError:
    """What urllib3 raises once its retries are spent on a failed TLS handshake."""
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        cause: ssl.SSLError = ssl.SSLCertVerificationError(1, reason)
    else:
        cause = ssl.SSLError(1, reason)
    return urllib3.exceptions.MaxRetryError(None, "/models", reason=urllib3.exceptions.SSLError(cause))


@pytest.mark.parametrize(
    "error, kind, expected",
    [
        pytest.param(s3_error(403, "InvalidAccessKeyId"), ObjectStoreAccessDenied,
                     "keys rejected (InvalidAccessKeyId) to write s3://models/m/v1/model.joblib at "
                     "http://minio.example:9000: check MINIO_ACCESS_KEY/MINIO_SECRET_KEY", id="minio-unknown-key"),
        pytest.param(s3_error(403, "SignatureDoesNotMatch"), ObjectStoreAccessDenied,
                     "keys rejected (SignatureDoesNotMatch)", id="minio-wrong-secret"),
        pytest.param(rclone_error(403, "InvalidAccessKeyId"), ObjectStoreAccessDenied,
                     "keys rejected (InvalidAccessKeyId)", id="rclone-unknown-key"),
        pytest.param(s3_error(403, "AccessDenied"), ObjectStoreAccessDenied,
                     "keys valid but not allowed to write on models (AccessDenied, http://minio.example:9000): "
                     "create the bucket beforehand or use a writer secret (minio_secret)", id="minio-no-permission"),
        pytest.param(s3_error(403, "AccessDenied", xml=False), ObjectStoreAccessDenied,
                     "access denied (HTTP 403, no detail) to write s3://models/m/v1/model.joblib at "
                     "http://minio.example:9000: check MINIO_ACCESS_KEY/MINIO_SECRET_KEY, or the keys may not "
                     "write on models", id="head-403-without-body"),
        pytest.param(s3_error(400, "AuthorizationHeaderMalformed"), ObjectStoreConfigError,
                     "region refused (AuthorizationHeaderMalformed) to write s3://models/m/v1/model.joblib at "
                     "http://minio.example:9000: check MINIO_REGION", id="minio-wrong-region"),
        pytest.param(s3_error(400, "InvalidRegion"), ObjectStoreConfigError, "check MINIO_REGION",
                     id="invalid-region"),
        pytest.param(s3_error(412, "PreconditionFailed"), ObjectAlreadyExists,
                     "cannot write s3://models/m/v1/model.joblib at http://minio.example:9000: it already exists "
                     "(PreconditionFailed)", id="minio-if-none-match"),
        pytest.param(ServerError("server failed with HTTP status code 412", 412), ObjectAlreadyExists,
                     "it already exists (HTTP 412)", id="412-without-body"),
        pytest.param(s3_error(404, "NoSuchBucket"), ObjectNotFound, "cannot write s3://models/m/v1/model.joblib at "
                     "http://minio.example:9000: NoSuchBucket", id="no-bucket"),
        pytest.param(ServerError("server failed with HTTP status code 503", 503), ObjectStoreError,
                     "server error 503", id="server-error"),
        pytest.param(ssl_failure("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
                                 "certificate (_ssl.c:1010)"), ObjectStoreUnreachable,
                     "cannot write s3://models/m/v1/model.joblib at http://minio.example:9000: certificate not "
                     "trusted; set SSL_CERT_FILE to the CA bundle", id="untrusted-certificate"),
        pytest.param(ssl_failure("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1010)"),
                     ObjectStoreUnreachable, "TLS handshake failed; check MINIO_SECURE / minio_secure",
                     id="tls-to-plain-http"),
    ],
)
def test_each_failure_gets_its_own_advice(error, kind, expected):
    translated = translate(error, "write", TARGET, URL)
    assert type(translated) is kind
    assert expected in str(translated)


def test_only_a_certificate_failure_mentions_ssl_cert_file():
    tls = translate(ssl_failure("[SSL: WRONG_VERSION_NUMBER] wrong version number"), "read", TARGET, URL)
    cert = translate(ssl_failure("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), "read", TARGET, URL)
    assert "SSL_CERT_FILE" not in str(tls) and "MINIO_SECURE" not in str(cert)


@pytest.fixture
def tls_server(tmp_path):
    """A loopback HTTPS server with a self-signed certificate, answering 404 to everything."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    with loopback_http(NotFound, tls=context) as endpoint:
        yield endpoint, cert_path


@pytest.mark.integration
def test_untrusted_certificate_says_set_ssl_cert_file_and_that_fixes_it(tls_server, monkeypatch):
    endpoint, cert_path = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    store = ObjectStore(StoreSettings.from_env(endpoint, True, env=CREDS))
    with pytest.raises(ObjectStoreUnreachable, match=rf"https://{endpoint}: certificate not trusted; set SSL_CERT_FILE"):
        store.bucket_exists("models")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    assert ObjectStore(StoreSettings.from_env(endpoint, True, env=CREDS)).bucket_exists("models") is False


def scripted_s3(answers: list[int]) -> tuple[type[http.server.BaseHTTPRequestHandler], list[dict]]:
    """A stand-in S3 answering each PUT with the next status of answers (500: rclone's InternalError body)."""
    puts: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's naming): minio asks the bucket's region first
            self._send(200, b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">us-east-1'
                            b"</LocationConstraint>", {"Content-Type": "application/xml"})

        def do_PUT(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            puts.append({"path": self.path, "body": body, "if-none-match": self.headers.get("If-None-Match")})
            status = answers[min(len(puts), len(answers)) - 1]
            if status == 200:
                self._send(200, b"", {"ETag": '"e1"'})
            else:
                self._send(status, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>InternalError</Code>\n'
                                   b"  <Message>Internal Error</Message>\n</Error>",
                           {"Content-Type": "text/xml; charset=utf-8"})

    return Handler, puts


@pytest.mark.parametrize("answers, conditional, expected_puts, succeeds", [
    ([500, 200], False, 2, True),  # S3's advice for InternalError: try again; the same bytes, so safe
    ([500, 500, 200], False, 2, False),  # once: a store that keeps failing is reported, not hammered
    ([500, 200], True, 1, False),  # a conditional write is never repeated: a lost answer would read as a conflict
])
def test_an_internal_error_is_retried_once_for_a_plain_write_only(answers, conditional, expected_puts, succeeds):
    handler, puts = scripted_s3(answers)
    with loopback_http(handler) as address:
        store = ObjectStore(StoreSettings.from_env(address, False, env=CREDS))
        if succeeds:
            assert store.put_bytes("models", "m/v1/model.joblib", b"model") == "e1"
        else:
            with pytest.raises(ObjectStoreError, match=r"cannot write s3://models/m/v1/model\.joblib .*InternalError"):
                store.put_bytes("models", "m/v1/model.joblib", b"model", if_absent=conditional)
    assert len(puts) == expected_puts
    assert {put["body"] for put in puts} == {b"model"}
    assert all(put["if-none-match"] == ("*" if conditional else None) for put in puts)
