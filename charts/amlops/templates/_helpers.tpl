{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "amlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name when the release name does not contain it.
*/}}
{{- define "amlops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "amlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (never add version labels here). */}}
{{- define "amlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amlops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "amlops.labels" -}}
helm.sh/chart: {{ include "amlops.chart" . }}
{{ include "amlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: amlops
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "amlops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "amlops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Container image reference. */}}
{{- define "amlops.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: by value, or forced by replicas > 1. */}}
{{- define "amlops.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/* Lease name. */}}
{{- define "amlops.leaseName" -}}
{{- default (printf "%s-leader" (include "amlops.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Rules the controller needs in the namespaces it watches (amlops.dev kinds, Secrets, Events).
Keep in sync with deploy/rbac-requirements.yaml (tests/chart checks both).
*/}}
{{- define "amlops.watchedRules" -}}
- apiGroups: ["amlops.dev"]
  resources: ["inferenceclusters", "clusterattachments", "kubernetescomputes", "azuremlextensions"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["amlops.dev"]
  resources: ["inferenceclusters/status", "clusterattachments/status", "kubernetescomputes/status", "azuremlextensions/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Sanity checks of value combinations the schema cannot express clearly. */}}
{{- define "amlops.validate" -}}
{{- if and .Values.azure.workloadIdentity.enabled (not .Values.azure.workloadIdentity.clientId) }}
{{- fail "azure.workloadIdentity.enabled needs azure.workloadIdentity.clientId (the client id of the identity with the federated credential)" }}
{{- end }}
{{- if and .Values.azure.workloadIdentity.enabled (ne .Values.azure.credential "workload-identity") }}
{{- fail (printf "azure.workloadIdentity.enabled is set but azure.credential is %q: use credential workload-identity" .Values.azure.credential) }}
{{- end }}
{{- if and (eq .Values.azure.credential "client-secret") (not .Values.azure.clientSecret.existingSecret) }}
{{- fail "azure.credential client-secret needs azure.clientSecret.existingSecret (an existing Secret; the chart never takes a secret value)" }}
{{- end }}
{{- if and (eq .Values.azure.credential "client-secret") (not .Values.azure.clientSecret.tenantIdKey) (not .Values.azure.tenantId) }}
{{- fail "azure.credential client-secret needs azure.tenantId or azure.clientSecret.tenantIdKey" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled" }}
{{- end }}
{{- end }}
