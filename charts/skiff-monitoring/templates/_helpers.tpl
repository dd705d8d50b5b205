{{/* Service discovery of one role, the chart's way (see values.yaml: discovery). */}}
{{- define "skiff-monitoring.sd" -}}
{{- if eq .root.Values.discovery "http" -}}
http_sd_configs:
  - url: {{ printf "%s/prometheus/discovery/%s" (.root.Values.apiServer | default "https://kubernetes.default.svc" | trimSuffix "/") .role | quote }}
    refresh_interval: {{ .root.Values.discoveryRefreshInterval }}
    tls_config:
      ca_file: {{ .root.Values.caFile | quote }}
    # The type is spelled out: some Prometheus versions send the bare token here otherwise.
    authorization:
      type: Bearer
      credentials_file: {{ .root.Values.tokenFile | quote }}
{{- else -}}
kubernetes_sd_configs:
  - role: {{ .role }}
{{- if .root.Values.apiServer }}
    api_server: {{ .root.Values.apiServer | quote }}
    tls_config:
      ca_file: {{ .root.Values.caFile | quote }}
    authorization:
      credentials_file: {{ .root.Values.tokenFile | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* TLS and bearer token for targets reached through the api server. */}}
{{- define "skiff-monitoring.auth" -}}
scheme: https
tls_config:
  ca_file: {{ .Values.caFile | quote }}
authorization:
  credentials_file: {{ .Values.tokenFile | quote }}
{{- end }}

{{/* The api server's host:port, for targets proxied through it. */}}
{{- define "skiff-monitoring.apiAddress" -}}
{{- if .Values.apiServer -}}
{{- regexReplaceAll "^https?://" .Values.apiServer "" | trimSuffix "/" -}}
{{- else -}}
kubernetes.default.svc:443
{{- end -}}
{{- end }}
