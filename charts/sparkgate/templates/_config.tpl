{{/* sparkgate.toml, rendered from the values. */}}
{{- define "sparkgate.config" -}}
{{- $root := . -}}
{{- $driversNs := include "sparkgate.driversNamespace" . -}}
# Rendered by the sparkgate Helm chart from its values; edit the values, not this file.
# gateway/sparkgate.example.toml documents every key.

[server]
bind = {{ printf "0.0.0.0:%v" .Values.ports.binary | toJson }}
{{- include "sparkgate.toml.keys" (dict "values" .Values.server "keys" (list "transport" "maxMessageSize" "handshakeTimeout" "readTimeout" "idleSessionTimeout" "maxConnections" "maxSessionsPerConnection" "maxOperationsPerSession" "defaultFetchSize" "maxFetchRows" "shutdownGrace" "shutdownCloseTimeout" "maxConnectionsPerUser" "maxConnectionsPerAddress" "adminUsers" "adminGroups" "allowNoneAuthOnNetwork" "statusWait" "sessionReuseTtl" "sessionReuseMax")) }}

[http]
{{- if .Values.http.enabled }}
bind = {{ printf "0.0.0.0:%v" .Values.ports.http | toJson }}
{{- end }}
{{- include "sparkgate.toml.keys" (dict "values" .Values.http "keys" (list "path" "cookieTtl" "trustedProxies" "maxBodySize" "bodyTimeout")) }}
{{- with include "sparkgate.secretFile" (dict "root" . "volume" "cookie-key") }}
cookie_key_file = {{ toJson . }}
{{- end }}
shared_sessions = {{ include "sparkgate.sharedSessions" . }}

[tls]
{{- if .Values.tls.secretName }}
cert_file = {{ printf "%s/tls.crt" (include "sparkgate.secretDir" "tls") | toJson }}
key_file = {{ printf "%s/tls.key" (include "sparkgate.secretDir" "tls") | toJson }}
{{- end }}

[backend]
{{- include "sparkgate.toml.keys" (dict "values" .Values.backend "keys" (list "address" "transport" "maxMessageSize" "connectTimeout" "callTimeout" "sessionCallTimeout" "executeTimeout" "maxConnectionsPerDriver" "serviceUser" "statusPoll" "sparkUi")) }}

[auth]
{{- include "sparkgate.toml.keys" (dict "values" .Values.auth "keys" (list "cacheTtl" "maxFailures" "failureWindow" "lockout" "maxConcurrentChecks" "checkWait")) }}
{{- range $i, $m := .Values.auth.methods }}

[[auth.methods]]
type = {{ toJson $m.type }}
{{- if eq $m.type "ldap" }}
{{- include "sparkgate.toml.keys" (dict "values" $m "keys" (list "url" "starttls" "connectTimeout" "operationTimeout" "userDnPattern" "bindDn" "userSearchBase" "userSearchFilter" "groupSource" "groupSearchBase" "groupSearchFilter" "groupNameAttribute" "userNameAttribute")) }}
{{- if $m.caSecret }}
ca_file = {{ include "sparkgate.secretFile" (dict "root" $root "volume" (printf "auth-%d-ca-secret" $i)) | toJson }}
{{- end }}
{{- if $m.bindPasswordSecret }}
bind_password_file = {{ include "sparkgate.secretFile" (dict "root" $root "volume" (printf "auth-%d-bind-password-secret" $i)) | toJson }}
{{- end }}
{{- else if eq $m.type "users_file" }}
path = {{ include "sparkgate.secretFile" (dict "root" $root "volume" (printf "auth-%d-secret" $i)) | toJson }}
{{- else if eq $m.type "jwt" }}
{{- include "sparkgate.toml.keys" (dict "values" $m "keys" (list "algorithms" "issuer" "audience" "userClaim" "groupsClaim" "leeway")) }}
{{- if $m.hs256Secret }}
hs256_secret_file = {{ include "sparkgate.secretFile" (dict "root" $root "volume" (printf "auth-%d-hs256-secret" $i)) | toJson }}
{{- end }}
{{- if $m.publicKeySecret }}
public_key_file = {{ include "sparkgate.secretFile" (dict "root" $root "volume" (printf "auth-%d-public-key-secret" $i)) | toJson }}
{{- end }}
{{- if $m.jwksSecret }}
jwks_file = {{ include "sparkgate.secretFile" (dict "root" $root "volume" (printf "auth-%d-jwks-secret" $i)) | toJson }}
{{- end }}
{{- end }}
{{- end }}

[admin]
bind = {{ printf "0.0.0.0:%v" .Values.ports.admin | toJson }}
{{- with include "sparkgate.secretFile" (dict "root" . "volume" "admin-token") }}
token_file = {{ toJson . }}
api = true
{{- else }}
# No admin.tokenSecret: health, readiness and metrics only.
api = false
{{- end }}

[cache]
{{- include "sparkgate.toml.keys" (dict "values" .Values.cache "keys" (list "ttl" "maxBytes" "maxResultBytes" "coalesceWait")) }}

[audit]
{{- include "sparkgate.toml.keys" (dict "values" .Values.audit "keys" (list "file" "stderr" "statement" "maxFileBytes" "rotateDaily" "keepFiles" "buffer")) }}

[usage]
{{- include "sparkgate.toml.keys" (dict "values" .Values.usage "keys" (list "file" "saveEvery" "minuteDetail" "retention")) }}

[pools]
{{- include "sparkgate.toml.keys" (dict "values" .Values.pools "keys" (list "maxSessionsPerDriver" "maxWaiting" "waitTimeout" "drainGrace" "stopDriversOnExit" "reconcileEvery")) }}

[kubernetes]
namespace = {{ toJson $driversNs }}
{{- with .Values.kubernetes }}
{{- include "sparkgate.toml.keys" (dict "values" . "keys" (list "image" "imagePullPolicy" "sparkSubmit" "thriftPort" "driverPort" "blockManagerPort" "uiPort" "startupTimeout" "notReadyTimeout")) }}
manage_service_accounts = {{ not $root.Values.tenantServiceAccounts.create }}
{{- include "sparkgate.toml.keys" (dict "values" . "keys" (list "leaderElection" "leaseName")) }}
lease_namespace = {{ toJson $root.Release.Namespace }}
{{- include "sparkgate.toml.keys" (dict "values" . "keys" (list "leaseDuration" "schedulerName")) }}
{{- if .podTemplate }}
pod_template_file = "/etc/sparkgate/driver-pod-template.yaml"
{{- end }}
{{- if .tolerations }}
tolerations = {{ include "sparkgate.toml.value" .tolerations }}
{{- end }}
resources = {{ include "sparkgate.toml.resources" .resources }}
node_selector = {{ include "sparkgate.toml.stringMap" .nodeSelector }}
labels = {{ include "sparkgate.toml.stringMap" .labels }}
{{- include "sparkgate.toml.keys" (dict "values" . "keys" (list "stopGrace")) }}
{{- end }}
# Built by the driver-auth init container.
driver_auth_jar = "/driver-auth/sparkgate-driver-auth.jar"
{{- range .Values.tenants }}
{{- $launcher := include "sparkgate.tenant.launcher" . }}

[[tenants]]
name = {{ toJson .name }}
groups = {{ include "sparkgate.toml.value" (default list .groups) }}
users = {{ include "sparkgate.toml.value" (default list .users) }}
launcher = {{ toJson $launcher }}
{{- with .backends }}
backends = {{ include "sparkgate.toml.value" . }}
{{- end }}
{{- with .driverMemory }}
driver_memory = {{ toJson . }}
{{- end }}
{{- if .sparkConf }}
spark_conf = {{ include "sparkgate.toml.stringMap" .sparkConf }}
{{- end }}
{{- if .hiveConf }}
hive_conf = {{ include "sparkgate.toml.stringMap" .hiveConf }}
{{- end }}
{{- if .ephemeralCatalog }}
ephemeral_catalog = true
{{- end }}
{{- if .refuseAddResources }}
refuse_add_resources = true
{{- end }}
{{- if .refuseGlobalTemp }}
refuse_global_temp = true
{{- end }}
{{- if .sparkUi }}
spark_ui = {{ include "sparkgate.toml.stringMap" .sparkUi }}
{{- end }}
{{- with .maxQueryTime }}
max_query_time = {{ toJson . }}
{{- end }}
{{- with .errorDetail }}
error_detail = {{ toJson . }}
{{- end }}
{{- with .cacheTtl }}
cache_ttl = {{ toJson . }}
{{- end }}
{{- with .cacheScope }}
cache_scope = {{ toJson . }}
{{- end }}
{{- include "sparkgate.toml.keys" (dict "values" . "keys" (list "maxRunningPerDriver" "maxQueued" "queueTimeout" "replaySessions")) }}
{{- if eq $launcher "kubernetes" }}
service_account = {{ include "sparkgate.tenant.serviceAccount" . | toJson }}
service_account_annotations = {{ include "sparkgate.toml.stringMap" .serviceAccountAnnotations }}
{{- end }}
{{- with .scaling }}
[tenants.scaling]
{{- include "sparkgate.toml.keys" (dict "values" . "keys" (list "minDrivers" "maxDrivers" "targetOperationsPerDriver" "scaleUpAfter" "idleTtl" "maxConcurrentLaunches")) }}
{{- end }}
{{- end }}
{{- end -}}
