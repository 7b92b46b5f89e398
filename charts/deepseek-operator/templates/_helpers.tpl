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
{{- define "deepseek-operator.gatewayLabels" -}}
app.kubernetes.io/name: deepseek-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: deepseek-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Values.managedBy | default .Release.Service }}
{{- end }}
{{- define "deepseek-operator.gatewaySelector" -}}
app.kubernetes.io/name: deepseek-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- /* A matchLabels map as run's K=V,... selector flag value (keys sorted). */ -}}
{{- define "deepseek-operator.selectorFlag" -}}
{{- $pairs := list -}}
{{- range $key, $value := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end }}
