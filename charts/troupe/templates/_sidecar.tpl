{{/*
The sidecar container (without the leading "- "), used in containers or, as a native sidecar,
in initContainers. docs/kubernetes.md shows the same container for an existing Deployment.
*/}}
{{- define "troupe.sidecarContainer" -}}
{{- $s := .Values.sidecar -}}
name: {{ $s.name }}
image: {{ printf "%s:%s" $s.image.repository (default .Chart.AppVersion (toString $s.image.tag)) | quote }}
imagePullPolicy: {{ $s.image.pullPolicy }}
env:
  - name: TROUPE_CONFIG
    value: /etc/troupe/sidecar.yaml
  # The pod name is the node name in the cluster: unique, and stable for the pod's life.
  - name: TROUPE_NODE
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  {{- if .Values.cluster.enabled }}
  # Peers reach this sidecar at the pod's IP: the listener binds 0.0.0.0, which is no address.
  - name: TROUPE_POD_IP
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
  - name: TROUPE_CLUSTER_ADVERTISE
    value: {{ printf "$(TROUPE_POD_IP):%d" (int .Values.cluster.port) | quote }}
  {{- end }}
  {{- with include "troupe.secretEnv" . | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with $s.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: admin
    containerPort: {{ $s.admin.port }}
    protocol: TCP
  {{- if .Values.cluster.enabled }}
  - name: cluster
    containerPort: {{ .Values.cluster.port }}
    protocol: TCP
  {{- end }}
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml $s.probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  {{- toYaml $s.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  {{- toYaml $s.probes.readiness | nindent 2 }}
resources:
  {{- toYaml $s.resources | nindent 2 }}
securityContext:
  {{- toYaml $s.securityContext | nindent 2 }}
volumeMounts:
  - name: troupe-socket
    mountPath: {{ .Values.socket.dir }}
  - name: troupe-config
    mountPath: /etc/troupe
    readOnly: true
  # The root filesystem is read-only; the sidecar's scratch space.
  - name: troupe-tmp
    mountPath: /tmp
  {{- if eq $s.store "sqlite" }}
  - name: troupe-data
    mountPath: {{ $s.data.dir }}
  {{- end }}
  {{- if and .Values.cluster.enabled .Values.cluster.tls.enabled }}
  - name: troupe-cluster-tls
    mountPath: {{ include "troupe.clusterTLSDir" . }}
    readOnly: true
  {{- end }}
{{- end }}
