{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "vigil.selector" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vigil.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "vigil.fullname" .)) }}
{{- end }}

{{/* Environment shared by the service and the monitor: settings and credentials. */}}
{{- define "vigil.envFrom" -}}
- configMapRef:
    name: {{ include "vigil.fullname" . }}-config
- secretRef:
    name: {{ include "vigil.secretName" . }}
    optional: true
{{- end }}
