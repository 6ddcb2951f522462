{{/* Names, labels and the checks every template relies on. */}}

{{- define "connector.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "connector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "connector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Secret the chart makes for development values. */}}
{{- define "connector.secretName" -}}
{{- printf "%s-secrets" (include "connector.fullname" .) -}}
{{- end -}}

{{- define "connector.apiKeySecret" -}}
{{- if .Values.apiKey.existingSecret -}}
{{- .Values.apiKey.existingSecret -}}
{{- else if .Values.apiKey.value -}}
{{- if lt (len .Values.apiKey.value) 16 -}}
{{- fail "apiKey.value: the connector refuses an API key shorter than 16 characters" -}}
{{- end -}}
{{- include "connector.secretName" . -}}
{{- else -}}
{{- fail "apiKey: set apiKey.existingSecret (a Secret with key api-key) or, for development, apiKey.value" -}}
{{- end -}}
{{- end -}}

{{- define "connector.privateKeySecret" -}}
{{- if .Values.privateKey.existingSecret -}}
{{- .Values.privateKey.existingSecret -}}
{{- else if .Values.privateKey.pem -}}
{{- include "connector.secretName" . -}}
{{- else -}}
{{- fail "privateKey: set privateKey.existingSecret (a Secret with key private.pem) or, for development, privateKey.pem" -}}
{{- end -}}
{{- end -}}

{{- define "connector.postgresSecret" -}}
{{- if .Values.postgresql.existingSecret -}}
{{- .Values.postgresql.existingSecret -}}
{{- else if .Values.postgresql.url -}}
{{- include "connector.secretName" . -}}
{{- end -}}
{{- end -}}

{{/* Scaling out needs a shared store (PostgreSQL) and, for received data, a shared volume. */}}
{{- define "connector.checkScale" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if not (include "connector.postgresSecret" .) -}}
{{- fail "replicaCount > 1 needs the PostgreSQL store: set postgresql.existingSecret (or, for development, postgresql.url); SQLite is one file on one volume" -}}
{{- end -}}
{{- if and .Values.persistence.enabled (not (has "ReadWriteMany" .Values.persistence.accessModes)) -}}
{{- fail "replicaCount > 1 shares /var/lib/connector (received data) between the pods: set persistence.accessModes to [ReadWriteMany]" -}}
{{- end -}}
{{- end -}}
{{- end -}}
