{{- define "modeldeploy.labels" -}}
app.kubernetes.io/name: modeldeploy-operator
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "modeldeploy.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "modeldeploy.metricsService" -}}
{{ .Release.Name }}-modeldeploy-metrics
{{- end }}

{{- /* A Prometheus duration such as 15m, 1h or 90s, in seconds. */ -}}
{{- define "modeldeploy.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "h" $d -}}{{ mul (trimSuffix "h" $d | atoi) 3600 }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | atoi) 60 }}
{{- else -}}{{ trimSuffix "s" $d | atoi }}
{{- end -}}
{{- end }}

{{/* The names of .Values.imagePullSecrets, comma-separated (MODELDEPLOY_IMAGE_PULL_SECRETS). */}}
{{- define "modeldeploy.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}
