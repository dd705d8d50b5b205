{{- define "static-site-operator.labels" -}}
app.kubernetes.io/name: static-site-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "static-site-operator.selector" -}}
app.kubernetes.io/name: static-site-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Cluster-scoped objects are per release and namespace. */}}
{{- define "static-site-operator.clusterName" -}}
{{ printf "%s-%s" .Release.Namespace .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
