{{/*
cs-workers.checkValues: fails with a message that says what to write instead. Included by
checks/first/check-values.yaml (so `helm template` checks too, before anything else renders) and
NOTES.txt.
*/}}
{{- define "cs-workers.checkValues" -}}
{{- /* files/value-keys.json: the keys of values.yaml (templates cannot read it), by `cs-cluster schema --write`. */}}
{{- include "cs-workers.checkDefaultsPresent" (dict "defaults" (.Files.Get "files/value-keys.json" | fromJson) "values" .Values "path" "" "chart" (printf "%s %s" .Chart.Name .Chart.Version)) }}
{{- $renamed := dict "cluster_type" "clusterType (celery or dask)" "sim_time_limit" "simTimeLimit" "secret" "secrets.values" "affinity" "nodeSize (a list of sizes) or sim.affinity" "repo_url" "nothing: it is a build setting; keep it in the worker_config" "branch" "nothing: it is a build setting; keep it in the worker_config" "env" "nothing: build arguments stay in the worker_config" -}}
{{- range $slug, $model := .Values.models }}
{{- range $old, $new := $renamed }}
{{- if hasKey $model $old }}
{{- fail (printf "models.%s.%s is a worker_config key; in values it is %s. `cs-cluster values --config worker_config.yaml` converts a whole worker_config." $slug $old $new) }}
{{- end }}
{{- end }}
{{- /* The workers' own start-up rule (cs_runtime.settings.WorkerSettings), refused here first. */}}
{{- $limit := $model.simTimeLimit | default $.Values.modelDefaults.simTimeLimit | int64 }}
{{- $inputsLimit := $.Values.modelDefaults.inputsTimeLimit | int64 }}
{{- $hard := include "cs-workers.hardTimeLimit" (dict "root" $ "soft" (max $limit $inputsLimit)) | float64 }}
{{- if le (float64 $.Values.celery.visibilityTimeout) $hard }}
{{- fail (printf "models.%s: simTimeLimit %d gives the model's workers a longest hard time limit of %s s (the longer of simTimeLimit and modelDefaults.inputsTimeLimit %d, plus celery.hardTimeLimitGraceSeconds and the worst case of callback); celery.visibilityTimeout %s must be above it, or the workers refuse to start: Redis would hand a running task to a second worker. Raise celery.visibilityTimeout or lower simTimeLimit." $slug $limit (include "cs-workers.text" $hard) $inputsLimit (include "cs-workers.text" $.Values.celery.visibilityTimeout)) }}
{{- end }}
{{- $shadowed := list }}
{{- range $name, $_ := dig "secrets" "values" dict $model }}
{{- if include "cs-workers.isRuntimeVariable" $name }}{{ $shadowed = append $shadowed $name }}{{ end }}
{{- end }}
{{- if $shadowed }}
{{- fail (printf "models.%s.secrets.values: %s: the chart sets these for the runtime (names starting CS_ or REDIS_, and %s); rename the secret" $slug (join ", " (sortAlpha $shadowed)) (join ", " (include "cs-workers.runtimeVariableNames" $ | splitList " "))) }}
{{- end }}
{{- $expected := printf "%s-%s" (include "cs-workers.clean" $model.owner) (include "cs-workers.clean" $model.title) }}
{{- if ne $expected $slug }}
{{- fail (printf "models.%s: the key must be the model's slug %q (clean(owner)-clean(title)), so that its queues and names match what the gateway computes" $slug $expected) }}
{{- end }}
{{- $resolved := include "cs-workers.model.resolved" (dict "root" $ "slug" $slug "model" $model) | fromYaml }}
{{- if $resolved.autoscaling.enabled }}
{{- if not (or $.Values.keda.assumeInstalled ($.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) }}
{{- fail (printf "models.%s: autoscaling is enabled (models.%s.autoscaling or modelDefaults.autoscaling), but the cluster does not serve keda.sh/v1alpha1: install KEDA first (README, \"Autoscaling\"), or set keda.assumeInstalled=true to render its objects anyway (helm template, GitOps)" $slug $slug) }}
{{- end }}
{{- if gt (int $resolved.io.minReplicas) (int $resolved.io.replicas) }}
{{- fail (printf "models.%s: io.minReplicas %d is above io.replicas %d (the model's or modelDefaults.io's); autoscaling keeps the io workers between the two" $slug (int $resolved.io.minReplicas) (int $resolved.io.replicas)) }}
{{- end }}
{{- end }}
{{- end }}
{{- include "cs-workers.checkUserLabels" (dict "labels" .Values.commonLabels "where" "commonLabels") }}
{{- with $.Values.workerSecret.values }}
{{- if and (trim (.COMP_URL | default "")) (not (trim (.COMP_API_TOKEN | default ""))) }}
{{- fail "workerSecret.values: COMP_URL is set but COMP_API_TOKEN is not; workers refuse to start without the token the webserver wants" }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The environment variables the chart sets on model workers and the runtime reads (see
docs/runtime-contract.md); a model's secrets must not set them, or they would change the workers
behind the chart's checks. tests/security/test_every_render.py checks this list against what the
runtime reads and what the chart renders.
*/}}
{{- define "cs-workers.runtimeVariableNames" -}}
OWNER TITLE SIM_TIME_LIMIT INPUTS_TIME_LIMIT CELERY_VISIBILITY_TIMEOUT DASK_SCHEDULER_ADDRESS COMP_URL COMP_API_TOKEN BUCKET POD_NAME
{{- end -}}
{{- define "cs-workers.isRuntimeVariable" -}}
{{- if or (hasPrefix "CS_" .) (hasPrefix "REDIS_" .) (has . (splitList " " (include "cs-workers.runtimeVariableNames" .))) }}true{{ end }}
{{- end -}}

{{/*
cs-workers.checkDefaultsPresent (dict "defaults" $map "values" $map "path" "a.b" "chart" "name-version"):
every key of this chart's values.yaml must be in the values. `helm upgrade --reuse-values` with a
newer chart renders it with the *old* chart's defaults, so a key the newer chart added is missing:
templates would meet nil (a Go reflection error, or a feature silently off). Say so instead.
*/}}
{{- define "cs-workers.checkDefaultsPresent" -}}
{{- $values := .values -}}
{{- range $key, $default := .defaults }}
{{- $where := ternary $key (printf "%s.%s" $.path $key) (eq $.path "") }}
{{- if not (hasKey $values $key) }}
{{- fail (printf "values lack %s, which %s sets by default: these values were carried over from a release of an older chart, as `helm upgrade --reuse-values` does. Upgrade with --reset-then-reuse-values (Helm 3.14 and later) instead, or give all your values files again; to empty a setting, give {} or \"\" rather than null." $where $.chart) }}
{{- end }}
{{- if and (kindIs "map" $default) (kindIs "map" (index $values $key)) }}
{{- include "cs-workers.checkDefaultsPresent" (dict "defaults" $default "values" (index $values $key) "path" $where "chart" $.chart) }}
{{- end }}
{{- end }}
{{- end -}}
