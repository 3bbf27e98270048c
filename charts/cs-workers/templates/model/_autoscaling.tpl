{{/*
Autoscaling with KEDA (README, "Autoscaling"). Every autoscaled Deployment gets a ScaledObject whose
trigger is KEDA's metrics-api scaler reading the model's load from the gateway (GET
/<owner>/<title>/load, cs_runtime/load.py): `sims` counts the sims queued plus those a worker has
taken and not yet acknowledged (Celery acknowledges late), so a model goes to zero only once no sim
waits and none runs, `cooldownPeriod` seconds later.
*/}}

{{/* cs-workers.keda.anyScaled $: "true" when KEDA scales a Deployment of some model, else empty. */}}
{{- define "cs-workers.keda.anyScaled" -}}
{{- $scaled := false -}}
{{- range $slug, $model := .Values.models -}}
{{- if (include "cs-workers.model.resolved" (dict "root" $ "slug" $slug "model" $model) | fromYaml).scaled -}}
{{- $scaled = true -}}
{{- end -}}
{{- end -}}
{{- if $scaled }}true{{ end -}}
{{- end -}}

{{/* cs-workers.keda.loadUrl (dict "root" $ "slug" $slug): the model's load endpoint, by its Service's name. */}}
{{- define "cs-workers.keda.loadUrl" -}}
{{- /* The gateway finds a model by clean(owner)-clean(title): the slug's two parts are a path to it. */ -}}
{{- $parts := splitList "-" .slug -}}
{{- printf "http://%s.%s.svc:%v/%s/%s/load" (include "cs-workers.gateway.fullname" .root) .root.Release.Namespace (int .root.Values.gateway.service.port) (index $parts 0) (index $parts 1) -}}
{{- end -}}

{{/*
cs-workers.keda.loadTrigger (dict "root" $ "slug" $slug "name" "sims" "valueLocation" "sims"): a metrics-api
trigger on one number of the model's load (a GJSON path into the answer). targetValue 1: one worker per
queued or running job; activation above 0.
*/}}
{{- define "cs-workers.keda.loadTrigger" -}}
- type: metrics-api
  name: {{ .name }}
  metadata:
    url: {{ include "cs-workers.keda.loadUrl" . | quote }}
    format: json
    valueLocation: {{ .valueLocation | quote }}
    targetValue: "1"
    activationTargetValue: "0"
    {{- if .root.Values.gateway.auth.enabled }}
    authMode: bearer
    {{- end }}
  {{- if .root.Values.gateway.auth.enabled }}
  authenticationRef:
    name: {{ include "cs-workers.keda.triggerAuthenticationName" .root }}
  {{- end }}
{{- end -}}

{{/*
cs-workers.keda.scaledObject (dict "root" $ "slug" $slug "resolved" $resolved "component" "model-sim"
"scaled" $counts "target" $deploymentName "triggers" $triggersYaml "formula" $formulaOrEmpty): one
ScaledObject, with the replica counts of cs-workers.model.resolved's `scaled`. The HPA KEDA makes waits cooldownPeriod (at most the API's 3600 s) before it removes
workers it no longer needs; a worker told to stop finishes its running task first (Celery's warm
shutdown within the pod's termination grace period).
*/}}
{{- define "cs-workers.keda.scaledObject" -}}
{{- $autoscaling := .resolved.autoscaling -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ .target }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cs-workers.labels" (dict "root" .root "component" .component "slug" .slug) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .target }}
  pollingInterval: {{ $autoscaling.pollingInterval }}
  cooldownPeriod: {{ $autoscaling.cooldownPeriod }}
  {{- if hasKey .scaled "idleReplicaCount" }}
  idleReplicaCount: {{ .scaled.idleReplicaCount }}
  {{- end }}
  minReplicaCount: {{ .scaled.minReplicaCount }}
  maxReplicaCount: {{ .scaled.maxReplicaCount }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: {{ min (int $autoscaling.cooldownPeriod) 3600 }}
    {{- with .formula }}
    scalingModifiers:
      formula: {{ . | quote }}
      target: "1"
      metricType: AverageValue
    {{- end }}
  triggers:
    {{- .triggers | nindent 4 }}
{{- end -}}
