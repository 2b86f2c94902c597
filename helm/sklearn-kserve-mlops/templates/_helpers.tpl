{{/* Labels on every object. */}}
{{- define "skm.labels" -}}
app.kubernetes.io/part-of: sklearn-kserve-mlops
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The namespace every object goes to: namespace.name, else the release namespace. */}}
{{- define "skm.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name -}}
{{- end }}

{{/* The server's ports (serving/__main__.py flags); the runtime declares the one routed. */}}
{{- define "skm.httpPort" -}}8080{{- end }}
{{- define "skm.grpcPort" -}}8081{{- end }}

{{/* The Secret the predictor's ServiceAccount lists. */}}
{{- define "skm.s3SecretName" -}}
{{- default .Values.objectStore.secretName .Values.objectStore.existingSecret -}}
{{- end }}

{{/* S3 endpoint (host:port) the model is downloaded from: the chart's MinIO when enabled. */}}
{{- define "skm.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "%s:9000" .Values.minio.name -}}
{{- else -}}
{{- .Values.objectStore.endpoint -}}
{{- end -}}
{{- end }}

{{/*
The "restricted" Pod Security Standard with a read-only root filesystem, per container (Knative
rejects a pod-level securityContext unless kubernetes.podspec-securitycontext is enabled).
Argument: the UID.
*/}}
{{- define "skm.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Rules across values that a JSON schema cannot say clearly; KServe's webhook would reject these
only at apply time, so fail at render time with the field, the value and what is expected.
*/}}
{{- define "skm.validate" -}}
{{- $a := .Values.autoscaling -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- include "skm.refuse" (printf "autoscaling.minReplicas=%v is greater than autoscaling.maxReplicas=%v; expected minReplicas <= maxReplicas" $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if and (eq .Values.mode "raw") (eq (int $a.minReplicas) 0) -}}
{{- include "skm.refuse" "autoscaling.minReplicas=0 with mode=raw; expected minReplicas >= 1 (scale to zero needs mode=serverless)" -}}
{{- end -}}
{{- if and (eq .Values.mode "raw") (not (kindIs "invalid" .Values.canaryTrafficPercent)) -}}
{{- include "skm.refuse" (printf "canaryTrafficPercent=%v with mode=raw; expected null (traffic splitting needs mode=serverless)" .Values.canaryTrafficPercent) -}}
{{- end -}}
{{- if and (eq .Values.protocol "grpc") (eq .Values.runtime.kind "stock") -}}
{{- include "skm.refuse" "protocol=grpc with runtime.kind=stock; expected runtime.kind=project (KServe's kserve-sklearnserver runtime declares no grpc-v2 protocol) or protocol=rest" -}}
{{- end -}}
{{- if and (not .Values.objectStore.existingSecret) (or (not .Values.objectStore.accessKey) (not .Values.objectStore.secretKey)) -}}
{{- include "skm.refuse" "objectStore.accessKey/secretKey are empty and objectStore.existingSecret is not set; expected credentials or the name of an existing Secret" -}}
{{- end -}}
{{- if .Values.namespace.create -}}
{{- if not .Values.namespace.name -}}
{{- include "skm.refuse" "namespace.create=true with namespace.name empty; expected the name of a namespace to create (the release itself stays in the -n namespace)" -}}
{{- end -}}
{{- if eq .Values.namespace.name .Release.Namespace -}}
{{- include "skm.refuse" (printf "namespace.create=true with namespace.name=%s, the release namespace; expected another release namespace (helm install -n default ...): Helm stores the release there before it creates the Namespace. Or keep namespace.create=false and label the namespace with kubectl (values.yaml, namespace)" .Values.namespace.name) -}}
{{- end -}}
{{- end -}}
{{- $m := .Values.minio -}}
{{- if and $m.enabled (not .Values.objectStore.existingSecret) (eq $m.writer.accessKey .Values.objectStore.accessKey) -}}
{{- include "skm.refuse" (printf "minio.writer.accessKey=%s equals objectStore.accessKey; expected two different MinIO users (the model server must only read)" $m.writer.accessKey) -}}
{{- end -}}
{{- $placeholders := include "skm.placeholderFields" . -}}
{{- if and $placeholders (not .Values.allowPlaceholderCredentials) -}}
{{- include "skm.refuse" (printf "CHANGE-ME placeholder credentials in %s; expected real credentials (--set FIELD=..., or objectStore.existingSecret for the model server's keys), or allowPlaceholderCredentials=true for a throwaway test install" $placeholders) -}}
{{- end -}}
{{- end }}

{{/*
Stop the render with msg. `fail` stops helm template/install/upgrade, but helm lint's engine
only logs it as [INFO] and renders on, so lint would pass values that install refuses: there,
including a template that does not exist is the error, and its name carries msg.
*/}}
{{- define "skm.refuse" -}}
{{- fail . -}}
{{- include (printf "values refused by the chart: %s" .) dict -}}
{{- end }}

{{/*
The credential values this render uses that still hold a CHANGE-ME placeholder, as
"field, field" (empty: none). skm.validate refuses them unless allowPlaceholderCredentials.
*/}}
{{- define "skm.placeholderFields" -}}
{{- $used := dict -}}
{{- if not .Values.objectStore.existingSecret -}}
{{- $_ := set $used "objectStore.accessKey" .Values.objectStore.accessKey -}}
{{- $_ := set $used "objectStore.secretKey" .Values.objectStore.secretKey -}}
{{- end -}}
{{- $m := .Values.minio -}}
{{- if $m.enabled -}}
{{- $_ := set $used "minio.rootUser" $m.rootUser -}}
{{- $_ := set $used "minio.rootPassword" $m.rootPassword -}}
{{- $_ := set $used "minio.writer.accessKey" $m.writer.accessKey -}}
{{- $_ := set $used "minio.writer.secretKey" $m.writer.secretKey -}}
{{- end -}}
{{- $found := list -}}
{{- range $field := keys $used | sortAlpha -}}
{{- if hasPrefix "CHANGE-ME" (toString (get $used $field)) -}}
{{- $found = append $found $field -}}
{{- end -}}
{{- end -}}
{{- join ", " $found -}}
{{- end }}
