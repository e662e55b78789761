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

{{/* Access control (README "Access control"): the tokens' Secret, mounted as files that
VIGIL_API_TOKEN_FILE / VIGIL_PREDICT_TOKEN_FILE point at, so the tokens never sit in the
environment and a rotated Secret reaches the pods' files (the processes read them at start). */}}
{{- define "vigil.authEnv" -}}
{{- if .Values.auth.existingSecret }}
- name: VIGIL_API_TOKEN_FILE
  value: /etc/vigil/auth/{{ .Values.auth.apiTokenKey }}
{{- if .Values.auth.predictTokenKey }}
- name: VIGIL_PREDICT_TOKEN_FILE
  value: /etc/vigil/auth/{{ .Values.auth.predictTokenKey }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vigil.authMount" -}}
{{- if .Values.auth.existingSecret }}
- {name: auth, mountPath: /etc/vigil/auth, readOnly: true}
{{- end }}
{{- end }}

{{- define "vigil.authVolume" -}}
{{- if .Values.auth.existingSecret }}
- name: auth
  secret:
    secretName: {{ .Values.auth.existingSecret }}
{{- end }}
{{- end }}

{{/* The shared (ReadWriteMany) prediction log volume of the service and the monitor. */}}
{{- define "vigil.predictionLogMount" -}}
{{- if .Values.predictionLog.enabled }}
- {name: prediction-log, mountPath: {{ .Values.predictionLog.mountPath }}}
{{- end }}
{{- end }}

{{- define "vigil.predictionLogVolume" -}}
{{- if .Values.predictionLog.enabled }}
- name: prediction-log
  persistentVolumeClaim:
    claimName: {{ .Values.predictionLog.existingClaim | default (printf "%s-prediction-log" (include "vigil.fullname" .)) }}
{{- end }}
{{- end }}

{{/* Environment shared by the service and the monitor: settings and credentials. */}}
{{- define "vigil.envFrom" -}}
- configMapRef:
    name: {{ include "vigil.fullname" . }}-config
- secretRef:
    name: {{ include "vigil.secretName" . }}
    optional: true
{{- end }}
