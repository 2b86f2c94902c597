"""The object-store settings, read from the environment: the pipeline's client and the server's download use them.

    MINIO_ENDPOINT    host:port (default minio-service.kubeflow:9000)
    MINIO_ACCESS_KEY  / MINIO_SECRET_KEY (fall back to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)
    MINIO_SECURE      0/1 (default 0)
    MINIO_REGION      default us-east-1: without an explicit region the minio client asks the
                      server for it, which S3 stand-ins such as rclone answer badly.
    SSL_CERT_FILE     the CA bundle that signed the store's certificate (default: certifi's)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import certifi
import urllib3
from minio import Minio

from contract.errors import ObjectStoreConfigError
from contract.settings import parse_bool

DEFAULT_ENDPOINT = "minio-service.kubeflow:9000"
DEFAULT_REGION = "us-east-1"
ENDPOINT_ENV = "MINIO_ENDPOINT"
ACCESS_KEY_ENVS = ("MINIO_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
SECRET_KEY_ENVS = ("MINIO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
SECURE_ENV = "MINIO_SECURE"
REGION_ENV = "MINIO_REGION"
CA_BUNDLE_ENV = "SSL_CERT_FILE"

# Fail in seconds, not minutes: minio's default pool waits 5 minutes and retries 5 times.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
RETRIES = 2


@dataclass(frozen=True)
class StoreSettings:
    """Where the object store is and the keys to it; from_env() reads them, checked."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = False
    region: str = DEFAULT_REGION

    @property
    def url(self) -> str:
        """The endpoint as a URL (http:// or https://, as ``secure`` says).

        Returns:
            ``http://<endpoint>`` or ``https://<endpoint>``.
        """
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(
        cls,
        endpoint: str | None = None,
        secure: bool | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "StoreSettings":
        """Explicit arguments (pipeline parameters) win over the environment, which wins over defaults.

        Args:
            endpoint: host:port or http(s):// URL; None reads MINIO_ENDPOINT.
            secure: TLS on/off (a bool or its spelling); None reads MINIO_SECURE.
            env: the environment to read (default: os.environ).

        Returns:
            The checked settings; ObjectStoreConfigError names a bad or missing one.
        """
        env = os.environ if env is None else env
        raw_endpoint = (endpoint or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).strip()
        if secure is None:
            is_secure = parse_bool(env.get(SECURE_ENV, "0"), SECURE_ENV, ObjectStoreConfigError)
        else:
            is_secure = parse_bool(secure, "minio_secure", ObjectStoreConfigError)
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


def minio_client(settings: StoreSettings, read_timeout_s: float = READ_TIMEOUT_S) -> Minio:
    """The one way this project builds its S3 client: short connect timeout, few retries, the CA bundle.

    Args:
        settings: where the store is and the keys to it.
        read_timeout_s: how long one answer may take (the server's inference log waits less).

    Returns:
        A minio client; it connects on first use.
    """
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout_s),
        retries=urllib3.Retry(total=RETRIES, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
        # The CA bundle minio's own default client uses, so "set SSL_CERT_FILE" is true advice.
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get(CA_BUNDLE_ENV) or certifi.where(),
    )
    return Minio(settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
                 secure=settings.secure, region=settings.region, http_client=http)
