"""The model registry on an object store alone: immutable versions and a compare-and-swap production pointer.

    s3://<bucket>/<model>/v<N>/claim.json        who took N (written first, If-None-Match: *)
    s3://<bucket>/<model>/v<N>/model.joblib      then the model
    s3://<bucket>/<model>/v<N>/metadata.json     last: a v<N> is complete once this names the model's sha256
    s3://<bucket>/<model>/production.json        THE production pointer {version, sha256, seq, ...}, moved
                                                 only by compare-and-swap (If-Match: <etag>; If-None-Match: *
                                                 for the first)
    s3://<bucket>/<model>/history/<seq>.json     one entry per move (push, promote, rollback), append-only
    s3://<bucket>/<model>/production/            a copy of the pointer's v<N>/ for a fixed storageUri,
                                                 derived from the pointer and repaired when it differs

Readers (evaluate, `make models`) follow the pointer to an immutable v<N>/, so no reader ever pairs
one run's model with another's metadata. A v<N>/ without valid metadata, or whose model is not the one
its metadata names, is partial: never counted, never promoted, and tombstoned by the next writer.

Conditional writes are what make this safe with many writers. A store that ignores them (rclone, the
local default) is found by a probe (conditional_writes) before the first write; writers then take a
file lock named by REGISTRY_LOCK_FILE (set by pipelines.local.s3server) for the whole operation and
check under it. Without either, writing is refused: a silent race would lose versions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Protocol

from components.artifacts import METADATA_FILE, MODEL_FILE, SKOPS_FILE
from components.errors import (
    ObjectAlreadyExists,
    ObjectNotFound,
    ObjectStoreError,
    PreconditionFailed,
    ProductionMoved,
    PushError,
    RegistryError,
)
from components.gate import schema_difference
from components.storeerrors import is_internal_error

log = logging.getLogger(__name__)

PRODUCTION = "production"
POINTER_FILE = "production.json"
HISTORY = "history"
CLAIM_FILE = "claim.json"
PROBE_PREFIX = ".registry-probe/"
PROBE_CONTENT = b"probe 1\n"  # the probe object's first write
LOCK_FILE_ENV = "REGISTRY_LOCK_FILE"
LOCK_TIMEOUT_ENV = "REGISTRY_LOCK_TIMEOUT_S"
STALE_CLAIM_ENV = "REGISTRY_STALE_CLAIM_S"
# A lock holder pushes a model of a few MB: minutes of waiting mean something is stuck.
LOCK_TIMEOUT_S = 300.0
# With conditional writes and no lock, a claim without metadata may be a push still uploading;
# after this long it is taken for dead. A push writes its version within seconds.
STALE_CLAIM_S = 900.0
# Concurrent runs each take the next free v<N>; past this many collisions something else is wrong.
MAX_VERSION_ATTEMPTS = 5
# Compare-and-swap retries of the pointer (each re-reads and re-decides) and production/ syncs.
MAX_MOVE_ATTEMPTS = 5
MAX_SYNC_ROUNDS = 3

COMPLETE, PARTIAL, ABANDONED = "complete", "partial", "abandoned"
_VERSION = re.compile(r"^v([1-9][0-9]*)/$")
_HISTORY_ENTRY = re.compile(r"^([0-9]{8,})\.json$")
# S3 bucket naming rules, simplified: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# One path segment, safe in a URI and a Kubernetes name.
_MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Store(Protocol):
    """What the registry needs of an object store (components.objectstore.ObjectStore; tests' MemStore)."""

    def uri(self, bucket: str, key: str = "") -> str:
        """Where an object lives, for messages.

        Args:
            bucket: the bucket.
            key: the object's key ("" for the bucket itself).

        Returns:
            An s3:// URI.
        """
        ...

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket unless it exists.

        Args:
            bucket: the bucket.

        Returns:
            True when it was created, False when it existed.
        """
        ...

    def list_children(self, bucket: str, prefix: str) -> list[str]:
        """The names one level below a prefix, like a folder listing.

        Args:
            bucket: the bucket.
            prefix: a key prefix ending in "/".

        Returns:
            Child names relative to the prefix (folders end in "/").
        """
        ...

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key under a prefix, at any depth.

        Args:
            bucket: the bucket.
            prefix: a key prefix.

        Returns:
            Full keys.
        """
        ...

    def exists(self, bucket: str, key: str) -> bool:
        """Whether an object exists.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            True when it does.
        """
        ...

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """An object's content; raises when it is missing.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            The bytes.
        """
        ...

    def get_versioned(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """An object's content and ETag, for a later conditional replace.

        Args:
            bucket: the bucket.
            key: the object's key.

        Returns:
            (content, etag), or None when the object does not exist.
        """
        ...

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = ...,
                  if_absent: bool = False, if_match: str | None = None) -> str:
        """Write an object, optionally only if absent (If-None-Match: *) or unchanged (If-Match).

        Args:
            bucket: the bucket.
            key: the object's key.
            data: the content.
            content_type: its MIME type.
            if_absent: refuse (ObjectAlreadyExists) when the key exists.
            if_match: refuse (PreconditionFailed) unless the current ETag is this one.

        Returns:
            The new object's ETag.
        """
        ...

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        """Copy an object within the bucket, server side.

        Args:
            bucket: the bucket.
            source_key: the object to copy.
            target_key: where the copy goes (replaced when it exists).
        """
        ...

    def remove(self, bucket: str, key: str) -> None:
        """Delete an object; a missing one is not an error.

        Args:
            bucket: the bucket.
            key: the object's key.
        """
        ...


# ---------------------------------------------------------------------------------------- layout

def check_location(bucket: str, model_name: str) -> None:
    """Refuse a bucket or model name that cannot form the registry's keys and URIs.

    Args:
        bucket: the S3 bucket name (3-63 lowercase letters, digits, '.', '-').
        model_name: the model's name (one path segment). Lowercase letters, digits, '.', '_', '-'.
    """
    if not _BUCKET.match(bucket or ""):
        raise PushError(
            f"bucket {bucket!r} is not a valid bucket name: expected 3-63 lowercase letters, digits, '.', '-'")
    if not _MODEL_NAME.match(model_name or ""):
        raise PushError(
            f"model_name {model_name!r} is invalid: expected lowercase letters, digits, '.', '_', '-' (no '/')"
        )


def version_prefix(model_name: str, version: int) -> str:
    """The folder of one version: ``<model>/v<N>/``.

    Args:
        model_name: the model's name (one path segment).
        version: the version number N.

    Returns:
        The key prefix, ending in '/'.
    """
    return f"{model_name}/v{version}/"


def production_prefix(model_name: str) -> str:
    """The folder the server loads: ``<model>/production/``.

    Args:
        model_name: the model's name (one path segment).

    Returns:
        The key prefix, ending in '/'.
    """
    return f"{model_name}/{PRODUCTION}/"


def pointer_key(model_name: str) -> str:
    """The production pointer's key: ``<model>/production.json``.

    Args:
        model_name: the model's name (one path segment).

    Returns:
        The key.
    """
    return f"{model_name}/{POINTER_FILE}"


def history_key(model_name: str, seq: int) -> str:
    """One history entry's key: ``<model>/history/<seq, 8 digits>.json`` (sorted by name = by time).

    Args:
        model_name: the model's name (one path segment).
        seq: the move's sequence number.

    Returns:
        The key.
    """
    return f"{model_name}/{HISTORY}/{seq:08d}.json"


def model_key(prefix: str) -> str:
    """The joblib model's key in a version or production folder.

    Args:
        prefix: the folder's prefix (ending in '/').

    Returns:
        The key.
    """
    return prefix + MODEL_FILE


def skops_key(prefix: str) -> str:
    """The skops model's key in a version or production folder.

    Args:
        prefix: the folder's prefix (ending in '/').

    Returns:
        The key.
    """
    return prefix + SKOPS_FILE


def metadata_key(prefix: str) -> str:
    """The metadata.json key in a version or production folder.

    Args:
        prefix: the folder's prefix (ending in '/').

    Returns:
        The key.
    """
    return prefix + METADATA_FILE


def claim_key(prefix: str) -> str:
    """The claim.json key that reserves a version folder for one writer.

    Args:
        prefix: the version folder's prefix (ending in '/').

    Returns:
        The key.
    """
    return prefix + CLAIM_FILE


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, allow_nan=False).encode() + b"\n"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        with contextlib.suppress(ValueError):
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
    return None


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


# ------------------------------------------------------------------------------ conditional writes

def conditional_writes(store: Store, bucket: str) -> bool:
    """Does the store honour If-None-Match: * and If-Match? Probed with a throwaway object, then deleted.

    Args:
        store: the object store.
        bucket: an existing bucket, where the probe object is written and deleted.

    Returns:
        True when both If-None-Match: * and If-Match are honoured, False when either is ignored.
    """
    key, etag = _first_probe_write(store, bucket)
    try:
        try:
            store.put_bytes(bucket, key, b"probe 2\n", content_type="text/plain", if_absent=True)
            return False  # overwritten: If-None-Match ignored
        except ObjectAlreadyExists:
            pass
        stale = "0" * 32 if etag != "0" * 32 else "1" * 32
        try:
            store.put_bytes(bucket, key, b"probe 3\n", content_type="text/plain", if_match=stale)
            return False  # written over a stale ETag: If-Match ignored
        except PreconditionFailed:
            return True
    finally:
        store.remove(bucket, key)


def _first_probe_write(store: Store, bucket: str) -> tuple[str, str]:
    """The probe object at a new key: (key, ETag).

    S3's 500 InternalError asks for another try; rclone answers one when parallel PUTs create the
    same folder (concurrent pushes probing a new bucket). The try is at another new key: at the
    first, a write that took effect would then look like a conflict. What the failed try may have
    left is removed when it can be.
    """
    first = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        return first, store.put_bytes(bucket, first, PROBE_CONTENT, content_type="text/plain", if_absent=True)
    except ObjectStoreError as exc:
        if not is_internal_error(exc.__cause__):
            raise
    with contextlib.suppress(ObjectStoreError):
        store.remove(bucket, first)
    again = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    return again, store.put_bytes(bucket, again, PROBE_CONTENT, content_type="text/plain", if_absent=True)


class Guard:
    """How this registry makes 'create only if absent' and 'replace only if unchanged' hold."""

    mode = "conditional"

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The scope of one registry operation; conditional writes need no set-up.

        Yields:
            Nothing: the body runs inside it.
        """
        yield

    def create(self, store: Store, bucket: str, key: str, data: bytes, content_type: str) -> str:
        """Write an object only if its key is absent (If-None-Match: *).

        Args:
            store: the object store.
            bucket: the bucket.
            key: the object's key.
            data: the content.
            content_type: its MIME type.

        Returns:
            The new ETag; ObjectAlreadyExists when the key exists.
        """
        return store.put_bytes(bucket, key, data, content_type=content_type, if_absent=True)

    def replace(self, store: Store, bucket: str, key: str, data: bytes, content_type: str, etag: str) -> str:
        """Replace an object only if it is still the version read (If-Match).

        Args:
            store: the object store.
            bucket: the bucket.
            key: the object's key.
            data: the new content.
            content_type: its MIME type.
            etag: the ETag it had when read.

        Returns:
            The new ETag; PreconditionFailed when it changed or is gone.
        """
        return store.put_bytes(bucket, key, data, content_type=content_type, if_match=etag)


class LockGuard(Guard):
    """For stores that ignore conditions: every writer holds one file lock; checks run under it.

    fcntl locks are per open file, so one LockGuard is re-entrant within its owner and exclusive
    against every other process (and every other LockGuard) using the same file.
    """

    mode = "lock"

    def __init__(self, path: str, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path, self.timeout_s = path, timeout_s
        self._fd: int | None = None
        self._depth = 0

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Hold the lock file for the body; re-entrant within this guard.

        RegistryError when the lock cannot be opened or taken within timeout_s.

        Yields:
            Nothing: the body runs with the lock held.
        """
        if self._depth == 0:
            self._acquire()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def _acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RegistryError(f"cannot open the registry lock {self.path} ({LOCK_FILE_ENV}): {exc}") from exc
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise RegistryError(f"cannot lock {self.path} ({LOCK_FILE_ENV}): {exc}") from exc
            if time.monotonic() > deadline:
                os.close(fd)
                raise RegistryError(f"another writer has held the registry lock {self.path} for more than "
                                    f"{self.timeout_s:.0f} s ({LOCK_TIMEOUT_ENV}): is a push stuck?")
            time.sleep(0.05)

    def _held(self) -> None:
        if self._fd is None:  # a bug, not a user error: every write path opens a session first
            raise RuntimeError("registry write outside LockGuard.session()")

    def create(self, store: Store, bucket: str, key: str, data: bytes, content_type: str) -> str:
        """Write an object unless it exists, checked under the lock (must be inside session()).

        Args:
            store: the object store.
            bucket: the bucket.
            key: the object's key.
            data: the content.
            content_type: its MIME type.

        Returns:
            The new ETag; ObjectAlreadyExists when the key exists.
        """
        self._held()
        if store.exists(bucket, key):
            raise ObjectAlreadyExists(f"cannot write {store.uri(bucket, key)}: it already exists (checked under "
                                      f"the lock {self.path})")
        return store.put_bytes(bucket, key, data, content_type=content_type)

    def replace(self, store: Store, bucket: str, key: str, data: bytes, content_type: str, etag: str) -> str:
        """Replace an object if its ETag is still ``etag``, checked under the lock (must be inside session()).

        Args:
            store: the object store.
            bucket: the bucket.
            key: the object's key.
            data: the new content.
            content_type: its MIME type.
            etag: the ETag it had when read.

        Returns:
            The new ETag; PreconditionFailed when it changed or is gone.
        """
        self._held()
        current = store.get_versioned(bucket, key)
        if current is None or current[1] != etag:
            raise PreconditionFailed(f"cannot write {store.uri(bucket, key)}: it changed since it was read "
                                     f"(checked under the lock {self.path})")
        return store.put_bytes(bucket, key, data, content_type=content_type)


_PROBED: dict[tuple[str, str], bool] = {}


def guard_for(store: Store, bucket: str, env: dict[str, str] | os._Environ | None = None) -> Guard:
    """Conditional writes when the store honours them, else the lock REGISTRY_LOCK_FILE names, else refuse.

    Args:
        store: the object store.
        bucket: the registry's bucket (probed once per endpoint and bucket in a process).
        env: the environment to read REGISTRY_LOCK_FILE from (default os.environ).

    Returns:
        A Guard (conditional writes) or a LockGuard; RegistryError when the store ignores conditions and no lock
        file is set.
    """
    env = os.environ if env is None else env
    # Probed once per endpoint and bucket in a process; stores without settings (tests) every time.
    url = getattr(getattr(store, "settings", None), "url", None)
    cache_key = (url, store.uri(bucket))
    honoured = _PROBED.get(cache_key) if url else None
    if honoured is None:
        honoured = conditional_writes(store, bucket)
        if url:
            _PROBED[cache_key] = honoured
    if honoured:
        return Guard()
    lock_file = env.get(LOCK_FILE_ENV, "")
    if not lock_file:
        raise RegistryError(
            f"the object store holding {store.uri(bucket)} ignores conditional writes (If-None-Match / If-Match; "
            "rclone does): two concurrent pushes could take the same version or interleave promotions. Use a "
            f"store that honours them (MinIO, AWS S3), or set {LOCK_FILE_ENV} to a lock file that every writer "
            "of this store shares (pipelines.local.s3server sets it for the local store)")
    timeout = float(env.get(LOCK_TIMEOUT_ENV) or LOCK_TIMEOUT_S)
    log.info("%s ignores conditional writes: writers serialise on the lock %s", store.uri(bucket), lock_file)
    return LockGuard(lock_file, timeout)


# ---------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Pointer:
    """production.json: which v<N> is production, and the move that made it so."""

    version: int
    sha256: str
    seq: int
    moved_at: str
    by: str
    reason: str
    action: str = "push"  # push | promote | rollback | adopt
    previous: int | None = None
    etag: str | None = None  # None: not stored (production/ from before production.json existed)

    def record(self) -> dict:
        """The pointer as stored in production.json and history entries (without the etag).

        Returns:
            A JSON-ready dict.
        """
        record = asdict(self)
        record.pop("etag")
        return record

    @classmethod
    def parse(cls, data: bytes, etag: str, where: str) -> "Pointer":
        """Read production.json, refusing a malformed one with what to do about it.

        Args:
            data: the file's bytes.
            etag: its ETag, kept for the compare-and-swap of the next move.
            where: its URI, for messages.

        Returns:
            The Pointer; RegistryError when it is not valid JSON or a field is wrong.
        """
        obj = _loads(data)
        problems = []
        if not isinstance(obj, dict):
            raise RegistryError(f"{where} is not a JSON object: fix it from the history/ entries or remove it")
        version, sha, seq = obj.get("version"), obj.get("sha256"), obj.get("seq")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            problems.append(f"version={version!r} (expected a positive integer)")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            problems.append(f"sha256={sha!r} (expected 64 hex digits)")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            problems.append(f"seq={seq!r} (expected an integer >= 0)")
        if problems:
            raise RegistryError(f"{where} is invalid: {', '.join(problems)}")
        previous = obj.get("previous")
        return cls(version, sha, seq, str(obj.get("moved_at", "")), str(obj.get("by", "")),
                   str(obj.get("reason", "")), str(obj.get("action", "push")),
                   previous if isinstance(previous, int) and not isinstance(previous, bool) else None, etag)


@dataclass(frozen=True)
class VersionInfo:
    number: int
    state: str  # complete | partial | abandoned
    metadata: dict | None
    problem: str = ""  # why it is not complete
    claim: dict | None = None
    claim_etag: str | None = None
    keys: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether the version is complete (model, skops and metadata written and checked).

        Returns:
            True when state is 'complete'.
        """
        return self.state == COMPLETE


# ---------------------------------------------------------------------------------------- registry

class Registry:
    """One model's versions, pointer and history in one bucket. Reads need no guard; writes do."""

    def __init__(self, store: Store, bucket: str, model_name: str, guard: Guard | None = None,
                 stale_claim_s: float | None = None) -> None:
        check_location(bucket, model_name)
        self.store, self.bucket, self.model_name = store, bucket, model_name
        self._guard = guard
        self.stale_claim_s = (float(os.environ.get(STALE_CLAIM_ENV) or STALE_CLAIM_S)
                              if stale_claim_s is None else stale_claim_s)

    @classmethod
    def for_writing(cls, store: Store, bucket: str, model_name: str, guard: Guard | None = None,
                    env: dict[str, str] | None = None) -> "Registry":
        """Creates the bucket when missing and probes the store (or takes the given guard).

        Args:
            store: the object store.
            bucket: the bucket (created when missing).
            model_name: the model's name (one path segment).
            guard: how writes are made safe (default: probed, guard_for).
            env: the environment guard_for reads (default os.environ).

        Returns:
            A Registry that can write; PushError for an invalid bucket or model name.
        """
        check_location(bucket, model_name)
        store.ensure_bucket(bucket)
        return cls(store, bucket, model_name, guard or guard_for(store, bucket, env))

    @property
    def guard(self) -> Guard:
        """The write guard; RuntimeError on a read-only Registry.

        Returns:
            The Guard.
        """
        if self._guard is None:
            raise RuntimeError("read-only Registry: use Registry.for_writing to change it")
        return self._guard

    def uri(self, key: str = "") -> str:
        """Where a key of this registry's bucket lives, for messages.

        Args:
            key: the key ("" for the bucket).

        Returns:
            An s3:// URI.
        """
        return self.store.uri(self.bucket, key)

    @property
    def production_uri(self) -> str:
        """The production/ folder the server loads.

        Returns:
            An s3:// URI ending in '/'.
        """
        return self.uri(production_prefix(self.model_name))

    # ------------------------------------------------------------------ versions

    def numbers(self) -> list[int]:
        """Every v<N> folder that exists (complete or not), sorted: numbers are never reused.

        Returns:
            Version numbers, ascending.
        """
        found = (_VERSION.match(child) for child in self.store.list_children(self.bucket, f"{self.model_name}/"))
        return sorted(int(match.group(1)) for match in found if match)

    def inspect(self, number: int, verify: bool = True) -> VersionInfo | None:
        """A version's state; None when no v<N>/ exists.

        Args:
            number: the version number.
            verify: hash the model against the metadata's sha256 (False: only its size is checked).

        Returns:
            The VersionInfo (complete, partial or abandoned, with the problem), or None.
        """
        prefix = version_prefix(self.model_name, number)
        keys = tuple(self.store.list_keys(self.bucket, prefix))
        if not keys:
            return None
        claim, claim_etag = None, None
        if claim_key(prefix) in keys:
            found = self.store.get_versioned(self.bucket, claim_key(prefix))
            if found is not None:
                claim, claim_etag = _loads(found[0]), found[1]
                claim = claim if isinstance(claim, dict) else {}

        def partial(problem: str, metadata: dict | None = None) -> VersionInfo:
            state = ABANDONED if claim and claim.get("abandoned") else PARTIAL
            return VersionInfo(number, state, metadata, problem, claim, claim_etag, keys)

        if claim and claim.get("abandoned"):
            return partial(f"abandoned: {claim.get('reason', 'no reason recorded')}")
        if metadata_key(prefix) not in keys:
            return partial("no metadata.json")
        try:
            metadata = _loads(self.store.get_bytes(self.bucket, metadata_key(prefix)))
        except ObjectNotFound:
            return partial("no metadata.json")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("sha256"), str):
            return partial("metadata.json is not an object with a sha256")
        if metadata.get("version") != number:
            return partial(f"metadata.json names version {metadata.get('version')!r}", metadata)
        if model_key(prefix) not in keys:
            return partial("no model.joblib", metadata)
        if "skops_file" in metadata and skops_key(prefix) not in keys:
            return partial(f"no {SKOPS_FILE}", metadata)
        if verify:  # else: metadata.json is written last, so its presence already says the model landed
            try:
                model = self.store.get_bytes(self.bucket, model_key(prefix))
            except ObjectNotFound:
                return partial("no model.joblib", metadata)
            if "size_bytes" in metadata and len(model) != metadata["size_bytes"]:
                return partial(f"model.joblib has {len(model)} bytes, metadata.json says {metadata['size_bytes']}",
                               metadata)
            if verify and hashlib.sha256(model).hexdigest() != metadata["sha256"]:
                return partial("model.joblib is not the model metadata.json names (sha256 differs)", metadata)
        return VersionInfo(number, COMPLETE, metadata, "", claim, claim_etag, keys)

    def versions(self, verify: bool = True) -> list[VersionInfo]:
        """Every version folder's state, ascending.

        Args:
            verify: hash each model (False: sizes only, much cheaper).

        Returns:
            VersionInfo per existing v<N>.
        """
        return [info for info in (self.inspect(n, verify) for n in self.numbers()) if info is not None]

    def complete_version(self, number: int) -> VersionInfo:
        """A complete, verified v<N>, or a RegistryError saying what it is instead.

        Args:
            number: the version number.

        Returns:
            Its verified VersionInfo; RegistryError naming the complete versions when it is missing or incomplete.
        """
        info = self.inspect(number, verify=True)
        if info is None:
            known = [v.number for v in self.versions(verify=False) if v.complete]
            raise RegistryError(f"v{number} does not exist in {self.uri(self.model_name + '/')} "
                                f"(complete versions: {', '.join(f'v{n}' for n in known) or 'none'})")
        if not info.complete:
            raise RegistryError(f"{self.uri(version_prefix(self.model_name, number))} is {info.state} "
                                f"({info.problem}): it is never served")
        return info

    # ------------------------------------------------------------------ writing a version

    def write_version(self, model: bytes, metadata_for: Callable[[int], dict], run_id: str,
                      skops: bytes | None = None) -> int:
        """Claim the next free v<N> (If-None-Match: * on claim.json), then write the model and its metadata.

        Args:
            model: the joblib model's bytes.
            metadata_for: builds the metadata for the version number claimed.
            run_id: the pipeline run, recorded in the claim.
            skops: the skops model's bytes (None: not written).

        Returns:
            The version number written; PushError when no version could be claimed or a write failed (production
            untouched).
        """
        tried = 0
        for _ in range(MAX_VERSION_ATTEMPTS):
            number = max([*self.numbers(), tried]) + 1
            prefix = version_prefix(self.model_name, number)
            claim = {"run_id": run_id, "claimed_at": _now(), "pid": os.getpid(), "host": os.uname().nodename}
            try:
                claim_etag = self.guard.create(self.store, self.bucket, claim_key(prefix), _json_bytes(claim),
                                               "application/json")
            except ObjectAlreadyExists:
                log.warning("v%d was taken by a concurrent run (%s); trying v%d", number, self.uri(prefix),
                            number + 1)
                tried = number
                continue
            self._fill(prefix, claim_etag, model, _json_bytes(metadata_for(number)), skops)
            log.info("wrote %s{%s,%s}", self.uri(prefix), MODEL_FILE + (f",{SKOPS_FILE}" if skops else ""),
                     METADATA_FILE)
            return number
        raise PushError(f"gave up after {MAX_VERSION_ATTEMPTS} attempts (the last v{tried}): each version of "
                        f"{self.uri(self.model_name + '/')} tried was taken by a concurrent run")

    def _fill(self, prefix: str, claim_etag: str, model: bytes, metadata: bytes,
              skops: bytes | None = None) -> None:
        key = model_key(prefix)
        try:
            self.guard.create(self.store, self.bucket, key, model, "application/octet-stream")
            if skops is not None:
                key = skops_key(prefix)
                self.guard.create(self.store, self.bucket, key, skops, "application/octet-stream")
            key = metadata_key(prefix)
            self.guard.create(self.store, self.bucket, key, metadata, "application/json")
        except BaseException as exc:
            outcome = self._abandon(prefix, claim_etag, f"the push writing it failed at {key}")
            if not isinstance(exc, Exception):  # Ctrl-C: cleaned up, now stop
                raise
            raise PushError(f"writing {self.uri(key)} failed: {exc}; {outcome}; production was not touched") from exc

    def _abandon(self, prefix: str, claim_etag: str | None, reason: str) -> str:
        """Tombstone v<N>/claim.json (the number is never reused), then delete the rest of v<N>/."""
        tombstone = _json_bytes({"abandoned": True, "reason": reason, "at": _now()})
        try:
            if claim_etag is None:
                self.guard.create(self.store, self.bucket, claim_key(prefix), tombstone, "application/json")
            else:
                self.guard.replace(self.store, self.bucket, claim_key(prefix), tombstone, "application/json",
                                   claim_etag)
        except PreconditionFailed:
            return f"{self.uri(prefix)} was changed by another writer meanwhile: left to it"
        except ObjectStoreError as exc:
            log.error("could not mark %s abandoned: %s", self.uri(prefix), exc)
            return (f"{self.uri(prefix)} could not be marked abandoned ({exc}): it is partial, never served, "
                    "and the next push removes it")
        try:
            for key in (model_key(prefix), skops_key(prefix), metadata_key(prefix)):
                self.store.remove(self.bucket, key)
        except ObjectStoreError as exc:
            log.error("could not delete %s: %s", self.uri(prefix), exc)
            return (f"{self.uri(prefix)} is marked abandoned (never served) but its files could not be deleted "
                    f"({exc}): the next push removes them")
        return f"{self.uri(prefix)} is marked abandoned and emptied (never served)"

    def clean_partials(self) -> list[int]:
        """Tombstone and empty every partial v<N> that no live writer can still be filling; logs each.

        Returns:
            The version numbers cleaned.
        """
        cleaned = []
        for info in self.versions(verify=False):
            if info.state == ABANDONED:
                leftovers = [key for key in info.keys if not key.endswith("/" + CLAIM_FILE)]
                for key in leftovers:
                    self.store.remove(self.bucket, key)
                if leftovers:
                    log.warning("removed what was left of abandoned v%d: %s", info.number, ", ".join(leftovers))
                continue
            if info.state != PARTIAL or not self._stale(info):
                continue
            prefix = version_prefix(self.model_name, info.number)
            outcome = self._abandon(prefix, info.claim_etag if info.claim is not None else None,
                                    f"partial ({info.problem}), found by a later writer")
            log.warning("removed partial v%d (%s): %s", info.number, info.problem, outcome)
            cleaned.append(info.number)
        return cleaned

    def _stale(self, info: VersionInfo) -> bool:
        if self.guard.mode == "lock":
            return True  # every writer holds the lock for its whole write: nobody is filling it now
        claimed = _parse_time((info.claim or {}).get("claimed_at"))
        if claimed is None:
            return True  # no claim: not written by a live push of this code
        age = (dt.datetime.now(dt.timezone.utc) - claimed).total_seconds()
        if age < self.stale_claim_s:
            log.info("v%d is partial (%s) but claimed %.0f s ago by run %s: left to it", info.number, info.problem,
                     age, info.claim.get("run_id"))
            return False
        return True

    # ------------------------------------------------------------------ pointer and history

    def current(self) -> Pointer | None:
        """The production pointer (production.json); a legacy production/ is adopted; None: no production.

        Returns:
            The Pointer, or None when there is no production model; RegistryError for a malformed pointer.
        """
        where = self.uri(pointer_key(self.model_name))
        found = self.store.get_versioned(self.bucket, pointer_key(self.model_name))
        if found is not None:
            return Pointer.parse(found[0], found[1], where)
        return self._legacy()

    def _legacy(self) -> Pointer | None:
        """production/ written before production.json existed: its version, if it is that version's copy."""
        try:
            metadata = _loads(self.store.get_bytes(self.bucket, metadata_key(production_prefix(self.model_name))))
        except ObjectNotFound:
            return None
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            return None
        info = self.inspect(version, verify=False)
        if info is None or not info.complete or info.metadata.get("sha256") != metadata.get("sha256"):
            return None
        return Pointer(version, metadata["sha256"], 0, str(metadata.get("created_at", "")), "legacy production/",
                       "production/ from before production.json", "adopt")

    def production_metadata(self) -> dict | None:
        """The metadata of the version the pointer names (not production/'s copy, which may lag).

        Returns:
            The metadata dict, or None without production; RegistryError when the pointer names a missing, incomplete or
            other-hash version.
        """
        pointer = self.current()
        if pointer is None:
            return None
        try:
            metadata = _loads(self.store.get_bytes(self.bucket,
                                                   metadata_key(version_prefix(self.model_name, pointer.version))))
        except ObjectNotFound as exc:
            raise RegistryError(f"{self.uri(pointer_key(self.model_name))} names v{pointer.version}, which has no "
                                "metadata.json: promote a complete version (make promote VERSION=N)") from exc
        if not isinstance(metadata, dict):
            raise RegistryError(f"{self.uri(pointer_key(self.model_name))} names v{pointer.version}, whose "
                                "metadata.json is not a JSON object: promote a complete version "
                                "(make promote VERSION=N)")
        if metadata.get("sha256") != pointer.sha256:
            raise RegistryError(f"{self.uri(pointer_key(self.model_name))} names v{pointer.version} with sha256 "
                                f"{pointer.sha256[:12]}, but its metadata.json says {str(metadata.get('sha256'))[:12]}")
        return metadata

    def history(self) -> list[dict]:
        """Every history entry, oldest first.

        Returns:
            The entries' dicts (pointer records).
        """
        prefix = f"{self.model_name}/{HISTORY}/"
        entries = []
        for child in self.store.list_children(self.bucket, prefix):
            if _HISTORY_ENTRY.match(child):
                entry = _loads(self.store.get_bytes(self.bucket, prefix + child))
                if isinstance(entry, dict):
                    entries.append(entry)
        return sorted(entries, key=lambda e: e.get("seq", 0))

    def _write_history(self, pointer: Pointer) -> None:
        """history/<seq>.json for a move, written once (If-None-Match: *): an existing entry is never rewritten."""
        if pointer.seq < 1:
            return
        key = history_key(self.model_name, pointer.seq)
        try:
            self.guard.create(self.store, self.bucket, key, _json_bytes(pointer.record()), "application/json")
        except ObjectAlreadyExists:
            pass  # written by an earlier attempt or a repair: history is never rewritten

    def move(self, version: int, *, action: str, by: str, reason: str, expected: Pointer | None) -> Pointer:
        """Compare-and-swap the pointer from `expected` to v<version>; ProductionMoved when it changed meanwhile.

        Args:
            version: the version to point at (must be complete).
            action: push, promote, rollback or adopt, recorded.
            by: who moved it, recorded.
            reason: why, recorded.
            expected: the pointer read before (None: there must be none yet).

        Returns:
            The new Pointer (its history entry written); ProductionMoved when the pointer changed since read.
        """
        info = self.complete_version(version)
        if expected is not None and expected.etag is not None:
            # The entry for the move that made `expected` may be missing (store died after the swap): repair it.
            self._write_history(expected)
        new = Pointer(version, info.metadata["sha256"], (expected.seq if expected else 0) + 1, _now(), by, reason,
                      action, expected.version if expected else None)
        data, key = _json_bytes(new.record()), pointer_key(self.model_name)
        try:
            if expected is None or expected.etag is None:
                etag = self.guard.create(self.store, self.bucket, key, data, "application/json")
            else:
                etag = self.guard.replace(self.store, self.bucket, key, data, "application/json", expected.etag)
        except PreconditionFailed as exc:
            raise ProductionMoved(f"{self.uri(key)} changed since it was read (another promotion won): "
                                  f"not moved to v{version}") from exc
        new = Pointer(**{**new.record(), "etag": etag})
        try:
            self._write_history(new)
        except ObjectStoreError as exc:  # the move happened; the next move writes the entry from the pointer
            log.error("production moved to v%d but %s could not be written (%s): the next move writes it",
                      version, self.uri(history_key(self.model_name, new.seq)), exc)
        log.info("production.json: v%s -> v%d (seq %d, %s by %s)", expected.version if expected else "-", version,
                 new.seq, action, by)
        return new

    # ------------------------------------------------------------------ production/ (derived)

    def production_state(self, pointer: Pointer | None = None) -> tuple[bool, str]:
        """(consistent, description) of production/ against the pointer.

        Args:
            pointer: the pointer to compare with (default: read it).

        Returns:
            (True, description) when production/ holds the pointer's version, else (False, what differs).
        """
        pointer = pointer if pointer is not None else self.current()
        target = production_prefix(self.model_name)
        if pointer is None:
            left = self.store.list_keys(self.bucket, target)
            return (not left, "no production model" if not left else
                    f"no production.json, but {self.uri(target)} holds {len(left)} object(s) of no known version")
        try:
            copied = self.store.get_bytes(self.bucket, metadata_key(target))
            original = self.store.get_bytes(self.bucket, metadata_key(version_prefix(self.model_name,
                                                                                     pointer.version)))
            model = self.store.get_bytes(self.bucket, model_key(target))
        except ObjectNotFound:
            return False, f"{self.uri(target)} is missing files of v{pointer.version}"
        if copied != original or hashlib.sha256(model).hexdigest() != pointer.sha256:
            return False, f"{self.uri(target)} does not hold v{pointer.version} (production.json)"
        return True, f"{self.uri(target)} holds v{pointer.version}"

    def sync_production(self, after_move: bool = False) -> bool:
        """Make production/ the pointer's v<N>/ (model first, metadata last); True when something was copied.

        after_move: the caller just moved the pointer, so a stale production/ is expected (else it is a
        repair, logged as one). Re-checks after copying: a concurrent sync of an older pointer may have
        landed in between.

        Args:
            after_move: the caller just moved the pointer, so a stale production/ is expected (else it is a repair,
                logged as one).

        Returns:
            True when something was copied; RegistryError when production keeps moving.
        """
        copied = False
        for _ in range(MAX_SYNC_ROUNDS):
            pointer = self.current()
            consistent, state = self.production_state(pointer)
            if consistent or pointer is None:
                if copied:
                    log.info("%s", state)
                return copied
            if after_move and not copied:
                log.info("copying v%d into %s", pointer.version, self.production_uri)
            else:
                log.warning("%s: repairing it (copying v%d into it)", state, pointer.version)
            source, target = version_prefix(self.model_name, pointer.version), production_prefix(self.model_name)
            self.store.copy(self.bucket, model_key(source), model_key(target))
            if self.store.exists(self.bucket, skops_key(source)):  # versions pushed before skops have none
                self.store.copy(self.bucket, skops_key(source), skops_key(target))
            else:
                self.store.remove(self.bucket, skops_key(target))  # never a newer model's beside an older pickle
            self.store.copy(self.bucket, metadata_key(source), metadata_key(target))
            copied = True
        consistent, state = self.production_state()
        if not consistent:
            raise RegistryError(f"{state} after {MAX_SYNC_ROUNDS} copies: production keeps moving; run again")
        return copied

    # ------------------------------------------------------------------ operations

    def promote(self, version: int, by: str, reason: str, allow_schema_change: bool = False,
                action: str = "promote") -> Pointer:
        """Point production at a complete v<N> of the same task and input schema; production/ follows.

        Args:
            version: the complete version to serve.
            by: who, recorded in the history.
            reason: why, recorded.
            allow_schema_change: accept another input schema than production's (clients must change too).
            action: recorded as the move's action (promote or rollback).

        Returns:
            The new Pointer; RegistryError for another task or schema, or when production keeps moving.
        """
        with self.guard.session():
            for _ in range(MAX_MOVE_ATTEMPTS):
                current = self.current()
                candidate = self.complete_version(version)
                if current is not None and current.version == version and current.etag is not None:
                    log.info("v%d is already production", version)
                    self.sync_production()
                    return current
                if current is not None:
                    self._check_compatible(current, candidate, allow_schema_change)
                try:
                    moved = self.move(version, action=action, by=by, reason=reason, expected=current)
                except ProductionMoved as exc:
                    log.warning("%s; reading it again", exc)
                    continue
                self.sync_production(after_move=True)
                return moved
        raise RegistryError(f"production kept moving: gave up promoting v{version} after {MAX_MOVE_ATTEMPTS} tries")

    def _check_compatible(self, current: Pointer, candidate: VersionInfo, allow_schema_change: bool) -> None:
        production = self.inspect(current.version, verify=False)
        if production is None or production.metadata is None:
            return  # nothing to compare with: production names a version that is gone
        ours, theirs = candidate.metadata, production.metadata
        if ours.get("task") != theirs.get("task"):
            raise RegistryError(f"v{candidate.number} is a {ours.get('task')} model; production v{current.version} "
                                f"is {theirs.get('task')}: refusing to mix tasks under one model_name")
        difference = schema_difference(theirs.get("schema"), ours.get("schema"))
        if difference and not allow_schema_change:
            raise RegistryError(f"v{candidate.number} takes another input schema than production v{current.version} "
                                f"({difference}): clients would get 400s; pass --allow-schema-change to do it anyway")

    def rollback_target(self) -> int:
        """The version production held before the current one, undoing earlier rollbacks (a stack of moves).

        Returns:
            The version number; RegistryError when there is no production or no earlier one.
        """
        stack: list[int] = []
        for entry in self.history():
            if entry.get("action") == "rollback" and stack:
                stack.pop()
                if not stack or stack[-1] != entry.get("version"):
                    stack.append(entry["version"])  # history from before it was a stack: follow the record
            else:
                stack.append(entry.get("version"))
        current = self.current()
        if current is None:
            raise RegistryError(f"{self.model_name} has no production model: nothing to roll back")
        if stack and stack[-1] != current.version:
            stack.append(current.version)  # entries lost or from a legacy adoption: the pointer wins
        if len(stack) < 2:
            raise RegistryError(f"production v{current.version} has no earlier production in "
                                f"{self.uri(self.model_name + '/' + HISTORY + '/')}: nothing to roll back to")
        return stack[-2]

    def rollback(self, by: str, reason: str, allow_schema_change: bool = False) -> Pointer:
        """Point production back at the version it held before the current one (see rollback_target).

        Args:
            by: who, recorded in the history.
            reason: why, recorded.
            allow_schema_change: accept another input schema than production's.

        Returns:
            The new Pointer; RegistryError when there is nothing to roll back to.
        """
        with self.guard.session():
            target = self.rollback_target()
            return self.promote(target, by, reason, allow_schema_change, action="rollback")


def production_metadata(store: Store | None, bucket: str, model_name: str) -> dict | None:
    """The production version's metadata through the pointer; None without a store or a production model.

    Args:
        store: the object store, or None.
        bucket: the bucket.
        model_name: the model's name (one path segment).

    Returns:
        The metadata dict, or None.
    """
    if store is None:
        return None
    return Registry(store, bucket, model_name).production_metadata()


def versions(store: Store, bucket: str, model_name: str) -> list[int]:
    """The complete versions, sorted (partial ones are never counted).

    Args:
        store: the object store.
        bucket: the bucket.
        model_name: the model's name (one path segment).

    Returns:
        The complete version numbers, ascending.
    """
    return [info.number for info in Registry(store, bucket, model_name).versions(verify=False) if info.complete]
