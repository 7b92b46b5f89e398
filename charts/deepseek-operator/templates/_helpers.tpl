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

{{/*
Names. Every object is named after the release (Helm keeps release names unique per
namespace), so two releases never collide; cluster-scoped objects (ClusterRoles and their
bindings) carry the release name too, so one release name per cluster.
*/}}
{{- define "deepseek-operator.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end }}
{{- define "deepseek-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "deepseek-operator.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.create=false needs serviceAccount.name (an existing ServiceAccount)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/*
The operator's RBAC rules, in two parts: what it does in the namespaces it watches, and
the cluster-scoped reads (kopf's discovery of CRDs and namespaces, StorageClasses). With
watchNamespaces the first part is a Role in each watched namespace; otherwise one
ClusterRole holds both. It holds every permission it grants in the Roles it renders
(deepseekdeployments delete, deepseekdeployments/query), because Kubernetes lets a subject
grant only what it has: no `escalate` or `bind` needed.
*/}}
{{- define "deepseek-operator.namespacedRules" -}}
- apiGroups: [deepseek-operator.io]
  resources: [deepseekdeployments]
  verbs: [get, list, watch, patch, update, delete]
- apiGroups: [deepseek-operator.io]
  resources: [deepseekdeployments/status, deepseekdeployments/scale]
  verbs: [get, patch, update]
# list: the Events of a model cache claim that does not bind, read while it waits
# (StorageReady gives the provisioner's reason).
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch, list]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- if .Values.gateway.enabled }}
# Only granted on: the Role <name>.engine-api-key lets the gateway get the one Secret
# spec.engine.apiKeySecret names (resourceNames). The operator reads no Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
# The running download's progress lines (controller/progress.py).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [persistentvolumeclaims, services, configmaps, serviceaccounts]
  verbs: [get, list, watch, create, update, patch, delete]
# Only granted on (model:query): the gateway checks it with a SubjectAccessReview.
- apiGroups: [deepseek-operator.io]
  resources: [deepseekdeployments/query]
  verbs: [create]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps, leaderworkerset.x-k8s.io]
  resources: [deployments/scale, leaderworkersets/scale]
  verbs: [get, patch, update]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- define "deepseek-operator.clusterRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- if .Values.crds.manage }}
# --manage-crd: the operator applies its own CRD at start (helm upgrade never does).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames: [deepseekdeployments.deepseek-operator.io]
  verbs: [patch]
{{- end }}
{{- if not .Values.watchNamespaces }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
