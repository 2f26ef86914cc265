{{- define "gateway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the ConfigMap is mounted; --config.file is gateway.yml in it. */}}
{{- define "gateway.configDir" -}}
/etc/gateway
{{- end -}}

{{/* The queues' directory (--storage.path): the data volume's mount. */}}
{{- define "gateway.dataDir" -}}
/data
{{- end -}}

{{/*
gateway.routePath prefixes a path with routePrefix, as the gateway serves it:
(list . "/-/ready") is "/-/ready" for the prefix "/", "/gw/-/ready" for "/gw".
*/}}
{{- define "gateway.routePath" -}}
{{- $root := index . 0 -}}
{{- printf "%s%s" (trimSuffix "/" $root.Values.routePrefix) (index . 1) -}}
{{- end -}}

{{/*
gateway.validateArgs fails the render if extraArgs sets a flag that the chart
sets itself from values: the probes, Service, mounts and grace period follow
those values, and the gateway refuses a flag given twice.
*/}}
{{- define "gateway.validateArgs" -}}
{{- $managed := dict
    "--config.file" "config"
    "--web.listen-address" "service.port"
    "--web.route-prefix" "routePrefix"
    "--storage.path" "persistence"
    "--shutdown.flush-timeout" "flushTimeoutSeconds" -}}
{{- range $arg := .Values.extraArgs -}}
{{- range $flag, $value := $managed -}}
{{- if or (eq $arg $flag) (hasPrefix (printf "%s=" $flag) $arg) -}}
{{- fail (printf "extraArgs: %s is set by the chart; use the value %s instead" $flag $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod template, shared by the Deployment and the StatefulSet. */}}
{{- define "gateway.podTemplate" -}}
metadata:
  labels:
    {{- include "gateway.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- include "gateway.validateArgs" . }}
  serviceAccountName: {{ include "gateway.serviceAccountName" . }}
  # The gateway never talks to the Kubernetes API.
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  # SIGTERM stops the listener, then queued data is sent for up to
  # --shutdown.flush-timeout; the rest is the time to persist what is left
  # and exit before the kubelet's SIGKILL.
  terminationGracePeriodSeconds: {{ add .Values.flushTimeoutSeconds 15 }}
  containers:
    - name: gateway
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file={{ include "gateway.configDir" . }}/gateway.yml
        - --web.listen-address=:{{ .Values.service.port }}
        - --web.route-prefix={{ .Values.routePrefix }}
        - --storage.path={{ include "gateway.dataDir" . }}
        - --shutdown.flush-timeout={{ .Values.flushTimeoutSeconds }}s
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      livenessProbe:
        httpGet: {path: {{ include "gateway.routePath" (list . "/-/healthy") }}, port: http}
        periodSeconds: 10
        failureThreshold: 6
      readinessProbe:
        httpGet: {path: {{ include "gateway.routePath" (list . "/-/ready") }}, port: http}
        periodSeconds: 5
        failureThreshold: 2
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ include "gateway.configDir" . }}
          readOnly: true
        - name: data
          mountPath: {{ include "gateway.dataDir" . }}
  volumes:
    - name: config
      configMap:
        name: {{ include "gateway.fullname" . }}
    {{- if not .Values.persistence.enabled }}
    # Without persistence the queues live on the node's disk for the pod's
    # lifetime: they survive a container restart, not the pod's deletion.
    - name: data
      emptyDir: {}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
