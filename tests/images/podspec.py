"""`docker run` arguments that reproduce a rendered pod's security context, volumes and limits.

Read from the rendered manifests (tests/deploy/render.py), so the image is tested under what the
cluster will enforce, not under a copy of it. Anything the mapping does not know fails loudly.
"""

from __future__ import annotations

import re

# Kubernetes' default when a pod spec sets none.
DEFAULT_GRACE_S = 30
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi)?$")
_DOCKER_UNITS = {None: "b", "Ki": "k", "Mi": "m", "Gi": "g"}


def _bytes(quantity: str) -> str:
    match = _QUANTITY.match(str(quantity))
    assert match, f"memory quantity {quantity!r}: expected an integer with Ki/Mi/Gi"
    return f"{match.group(1)}{_DOCKER_UNITS[match.group(2)]}"


def security_args(pod: dict, container: dict) -> list[str]:
    """--user, --read-only, capabilities, no-new-privileges and seccomp, as the kubelet would apply them."""
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert "runAsUser" in context, "no runAsUser: the image's USER would decide, which the pod spec must not leave open"
    args = ["--user", f"{context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}"]
    if context.get("runAsNonRoot"):
        assert context["runAsUser"] != 0, "runAsNonRoot with runAsUser 0"
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    capabilities = context.get("capabilities", {})
    args += [arg for cap in capabilities.get("drop", []) for arg in ("--cap-drop", cap)]
    args += [arg for cap in capabilities.get("add", []) for arg in ("--cap-add", cap)]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    seccomp = context.get("seccompProfile", {}).get("type", "RuntimeDefault")
    # Docker's default profile is the runtime default; anything else needs a profile file.
    assert seccomp == "RuntimeDefault", f"seccompProfile {seccomp!r}: only RuntimeDefault is mapped"
    return args


def volume_args(pod: dict, container: dict) -> list[str]:
    """Each mounted emptyDir becomes a tmpfs of its sizeLimit (writable, as emptyDir is)."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    args = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume, f"volume {mount['name']}: only emptyDir is mapped, got {sorted(volume)}"
        size = volume["emptyDir"].get("sizeLimit")
        args += ["--tmpfs", mount["mountPath"] + (f":size={_bytes(size)}" if size else "")]
    return args


def limit_args(container: dict) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    args = []
    if "memory" in limits:
        args += ["--memory", _bytes(limits["memory"])]
    if "cpu" in limits:
        cpu = str(limits["cpu"])
        args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
    return args


def run_args(pod: dict) -> list[str]:
    """Everything `docker run` needs to match the pod's first container, except image, ports and name."""
    container = pod["containers"][0]
    return [*security_args(pod, container), *volume_args(pod, container), *limit_args(container)]


def grace_seconds(pod: dict) -> int:
    return int(pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))


def container_args(pod: dict, model_name: str) -> list[str]:
    """The runtime's args with KServe's {{.Name}} filled in."""
    return [arg.replace("{{.Name}}", model_name) for arg in pod["containers"][0].get("args", [])]


def flag(args: list[str], name: str) -> str | None:
    """The value of --name=value in args."""
    prefix = f"--{name}="
    return next((arg[len(prefix):] for arg in args if arg.startswith(prefix)), None)
