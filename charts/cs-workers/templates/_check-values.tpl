{{/*
cs-workers.checkValues: fails with a message that says what to write instead. Included by
check-values.yaml (so `helm template` checks too) and NOTES.txt.
*/}}
{{- define "cs-workers.checkValues" -}}
{{- $renamed := dict "cluster_type" "clusterType (celery or dask)" "sim_time_limit" "simTimeLimit" "secret" "secrets.values" "affinity" "nodeSize (a list of sizes) or sim.affinity" "repo_url" "nothing: it is a build setting; keep it in the worker_config" "branch" "nothing: it is a build setting; keep it in the worker_config" "env" "nothing: build arguments stay in the worker_config" -}}
{{- range $slug, $model := .Values.models }}
{{- range $old, $new := $renamed }}
{{- if hasKey $model $old }}
{{- fail (printf "models.%s.%s is a worker_config key; in values it is %s. `cs-cluster values --config worker_config.yaml` converts a whole worker_config." $slug $old $new) }}
{{- end }}
{{- end }}
{{- $limit := $model.simTimeLimit | default $.Values.modelDefaults.simTimeLimit }}
{{- if le (int $.Values.celery.visibilityTimeout) (int $limit) }}
{{- fail (printf "models.%s: simTimeLimit %v is not below celery.visibilityTimeout %v; Redis would hand the running sim to a second worker. Raise celery.visibilityTimeout." $slug $limit $.Values.celery.visibilityTimeout) }}
{{- end }}
{{- $expected := printf "%s-%s" (include "cs-workers.clean" $model.owner) (include "cs-workers.clean" $model.title) }}
{{- if ne $expected $slug }}
{{- fail (printf "models.%s: the key must be the model's slug %q (clean(owner)-clean(title)), so that its queues and names match what the gateway computes" $slug $expected) }}
{{- end }}
{{- end }}
{{- end -}}
