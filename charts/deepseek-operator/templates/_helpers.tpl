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

{{/*
The operator's settings (values `settings`) as environment variables
DEEPSEEK_OPERATOR_<SNAKE_CASE_KEY>, sorted by key; unset ("" or null) values are left out so
the operator keeps its default. Whole numbers print as integers (Helm reads numbers as
floats, whose default formatting turns 1000000 into 1e+06).
*/}}
{{- define "deepseek-operator.settingsEnv" -}}
{{- range $key := keys . | sortAlpha }}
{{- $value := index $ $key }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
{{- $value = int64 $value }}
{{- end }}
- name: DEEPSEEK_OPERATOR_{{ $key | snakecase | upper }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
