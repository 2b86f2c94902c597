"""The MinIO / S3 client the pipeline uses, built from the environment.

Settings (same names in the cluster and locally, see README):
    MINIO_ENDPOINT    host:port (default minio-service.kubeflow:9000)
    MINIO_ACCESS_KEY  / MINIO_SECRET_KEY (fall back to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)
    MINIO_SECURE      0/1 (default 0)
    MINIO_REGION      default us-east-1: without an explicit region the minio client asks the
                      server for it, which S3 stand-ins such as rclone answer badly.

Every failure is turned into an ObjectStoreError subclass whose message names the endpoint
and the bucket and says what to check, instead of minio's "non-XML response ... 403":
rejected keys, keys without the permission, a wrong region, an untrusted certificate and a
TLS mismatch each get their own advice (see translate()).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error, ServerError

from components.errors import (
    ObjectAlreadyExists,
    ObjectNotFound,
    PreconditionFailed,
    ObjectStoreAccessDenied,
    ObjectStoreConfigError,
    ObjectStoreError,
    ObjectStoreUnreachable,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "minio-service.kubeflow:9000"
DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = "MINIO_ENDPOINT"
ACCESS_KEY_ENVS = ("MINIO_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
SECRET_KEY_ENVS = ("MINIO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
SECURE_ENV = "MINIO_SECURE"
REGION_ENV = "MINIO_REGION"

# Fail in seconds, not minutes: minio's default pool waits 5 minutes and retries 5 times.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
RETRIES = 2

# Where a conditional write (If-None-Match) must be one PUT: S3's single-request limit.
SINGLE_PUT_LIMIT = 5 << 30
CA_BUNDLE_ENV = "SSL_CERT_FILE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_KEYS_REJECTED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch"}
_NOT_ALLOWED_CODES = {"AccessDenied", "AllAccessDisabled"}
_REGION_CODES = {"AuthorizationHeaderMalformed", "InvalidRegion", "IllegalLocationConstraintException",
                 "InvalidLocationConstraint"}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound"}
_EXISTS_CODES = {"PreconditionFailed"}
_CREATED_MEANWHILE_CODES = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"Response code: (\d+)")


def parse_bool(value: str | bool, name: str) -> bool:
    """'0'/'1'/'true'/'false' (any case) -> bool; anything else is an error naming the setting."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ObjectStoreConfigError(f"{name}={value!r} is not a boolean: expected 0/1/true/false")


@dataclass(frozen=True)
class StoreSettings:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = False
    region: str = DEFAULT_REGION

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(
        cls,
        endpoint: str | None = None,
        secure: bool | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "StoreSettings":
        """Explicit arguments (pipeline parameters) win over the environment, which wins over defaults."""
        env = os.environ if env is None else env
        raw_endpoint = (endpoint or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).strip()
        if secure is None:
            is_secure = parse_bool(env.get(SECURE_ENV, "0"), SECURE_ENV)
        else:
            is_secure = parse_bool(secure, "minio_secure")
        host, is_secure = _split_endpoint(raw_endpoint, is_secure)
        access = _first(env, ACCESS_KEY_ENVS)
        secret = _first(env, SECRET_KEY_ENVS)
        if not access or not secret:
            raise ObjectStoreConfigError(
                f"no credentials for the object store at {host}: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY "
                "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); in a cluster the pipeline's steps get them "
                "from the Secret named by the minio_secret parameter (default mlpipeline-minio-artifact)"
            )
        return cls(host, access, secret, is_secure, env.get(REGION_ENV) or DEFAULT_REGION)


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str:
    return next((env[name] for name in names if env.get(name)), "")


def _split_endpoint(raw: str, secure: bool) -> tuple[str, bool]:
    """Accept host:port, or a URL whose scheme then decides TLS; reject paths."""
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        if scheme not in ("http", "https"):
            raise ObjectStoreConfigError(f"minio_endpoint scheme {scheme!r} unsupported: expected host:port")
        secure = scheme == "https"
    host = raw.rstrip("/")
    if not host or "/" in host or " " in host:
        raise ObjectStoreConfigError(f"minio_endpoint {raw!r} is not host:port (e.g. minio-service.kubeflow:9000)")
    return host, secure


class ObjectStore:
    """The few S3 operations the pipeline needs, with errors that say what to check."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            retries=urllib3.Retry(total=RETRIES, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
            # The CA bundle minio's own default client uses, so "set SSL_CERT_FILE" is true advice.
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get(CA_BUNDLE_ENV) or certifi.where(),
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    @classmethod
    def from_env(cls, endpoint: str | None = None, secure: bool | str | None = None) -> "ObjectStore":
        return cls(StoreSettings.from_env(endpoint, secure))

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    @contextlib.contextmanager
    def _errors(self, action: str, bucket: str, key: str = "") -> Iterator[None]:
        try:
            yield
        except ObjectStoreError:
            raise
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise translate(exc, action, self.uri(bucket, key), self.settings.url) from exc

    def bucket_exists(self, bucket: str) -> bool:
        try:
            with self._errors("check bucket", bucket):
                return self._client.bucket_exists(bucket)
        except ObjectStoreAccessDenied as exc:
            if not _is_bare_403(exc.__cause__):
                raise
            # A HEAD answer has no body, so a 403 cannot tell rejected keys from missing permission;
            # a listing (a GET, of one page at most) gets the server's own error code.
            with self._errors("list", bucket):
                next(iter(self._client.list_objects(bucket)), None)
            raise

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket when missing; True when it was created."""
        if self.bucket_exists(bucket):
            return False
        with self._errors("create bucket", bucket):
            try:
                self._client.make_bucket(bucket)
            except MinioException as exc:  # rclone's error body is "non-XML" to minio: read the code anyway
                if _code_status_message(exc)[0] not in _CREATED_MEANWHILE_CODES:
                    raise
                return False  # a concurrent run created it between the check and the create
        log.info("created bucket %s", self.uri(bucket))
        return True

    def list_children(self, bucket: str, prefix: str) -> list[str]:
        """Names directly under prefix ("a/b/" -> ["v1/", "production/", "x.txt"]); [] without the bucket."""
        if not self.bucket_exists(bucket):
            return []
        with self._errors("list", bucket, prefix):
            return [obj.object_name[len(prefix):] for obj in self._client.list_objects(bucket, prefix=prefix)]

    def exists(self, bucket: str, key: str) -> bool:
        try:
            with self._errors("stat", bucket, key):
                self._client.stat_object(bucket, key)
        except ObjectNotFound:
            return False
        return True

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self._errors("read", bucket, key):
            response = self._client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_json(self, bucket: str, key: str) -> Any | None:
        """The parsed JSON object at key, or None when the bucket or object does not exist."""
        try:
            data = self.get_bytes(bucket, key)
        except ObjectNotFound:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ObjectStoreError(f"{self.uri(bucket, key)} is not valid JSON: {exc}") from exc

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every object key under prefix, at any depth, sorted; [] without the bucket."""
        if not self.bucket_exists(bucket):
            return []
        with self._errors("list", bucket, prefix):
            return sorted(obj.object_name for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True))

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """(bytes, ETag) read in one GET, so the ETag is the one of these bytes; None when absent."""
        try:
            with self._errors("read", bucket, key):
                response = self._client.get_object(bucket, key)
                try:
                    return response.read(), _etag(response.headers.get("ETag", ""))
                finally:
                    response.close()
                    response.release_conn()
        except ObjectNotFound:
            return None

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                  if_absent: bool = False, if_match: str | None = None) -> str:
        """Write an object and return its ETag.

        if_absent: only when no object is there (If-None-Match: *), else ObjectAlreadyExists.
        if_match: only when the object's ETag is still this one (If-Match), else PreconditionFailed.
        MinIO, AWS S3 and moto enforce both; rclone ignores them, which ObjectStore cannot see:
        components.registry probes the store (conditional_writes) before relying on them.
        """
        if if_absent and if_match:
            raise ValueError("if_absent and if_match exclude each other")
        if not (if_absent or if_match):
            with self._errors("write", bucket, key):
                result = self._client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
            return _etag(result.etag or "")
        condition = {"If-None-Match": "*"} if if_absent else {"If-Match": f'"{_etag(if_match or "")}"'}
        # The server's error is translated first (inner `with`), so that a 412 or 404 can be read as
        # what it means for this condition (tests/pipeline/test_conditional_writes.py, on the wire).
        try:
            with self._errors("write", bucket, key):
                return self._put_conditional(bucket, key, data, content_type, condition)
        except ObjectNotFound as exc:  # AWS answers If-Match on a missing key with 404
            if if_absent:  # no bucket
                raise
            raise PreconditionFailed(f"cannot write {self.uri(bucket, key)}: it is gone (If-Match)") from exc
        except ObjectAlreadyExists as exc:
            if if_absent:
                raise
            raise PreconditionFailed(f"cannot write {self.uri(bucket, key)}: it changed since it was read "
                                     f"(If-Match {if_match})") from exc

    def _put_conditional(self, bucket: str, key: str, data: bytes, content_type: str,
                         condition: dict[str, str]) -> str:
        if len(data) > SINGLE_PUT_LIMIT:
            raise ObjectStoreError(f"cannot write {self.uri(bucket, key)} conditionally: {len(data)} bytes is "
                                   f"more than one S3 PUT takes ({SINGLE_PUT_LIMIT})")
        # minio 7.2.20 (pinned) turns every extra put_object header into user metadata
        # (X-Amz-Meta-If-None-Match), so the condition goes through its private one-request
        # _put_object (tests/pipeline/test_objectstore.py pins that it still exists and sends it).
        put = getattr(self._client, "_put_object", None)
        if put is None:
            raise ObjectStoreError(f"this minio client cannot send {', '.join(condition)}: cannot write "
                                   f"{self.uri(bucket, key)} conditionally (pin minio==7.2.20)")
        result = put(bucket, key, data, {"Content-Type": content_type, **condition})
        return _etag(getattr(result, "etag", "") or "")

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        """Server-side copy within the bucket: the bytes never pass through this process."""
        with self._errors("copy into", bucket, target_key):
            self._client.copy_object(bucket, target_key, CopySource(bucket, source_key))

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every object key under prefix, at any depth, sorted; [] without the bucket."""
        if not self.bucket_exists(bucket):
            return []
        with self._errors("list", bucket, prefix):
            return sorted(obj.object_name for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True)
                          if not obj.is_dir)

    def download_file(self, bucket: str, key: str, path: str | os.PathLike) -> None:
        """Stream an object into a local file (never whole in memory)."""
        with self._errors("read", bucket, key):
            self._client.fget_object(bucket, key, os.fspath(path))

    def upload_file(self, bucket: str, key: str, path: str | os.PathLike,
                    content_type: str = "application/octet-stream") -> None:
        """Stream a local file into an object (multipart when large); the object appears whole or not at all."""
        with self._errors("write", bucket, key):
            self._client.fput_object(bucket, key, os.fspath(path), content_type=content_type)

    def remove(self, bucket: str, key: str) -> None:
        """Delete an object; deleting one that is not there is not an error (S3 semantics)."""
        with self._errors("delete", bucket, key):
            self._client.remove_object(bucket, key)


def _etag(value: str) -> str:
    """An ETag without its quotes (servers send '"abc"', minio's results hold 'abc')."""
    return value.strip().strip('"')


def _is_bare_403(exc: BaseException | None) -> bool:
    """A 403 minio filled in itself because the answer had no body (HEAD requests): no code to go on."""
    if not isinstance(exc, S3Error) or exc.code != "AccessDenied":
        return False
    return not getattr(exc.response, "data", b"")


def _code_status_message(exc: MinioException) -> tuple[str, int, str]:
    if isinstance(exc, S3Error):
        return exc.code or "", int(getattr(exc.response, "status", 0) or 0), exc.message or ""
    if isinstance(exc, ServerError):
        return "", exc.status_code, str(exc)
    # S3 stand-ins answer errors as text/xml, which minio rejects as "non-XML": read the code anyway.
    text = str(exc)
    code, status = _XML_CODE.search(text), _STATUS.search(text)
    return (code.group(1) if code else ""), (int(status.group(1)) if status else 0), text


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc, then what it wraps: urllib3 keeps the cause in .reason, Python in __cause__/__context__."""
    seen: set[int] = set()
    current: object = exc
    while isinstance(current, BaseException) and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else current.__cause__ or current.__context__


def _certificate_rejected(exc: BaseException) -> bool:
    return any(isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cause)
               for cause in _causes(exc))


def _tls_failed(exc: BaseException) -> bool:
    return any(isinstance(cause, (urllib3.exceptions.SSLError, ssl.SSLError)) for cause in _causes(exc))


def translate(exc: BaseException, action: str, target: str, url: str) -> ObjectStoreError:
    """A minio / urllib3 failure as the ObjectStoreError that says what to check.

    action: what was attempted ("write", "create bucket"); target: the s3:// URI; url: the endpoint.
    """
    where = f"{target} at {url}"
    bucket = target.removeprefix("s3://").split("/", 1)[0]
    if isinstance(exc, urllib3.exceptions.HTTPError):
        if _certificate_rejected(exc):
            return ObjectStoreUnreachable(
                f"cannot {action} {where}: certificate not trusted; set {CA_BUNDLE_ENV} to the CA bundle "
                "that signed the object store's certificate")
        if _tls_failed(exc):
            return ObjectStoreUnreachable(
                f"cannot {action} {where}: TLS handshake failed; check MINIO_SECURE / minio_secure "
                "(does the endpoint speak TLS?)")
        reason = getattr(exc, "reason", None) or exc
        return ObjectStoreUnreachable(
            f"cannot reach the object store at {url} to {action} {target}: {reason}; "
            "check MINIO_ENDPOINT / minio_endpoint")
    if not isinstance(exc, MinioException):
        return ObjectStoreError(f"cannot {action} {where}: {type(exc).__name__}: {exc}")
    code, status, message = _code_status_message(exc)
    if code in _KEYS_REJECTED_CODES:
        return ObjectStoreAccessDenied(
            f"keys rejected ({code}) to {action} {where}: check MINIO_ACCESS_KEY/MINIO_SECRET_KEY "
            "(in a cluster: the secret named by minio_secret)")
    # minio fills in "BadRequest ...; use region X" for a body-less HEAD answer to a wrong region.
    if code in _REGION_CODES or "use region" in message:
        return ObjectStoreConfigError(
            f"region refused ({code}) to {action} {where}: check MINIO_REGION (requests are signed for "
            "that region; it must be the server's)")
    if _is_bare_403(exc):
        return ObjectStoreAccessDenied(
            f"access denied (HTTP 403, no detail) to {action} {where}: check MINIO_ACCESS_KEY/MINIO_SECRET_KEY, "
            f"or the keys may not {action} on {bucket}")
    if code in _NOT_ALLOWED_CODES or status == 403:
        return ObjectStoreAccessDenied(
            f"keys valid but not allowed to {action} on {bucket} ({code or 'HTTP 403'}, {url}): create the "
            "bucket beforehand or use a writer secret (minio_secret)")
    if code in _EXISTS_CODES or status == 412:
        return ObjectAlreadyExists(f"cannot {action} {where}: it already exists ({code or 'HTTP 412'})")
    if code in _MISSING_CODES or status == 404:
        return ObjectNotFound(f"cannot {action} {where}: {code or 'not found'}")
    if isinstance(exc, ServerError):
        return ObjectStoreError(f"cannot {action} {where}: server error {status}")
    detail = code or (f"HTTP {status}" if status else str(exc))
    return ObjectStoreError(f"cannot {action} {where}: {detail}")
