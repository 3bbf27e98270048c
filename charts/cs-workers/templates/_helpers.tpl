{{/*
Names. Every object's name comes from one helper here, so tests, NOTES.txt and the routing table
agree. Names longer than a DNS label (63) are cut and given a hash of the full name, which keeps
them unique and stable across renders.
*/}}
{{- define "cs-workers.fullname" -}}
{{- .Values.fullnameOverride | default .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* cs-workers.objectName (list $ "suffix"): {fullname}-{suffix}, shortened to 63 characters. */}}
{{- define "cs-workers.objectName" -}}
{{- $root := index . 0 -}}
{{- $name := printf "%s-%s" (include "cs-workers.fullname" $root) (index . 1) -}}
{{- if gt (len $name) 63 -}}
{{- printf "%s-%s" ($name | trunc 54 | trimSuffix "-") ($name | sha256sum | trunc 8) -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{- define "cs-workers.redis.fullname" -}}{{ include "cs-workers.objectName" (list . "redis") }}{{- end -}}
{{- define "cs-workers.redis.usersSecretChartName" -}}{{ include "cs-workers.objectName" (list . "redis-users") }}{{- end -}}
{{- define "cs-workers.redis.usersSecretName" -}}
{{- .Values.redis.auth.modelUsersExistingSecret | default (include "cs-workers.redis.usersSecretChartName" .) -}}
{{- end -}}
{{- define "cs-workers.redis.configName" -}}{{ include "cs-workers.objectName" (list . "redis-config") }}{{- end -}}
{{- define "cs-workers.redis.secretName" -}}
{{- .Values.redis.auth.existingSecret | default (include "cs-workers.objectName" (list . "redis")) -}}
{{- end -}}
{{- define "cs-workers.gateway.fullname" -}}{{ include "cs-workers.objectName" (list . "gateway") }}{{- end -}}
{{- define "cs-workers.gateway.tokenSecretName" -}}
{{- .Values.gateway.auth.existingSecret | default (include "cs-workers.objectName" (list . "gateway-token")) -}}
{{- end -}}
{{- define "cs-workers.gateway.routesName" -}}{{ include "cs-workers.objectName" (list . "gateway-routes") }}{{- end -}}
{{- define "cs-workers.workerSecret.chartName" -}}{{ include "cs-workers.objectName" (list . "worker-secret") }}{{- end -}}
{{- define "cs-workers.workerSecret.name" -}}
{{- .Values.workerSecret.existingSecret | default (include "cs-workers.workerSecret.chartName" .) -}}
{{- end -}}

{{/* Per-model names take (dict "root" $ "slug" $slug). */}}
{{- define "cs-workers.model.ioName" -}}{{ include "cs-workers.objectName" (list .root (printf "%s-io" .slug)) }}{{- end -}}
{{- define "cs-workers.model.simName" -}}{{ include "cs-workers.objectName" (list .root (printf "%s-sim" .slug)) }}{{- end -}}
{{- define "cs-workers.model.secretChartName" -}}{{ include "cs-workers.objectName" (list .root (printf "%s-secrets" .slug)) }}{{- end -}}
{{- define "cs-workers.dask.schedulerName" -}}{{ include "cs-workers.objectName" (list .root (printf "%s-dask-scheduler" .slug)) }}{{- end -}}
{{- define "cs-workers.keda.triggerAuthenticationName" -}}{{ include "cs-workers.objectName" (list . "gateway-load") }}{{- end -}}
{{- define "cs-workers.dask.workerName" -}}{{ include "cs-workers.objectName" (list .root (printf "%s-dask-worker" .slug)) }}{{- end -}}
{{- define "cs-workers.dask.schedulerAddress" -}}
{{- printf "tcp://%s:8786" (include "cs-workers.dask.schedulerName" .) -}}
{{- end -}}

{{/*
Labels. Selector labels are the stable subset (never the chart version): selectors cannot change
after install, and they must differ per component and per model so that no two Deployments
claim each other's pods. Pod templates carry only stable labels too, so a chart upgrade alone
does not roll every pod.
Each takes (dict "root" $ "component" "..." "slug" $slugOrEmpty).
*/}}
{{- define "cs-workers.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .slug }}
compute.studio/model: {{ . }}
{{- end }}
{{- end -}}

{{- define "cs-workers.podLabels" -}}
{{ include "cs-workers.selectorLabels" . }}
app.kubernetes.io/part-of: cs-workers
{{- end -}}

{{- define "cs-workers.labels" -}}
{{ include "cs-workers.podLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels the chart sets itself; commonLabels and podLabels may not set them. */}}
{{- define "cs-workers.chartLabelKeys" -}}
app.kubernetes.io/name app.kubernetes.io/instance app.kubernetes.io/component app.kubernetes.io/part-of app.kubernetes.io/managed-by app.kubernetes.io/version helm.sh/chart compute.studio/model
{{- end -}}

{{/* cs-workers.checkUserLabels (dict "labels" $map "where" "gateway.podLabels"): fails on a label the chart sets. */}}
{{- define "cs-workers.checkUserLabels" -}}
{{- $reserved := splitList " " (include "cs-workers.chartLabelKeys" .) -}}
{{- range $key, $_ := .labels -}}
{{- if has $key $reserved -}}
{{- fail (printf "%s: %s is a label the chart sets itself (selectors and the NetworkPolicies rely on it); choose another key" $.where $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
cs-workers.podTemplateMetadata (dict "root" $ "component" "..." "slug" $slugOrEmpty "settings" $componentSettings
"where" "values.path.%[1]s" "annotations" $chartAnnotations): a pod template's labels (the stable pod labels, then
commonLabels and the component's podLabels) and annotations (the component's podAnnotations, under the chart's own).
`where`, here and in cs-workers.extraEnv, is a printf format of the values path, %[1]s standing for the key.
*/}}
{{- define "cs-workers.podTemplateMetadata" -}}
{{- $settings := .settings -}}
labels:
  {{- include "cs-workers.podLabels" . | nindent 2 }}
  {{- if or .root.Values.commonLabels $settings.podLabels }}
  {{- include "cs-workers.checkUserLabels" (dict "labels" $settings.podLabels "where" (printf .where "podLabels")) }}
  {{- mustMergeOverwrite (deepCopy (.root.Values.commonLabels | default dict)) (deepCopy ($settings.podLabels | default dict)) | toYaml | nindent 2 }}
  {{- end }}
{{- $annotations := .annotations }}
{{- if $settings.podAnnotations }}
{{- $annotations = mustMergeOverwrite (deepCopy $settings.podAnnotations) ($annotations | default dict) }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
cs-workers.text: a value as the text its writer meant, for a string field (an image tag, an env
value). Values reach templates as float64 (from -f files), int64 (from --set) or strings, and Go
prints a float64 like 20240101 as 2.0240101e+07; a whole number is printed as its digits instead.
*/}}
{{- define "cs-workers.text" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- printf "%.0f" . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
cs-workers.hardTimeLimit (dict "root" $ "soft" $seconds): the hard time limit, in seconds, of a
parse or sim whose model call may take `soft`: soft + celery.hardTimeLimitGraceSeconds + the
worst case of the result PUT (every wait min(backoffMaxSeconds, backoffSeconds * 2^(n-2)) before
attempt n >= 2, plus every attempt timing out). A copy of the runtime's rule
(cs_runtime.settings.WorkerSettings.hard_time_limit, the source), computed in the same order;
tests/security/test_every_render.py checks the two agree on every render.
*/}}
{{- define "cs-workers.hardTimeLimit" -}}
{{- $callback := .root.Values.callback -}}
{{- $waits := 0.0 -}}
{{- $wait := float64 $callback.backoffSeconds -}}
{{- range $attempt := until (sub (int $callback.attempts) 1 | int) -}}
{{- $waits = addf $waits (minf $callback.backoffMaxSeconds $wait) -}}
{{- $wait = mulf $wait 2 -}}
{{- end -}}
{{- $delivery := addf $waits (mulf $callback.attempts $callback.timeoutSeconds) -}}
{{- addf (addf .soft .root.Values.celery.hardTimeLimitGraceSeconds) $delivery -}}
{{- end -}}

{{/* clean(word): lowercase alphanumerics only, as Compute Studio named things. */}}
{{- define "cs-workers.clean" -}}
{{- regexReplaceAll "[^a-z0-9]" (lower (toString .)) "" -}}
{{- end -}}

{{/*
cs-workers.model.resolved (dict "root" $ "slug" $slug "model" $model): one model's settings with
the defaults merged in, as YAML (use with fromYaml). Every per-model template reads the model
through this, so merging rules live in one place:
  io, daskScheduler: modelDefaults.<component>, then the model's <component>;
  compute (sim of a Celery model, daskWorker of a Dask model): modelDefaults.sim, then the model's
  resources, then the model's <component>;
  sim of a Dask model (the driver): modelDefaults.daskDriver, then the model's sim.
*/}}
{{- define "cs-workers.model.resolved" -}}
{{- $root := .root -}}
{{- $slug := .slug -}}
{{- $model := .model -}}
{{- $defaults := $root.Values.modelDefaults -}}
{{- $key := replace "-" "_" $slug -}}
{{- $isDask := eq $model.clusterType "dask" -}}
{{- $compute := mustMergeOverwrite (deepCopy $defaults.sim) (dict "resources" (mustMergeOverwrite (deepCopy ($defaults.sim.resources | default dict)) (deepCopy ($model.resources | default dict)))) -}}
{{- $io := mustMergeOverwrite (deepCopy $defaults.io) (deepCopy ($model.io | default dict)) -}}
{{- $sim := dict -}}
{{- $daskScheduler := dict -}}
{{- $daskWorker := dict -}}
{{- if $isDask -}}
{{- $driverDefaults := mustMergeOverwrite (deepCopy $defaults.sim) (deepCopy $defaults.daskDriver) -}}
{{- $sim = mustMergeOverwrite $driverDefaults (deepCopy ($model.sim | default dict)) -}}
{{- $daskScheduler = mustMergeOverwrite (deepCopy $defaults.daskScheduler) (deepCopy ($model.daskScheduler | default dict)) -}}
{{- $daskWorker = mustMergeOverwrite (mustMergeOverwrite $compute (deepCopy $defaults.daskWorker)) (deepCopy ($model.daskWorker | default dict)) -}}
{{- else -}}
{{- $sim = mustMergeOverwrite $compute (deepCopy ($model.sim | default dict)) -}}
{{- end -}}
{{- if $model.nodeSize -}}
{{- $term := dict "matchExpressions" (list (dict "key" $defaults.nodeSizeLabel "operator" "In" "values" $model.nodeSize)) -}}
{{- $nodeAffinity := dict "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list $term))) -}}
{{- $_ := set $sim "affinity" (mustMergeOverwrite (deepCopy ($sim.affinity | default dict)) $nodeAffinity) -}}
{{- if $isDask -}}
{{- $_ := set $daskWorker "affinity" (mustMergeOverwrite (deepCopy ($daskWorker.affinity | default dict)) $nodeAffinity) -}}
{{- end -}}
{{- end -}}
{{- /* A request without a limit gets the request as its limit: predictable sims, no noisy neighbours. */ -}}
{{- range $component := list $io $sim $daskScheduler $daskWorker -}}
{{- with $component.resources -}}
{{- $limits := .limits | default dict -}}
{{- range $name, $quantity := .requests | default dict -}}
{{- if not (hasKey $limits $name) -}}{{- $_ := set $limits $name $quantity -}}{{- end -}}
{{- end -}}
{{- if $limits -}}{{- $_ := set . "limits" $limits -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $image := $model.image -}}
{{- $repository := $image.repository -}}
{{- if not $repository -}}
{{- if not $root.Values.modelImages.project -}}
{{- fail (printf "models.%s: set modelImages.project (or the model's image.repository) so the chart can name its image" $slug) -}}
{{- end -}}
{{- $repository = printf "%s/%s_tasks" (list $root.Values.modelImages.registry $root.Values.modelImages.project | compact | join "/") $key -}}
{{- end -}}
{{- if eq (include "cs-workers.text" $image.tag) "" -}}
{{- fail (printf "models.%s.image.tag is empty: every model needs an image tag" $slug) -}}
{{- end -}}
{{- /* Text is quoted: this block is read back as YAML, where a key like 0123_0123 would be a number. */}}
key: {{ $key | quote }}
slug: {{ $slug | quote }}
owner: {{ $model.owner | quote }}
title: {{ $model.title | quote }}
clusterType: {{ $model.clusterType | quote }}
isDask: {{ $isDask }}
{{- /* `default` would turn a 0 the user wrote into 1. */}}
replicas: {{ if kindIs "invalid" $model.replicas }}1{{ else }}{{ $model.replicas }}{{ end }}
simTimeLimit: {{ $model.simTimeLimit | default $defaults.simTimeLimit }}
inputsTimeLimit: {{ $defaults.inputsTimeLimit }}
image: {{ printf "%s:%s" $repository (include "cs-workers.text" $image.tag) | quote }}
imagePullPolicy: {{ $image.pullPolicy | default $root.Values.modelImages.pullPolicy }}
inputsQueue: {{ printf "%s_inputs_queue" $key | quote }}
simQueue: {{ printf "%s_queue" $key | quote }}
{{- /* A Dask model's sim drivers: one unless sim.replicas says; a Celery model's sim workers: its replicas. */}}
{{- $simReplicas := $model.replicas }}
{{- if $isDask }}{{ $simReplicas = $sim.replicas }}{{ end }}
{{- if kindIs "invalid" $simReplicas }}{{ $simReplicas = 1 }}{{ end }}
simReplicas: {{ $simReplicas }}
{{- /*
With autoscaling, the Deployments KEDA scales and their replica counts, as a ScaledObject names
them (README, "Autoscaling"): sim workers from 0 to their replicas, io workers from io.minReplicas
to io.replicas; a Dask model's workers and scheduler all or none (KEDA's idle mode: none while
idle, at once all while active). A Deployment that could not change (equal bounds, no replicas)
keeps its replicas and gets no ScaledObject.
*/}}
{{- $autoscaling := mustMergeOverwrite (deepCopy $defaults.autoscaling) (deepCopy ($model.autoscaling | default dict)) }}
{{- $scaled := dict }}
{{- if $autoscaling.enabled }}
{{- $bounds := dict "sim" (list 0 $simReplicas) "io" (list $io.minReplicas $io.replicas) }}
{{- range $component, $pair := $bounds }}
{{- if lt (int (index $pair 0)) (int (index $pair 1)) }}
{{- $_ := set $scaled $component (dict "minReplicaCount" (int (index $pair 0)) "maxReplicaCount" (int (index $pair 1))) }}
{{- end }}
{{- end }}
{{- if $isDask }}
{{- $workers := int (ternary 1 $model.replicas (kindIs "invalid" $model.replicas)) }}
{{- if gt $workers 0 }}
{{- $_ := set $scaled "daskWorker" (dict "idleReplicaCount" 0 "minReplicaCount" $workers "maxReplicaCount" $workers) }}
{{- end }}
{{- $_ := set $scaled "daskScheduler" (dict "idleReplicaCount" 0 "minReplicaCount" 1 "maxReplicaCount" 1) }}
{{- end }}
{{- end }}
autoscaling:
  {{- toYaml $autoscaling | nindent 2 }}
scaled:
  {{- toYaml $scaled | nindent 2 }}
io:
  {{- toYaml $io | nindent 2 }}
sim:
  {{- toYaml $sim | nindent 2 }}
{{- if $isDask }}
daskScheduler:
  {{- toYaml $daskScheduler | nindent 2 }}
daskWorker:
  {{- toYaml $daskWorker | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
cs-workers.podSpec (dict "root" $ "settings" $componentSettings "component" "..."): what every pod
spec shares: its component's ServiceAccount (no API token: nothing here calls the API), the
security context, pull secrets and placement.
*/}}
{{- define "cs-workers.podSpec" -}}
{{- $root := .root -}}
{{- $settings := .settings -}}
serviceAccountName: {{ include "cs-workers.serviceAccountName" (list $root .component) }}
automountServiceAccountToken: false
{{- with $settings.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- mustMergeOverwrite (deepCopy $root.Values.podSecurityContext) (deepCopy ($settings.podSecurityContext | default dict)) | toYaml | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $settings.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $settings.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $settings.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $settings.topologySpreadConstraints }}
{{- /* A constraint without a labelSelector spreads this component's pods (of this model). */}}
{{- $selector := include "cs-workers.selectorLabels" (dict "root" $root "component" $.component "slug" $.slug) | fromYaml }}
{{- $constraints := list }}
{{- range . }}
{{- $constraints = append $constraints (hasKey . "labelSelector" | ternary . (merge (dict "labelSelector" (dict "matchLabels" $selector)) .)) }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- with $settings.initContainers }}
initContainers:
  {{- include "cs-workers.extraContainers" (dict "root" $root "containers" .) | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
cs-workers.extraContainers (dict "root" $ "containers" $list): the user's sidecars or init containers, each
with the chart's containerSecurityContext under its own securityContext (so they meet the restricted
standard unless they say otherwise).
*/}}
{{- define "cs-workers.extraContainers" -}}
{{- $containers := list -}}
{{- range .containers -}}
{{- $securityContext := mustMergeOverwrite (deepCopy $.root.Values.containerSecurityContext) (deepCopy (.securityContext | default dict)) -}}
{{- $containers = append $containers (merge (dict "securityContext" $securityContext) (omit . "securityContext")) -}}
{{- end -}}
{{- toYaml $containers -}}
{{- end -}}

{{/*
cs-workers.extraEnv (dict "env" $chartEnvText "settings" $componentSettings "where" "values.path.%[1]s"): the
component's extraEnv, after the chart's env. A name the chart sets in this container is refused: the
chart's checks (time limits, the Redis user) rely on its values.
*/}}
{{- define "cs-workers.extraEnv" -}}
{{- with .settings.extraEnv -}}
{{- $chartNames := list -}}
{{- range regexFindAll "(?m)^- name: \\S+" $.env -1 -}}
{{- $chartNames = append $chartNames (trimPrefix "- name: " . | trimAll "\"") -}}
{{- end -}}
{{- range . -}}
{{- if has .name $chartNames -}}
{{- fail (printf "%s: %s is set by the chart in this container; change it through the chart's own values (docs/values.md)" (printf $.where "extraEnv") .name) -}}
{{- end -}}
{{- end -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* cs-workers.containerSecurityContext (dict "root" $ "settings" $componentSettings) */}}
{{- define "cs-workers.containerSecurityContext" -}}
{{- mustMergeOverwrite (deepCopy .root.Values.containerSecurityContext) (deepCopy (.settings.containerSecurityContext | default dict)) | toYaml -}}
{{- end -}}

{{/* cs-workers.serviceAccountName (list $ "component"): one ServiceAccount per component. */}}
{{- define "cs-workers.serviceAccountName" -}}
{{- include "cs-workers.objectName" (list (index . 0) (index . 1)) -}}
{{- end -}}

{{/* cs-workers.serviceAccount (list $ "component"): the ServiceAccount object. */}}
{{- define "cs-workers.serviceAccount" -}}
{{- $root := index . 0 -}}
{{- $accounts := $root.Values.serviceAccount -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "cs-workers.serviceAccountName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cs-workers.labels" (dict "root" $root "component" (index . 1)) | nindent 4 }}
  {{- with mustMergeOverwrite (deepCopy ($accounts.annotations | default dict)) (deepCopy (dig (index . 1) dict ($accounts.componentAnnotations | default dict))) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}

{{/*
A writable /tmp on a read-only root filesystem. cs-workers.tmpVolume takes the component's
tmpSizeLimit: past it the kubelet evicts the pod, before it fills the node's disk.
*/}}
{{- define "cs-workers.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}
{{- define "cs-workers.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with . }}
    sizeLimit: {{ include "cs-workers.text" . | quote }}
    {{- else }} {}
    {{- end }}
{{- end -}}

{{/*
The Redis connection, as the runtime reads it (docs/runtime-contract.md). cs-workers.redisEnv takes
$ (the gateway: Redis's default user); cs-workers.model.redisEnv (dict "root" $ "key" $modelKey) is
a model's workers', as the model's own ACL user when redis.auth.modelUsers.
*/}}
{{- define "cs-workers.redisEnv" -}}
{{- include "cs-workers.redisAddressEnv" . }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "cs-workers.redis.secretName" . }}
      key: {{ .Values.redis.auth.passwordKey }}
{{- end -}}

{{- define "cs-workers.model.redisEnv" -}}
{{- if .root.Values.redis.auth.modelUsers }}
{{- include "cs-workers.redisAddressEnv" .root }}
- name: REDIS_USERNAME
  value: {{ printf "model-%s" .key | quote }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "cs-workers.redis.usersSecretName" .root }}
      key: {{ .key | quote }}
- name: CS_REDIS_KEY_PREFIX
  value: {{ printf "%s:" .key | quote }}
{{- else }}
{{- include "cs-workers.redisEnv" .root }}
{{- end }}
{{- end -}}

{{- define "cs-workers.redisAddressEnv" -}}
- name: REDIS_HOST
  value: {{ include "cs-workers.redis.fullname" . | quote }}
- name: REDIS_PORT
  value: {{ include "cs-workers.text" .Values.redis.port | quote }}
- name: REDIS_DB
  value: "0"
- name: CELERY_VISIBILITY_TIMEOUT
  value: {{ include "cs-workers.text" .Values.celery.visibilityTimeout | quote }}
{{- end -}}

{{/*
The env the chart sets in the gateway's, Redis's and a Dask worker's container (cs-workers.extraEnv
refuses an extraEnv that would set one of these again); a model's Celery workers' is in model/_worker.tpl.
*/}}
{{- define "cs-workers.gateway.env" -}}
- name: CS_ROUTING_TABLE
  value: /etc/cs-workers/routes/routes.json
{{ include "cs-workers.redisEnv" . }}
{{- if .Values.gateway.auth.enabled }}
- name: CS_GATEWAY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "cs-workers.gateway.tokenSecretName" . }}
      key: {{ .Values.gateway.auth.tokenKey }}
{{- end }}
{{- include "cs-workers.metricsEnv" . }}
{{- end -}}

{{- define "cs-workers.redis.env" -}}
- name: REDIS_PORT
  value: {{ include "cs-workers.text" .root.Values.redis.port | quote }}
{{- range list "REDIS_PASSWORD" "REDISCLI_AUTH" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      {{- toYaml $.secretRef | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "cs-workers.dask.workerEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: DASK_SCHEDULER_ADDRESS
  value: {{ include "cs-workers.dask.schedulerAddress" . | quote }}
{{- end -}}

{{/*
With metrics.enabled: where the runtime serves /metrics and where its processes keep their samples
(prometheus_client's multiprocess mode; cs_runtime/metrics.py), and the container port.
*/}}
{{- define "cs-workers.metricsEnv" -}}
{{- if .Values.metrics.enabled }}
- name: CS_METRICS_PORT
  value: {{ include "cs-workers.text" .Values.metrics.port | quote }}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /tmp/metrics
{{- end }}
{{- end -}}
{{- define "cs-workers.metricsContainerPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy ingress to the metrics port(s) from metrics.scrapeFrom (anyone when empty). */}}
{{- define "cs-workers.networkPolicy.scrapeIngress" -}}
- ports:
    {{- range .ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .root.Values.metrics.scrapeFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
What decides a worker's hard time limits, set in `env` so that nothing in a model's envFrom can
change them behind the chart's check of celery.visibilityTimeout (env wins over envFrom).
*/}}
{{- define "cs-workers.timeLimitEnv" -}}
- name: CS_HARD_TIME_LIMIT_GRACE_SECONDS
  value: {{ include "cs-workers.text" .Values.celery.hardTimeLimitGraceSeconds | quote }}
- name: CS_CALLBACK_ATTEMPTS
  value: {{ include "cs-workers.text" .Values.callback.attempts | quote }}
- name: CS_CALLBACK_BACKOFF_SECONDS
  value: {{ include "cs-workers.text" .Values.callback.backoffSeconds | quote }}
- name: CS_CALLBACK_BACKOFF_MAX_SECONDS
  value: {{ include "cs-workers.text" .Values.callback.backoffMaxSeconds | quote }}
- name: CS_CALLBACK_TIMEOUT_SECONDS
  value: {{ include "cs-workers.text" .Values.callback.timeoutSeconds | quote }}
{{- end -}}

{{/*
cs-workers.secretData (dict "root" $ "name" $secretName "values" $map): the data of a Secret the
chart owns. Values given now win; with none given, the data already in the cluster is kept, so an
upgrade from a values file without secrets never wipes them.
*/}}
{{- define "cs-workers.secretData" -}}
{{- if .values -}}
{{- range $key, $value := .values }}
{{- /* Keys quoted too: a secret named `off` or `N` must not reach the API server as false. */}}
{{ $key | quote }}: {{ include "cs-workers.text" $value | b64enc | quote }}
{{- end }}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing $existing.data -}}
{{- toYaml $existing.data -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
cs-workers.generatedSecretValue (dict "root" $ "name" $secretName "key" $key "length" N): the
base64 value already in the cluster's Secret, or a new random one. Generated once, then kept on
every upgrade (helm template, which cannot look, makes a new one each time).
*/}}
{{- define "cs-workers.generatedSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing $existing.data (index $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum .length | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
A PodDisruptionBudget's unhealthyPodEvictionPolicy, on Kubernetes 1.27 and later (where the field is on
by default): with AlwaysAllow a pod that is not Ready, such as a crash-looping model, never blocks a drain.
*/}}
{{- define "cs-workers.pdb.unhealthyPodEvictionPolicy" -}}
{{- if semverCompare ">=1.27.0-0" .Capabilities.KubeVersion.Version -}}
unhealthyPodEvictionPolicy: {{ .Values.podDisruptionBudget.unhealthyPodEvictionPolicy }}
{{- end -}}
{{- end -}}

{{/*
NetworkPolicy pieces. cs-workers.networkPolicy.peer (dict "root" $ "components" (list ...) "slug" $slug):
a podSelector for this release's pods of those components (and of that model, when given).
*/}}
{{- define "cs-workers.networkPolicy.peer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ .root.Chart.Name }}
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    {{- with .slug }}
    compute.studio/model: {{ . }}
    {{- end }}
  matchExpressions:
    - key: app.kubernetes.io/component
      operator: In
      values:
        {{- toYaml .components | nindent 8 }}
{{- end -}}

{{/* Egress to DNS, on every policy that limits egress, so that names keep resolving. */}}
{{- define "cs-workers.networkPolicy.dnsEgress" -}}
- ports:
    {{- range .Values.networkPolicy.dnsPorts }}
    - {port: {{ . }}, protocol: UDP}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end -}}

{{/* Egress to Redis. */}}
{{- define "cs-workers.networkPolicy.redisEgress" -}}
- to:
    - {{- include "cs-workers.networkPolicy.peer" (dict "root" . "components" (list "redis")) | nindent 6 }}
  ports:
    - {port: {{ .Values.redis.port }}, protocol: TCP}
{{- end -}}

{{/* Egress to the webserver and buckets outside the cluster. */}}
{{- define "cs-workers.networkPolicy.webserverEgress" -}}
- ports:
    {{- range .Values.networkPolicy.webserverEgress.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .Values.networkPolicy.webserverEgress.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
`helm test` pods. They carry the component they check, but their own app.kubernetes.io/name,
so that no Service or Deployment selector (which all hold name=cs-workers) ever picks them up;
the NetworkPolicies let them in by that name.
*/}}
{{- define "cs-workers.testLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: cs-workers
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .slug }}
compute.studio/model: {{ . }}
{{- end }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "cs-workers.networkPolicy.testPeer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ printf "%s-test" .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
cs-workers.testPod (dict "root" $ "name" ... "component" ... "slug" ... "image" ... "command" (list ...) "env" (list ...)):
a `helm test` pod that meets the same security standard as every other pod.
*/}}
{{- define "cs-workers.testPod" -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cs-workers.testLabels" . | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
    checkov.io/skip1: CKV_K8S_8=a one-shot check that exits in seconds has nothing for a liveness probe to watch
    checkov.io/skip2: CKV_K8S_9=a one-shot check serves no traffic, so it has no readiness to report
spec:
  restartPolicy: Never
  {{- include "cs-workers.podSpec" (dict "root" .root "settings" .root.Values.tests "component" .component) | nindent 2 }}
  containers:
    - name: check
      image: {{ .image | quote }}
      imagePullPolicy: IfNotPresent
      command:
        {{- toYaml .command | nindent 8 }}
      {{- with .env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        requests: {cpu: 50m, memory: 64Mi, ephemeral-storage: 16Mi}
        limits: {cpu: 500m, memory: 256Mi, ephemeral-storage: 128Mi}
      securityContext:
        {{- include "cs-workers.containerSecurityContext" (dict "root" .root "settings" dict) | nindent 8 }}
      volumeMounts:
        {{- include "cs-workers.tmpVolumeMount" . | nindent 8 }}
  volumes:
    {{- include "cs-workers.tmpVolume" "64Mi" | nindent 4 }}
{{- end -}}
