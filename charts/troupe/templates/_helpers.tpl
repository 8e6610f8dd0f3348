{{/* Chart name, overridable. */}}
{{- define "troupe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the Deployment and what belongs to this release alone. */}}
{{- define "troupe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ActorSystem: every pod of it, from any release, carries it as a label. */}}
{{- define "troupe.system" -}}
{{- .Values.actorSystem.name }}
{{- end }}

{{/* The headless Service of the ActorSystem (one per system, not per release). */}}
{{- define "troupe.peerService" -}}
{{- printf "troupe-%s-peers" (include "troupe.system" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The DNS name whose A records are the system's pods. */}}
{{- define "troupe.peerDNS" -}}
{{- printf "%s.%s.svc.%s" (include "troupe.peerService" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "troupe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "troupe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
troupe.dev/system: {{ include "troupe.system" . | quote }}
{{- end }}

{{- define "troupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "troupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "troupe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "troupe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The path of the Unix socket both containers see: in a subdirectory of the emptyDir, which the
sidecar creates with mode 0700 (it refuses the emptyDir itself, which the kubelet makes 0777).
*/}}
{{- define "troupe.socketPath" -}}
{{- printf "%s/sidecar/%s" (trimSuffix "/" .Values.socket.dir) .Values.socket.file }}
{{- end }}

{{/*
The sidecar's settings as a YAML mapping: what the chart derives from its values, then
sidecar.config on top (so any setting, also one this chart does not know, can be passed).
Secrets are not here: they reach the sidecar as TROUPE_* variables (troupe.secretEnv).
*/}}
{{- define "troupe.sidecarConfig" -}}
{{- $s := .Values.sidecar }}
{{- $c := dict "system" (include "troupe.system" .) "socket" (include "troupe.socketPath" .) "store" $s.store "log-level" $s.logLevel "drain-timeout-ms" (int64 $s.drainTimeoutMs) "admin-listen" (printf "0.0.0.0:%d" (int $s.admin.port)) }}
{{- if eq $s.store "sqlite" }}
{{- $_ := set $c "data-path" (printf "%s/state.sqlite" (trimSuffix "/" $s.data.dir)) }}
{{- end }}
{{- if .Values.cluster.enabled }}
{{- $_ := set $c "cluster-listen" (printf "0.0.0.0:%d" (int .Values.cluster.port)) }}
{{- if .Values.cluster.seeds }}
{{- $_ := set $c "cluster-seeds" (join "," .Values.cluster.seeds) }}
{{- else }}
{{- $_ := set $c "cluster-dns" (include "troupe.peerDNS" .) }}
{{- end }}
{{- if .Values.cluster.tls.enabled }}
{{- $dir := include "troupe.clusterTLSDir" . }}
{{- $_ := set $c "cluster-tls-cert" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $c "cluster-tls-key" (printf "%s/tls.key" $dir) }}
{{- $_ := set $c "cluster-tls-ca" (printf "%s/ca.crt" $dir) }}
{{- $_ := set $c "cluster-tls-reload-ms" (int64 .Values.cluster.tls.reloadMs) }}
{{- end }}
{{- end }}
{{- if .Values.nats.url }}
{{- $_ := set $c "nats-url" .Values.nats.url }}
{{- end }}
{{- with .Values.tracing }}
{{- if .otlpEndpoint }}
{{- $_ := set $c "otlp-endpoint" .otlpEndpoint }}
{{- $_ := set $c "otlp-protocol" .protocol }}
{{- $_ := set $c "trace-sample-ratio" .sampleRatio }}
{{- end }}
{{- end }}
{{- toYaml (mergeOverwrite $c (deepCopy $s.config)) }}
{{- end }}

{{/*
Where the cluster TLS Secret is mounted: a directory of its own (not under the ConfigMap's
/etc/troupe), without subPath, so the kubelet's updates of a renewed certificate reach it.
*/}}
{{- define "troupe.clusterTLSDir" -}}
/etc/troupe-cluster-tls
{{- end }}

{{/* Effective drain timeout in whole seconds, rounded up. */}}
{{- define "troupe.drainSeconds" -}}
{{- $ms := get (fromYaml (include "troupe.sidecarConfig" .)) "drain-timeout-ms" | int64 }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
Secret references as TROUPE_<SETTING> variables: the typed ones (Postgres, NATS, encryption)
and sidecar.secretEnv. The variable name follows the sidecar's rule: TROUPE_ + key upper-cased,
"-" as "_".
*/}}
{{- define "troupe.secretEnv" -}}
{{- $refs := list }}
{{- if eq .Values.sidecar.store "postgres" }}
{{- $name := required "sidecar.store is postgres: set postgres.urlSecret.name (a Secret holding the connection URL)" .Values.postgres.urlSecret.name }}
{{- $refs = append $refs (dict "setting" "pg-url" "secretName" $name "key" .Values.postgres.urlSecret.key) }}
{{- end }}
{{- with .Values.nats.auth }}
{{- if .secretName }}
{{- range $setting, $key := dict "nats-user" .userKey "nats-password" .passwordKey "nats-token" .tokenKey }}
{{- if $key }}
{{- $refs = append $refs (dict "setting" $setting "secretName" $.Values.nats.auth.secretName "key" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.sidecar.hostSecret }}
{{- if .name }}
{{- $refs = append $refs (dict "setting" "host-secret" "secretName" .name "key" .key) }}
{{- end }}
{{- end }}
{{- with .Values.sidecar.admin.tokenSecret }}
{{- if .name }}
{{- $refs = append $refs (dict "setting" "admin-token" "secretName" .name "key" .key) }}
{{- end }}
{{- end }}
{{- if .Values.encryption.keysSecret.name }}
{{- $refs = append $refs (dict "setting" "encryption-keys" "secretName" .Values.encryption.keysSecret.name "key" .Values.encryption.keysSecret.key) }}
{{- end }}
{{- range .Values.sidecar.secretEnv }}
{{- $refs = append $refs . }}
{{- end }}
{{- range $refs }}
- name: {{ printf "TROUPE_%s" (.setting | upper | replace "-" "_") }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end }}
