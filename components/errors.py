"""Domain errors of the training pipeline.

Every message names what was wrong (field, column, row, value, endpoint) and what
was expected, so that a failed KFP task ends with one line the user can act on.
"""

from __future__ import annotations

# The base and the object-store errors live in the contract (the server raises and catches them too);
# re-exported so every step finds all of the project's errors here.
from contract.errors import ObjectStoreConfigError, ObjectStoreError, PipelineError, SettingError


class DataError(PipelineError):
    """The source could not be read, or its data failed validation (ingest)."""


class TrainError(PipelineError):
    """Unknown estimator, bad hyperparameters, or a fit that failed (train)."""


class DeployError(PipelineError):
    """The rollout to the InferenceService failed (deploy); the message says what the cluster holds now."""


class DeployConfigError(DeployError):
    """Bad rollout input (name, namespace, storageUri, canary percent, timeout) or no cluster credentials."""


class DeployNotFound(DeployError):
    """The InferenceService (or KServe's API group) does not exist (HTTP 404)."""


class DeployForbidden(DeployError):
    """The ServiceAccount may not get or patch the InferenceService (HTTP 401/403): RBAC is missing."""


class DeployConflict(DeployError):
    """Something else kept changing the InferenceService while this rollout tried to patch it (HTTP 409)."""


class RolloutFailed(DeployError):
    """The InferenceService did not become Ready with the new model in time; it was rolled back (or why not)."""


class EvaluateError(PipelineError):
    """The model could not be scored or the gate could not decide (evaluate)."""


class PushError(PipelineError):
    """The model could not be published to the object store (push)."""


class VersionTaken(PushError):
    """Another run wrote the v<N> this push was about to write; the next number is tried."""


class ObjectStoreUnreachable(ObjectStoreError):
    """Nothing answers at the endpoint, or TLS does not match."""


class ObjectStoreAccessDenied(ObjectStoreError):
    """The endpoint refused the keys, or the keys may not do what was asked."""


class PreconditionFailed(ObjectStoreError):
    """A conditional write (If-None-Match: *, If-Match: <etag>) found the object not as expected (HTTP 412)."""


class ObjectAlreadyExists(PreconditionFailed):
    """A write conditional on the object being absent (If-None-Match: *) found it present (HTTP 412)."""


class ObjectNotFound(ObjectStoreError):
    """The bucket or the object does not exist."""


class RegistryError(PushError):
    """A registry operation (promote, rollback, list) was refused or the registry is unusable."""


class ProductionMoved(RegistryError):
    """production.json changed between reading it and the compare-and-swap that would have moved it."""


class DriftError(PipelineError):
    """Drift could not be measured: bad thresholds, rows that do not match the profile, unreadable traffic."""


__all__ = [
    "DataError",
    "DeployConfigError",
    "DeployConflict",
    "DeployError",
    "DeployForbidden",
    "DeployNotFound",
    "DriftError",
    "EvaluateError",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "ObjectStoreAccessDenied",
    "ObjectStoreConfigError",
    "ObjectStoreError",
    "ObjectStoreUnreachable",
    "PipelineError",
    "PreconditionFailed",
    "ProductionMoved",
    "PushError",
    "RegistryError",
    "RolloutFailed",
    "SettingError",
    "TrainError",
    "VersionTaken",
]
