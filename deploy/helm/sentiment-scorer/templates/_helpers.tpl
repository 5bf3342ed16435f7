{{/* Names: <release>-sentiment-scorer, or the release name alone when it already holds the chart's name. */}}
{{- define "scorer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "scorer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (worker or serve): call with (list $ "worker"). */}}
{{- define "scorer.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "scorer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{- define "scorer.modelsClaim" -}}
{{- default (printf "%s-models" (include "scorer.fullname" .)) .Values.models.pvc.existingClaim -}}
{{- end -}}

{{/* The Secret holding the SASL username and password: the existing one, or the chart's. */}}
{{- define "scorer.saslSecret" -}}
{{- default (printf "%s-kafka-sasl" (include "scorer.fullname" .)) .Values.kafka.sasl.existingSecret -}}
{{- end -}}

{{/* KEDA's name of a SASL mechanism (its kafka scaler's `sasl` parameter). */}}
{{- define "scorer.kedaSasl" -}}
{{- $m := .Values.kafka.sasl.mechanism | upper -}}
{{- $names := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" -}}
{{- if not (hasKey $names $m) -}}
{{- fail (printf "kafka.sasl.mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (what KEDA's Kafka scaler supports)" .Values.kafka.sasl.mechanism) -}}
{{- end -}}
{{- get $names $m -}}
{{- end -}}

{{- define "scorer.tlsEnabled" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{/* The worker's lagThreshold: the override, or throughputPerReplica x targetDrainSeconds / safetyFactor. */}}
{{- define "scorer.lagThreshold" -}}
{{- $a := .Values.worker.autoscaling -}}
{{- if $a.lagThreshold -}}
{{- $a.lagThreshold | int -}}
{{- else -}}
{{- if le (float64 $a.safetyFactor) 0.0 -}}
{{- fail "worker.autoscaling.safetyFactor must be above 0" -}}
{{- end -}}
{{- max 1 (divf (mulf $a.throughputPerReplica $a.targetDrainSeconds) $a.safetyFactor | floor | int) -}}
{{- end -}}
{{- end -}}

{{- define "scorer.maxReplicas" -}}
{{- default .Values.kafka.inputPartitions .Values.worker.autoscaling.maxReplicaCount | int -}}
{{- end -}}

{{/* Kafka settings shared by the worker's environment: topics, group, security. */}}
{{- define "scorer.kafkaEnv" -}}
- name: SCORER_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: SCORER_INPUT_TOPIC
  value: {{ .Values.kafka.inputTopic | quote }}
- name: SCORER_OUTPUT_TOPIC
  value: {{ .Values.kafka.outputTopic | quote }}
- name: SCORER_DEAD_LETTER_TOPIC
  value: {{ .Values.kafka.deadLetterTopic | quote }}
- name: SCORER_GROUP_ID
  value: {{ .Values.kafka.groupId | quote }}
- name: SCORER_AUTO_OFFSET_RESET
  value: {{ .Values.kafka.autoOffsetReset | quote }}
{{- with .Values.kafka.securityProtocol }}
- name: SCORER_SECURITY_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: SCORER_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: SCORER_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "scorer.saslSecret" . }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: SCORER_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "scorer.saslSecret" . }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: SCORER_KAFKA
  value: {{ dict "ssl.ca.location" (printf "/etc/scorer/kafka-ca/%s" .Values.kafka.tls.caKey) | toJson | quote }}
{{- end }}
{{- end -}}

{{/* The model volume of a pod: the claim (read-only), or an emptyDir the init container fills. */}}
{{- define "scorer.modelVolume" -}}
- name: models
{{- if eq .Values.models.source "pvc" }}
{{- if not (or .Values.models.pvc.create .Values.models.pvc.existingClaim) }}
{{- fail "models.source pvc needs models.pvc.create or models.pvc.existingClaim" }}
{{- end }}
  persistentVolumeClaim:
    claimName: {{ include "scorer.modelsClaim" . }}
    readOnly: true
{{- else if eq .Values.models.source "objectStorage" }}
  emptyDir:
    sizeLimit: {{ .Values.models.objectStorage.sizeLimit }}
{{- else }}
{{- fail (printf "models.source %q: use pvc or objectStorage" .Values.models.source) }}
{{- end }}
{{- end -}}

{{/* The init container that copies one model version from object storage (models.source objectStorage). The
     copy lands in .tmp-<version> and is renamed when complete: the scorer ignores non-integer folders. */}}
{{- define "scorer.modelInitContainer" -}}
{{- if eq .Values.models.source "objectStorage" }}
{{- $o := .Values.models.objectStorage }}
- name: fetch-model
  image: {{ $o.image }}
  imagePullPolicy: IfNotPresent
  command: ["/bin/sh", "-c"]
  args:
    - |
      set -eu
      rclone copy --checksum "$MODEL_URL/$MODEL_VERSION" "$MODEL_DIR/.tmp-$MODEL_VERSION"
      test -f "$MODEL_DIR/.tmp-$MODEL_VERSION/saved_model.pb" || { echo "no saved_model.pb under $MODEL_URL/$MODEL_VERSION" >&2; exit 1; }
      rm -rf "$MODEL_DIR/$MODEL_VERSION"
      mv "$MODEL_DIR/.tmp-$MODEL_VERSION" "$MODEL_DIR/$MODEL_VERSION"
  env:
    - name: MODEL_URL
      value: {{ required "models.objectStorage.url is required with models.source objectStorage" $o.url | quote }}
    - name: MODEL_VERSION
      value: {{ required "models.objectStorage.version is required with models.source objectStorage" $o.version | toString | quote }}
    - name: MODEL_DIR
      value: {{ .Values.models.mountPath | quote }}
    - name: HOME
      value: /tmp
  {{- with $o.envFromSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  resources:
    {{- toYaml $o.resources | nindent 4 }}
  securityContext:
    {{- include "scorer.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: {{ .Values.models.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* The image's user (65532), nothing written but /tmp and the model copy, no privileges. */}}
{{- define "scorer.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "scorer.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Volume mounts of a scorer container: the models (read-only), /tmp (the pool's metrics files), the CA. */}}
{{- define "scorer.volumeMounts" -}}
- name: models
  mountPath: {{ .Values.models.mountPath }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/scorer/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "scorer.volumes" -}}
{{ include "scorer.modelVolume" . }}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 256Mi
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
{{- end }}
{{- end -}}

{{/* Pod annotations: Prometheus' scrape annotations (when on), a checksum of the chart's SASL Secret (a new
     password rolls the pods), then the user's own.  Call with (list $ scrape port podAnnotations). */}}
{{- define "scorer.podAnnotations" -}}
{{- $root := index . 0 -}}
{{- $ann := dict -}}
{{- if index . 1 -}}
{{- $_ := set $ann "prometheus.io/scrape" "true" -}}
{{- $_ := set $ann "prometheus.io/port" (index . 2 | toString) -}}
{{- $_ := set $ann "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- if and $root.Values.kafka.sasl.enabled (not $root.Values.kafka.sasl.existingSecret) -}}
{{- $_ := set $ann "checksum/kafka-sasl" (include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum) -}}
{{- end -}}
{{- $ann = merge $ann (index . 3) -}}
{{- if $ann }}{{ toYaml $ann }}{{ end -}}
{{- end -}}
