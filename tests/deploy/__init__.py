"""Offline checks of the Kubernetes delivery: kustomize manifests, Helm chart, Dockerfiles."""
