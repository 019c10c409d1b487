{{/* Names and labels shared by every template. */}}

{{- define "rayflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rayflow.fullname" -}}
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

{{- define "rayflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rayflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rayflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rayflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rayflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "rayflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rayflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rayflow.secretName" -}}
{{- default (printf "%s-auth" (include "rayflow.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "rayflow.headService" -}}
{{- printf "%s-head" (include "rayflow.fullname" .) }}
{{- end }}

{{- define "rayflow.checkpointClaim" -}}
{{- default (printf "%s-checkpoints" (include "rayflow.fullname" .)) .Values.checkpoints.persistence.existingClaim }}
{{- end }}

{{- define "rayflow.checkpointStorage" -}}
{{- if .Values.checkpoints.url }}
{{- .Values.checkpoints.url }}
{{- else if .Values.checkpoints.persistence.enabled }}
{{- .Values.checkpoints.persistence.mountPath }}
{{- end }}
{{- end }}

{{/*
Environment every Ray node needs: token auth with the token from the Secret, the sizes `ray start`
takes from the container's own limits (downward API, so they follow the resources values), and
where checkpoints go. Call with (dict "root" $ "container" "head").
*/}}
{{- define "rayflow.nodeEnv" -}}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "rayflow.secretName" .root }}
      key: ray-token
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: RAYFLOW_NUM_CPUS
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.cpu
      divisor: "1"
- name: RAYFLOW_MEMORY_BYTES
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.memory
      divisor: "1"
- name: RAYFLOW_OBJECT_STORE_PERCENT
  value: {{ mulf .objectStoreFraction 100 | int | quote }}
- name: RAYFLOW_RAY_RESOURCES
  value: {{ .rayResources | default dict | toJson | quote }}
{{- with include "rayflow.checkpointStorage" .root }}
- name: RAYFLOW_CHECKPOINT_STORAGE
  value: {{ . | quote }}
{{- end }}
{{- if .root.Values.state.volume.enabled }}
- name: RAYFLOW_STATE_ROCKSDB_DIR
  value: {{ .root.Values.state.volume.mountPath | quote }}
{{- end }}
{{- end }}

{{/* Volumes and mounts every Ray node has: shared memory, scripts, checkpoints. */}}
{{- define "rayflow.nodeVolumes" -}}
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shmSize }}
- name: scripts
  configMap:
    name: {{ include "rayflow.fullname" . }}-scripts
    defaultMode: 0555
{{- if .Values.checkpoints.persistence.enabled }}
- name: checkpoints
  persistentVolumeClaim:
    claimName: {{ include "rayflow.checkpointClaim" . }}
{{- end }}
{{- if .Values.state.volume.enabled }}
- name: state
  {{- if .Values.state.volume.sizeLimit }}
  emptyDir:
    sizeLimit: {{ .Values.state.volume.sizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end }}

{{- define "rayflow.nodeMounts" -}}
- name: shm
  mountPath: /dev/shm
- name: scripts
  mountPath: /etc/rayflow/scripts
{{- if .Values.checkpoints.persistence.enabled }}
- name: checkpoints
  mountPath: {{ .Values.checkpoints.persistence.mountPath }}
{{- end }}
{{- if .Values.state.volume.enabled }}
- name: state
  mountPath: {{ .Values.state.volume.mountPath }}
{{- end }}
{{- end }}
