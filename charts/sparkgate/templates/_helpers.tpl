{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "sparkgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sparkgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sparkgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sparkgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sparkgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sparkgate.labels" -}}
helm.sh/chart: {{ include "sparkgate.chart" . }}
{{ include "sparkgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sparkgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sparkgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The drivers' namespace: drivers.namespace, else the release namespace. */}}
{{- define "sparkgate.driversNamespace" -}}
{{- default .Release.Namespace .Values.drivers.namespace -}}
{{- end -}}

{{/* A tenant's launcher (default "kubernetes"). Argument: the tenant. */}}
{{- define "sparkgate.tenant.launcher" -}}
{{- default "kubernetes" .launcher -}}
{{- end -}}

{{/* A tenant's ServiceAccount name (default sparkgate-<name>). Argument: the tenant. */}}
{{- define "sparkgate.tenant.serviceAccount" -}}
{{- default (printf "sparkgate-%s" .name) .serviceAccount -}}
{{- end -}}

{{/* The tenants that run on the Kubernetes launcher, as a JSON list (fromJsonArray to use). */}}
{{- define "sparkgate.kubernetesTenants" -}}
{{- $out := list -}}
{{- range .Values.tenants -}}
{{- if eq (include "sparkgate.tenant.launcher" .) "kubernetes" -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Where a Secret reference is mounted. Argument: the volume name. */}}
{{- define "sparkgate.secretDir" -}}
{{- printf "/run/secrets/sparkgate/%s" . -}}
{{- end -}}

{{/* Durations ------------------------------------------------------------------------------ */}}

{{/*
Seconds in a humantime duration ("30s", "5m", "1h 30m", "1h30m"), rounded down. Units: ms, s, m,
h, d and their long forms (sec, secs, second(s), min, mins, minute(s), hr, hrs, hour(s), day(s)).
*/}}
{{- define "sparkgate.durationSeconds" -}}
{{- $total := 0 -}}
{{- $parts := regexFindAll "[0-9]+\\s*[a-zA-Z]+" (toString .) -1 -}}
{{- if not $parts -}}
{{- fail (printf "sparkgate: %q is not a duration (e.g. \"30s\", \"5m\", \"1h 30m\")" (toString .)) -}}
{{- end -}}
{{- range $parts -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := regexReplaceAll "^[0-9]+\\s*" . "" -}}
{{- if has $unit (list "ms" "msec" "millis" "millisecond" "milliseconds") -}}
{{- $total = add $total (div $n 1000) -}}
{{- else if has $unit (list "s" "sec" "secs" "second" "seconds") -}}
{{- $total = add $total $n -}}
{{- else if has $unit (list "m" "min" "mins" "minute" "minutes") -}}
{{- $total = add $total (mul $n 60) -}}
{{- else if has $unit (list "h" "hr" "hrs" "hour" "hours") -}}
{{- $total = add $total (mul $n 3600) -}}
{{- else if has $unit (list "d" "day" "days") -}}
{{- $total = add $total (mul $n 86400) -}}
{{- else -}}
{{- fail (printf "sparkgate: unknown unit %q in duration %q" $unit (toString $)) -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{- define "sparkgate.terminationGracePeriodSeconds" -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- $grace := include "sparkgate.durationSeconds" (default "30s" .Values.server.shutdownGrace) | atoi -}}
{{- $close := include "sparkgate.durationSeconds" (default "10s" .Values.server.shutdownCloseTimeout) | atoi -}}
{{- add $grace (mul 2 $close) .Values.terminationGraceExtraSeconds -}}
{{- end -}}
{{- end -}}

{{/* TOML ----------------------------------------------------------------------------------- */}}

{{/*
A TOML value. Strings, numbers and booleans are written as JSON, whose string escapes are valid
TOML basic strings; lists become arrays and maps inline tables (keys sorted, quoted).
*/}}
{{- define "sparkgate.toml.value" -}}
{{- if kindIs "map" . -}}
{{- $items := list -}}
{{- range $k := keys . | sortAlpha -}}
{{- $items = append $items (printf "%s = %s" (toJson $k) (include "sparkgate.toml.value" (get $ $k))) -}}
{{- end -}}
{{- if $items -}}{ {{ join ", " $items }} }{{- else -}}{}{{- end -}}
{{- else if kindIs "slice" . -}}
{{- $items := list -}}
{{- range . -}}
{{- $items = append $items (include "sparkgate.toml.value" .) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "float64" . -}}
{{- /* YAML numbers arrive as float64; integers must stay integers in TOML. */ -}}
{{- if eq (floor .) . -}}{{ int64 . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{/* A map of strings as a TOML inline table, every value written as a string. */}}
{{- define "sparkgate.toml.stringMap" -}}
{{- $items := list -}}
{{- range $k := keys (default dict .) | sortAlpha -}}
{{- $items = append $items (printf "%s = %s" (toJson $k) (toJson (toString (get $ $k)))) -}}
{{- end -}}
{{- if $items -}}{ {{ join ", " $items }} }{{- else -}}{}{{- end -}}
{{- end -}}

{{/*
`key = value` lines for the listed camelCase keys of a values map, as snake_case TOML keys; keys
that are absent or null are left out, so sparkgate's default applies.
Arguments: dict "values" MAP "keys" LIST.
*/}}
{{- define "sparkgate.toml.keys" -}}
{{- $v := .values -}}
{{- range .keys -}}
{{- if and (hasKey $v .) (not (kindIs "invalid" (get $v .))) }}
{{ snakecase . }} = {{ include "sparkgate.toml.value" (get $v .) }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Secrets by reference ------------------------------------------------------------------- */}}

{{/*
Every single-key Secret reference of the config, as a JSON list of {volume, secret, key, file}:
the Deployment mounts that key at `file` (/run/secrets/sparkgate/<volume>/<key>), and the TOML
points at that file. The chart never reads a Secret, only names it. (The TLS Secret, with its two
keys, is mounted by the Deployment at /run/secrets/sparkgate/tls.)
*/}}
{{- define "sparkgate.secretMounts" -}}
{{- $out := list -}}
{{- with .Values.admin.tokenSecret -}}
{{- if .name -}}
{{- $out = append $out (dict "volume" "admin-token" "secret" .name "key" .key "file" (printf "%s/%s" (include "sparkgate.secretDir" "admin-token") .key)) -}}
{{- end -}}
{{- end -}}
{{- with include "sparkgate.cookieKeySecret" . | fromJson -}}
{{- $out = append $out (dict "volume" "cookie-key" "secret" .name "key" .key "file" (printf "%s/%s" (include "sparkgate.secretDir" "cookie-key") .key)) -}}
{{- end -}}
{{- range $i, $m := .Values.auth.methods -}}
{{- range $field := list "bindPasswordSecret" "caSecret" "secret" "hs256Secret" "publicKeySecret" "jwksSecret" -}}
{{- $ref := get $m $field -}}
{{- if $ref -}}
{{- $vol := printf "auth-%d-%s" $i (kebabcase $field) -}}
{{- $out = append $out (dict "volume" $vol "secret" $ref.name "key" $ref.key "file" (printf "%s/%s" (include "sparkgate.secretDir" $vol) $ref.key)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The mounted file of a Secret reference. Arguments: dict "root" $ "volume" NAME. */}}
{{- define "sparkgate.secretFile" -}}
{{- $vol := .volume -}}
{{- range include "sparkgate.secretMounts" .root | fromJsonArray -}}
{{- if eq .volume $vol -}}{{ .file }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* Driver container resources (ResourceRequirements shape) as a TOML inline table of string maps. */}}
{{- define "sparkgate.toml.resources" -}}
{{- $res := default dict . -}}
{{- $items := list -}}
{{- range $k := keys $res | sortAlpha -}}
{{- $items = append $items (printf "%s = %s" (toJson $k) (include "sparkgate.toml.stringMap" (get $res $k))) -}}
{{- end -}}
{{- if $items -}}{ {{ join ", " $items }} }{{- else -}}{}{{- end -}}
{{- end -}}

{{/* The Secret holding the HTTP cookie and handle key, as JSON {name, key} ({} for none): the
configured one, else the chart's own when several replicas must share one. */}}
{{- define "sparkgate.cookieKeySecret" -}}
{{- if .Values.http.enabled -}}
{{- if .Values.http.cookieKeySecret.name -}}
{{- toJson .Values.http.cookieKeySecret -}}
{{- else if gt (int .Values.replicaCount) 1 -}}
{{- toJson (dict "name" (printf "%s-cookie-key" (include "sparkgate.fullname" .)) "key" "cookie-key") -}}
{{- else -}}
{}
{{- end -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/* Whether replicas serve each other's HTTP sessions: http.sharedSessions, else replicaCount > 1. */}}
{{- define "sparkgate.sharedSessions" -}}
{{- if kindIs "bool" .Values.http.sharedSessions -}}
{{- .Values.http.sharedSessions -}}
{{- else -}}
{{- gt (int .Values.replicaCount) 1 -}}
{{- end -}}
{{- end -}}
