{{- define "deepseek-operator.labels" -}}
app.kubernetes.io/name: deepseek-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Values.managedBy | default .Release.Service }}
{{- end }}
{{- define "deepseek-operator.selector" -}}
app.kubernetes.io/name: deepseek-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
