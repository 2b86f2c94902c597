{{/* Labels on every object. */}}
{{- define "skm.labels" -}}
app.kubernetes.io/part-of: sklearn-kserve-mlops
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

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
{{- fail (printf "autoscaling.minReplicas=%v is greater than autoscaling.maxReplicas=%v; expected minReplicas <= maxReplicas" $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if and (eq .Values.mode "raw") (eq (int $a.minReplicas) 0) -}}
{{- fail "autoscaling.minReplicas=0 with mode=raw; expected minReplicas >= 1 (scale to zero needs mode=serverless)" -}}
{{- end -}}
{{- if and (eq .Values.mode "raw") (not (kindIs "invalid" .Values.canaryTrafficPercent)) -}}
{{- fail (printf "canaryTrafficPercent=%v with mode=raw; expected null (traffic splitting needs mode=serverless)" .Values.canaryTrafficPercent) -}}
{{- end -}}
{{- if and (not .Values.objectStore.existingSecret) (or (not .Values.objectStore.accessKey) (not .Values.objectStore.secretKey)) -}}
{{- fail "objectStore.accessKey/secretKey are empty and objectStore.existingSecret is not set; expected credentials or the name of an existing Secret" -}}
{{- end -}}
{{- end }}
