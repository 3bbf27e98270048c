{{/*
cs-workers.model.modelSecretEnvFrom (dict "root" $ "slug" $slug "model" $model): the model's own
secrets as envFrom. The chart's Secret is referenced as optional, so a model without secrets (or
an upgrade without the secrets file) renders the same pod template and rolls nothing.
*/}}
{{- define "cs-workers.model.secretEnvFrom" -}}
{{- $existing := dig "secrets" "existingSecret" "" .model -}}
- secretRef:
    name: {{ $existing | default (include "cs-workers.model.secretChartName" .) }}
    {{- if not $existing }}
    optional: true
    {{- end }}
{{- end -}}

{{/*
cs-workers.model.celeryDeployment (dict "root" $ "slug" $slug "model" $model "role" "io"|"sim"):
the Celery worker Deployment of one model and role. io and sim differ only in queue, replicas,
resources and placement, so they share this one definition.
*/}}
{{- define "cs-workers.model.celeryDeployment" -}}
{{- $root := .root -}}
{{- $resolved := include "cs-workers.model.resolved" . | fromYaml -}}
{{- $isIo := eq .role "io" -}}
{{- $settings := ternary $resolved.io $resolved.sim $isIo -}}
{{- $labelArgs := dict "root" $root "component" (printf "model-%s" .role) "slug" .slug -}}
{{- $nameArgs := dict "root" $root "slug" .slug -}}
{{- $defaults := ternary "io" (ternary "daskDriver.%[1]s, modelDefaults.sim" "sim" $resolved.isDask) $isIo -}}
{{- $where := printf "models.%s.%s.%%[1]s (or modelDefaults.%s.%%[1]s)" .slug .role $defaults -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ ternary (include "cs-workers.model.ioName" $nameArgs) (include "cs-workers.model.simName" $nameArgs) $isIo }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cs-workers.labels" $labelArgs | nindent 4 }}
spec:
  {{- /* KEDA sets the replicas of a Deployment it scales (model/scaledobject.yaml); an upgrade leaves them. */}}
  {{- if not (hasKey $resolved.scaled .role) }}
  replicas: {{ ternary $settings.replicas $resolved.simReplicas $isIo }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "cs-workers.selectorLabels" $labelArgs | nindent 6 }}
  template:
    metadata:
      {{- include "cs-workers.podTemplateMetadata" (merge (dict "settings" $settings "where" $where) $labelArgs) | nindent 6 }}
    spec:
      {{- include "cs-workers.podSpec" (dict "root" $root "settings" $settings "component" (printf "model-%s" .role) "slug" .slug) | nindent 6 }}
      {{- /* Celery's warm shutdown finishes the running task on SIGTERM: give a sim the time it may take. */}}
      terminationGracePeriodSeconds: {{ ternary 60 (min (add $resolved.simTimeLimit 60) $root.Values.modelDefaults.maxSimGracePeriodSeconds) $isIo }}
      containers:
        - name: worker
          image: {{ $resolved.image }}
          imagePullPolicy: {{ $resolved.imagePullPolicy }}
          command:
            - celery
            - --app
            - cs_runtime.worker:app
            - worker
            - --queues
            - {{ ternary $resolved.inputsQueue $resolved.simQueue $isIo }}
            - --concurrency
            - "1"
            - --prefetch-multiplier
            - "1"
            - --hostname
            - {{ printf "%s@%%h" .role | quote }}
            - --without-gossip
            - --without-mingle
            - --loglevel
            - INFO
          {{- $env := include "cs-workers.model.workerEnv" (dict "root" $root "resolved" $resolved "role" .role "slug" .slug) }}
          env:
            {{- $env | nindent 12 }}
            {{- with include "cs-workers.extraEnv" (dict "env" $env "settings" $settings "where" $where) }}{{ . | nindent 12 }}{{ end }}
          envFrom:
            {{- include "cs-workers.model.secretEnvFrom" . | nindent 12 }}
            {{- with $settings.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with include "cs-workers.metricsContainerPort" $root }}
          ports:
            {{- . | nindent 12 }}
          {{- end }}
          {{- /*
          The worker touches its heartbeat file from Celery's own timer; the probe reads the file's
          age, so probing never puts load on the broker (unlike `celery inspect ping`).
          */}}
          {{- $probe := dict "exec" (dict "command" (list "python" "-m" "cs_runtime.health" "--max-age" "120")) }}
          startupProbe:
            {{- toYaml (merge (dict "periodSeconds" 5 "failureThreshold" 60) $probe) | nindent 12 }}
          readinessProbe:
            {{- toYaml (merge (dict "periodSeconds" 30 "timeoutSeconds" 10) $probe) | nindent 12 }}
          livenessProbe:
            {{- toYaml (merge (dict "periodSeconds" 30 "timeoutSeconds" 10 "failureThreshold" 4) $probe) | nindent 12 }}
          {{- with $settings.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "cs-workers.containerSecurityContext" (dict "root" $root "settings" $settings) | nindent 12 }}
          volumeMounts:
            {{- include "cs-workers.tmpVolumeMount" . | nindent 12 }}
            {{- with $settings.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
        {{- with $settings.extraContainers }}
        {{- include "cs-workers.extraContainers" (dict "root" $root "containers" .) | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "cs-workers.tmpVolume" $settings.tmpSizeLimit | nindent 8 }}
        {{- with $settings.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}


{{/*
cs-workers.model.workerEnv (dict "root" $ "resolved" $resolved "role" "io"|"sim" "slug" $slug): the
environment the chart sets for a model's Celery worker (docs/runtime-contract.md).
*/}}
{{- define "cs-workers.model.workerEnv" -}}
{{- $resolved := .resolved -}}
- name: OWNER
  value: {{ $resolved.owner | quote }}
- name: TITLE
  value: {{ $resolved.title | quote }}
- name: CS_WORKER_ROLE
  value: {{ .role }}
- name: CS_CLUSTER_TYPE
  value: {{ $resolved.clusterType }}
- name: SIM_TIME_LIMIT
  value: {{ include "cs-workers.text" $resolved.simTimeLimit | quote }}
- name: INPUTS_TIME_LIMIT
  value: {{ include "cs-workers.text" $resolved.inputsTimeLimit | quote }}
{{ include "cs-workers.timeLimitEnv" .root }}
- name: CS_HEARTBEAT_FILE
  value: /tmp/cs-worker-heartbeat
{{- if $resolved.isDask }}
- name: DASK_SCHEDULER_ADDRESS
  value: {{ include "cs-workers.dask.schedulerAddress" . | quote }}
{{- end }}
{{- include "cs-workers.model.redisEnv" (dict "root" .root "key" $resolved.key) | nindent 0 }}
{{- range list "COMP_URL" "COMP_API_TOKEN" "BUCKET" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "cs-workers.workerSecret.name" $.root }}
      key: {{ . }}
      optional: true
{{- end }}
{{- include "cs-workers.metricsEnv" .root }}
{{- end -}}
