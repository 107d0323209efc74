{{/* vim: set filetype=mustache: */}}

{{/*
The chart's name (nameOverride wins), at most 63 characters.
*/}}
{{- define "cineflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name: fullnameOverride, else "<release>-<chart>" (just "<release>" when the
release name already contains the chart's name). Truncated to 50 characters so that
"<fullname>-notification-token" and the like stay within 63.
*/}}
{{- define "cineflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "cineflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Common labels of a component's objects. Call: include "cineflow.labels" (dict "ctx" $ "component" "core")
*/}}
{{- define "cineflow.labels" -}}
helm.sh/chart: {{ include "cineflow.chart" .ctx }}
{{ include "cineflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{/*
Selector labels of a component (immutable in Deployments: never add to them).
Call: include "cineflow.selectorLabels" (dict "ctx" $ "component" "core")
*/}}
{{- define "cineflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cineflow.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
An image reference from {registry, repository, tag, digest}: global.imageRegistry, when set, wins
over the image's registry (bitnami's common.images.image), the digest wins over the tag, the tag
defaults to the chart's appVersion. Call: include "cineflow.image" (dict "ctx" $ "image" .Values.core.image)
*/}}
{{- define "cineflow.image" -}}
{{- $registry := default .image.registry (.ctx.Values.global).imageRegistry -}}
{{- $repo := .image.repository -}}
{{- if $registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $registry) .image.repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString (default .ctx.Chart.AppVersion .image.tag)) -}}
{{- end -}}
{{- end -}}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "cineflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cineflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
imagePullSecrets of every pod: global.imagePullSecrets, then imagePullSecrets, each name once.
*/}}
{{- define "cineflow.imagePullSecrets" -}}
{{- range concat ((.Values.global).imagePullSecrets | default list) .Values.imagePullSecrets | uniq }}
- name: {{ . }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
The development database (devDatabase.enabled): one pod, its Service "<fullname>-devdb" on 27017,
and both database URLs pointing at it.
--------------------------------------------------------------------------------------------- */}}
{{- define "cineflow.devDatabase.name" -}}
{{- printf "%s-devdb" (include "cineflow.fullname" .) -}}
{{- end -}}

{{/* DB_URL of the core: database.coreURL, or the development database's mba. */}}
{{- define "cineflow.database.coreURL" -}}
{{- if .Values.devDatabase.enabled -}}
{{- printf "mongodb://%s:27017/mba" (include "cineflow.devDatabase.name" .) -}}
{{- else -}}
{{- .Values.database.coreURL -}}
{{- end -}}
{{- end -}}

{{/* DB_URL of the notification service and the sweeper: database.notificationURL, or the development database's noti. */}}
{{- define "cineflow.database.notificationURL" -}}
{{- if .Values.devDatabase.enabled -}}
{{- printf "mongodb://%s:27017/noti" (include "cineflow.devDatabase.name" .) -}}
{{- else -}}
{{- .Values.database.notificationURL -}}
{{- end -}}
{{- end -}}

{{/*
Whether the sweeper runs with the dev mailer in the trial case (devDatabase.enabled and no Resend
key): its APP_ENV is then development, whatever appEnv says, and it logs e-mails instead of
sending them.
*/}}
{{- define "cineflow.sweeper.devMailer" -}}
{{- if and .Values.devDatabase.enabled (not (include "cineflow.resend.enabled" .)) }}true{{ end -}}
{{- end -}}

{{/*
The StorageClass line of the development database's claim (bitnami's common.storage.class):
devDatabase.persistence.storageClass, else global.defaultStorageClass; "-" means storageClassName
"" (no dynamic provisioning); nothing at all leaves the cluster's default.
*/}}
{{- define "cineflow.devDatabase.storageClass" -}}
{{- $class := .Values.devDatabase.persistence.storageClass | default (.Values.global).defaultStorageClass | default "" -}}
{{- if eq $class "-" -}}
storageClassName: ""
{{- else if $class -}}
storageClassName: {{ $class | quote }}
{{- end -}}
{{- end -}}

{{/*
Whether a component (core, notification) gets a PodDisruptionBudget: pdb.create and more than one
pod (replicaCount, or hpa.minReplicas under an HPA). A budget over a single pod would only block
node drains. Call: include "cineflow.pdb.enabled" (dict "ctx" $ "component" "core")
*/}}
{{- define "cineflow.pdb.enabled" -}}
{{- $v := index .ctx.Values .component -}}
{{- $replicas := ternary $v.hpa.minReplicas $v.replicaCount $v.hpa.enabled -}}
{{- if and $v.pdb.create (gt (int $replicas) 1) }}true{{ end -}}
{{- end -}}

{{/*
Name of a component's metrics Service, "<fullname>-<component>-metrics", at most 63 characters (a
Service name is a DNS label): the full name is shortened for it when it must be.
Call: include "cineflow.metricsServiceName" (dict "ctx" $ "component" "core")
*/}}
{{- define "cineflow.metricsServiceName" -}}
{{- $suffix := printf "-%s-metrics" .component -}}
{{- printf "%s%s" (include "cineflow.fullname" .ctx | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{/*
Name of the sweeper's CronJob, "<fullname>-sweeper", at most 52 characters: the CronJob controller
appends 11 to name each Job, whose name must fit in a 63-character label.
*/}}
{{- define "cineflow.sweeper.cronJobName" -}}
{{- printf "%s-sweeper" (include "cineflow.fullname" . | trunc 44 | trimSuffix "-") -}}
{{- end -}}

{{/* The API port of a component (core 3000, notification 3001). */}}
{{- define "cineflow.port" -}}
{{- ternary 3000 3001 (eq . "core") -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
Secrets. Each kind is either given (a value), or an existingSecret the user manages, or, for the
JWT secret, the notification token and the admin password, generated once and kept across
upgrades (read back from the Secret with lookup; `helm template` has no cluster, so there it
generates a new value each time).
--------------------------------------------------------------------------------------------- */}}

{{/* Name of the Secret the chart creates for a kind: "<fullname>-<kind>". */}}
{{- define "cineflow.secretName" -}}
{{- printf "%s-%s" (include "cineflow.fullname" .ctx) .kind -}}
{{- end -}}

{{/*
The value stored under key in the chart's Secret <fullname>-<kind>: the given value, else the
value already in the cluster, else (when generate) 48 random characters.
Call: include "cineflow.secretValue" (dict "ctx" $ "kind" "jwt" "key" "jwt-secret" "value" "..." "generate" true)
*/}}
{{- define "cineflow.secretValue" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "cineflow.secretName" .) -}}
{{- $data := dict -}}
{{- if $existing }}{{ $data = $existing.data | default dict }}{{ end -}}
{{- if hasKey $data .key -}}
{{- index $data .key | b64dec -}}
{{- else if .generate -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
An env var from a Secret key. Call: include "cineflow.secretEnv" (dict "name" "JWT_SECRET" "secret" "x" "key" "y")
*/}}
{{- define "cineflow.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/* Secret name and key of each kind: the existingSecret when given, else the chart's. */}}
{{- define "cineflow.jwt.secretName" -}}
{{- default (include "cineflow.secretName" (dict "ctx" . "kind" "jwt")) .Values.jwt.existingSecret -}}
{{- end -}}
{{- define "cineflow.notificationToken.secretName" -}}
{{- default (include "cineflow.secretName" (dict "ctx" . "kind" "notification-token")) .Values.notificationToken.existingSecret -}}
{{- end -}}
{{- define "cineflow.resend.secretName" -}}
{{- default (include "cineflow.secretName" (dict "ctx" . "kind" "resend")) .Values.resend.existingSecret -}}
{{- end -}}
{{- define "cineflow.admin.secretName" -}}
{{- default (include "cineflow.secretName" (dict "ctx" . "kind" "admin")) .Values.admin.existingSecret -}}
{{- end -}}
{{- define "cineflow.database.secretName" -}}
{{- default (include "cineflow.secretName" (dict "ctx" . "kind" "database")) .Values.database.existingSecret -}}
{{- end -}}

{{/* Whether the sweeper gets RESEND_API_KEY (a key or an existingSecret is given). */}}
{{- define "cineflow.resend.enabled" -}}
{{- if or .Values.resend.apiKey .Values.resend.existingSecret }}true{{ end -}}
{{- end -}}

{{/*
ADMIN_EMAIL stored by the chart: admin.email, or in the trial case (devDatabase.enabled, no
admin.email and no admin.existingSecret) admin@cineflow.local, so that a trial has an admin who
can add movies, theatres and shows.
*/}}
{{- define "cineflow.admin.email" -}}
{{- if .Values.admin.email -}}
{{- .Values.admin.email -}}
{{- else if and .Values.devDatabase.enabled (not .Values.admin.existingSecret) -}}
admin@cineflow.local
{{- end -}}
{{- end -}}

{{/* Whether the core gets ADMIN_EMAIL and ADMIN_PASSWORD. */}}
{{- define "cineflow.admin.enabled" -}}
{{- if or (include "cineflow.admin.email" .) .Values.admin.existingSecret }}true{{ end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
Validation: fail rendering with a message that names the value to set.
--------------------------------------------------------------------------------------------- */}}
{{- define "cineflow.validate" -}}
{{- if .Values.devDatabase.enabled -}}
{{- if or .Values.database.coreURL .Values.database.notificationURL .Values.database.existingSecret -}}
{{- fail "devDatabase.enabled=true points both services at the in-cluster development database: leave database.coreURL, database.notificationURL and database.existingSecret empty (or set devDatabase.enabled=false to use your MongoDB)" -}}
{{- end -}}
{{- else if not .Values.database.existingSecret -}}
{{- if not .Values.database.coreURL -}}
{{- fail "database.coreURL is required (the core's MongoDB URL, database mba, e.g. mongodb://user:pass@mongo:27017/mba?authSource=admin), or set database.existingSecret (to try the chart without a MongoDB: devDatabase.enabled=true)" -}}
{{- end -}}
{{- if not .Values.database.notificationURL -}}
{{- fail "database.notificationURL is required (the notification service's and sweeper's MongoDB URL, database noti, e.g. mongodb://user:pass@mongo:27017/noti?authSource=admin), or set database.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.appEnv "production") .Values.sweeper.enabled (not (include "cineflow.resend.enabled" .)) (not .Values.devDatabase.enabled) -}}
{{- fail "resend.apiKey or resend.existingSecret is required when appEnv=production: the sweeper refuses to run without RESEND_API_KEY (set appEnv=development to log emails instead of sending them)" -}}
{{- end -}}
{{- if has (int .Values.metrics.port) (list 3000 3001) -}}
{{- fail (printf "metrics.port (%d) must differ from the services' API ports (core 3000, notification 3001)" (int .Values.metrics.port)) -}}
{{- end -}}
{{- if and .Values.admin.password (not (include "cineflow.admin.email" .)) -}}
{{- fail "admin.password is set without admin.email: set both (or neither)" -}}
{{- end -}}
{{- if and (eq .Values.appEnv "production") (lt (int .Values.core.config.bcryptCost) 10) -}}
{{- fail "core.config.bcryptCost must be at least 10 when appEnv=production" -}}
{{- end -}}
{{- if and .Values.jwt.secret (lt (len .Values.jwt.secret) 32) -}}
{{- fail "jwt.secret must be at least 32 characters (the core refuses shorter keys in production)" -}}
{{- end -}}
{{- range $c := list "core" "notification" -}}
{{- $v := index $.Values $c -}}
{{- $need := add (include "cineflow.durationSeconds" $v.http.shutdownDelay | int) (include "cineflow.durationSeconds" $v.http.shutdownTimeout | int) -}}
{{- if le (int $v.terminationGracePeriodSeconds) (int $need) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be larger than %s.http.shutdownDelay + %s.http.shutdownTimeout (%ds), or the kubelet kills pods before they drain" $c (int $v.terminationGracePeriodSeconds) $c $c (int $need)) -}}
{{- end -}}
{{- end -}}
{{- include "cineflow.sweeper.validate" . -}}
{{- end -}}

{{/*
A Go duration ("90s", "1m30s", "500ms") in whole seconds, rounded up. Call: include "cineflow.durationSeconds" "1m30s"
*/}}
{{- define "cineflow.durationSeconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" $d) -}}
{{- if ne $d "0" -}}
{{- fail (printf "%q is not a Go duration (e.g. 90s, 1m30s, 500ms)" $d) -}}
{{- end -}}
{{- end -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" $d -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $unit := trimPrefix $num . -}}
{{- $f := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total = addf $total (mulf (float64 $num) (index $f $unit)) -}}
{{- end -}}
{{- ceil $total | int -}}
{{- end -}}

{{/*
The sweeper's timing: SWEEP_DEADLINE = activeDeadlineSeconds - deadlineMarginSeconds (the margin
covers the Pushgateway push, up to 10s, and the telemetry flush, up to 5s, after the sweep), and
activeDeadlineSeconds must be shorter than the schedule's period when the schedule is every minute
or every N minutes (other schedules are not checked).
*/}}
{{- define "cineflow.sweeper.validate" -}}
{{- $s := .Values.sweeper -}}
{{- if lt (int $s.deadlineMarginSeconds) 15 -}}
{{- fail (printf "sweeper.deadlineMarginSeconds is %d: it must be at least 15 (after the sweep, the Pushgateway push may take 10s and the telemetry flush 5s before activeDeadlineSeconds kills the pod)" (int $s.deadlineMarginSeconds)) -}}
{{- end -}}
{{- $deadline := sub (int $s.activeDeadlineSeconds) (int $s.deadlineMarginSeconds) -}}
{{- if lt $deadline 10 -}}
{{- fail (printf "sweeper.activeDeadlineSeconds (%d) minus sweeper.deadlineMarginSeconds (%d) gives SWEEP_DEADLINE=%ds: it must be at least 10s" (int $s.activeDeadlineSeconds) (int $s.deadlineMarginSeconds) $deadline) -}}
{{- end -}}
{{- $send := include "cineflow.durationSeconds" $s.config.sendTimeout | int -}}
{{- if gt (mul 2 $send) $deadline -}}
{{- fail (printf "sweeper.config.sendTimeout (%s) must be at most half of SWEEP_DEADLINE (%ds = sweeper.activeDeadlineSeconds - sweeper.deadlineMarginSeconds)" $s.config.sendTimeout $deadline) -}}
{{- end -}}
{{- $lease := include "cineflow.durationSeconds" $s.config.leaseMargin | int -}}
{{- if lt $lease (int $s.deadlineMarginSeconds) -}}
{{- fail (printf "sweeper.config.leaseMargin (%s) must be at least sweeper.deadlineMarginSeconds (%ds): a sweep's batches must not be taken over before activeDeadlineSeconds has ended it" $s.config.leaseMargin (int $s.deadlineMarginSeconds)) -}}
{{- end -}}
{{- $period := 0 -}}
{{- $schedule := trim $s.schedule -}}
{{- if eq $schedule "* * * * *" -}}
{{- $period = 60 -}}
{{- else if regexMatch "^\\*/[0-9]+ \\* \\* \\* \\*$" $schedule -}}
{{- $period = mul 60 (int (regexFind "[0-9]+" $schedule)) -}}
{{- end -}}
{{- if and $period (ge (int $s.activeDeadlineSeconds) (int $period)) -}}
{{- fail (printf "sweeper.activeDeadlineSeconds (%d) must be shorter than the period of sweeper.schedule %q (%ds), so that a sweep ends before the next one is due" (int $s.activeDeadlineSeconds) $s.schedule (int $period)) -}}
{{- end -}}
{{- end -}}

{{/* SWEEP_DEADLINE, as a Go duration. */}}
{{- define "cineflow.sweeper.deadline" -}}
{{- printf "%ds" (sub (int .Values.sweeper.activeDeadlineSeconds) (int .Values.sweeper.deadlineMarginSeconds)) -}}
{{- end -}}

{{/*
Topology spread constraints of a component: each entry without a labelSelector selects the
component's own pods. Call: include "cineflow.topologySpread" (dict "ctx" $ "component" "core" "constraints" .Values.core.topologySpreadConstraints)
*/}}
{{- define "cineflow.topologySpread" -}}
{{- $out := list -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "cineflow.selectorLabels" (dict "ctx" $.ctx "component" $.component) | fromYaml)) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- with $out }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
The HTTP servers' shared settings as ConfigMap data. Call: include "cineflow.httpConfig" .Values.core.http
*/}}
{{- define "cineflow.httpConfig" -}}
SHUTDOWN_DELAY: {{ .shutdownDelay | quote }}
SHUTDOWN_TIMEOUT: {{ .shutdownTimeout | quote }}
BODY_LIMIT: {{ .bodyLimit | int64 | toString | quote }}
HTTP_READ_TIMEOUT: {{ .readTimeout | quote }}
HTTP_WRITE_TIMEOUT: {{ .writeTimeout | quote }}
HTTP_IDLE_TIMEOUT: {{ .idleTimeout | quote }}
{{- end -}}

{{/*
Settings every binary shares, as ConfigMap data; appEnv overrides APP_ENV (the sweeper's dev
mailer in the trial case). Call: include "cineflow.commonConfig" (dict "ctx" $ "appEnv" "")
*/}}
{{- define "cineflow.commonConfig" -}}
{{- $ctx := .ctx -}}
APP_ENV: {{ .appEnv | default .ctx.Values.appEnv | quote }}
LOG_LEVEL: {{ $ctx.Values.logLevel | quote }}
DB_CONNECT_TIMEOUT: {{ $ctx.Values.database.connectTimeout | quote }}
{{- with $ctx.Values.tracing.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
A component's ConfigMap data. Call: include "cineflow.configData" (dict "ctx" $ "component" "core")
*/}}
{{- define "cineflow.configData" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- include "cineflow.commonConfig" (dict "ctx" $ctx "appEnv" (ternary "development" "" (and (eq .component "sweeper") (eq (include "cineflow.sweeper.devMailer" $ctx) "true")))) }}
{{- if eq .component "core" }}
{{- $c := $v.core.config }}
PORT: "3000"
METRICS_PORT: {{ $v.metrics.port | int | toString | quote }}
{{ include "cineflow.httpConfig" $v.core.http }}
JWT_TTL: {{ $c.jwtTTL | quote }}
BCRYPT_COST: {{ $c.bcryptCost | int | toString | quote }}
SIGNIN_RATE_PER_MINUTE: {{ $c.signinRatePerMinute | toString | quote }}
SIGNIN_BURST: {{ $c.signinBurst | int | toString | quote }}
SIGNIN_ADDRESS_FAILURES_PER_MINUTE: {{ $c.signinAddressFailuresPerMinute | toString | quote }}
SIGNIN_ADDRESS_FAILURE_BURST: {{ $c.signinAddressFailureBurst | int | toString | quote }}
SIGNIN_ACCOUNT_FAILURES_PER_MINUTE: {{ $c.signinAccountFailuresPerMinute | toString | quote }}
SIGNIN_ACCOUNT_FAILURE_BURST: {{ $c.signinAccountFailureBurst | int | toString | quote }}
SIGNIN_BACKOFF_BASE: {{ $c.signinBackoffBase | quote }}
SIGNIN_BACKOFF_MAX: {{ $c.signinBackoffMax | quote }}
SIGNUP_RATE_PER_MINUTE: {{ $c.signupRatePerMinute | toString | quote }}
SIGNUP_BURST: {{ $c.signupBurst | int | toString | quote }}
AUTH_LIMITER_ENTRIES: {{ $c.authLimiterEntries | int | toString | quote }}
{{- with $c.trustedProxies }}
TRUSTED_PROXIES: {{ . | quote }}
{{- end }}
{{- with $c.corsAllowedOrigins }}
CORS_ALLOWED_ORIGINS: {{ join "," . | quote }}
{{- end }}
BOOKING_HOLD_TTL: {{ $c.bookingHoldTTL | quote }}
HOLD_EXPIRY_INTERVAL: {{ $c.holdExpiryInterval | quote }}
MAX_SEATS_PER_BOOKING: {{ $c.maxSeatsPerBooking | int | toString | quote }}
MAX_OPEN_SEATS_PER_USER: {{ $c.maxOpenSeatsPerUser | int | toString | quote }}
BOOKING_PROJECTION: {{ $c.bookingProjection | toString | quote }}
CATALOGUE_CACHE_TTL: {{ $c.catalogueCacheTTL | quote }}
CATALOGUE_CACHE_ENTRIES: {{ $c.catalogueCacheEntries | int | toString | quote }}
NOTIFICATION_SERVICE_URL: {{ printf "http://%s-notification:3001/notiservice/api/v1/notifications" (include "cineflow.fullname" $ctx) | quote }}
NOTIFICATION_TIMEOUT: {{ $c.notificationTimeout | quote }}
RELAY_INTERVAL: {{ $c.relayInterval | quote }}
RELAY_MAX_BACKOFF: {{ $c.relayMaxBackoff | quote }}
{{- else if eq .component "notification" }}
PORT: "3001"
METRICS_PORT: {{ $v.metrics.port | int | toString | quote }}
{{ include "cineflow.httpConfig" $v.notification.http }}
METRICS_STATS_TTL: {{ $v.notification.config.metricsStatsTTL | quote }}
{{- else if eq .component "sweeper" }}
{{- $c := $v.sweeper.config }}
SWEEP_DEADLINE: {{ include "cineflow.sweeper.deadline" $ctx | quote }}
EMAIL_FROM: {{ $v.sweeper.emailFrom | quote }}
RESEND_RATE_LIMIT: {{ $c.rateLimit | toString | quote }}
BATCH_SIZE: {{ $c.batchSize | int | toString | quote }}
SWEEP_CONCURRENCY: {{ $c.concurrency | int | toString | quote }}
SWEEP_PAGE_SIZE: {{ $c.pageSize | int | toString | quote }}
MAX_ATTEMPTS: {{ $c.maxAttempts | int | toString | quote }}
RETRY_BACKOFF_BASE: {{ $c.retryBackoffBase | quote }}
RETRY_BACKOFF_MAX: {{ $c.retryBackoffMax | quote }}
SEND_TIMEOUT: {{ $c.sendTimeout | quote }}
LEASE_MARGIN: {{ $c.leaseMargin | quote }}
PROJECT_FOR: {{ $c.projectFor | quote }}
OUTBOX_DIR: /tmp/outbox
{{- with $v.resend.baseURL }}
RESEND_BASE_URL: {{ . | quote }}
{{- end }}
{{- with $v.sweeper.pushgatewayURL }}
PUSHGATEWAY_URL: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A component's pod annotations: checksums of its ConfigMap and of the secret values, so that a
change rolls the pods (a change inside an existingSecret does not: restart them yourself). The
secret checksum is taken over the values, not the rendered Secrets: a generated value is random
only in the first install's rendering, and must not roll the pods on the first upgrade.
*/}}
{{- define "cineflow.podAnnotations" -}}
checksum/config: {{ include "cineflow.configData" (dict "ctx" .ctx "component" .component) | sha256sum }}
{{- $kinds := dict "core" (list "database" "jwt" "notificationToken" "admin") "notification" (list "database" "notificationToken") "sweeper" (list "database" "resend") }}
{{- $secrets := dict "devDatabase" .ctx.Values.devDatabase.enabled }}
{{- range (index $kinds .component) }}{{ $_ := set $secrets . (index $.ctx.Values .) }}{{ end }}
checksum/secrets: {{ $secrets | toJson | sha256sum }}
{{- with .annotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
