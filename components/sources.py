"""Read a tabular data source into a DataFrame: a bundled dataset, a local CSV, an http(s) URL or s3://.

    sklearn:diabetes | sklearn:breast_cancer   bundled with scikit-learn (no download); target column "target"
    s3://bucket/key.csv                          through the project's MinIO client (MINIO_* settings)
    http(s)://[user:password@]host/file.csv      GET (user-info becomes HTTP basic auth)
    path/to/file.csv                             local file
CSV only; a name ending in .gz is read as gzip.

A source can carry secrets: user-info, a presigned query (X-Amz-Signature=...), a token in the
fragment. They never travel in the pipeline parameter, which KFP shows in its UI, its logs and
the step's command line: the parameter holds the redacted URL, and the full one comes from the
SOURCE_URL variable (a Kubernetes Secret in the cluster, the environment locally); resolve_source()
joins the two. redact_source() is what gets recorded or logged (metadata.json, which the server
shows publicly, KFP artifact metadata, error messages); the full source is used only to fetch.
"""

from __future__ import annotations

import base64
import io
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pandas as pd
from sklearn import datasets

from components.errors import DataError, ObjectNotFound

BUNDLED: dict[str, Callable[..., object]] = {
    "diabetes": datasets.load_diabetes,
    "breast_cancer": datasets.load_breast_cancer,
}
# The full URL of an http(s) source whose credentials must not sit in the parameter.
SOURCE_URL_ENV = "SOURCE_URL"
HTTP_TIMEOUT_S = 60
# A guard against pointing the pipeline at something that is not a table.
MAX_DOWNLOAD_BYTES = 1 << 30


def redact_source(source: str) -> str:
    """source without user-info, query string and fragment: what may be recorded or logged.

    Args:
        source: a source parameter or URL.

    Returns:
        The redacted source (unchanged when it is not a URL).
    """
    source = source.strip()
    parts = urllib.parse.urlsplit(source)
    if not parts.scheme or not parts.netloc:  # sklearn:diabetes, a local path
        return source
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def has_secrets(source: str) -> bool:
    """Whether the source carries credentials (user-info, query or fragment).

    Args:
        source: a source parameter or URL.

    Returns:
        True when redacting it changes it.
    """
    return redact_source(source) != source.strip()


def secret_parts(source: str) -> list[str]:
    """The pieces of source that must never be shown (longest first), for scrubbing a log.

    Args:
        source: the full source URL.

    Returns:
        The pieces, longest first; [] when it has no secrets.
    """
    parts = urllib.parse.urlsplit(source.strip())
    if not has_secrets(source):
        return []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    password = userinfo.partition(":")[2]
    query_values = [value for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False)]
    found = {source.strip(), userinfo, password, urllib.parse.unquote(password), parts.query, parts.fragment,
             *query_values, *(urllib.parse.quote(v, safe="") for v in query_values)}
    return sorted((piece for piece in found if len(piece) >= 3), key=len, reverse=True)


def resolve_source(source: str, environ: dict[str, str] | os._Environ | None = None) -> str:
    """The source to fetch: the (redacted) parameter, completed from SOURCE_URL when that names the same URL.

    Args:
        source: the source parameter (redacted).
        environ: where SOURCE_URL is read (default: os.environ).

    Returns:
        The URL to fetch; DataError when the parameter itself carries credentials.
    """
    env = os.environ if environ is None else environ
    source = source.strip()
    if has_secrets(source):
        raise DataError(
            f"source {redact_source(source)} carries credentials (user-info, query or fragment) in a pipeline "
            "parameter, which KFP shows in its UI, its logs and the step's command line: pass the redacted URL as "
            f"source and the full one in {SOURCE_URL_ENV} (locally) or in the Secret named by source_secret (key url)")
    full = env.get(SOURCE_URL_ENV, "").strip()
    if not full or not source.startswith(("http://", "https://")):
        return source
    if redact_source(full) != source:
        raise DataError(f"{SOURCE_URL_ENV} is a URL for {redact_source(full)}, but source is {source}: "
                        f"set source to {redact_source(full)} (or unset {SOURCE_URL_ENV})")
    return full


def read_source(source: str, minio_endpoint: str | None = None, minio_secure: bool | None = None) -> pd.DataFrame:
    """Read the table a source names.

    Args:
        source: sklearn:<name>, s3://bucket/key.csv, http(s)://... or a local path.
        minio_endpoint: the object store for s3:// (None: MINIO_ENDPOINT).
        minio_secure: TLS to it (None: MINIO_SECURE).

    Returns:
        The table as read; DataError saying what failed.
    """
    source = source.strip()
    if not source:
        raise DataError("source is empty: expected sklearn:diabetes, s3://bucket/key.csv, http(s)://... or a path")
    if source.startswith("sklearn:"):
        return _bundled(source.removeprefix("sklearn:"))
    if source.startswith("s3://"):
        data = _read_s3(source, minio_endpoint, minio_secure)
    elif source.startswith(("http://", "https://")):
        data = _read_http(source)
    else:
        data = _read_file(Path(source))
    return parse_csv(data, redact_source(source))


def _bundled(name: str) -> pd.DataFrame:
    loader = BUNDLED.get(name)
    if loader is None:
        choices = ", ".join(f"sklearn:{key}" for key in BUNDLED)
        raise DataError(f"unknown bundled dataset 'sklearn:{name}': expected one of {choices}")
    return loader(as_frame=True).frame


def _read_s3(source: str, endpoint: str | None, secure: bool | None) -> bytes:
    source = redact_source(source)  # an s3:// source is read with MINIO_* keys, never with a query
    bucket, _, key = source.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise DataError(f"source {source!r} is not s3://bucket/key")
    # Imported here: the minio client costs ingest 0.3 CPU s, and most sources are not in a bucket.
    from components.objectstore import ObjectStore

    try:
        return ObjectStore.from_env(endpoint, secure).get_bytes(bucket, key)
    except ObjectNotFound as exc:
        raise DataError(f"source {source} does not exist: {exc}") from exc


def _http_request(url: str) -> urllib.request.Request:
    """urllib cannot take user:password@ in a URL: move it into a basic-auth header."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return urllib.request.Request(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
    plain = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return urllib.request.Request(plain, headers={"Authorization": f"Basic {token}"})


def _read_http(url: str) -> bytes:
    # "from None": the chained urllib exception could repeat the URL with its secrets.
    shown = redact_source(url)
    try:
        with urllib.request.urlopen(_http_request(url), timeout=HTTP_TIMEOUT_S) as response:
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise DataError(f"source {shown} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"cannot reach source {shown}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"source {shown} is larger than {MAX_DOWNLOAD_BYTES} bytes")
    return data


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"source file {path} does not exist")
    if not path.is_file():
        raise DataError(f"source {path} is not a file")
    return path.read_bytes()


def parse_csv(data: bytes, source: str) -> pd.DataFrame:
    """Parse CSV bytes (gzip when the source ends in .gz).

    Args:
        data: the bytes.
        source: the (redacted) source, for messages.

    Returns:
        The table; DataError when it is empty or not CSV.
    """
    if not data.strip():
        raise DataError(f"source {source} is empty")
    try:
        return pd.read_csv(
            io.BytesIO(data),
            compression="gzip" if source.endswith(".gz") else None,
            float_precision="round_trip",
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"source {source} has no columns") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"source {source} is not a readable CSV: {exc}") from exc
