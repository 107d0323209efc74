package charttest

// Lint and template the chart over a matrix of values, check real properties of what it renders,
// and check that the values schema and the chart's own validation reject bad values.
// Identifiers of this file start with "ct" so that they never clash with the package's other files.

import (
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	ctRelease   = "cf"
	ctNamespace = "cineflow"
	ctFullname  = "cf-cineflow"
)

// ctRequired are the values without which the chart refuses to render (appEnv=production).
const ctRequired = `
database:
  coreURL: mongodb://mongo:27017/mba?replicaSet=rs0
  notificationURL: mongodb://mongo:27017/noti?replicaSet=rs0
resend:
  apiKey: re_test_key
`

// ctExistingSecrets gives an existingSecret for every kind, and no secret value at all.
const ctExistingSecrets = `
database:
  existingSecret: cf-db
  coreURLKey: core
  notificationURLKey: noti
jwt:
  existingSecret: cf-jwt
notificationToken:
  existingSecret: cf-token
  secretKey: token
resend:
  existingSecret: cf-resend
admin:
  existingSecret: cf-admin
`

// ctExisting maps each existingSecret of ctExistingSecrets to the keys the pods may read from it.
var ctExisting = map[string][]string{
	"cf-db":     {"core", "noti"},
	"cf-jwt":    {"jwt-secret"},
	"cf-token":  {"token"},
	"cf-resend": {"resend-api-key"},
	"cf-admin":  {"admin-email", "admin-password"},
}

type ctObj = map[string]any

// ctCase is one point of the matrix: values files (YAML text) and --set arguments.
type ctCase struct {
	name     string
	files    []string
	sets     []string
	existing map[string][]string // existing Secrets the chart may reference
	devDB    bool                // devDatabase.enabled: one more Deployment and Service
	fullname string              // the release's full name when fullnameOverride sets it
}

// full is the case's full name (ctFullname unless fullnameOverride).
func (c ctCase) full() string {
	if c.fullname != "" {
		return c.fullname
	}
	return ctFullname
}

// ctLongName is a fullnameOverride at the chart's 50-character bound: every name built on it
// must still fit its kind's limit (63 for a Service).
var ctLongName = strings.Repeat("x", 50)

func (c ctCase) args(t *testing.T) []string {
	t.Helper()
	var args []string
	for i, f := range c.files {
		p := filepath.Join(t.TempDir(), fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", p)
	}
	for _, s := range c.sets {
		args = append(args, "--set", s)
	}
	return args
}

var ctMatrix = []ctCase{
	{name: "defaults", files: []string{ctRequired}},
	{name: "existing-secrets", files: []string{ctExistingSecrets}, existing: ctExisting},
	{name: "monitoring", files: []string{ctRequired}, sets: []string{
		"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.additionalLabels.release=kps",
		"metrics.prometheusRule.enabled=true", "metrics.prometheusRule.additionalLabels.release=kps",
		"metrics.dashboards.enabled=true", "sweeper.pushgatewayURL=http://pushgateway.monitoring:9091"}},
	{name: "network-policy", files: []string{ctRequired}, sets: []string{
		"networkPolicy.enabled=true", "sweeper.pushgatewayURL=http://pushgateway.monitoring:9091",
		"tracing.otlpEndpoint=http://otel-collector.monitoring:4318"}},
	{name: "hpa-pdb", files: []string{ctRequired}, sets: []string{
		"core.hpa.enabled=true", "notification.hpa.enabled=true", "core.pdb.create=true",
		"notification.pdb.create=true", "notification.pdb.minAvailable=50%"}},
	{name: "admin-and-every-minute", files: []string{ctRequired}, sets: []string{
		"admin.email=admin@cineflow.test", "sweeper.schedule=* * * * *", "sweeper.activeDeadlineSeconds=50",
		"sweeper.config.sendTimeout=10s", "imagePullSecrets[0]=regcred", "core.image.digest=sha256:" + strings.Repeat("a", 64)}},
	{name: "development-without-resend", sets: []string{
		"appEnv=development", "database.coreURL=mongodb://mongo:27017/mba", "database.notificationURL=mongodb://mongo:27017/noti"}},
	{name: "single-replica", files: []string{ctRequired}, sets: []string{
		"core.replicaCount=1", "notification.hpa.enabled=true", "notification.hpa.minReplicas=1"}},
	// What `helm install cineflow charts/cineflow --set devDatabase.enabled=true` renders: nothing else.
	{name: "trial", sets: []string{"devDatabase.enabled=true"}, devDB: true},
	{name: "trial-persistence", devDB: true, sets: []string{"devDatabase.enabled=true", "devDatabase.persistence.enabled=true",
		"devDatabase.persistence.size=2Gi", "global.defaultStorageClass=standard", "resend.apiKey=re_trial"}},
	{name: "trial-network-policy", devDB: true, sets: []string{"devDatabase.enabled=true", "networkPolicy.enabled=true",
		"devDatabase.persistence.enabled=true", "devDatabase.persistence.storageClass=-"}},
	{name: "ingress", files: []string{ctRequired, `
ingress:
  annotations:
    cert-manager.io/cluster-issuer: letsencrypt
    example.com/release: "{{ .Release.Name }}"
`}, sets: []string{
		"ingress.enabled=true", "ingress.ingressClassName=nginx", "ingress.hostname=tickets.example.com", "ingress.tls=true",
		"ingress.extraHosts[0].name=api.example.com", "ingress.extraHosts[1].name=old.example.com",
		"ingress.extraHosts[1].path=/mba/api/v1", "ingress.extraHosts[1].pathType=ImplementationSpecific",
		"ingress.extraTls[0].hosts[0]=api.example.com", "ingress.extraTls[0].secretName=api-tls"}},
	{name: "global", files: []string{ctRequired}, fullname: ctLongName, sets: []string{
		"global.imageRegistry=mirror.example.com", "global.imagePullSecrets[0]=mirror-cred", "global.imagePullSecrets[1]=regcred",
		"imagePullSecrets[0]=regcred", "fullnameOverride=" + ctLongName, "metrics.serviceMonitor.enabled=true",
		// A parent chart shares its own globals: they must pass the schema.
		"global.storageClass=fast", "global.security.allowInsecureImages=true"}},
	{name: "exposed-services", files: []string{ctRequired, `
metrics:
  service:
    annotations:
      prometheus.io/scrape: "true"
`}, sets: []string{
		"core.service.type=LoadBalancer", "core.service.externalTrafficPolicy=Local", "core.service.loadBalancerIP=203.0.113.10",
		"core.service.loadBalancerSourceRanges[0]=198.51.100.0/24", "core.service.nodePorts.http=30080",
		"notification.service.type=NodePort", "notification.service.nodePorts.http=30081", "metrics.port=9100"}},
}

// ctRender runs helm template and returns the rendered objects (hooks included).
func ctRender(t *testing.T, args ...string) []ctObj {
	t.Helper()
	all := append([]string{"template", ctRelease, chartDir(t), "--namespace", ctNamespace}, args...)
	out, errOut, err := helm(t, all...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	var objs []ctObj
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(ctStripComments(doc)) == "" {
			continue
		}
		var o ctObj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if o == nil {
			continue
		}
		objs = append(objs, o)
	}
	return objs
}

func ctStripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// ctGet walks maps and lists: ctGet(o, "spec", "template", "spec", "containers", 0).
func ctGet(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func ctStr(v any, path ...any) string { s, _ := ctGet(v, path...).(string); return s }
func ctList(v any, path ...any) []any { l, _ := ctGet(v, path...).([]any); return l }
func ctMap(v any, path ...any) ctObj  { m, _ := ctGet(v, path...).(map[string]any); return m }

func ctNum(v any, path ...any) (int, bool) {
	f, ok := ctGet(v, path...).(float64)
	return int(f), ok
}

func ctKinds(objs []ctObj) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[ctStr(o, "kind")]++
	}
	return n
}

func ctOfKind(objs []ctObj, kind string) []ctObj {
	var out []ctObj
	for _, o := range objs {
		if ctStr(o, "kind") == kind {
			out = append(out, o)
		}
	}
	return out
}

func ctFind(objs []ctObj, kind, name string) ctObj {
	for _, o := range objs {
		if ctStr(o, "kind") == kind && ctStr(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

// ctPodSpec is the pod spec of a Deployment or a CronJob.
func ctPodSpec(o ctObj) ctObj {
	if ctStr(o, "kind") == "CronJob" {
		return ctMap(o, "spec", "jobTemplate", "spec", "template", "spec")
	}
	return ctMap(o, "spec", "template", "spec")
}

func ctPodMeta(o ctObj) ctObj {
	if ctStr(o, "kind") == "CronJob" {
		return ctMap(o, "spec", "jobTemplate", "spec", "template", "metadata")
	}
	return ctMap(o, "spec", "template", "metadata")
}

// ctConfig is the data of a component's ConfigMap (of the release named full).
func ctConfig(t *testing.T, objs []ctObj, full, component string) map[string]string {
	t.Helper()
	cm := ctFind(objs, "ConfigMap", full+"-"+component)
	if cm == nil {
		t.Fatalf("no ConfigMap %s-%s", full, component)
	}
	out := map[string]string{}
	for k, v := range ctMap(cm, "data") {
		out[k], _ = v.(string)
	}
	return out
}

func ctCronPeriod(schedule string) time.Duration {
	if schedule == "* * * * *" {
		return time.Minute
	}
	if m := regexp.MustCompile(`^\*/([0-9]+) \* \* \* \*$`).FindStringSubmatch(schedule); m != nil {
		n, _ := strconv.Atoi(m[1])
		return time.Duration(n) * time.Minute
	}
	return 0
}

func TestChartLintAndTemplateMatrix(t *testing.T) {
	for _, c := range ctMatrix {
		t.Run(c.name, func(t *testing.T) {
			args := c.args(t)
			lint := append([]string{"lint", "--strict", chartDir(t)}, args...)
			if out, errOut, err := helm(t, lint...); err != nil {
				t.Fatalf("helm lint --strict: %v\n%s\n%s", err, out, errOut)
			}
			objs := ctRender(t, args...)
			ctCheckCommon(t, c, objs)
			ctCheckCase(t, c.name, objs)
		})
	}
}

// ctCheckCommon asserts what holds for every values of the matrix.
func ctCheckCommon(t *testing.T, c ctCase, objs []ctObj) {
	t.Helper()
	kinds := ctKinds(objs)
	full := c.full()
	// Two Deployments and four Services (API and metrics of core and notification), plus the
	// development database's Deployment and Service.
	wantDeployments, wantServices := 2, 4
	if c.devDB {
		wantDeployments, wantServices = 3, 5
	}
	for kind, want := range map[string]int{"Deployment": wantDeployments, "Service": wantServices, "CronJob": 1, "ServiceAccount": 1} {
		if kinds[kind] != want {
			t.Errorf("%d %s, want %d (kinds: %v)", kinds[kind], kind, want, kinds)
		}
	}
	// Object names fit their kinds' limits (a Service's name is a DNS label: 63 characters).
	for _, o := range objs {
		limit := 253
		switch ctStr(o, "kind") {
		case "Service":
			limit = 63
		case "Deployment":
			limit = 63
		case "CronJob":
			limit = 52 // the controller appends 11 characters to name each Job, a 63-character label
		}
		if n := ctStr(o, "metadata", "name"); len(n) > limit {
			t.Errorf("%s %s: name of %d characters, over %d", ctStr(o, "kind"), n, len(n), limit)
		}
	}

	// Labels of every object: the contract with the monitoring templates.
	for _, o := range objs {
		labels := ctMap(o, "metadata", "labels")
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
			"app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart"} {
			if _, ok := labels[k]; !ok {
				t.Errorf("%s %s: no label %s", ctStr(o, "kind"), ctStr(o, "metadata", "name"), k)
			}
		}
		if ns := ctStr(o, "metadata", "namespace"); ns != ctNamespace {
			t.Errorf("%s %s: namespace %q", ctStr(o, "kind"), ctStr(o, "metadata", "name"), ns)
		}
	}

	// Secrets rendered, with their keys; plus the existing ones the case names.
	secrets := map[string][]string{}
	for _, s := range ctOfKind(objs, "Secret") {
		for k := range ctMap(s, "data") {
			secrets[ctStr(s, "metadata", "name")] = append(secrets[ctStr(s, "metadata", "name")], k)
		}
	}
	for name := range c.existing {
		if _, ok := secrets[name]; ok {
			t.Errorf("Secret %s rendered although it is an existingSecret", name)
		}
	}
	configMaps := map[string]bool{}
	for _, cm := range ctOfKind(objs, "ConfigMap") {
		configMaps[ctStr(cm, "metadata", "name")] = true
	}

	services := map[string]ctObj{}
	for _, s := range ctOfKind(objs, "Service") {
		services[ctStr(s, "metadata", "name")] = s
	}
	metricsPort := 9090
	if cfg := ctConfig(t, objs, full, "core"); cfg["METRICS_PORT"] != "" {
		metricsPort, _ = strconv.Atoi(cfg["METRICS_PORT"])
	}
	for component, port := range map[string]int{"core": 3000, "notification": 3001} {
		name := full + "-" + component
		svc, dep := services[name], ctFind(objs, "Deployment", name)
		if svc == nil || dep == nil {
			t.Errorf("no Service or Deployment %s", name)
			continue
		}
		if p, _ := ctNum(svc, "spec", "ports", 0, "port"); p != port || ctStr(svc, "spec", "ports", 0, "name") != "http" {
			t.Errorf("Service %s: port %v, want %d named http", name, ctGet(svc, "spec", "ports"), port)
		}
		podLabels := ctMap(dep, "spec", "template", "metadata", "labels")
		for k, v := range ctMap(svc, "spec", "selector") {
			if podLabels[k] != v {
				t.Errorf("Service %s selects %s=%v, the pods have %v", name, k, v, podLabels[k])
			}
		}
		if ctMap(svc, "spec", "selector")["app.kubernetes.io/component"] != component {
			t.Errorf("Service %s does not select component %s", name, component)
		}
		for k, v := range ctMap(dep, "spec", "selector", "matchLabels") {
			if podLabels[k] != v {
				t.Errorf("Deployment %s selector %s=%v does not match its pods", name, k, v)
			}
		}
		cont := ctMap(ctPodSpec(dep), "containers", 0)
		if p, _ := ctNum(cont, "ports", 0, "containerPort"); p != port || ctStr(cont, "ports", 0, "name") != "http" {
			t.Errorf("%s: container port %v, want %d named http", name, ctGet(cont, "ports"), port)
		}
		// Metrics: METRICS_PORT, the container port "metrics", a ClusterIP Service of that port
		// alone (labelled cineflow.io/service: metrics), and no metrics port on the API Service.
		if p, _ := ctNum(cont, "ports", 1, "containerPort"); p != metricsPort || ctStr(cont, "ports", 1, "name") != "metrics" {
			t.Errorf("%s: container ports %v, want %d named metrics second", name, ctGet(cont, "ports"), metricsPort)
		}
		if got := ctConfig(t, objs, full, component)["METRICS_PORT"]; got != strconv.Itoa(metricsPort) {
			t.Errorf("%s: METRICS_PORT %q, want %d", name, got, metricsPort)
		}
		if ports := ctList(svc, "spec", "ports"); len(ports) != 1 || ctStr(svc, "metadata", "labels", "cineflow.io/service") != "api" {
			t.Errorf("Service %s: ports %v, labels %v: want the http port alone, labelled cineflow.io/service: api", name, ports,
				ctMap(svc, "metadata", "labels"))
		}
		var msvc ctObj
		for _, s := range services {
			if ctStr(s, "metadata", "labels", "cineflow.io/service") == "metrics" &&
				ctStr(s, "spec", "selector", "app.kubernetes.io/component") == component {
				msvc = s
			}
		}
		if msvc == nil {
			t.Errorf("no metrics Service (cineflow.io/service: metrics) of %s", component)
		} else {
			if want := name + "-metrics"; len(want) <= 63 && ctStr(msvc, "metadata", "name") != want {
				t.Errorf("metrics Service %s, want %s", ctStr(msvc, "metadata", "name"), want)
			}
			mp, _ := ctNum(msvc, "spec", "ports", 0, "port")
			if ctStr(msvc, "spec", "type") != "ClusterIP" || len(ctList(msvc, "spec", "ports")) != 1 || mp != metricsPort ||
				ctStr(msvc, "spec", "ports", 0, "targetPort") != "metrics" {
				t.Errorf("metrics Service %s: %v, want ClusterIP with port %d to metrics alone", ctStr(msvc, "metadata", "name"),
					ctGet(msvc, "spec"), metricsPort)
			}
			if !maps.Equal(ctMap(msvc, "spec", "selector"), ctMap(svc, "spec", "selector")) {
				t.Errorf("metrics Service of %s selects %v, the API Service %v", component, ctMap(msvc, "spec", "selector"), ctMap(svc, "spec", "selector"))
			}
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			if ctStr(cont, probe, "httpGet", "path") != path || ctStr(cont, probe, "httpGet", "port") != "http" {
				t.Errorf("%s: %s %v, want GET %s on port http", name, probe, ctGet(cont, probe), path)
			}
		}
		// SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT fit in the grace period.
		cfg := ctConfig(t, objs, full, component)
		delay, err1 := time.ParseDuration(cfg["SHUTDOWN_DELAY"])
		timeout, err2 := time.ParseDuration(cfg["SHUTDOWN_TIMEOUT"])
		grace, _ := ctNum(ctPodSpec(dep), "terminationGracePeriodSeconds")
		if err1 != nil || err2 != nil || delay <= 0 || time.Duration(grace)*time.Second <= delay+timeout {
			t.Errorf("%s: SHUTDOWN_DELAY %q, SHUTDOWN_TIMEOUT %q, terminationGracePeriodSeconds %d", name,
				cfg["SHUTDOWN_DELAY"], cfg["SHUTDOWN_TIMEOUT"], grace)
		}
		if cfg["PORT"] != strconv.Itoa(port) || cfg["APP_ENV"] == "" {
			t.Errorf("%s: PORT %q APP_ENV %q", name, cfg["PORT"], cfg["APP_ENV"])
		}
		if component == "core" {
			want := "http://" + full + "-notification:3001/notiservice/api/v1/notifications"
			if cfg["NOTIFICATION_SERVICE_URL"] != want {
				t.Errorf("NOTIFICATION_SERVICE_URL %q, want %q", cfg["NOTIFICATION_SERVICE_URL"], want)
			}
		}
		if dep := ctFind(objs, "Deployment", name); ctStr(dep, "spec", "template", "metadata", "annotations", "checksum/config") == "" {
			t.Errorf("%s: no checksum/config annotation", name)
		}
	}

	// The sweeper.
	// The sweeper: "<full>-sweeper", shortened to 52 characters when it must be.
	cronName := full + "-sweeper"
	if len(cronName) > 52 {
		cronName = strings.TrimSuffix(full[:44], "-") + "-sweeper"
	}
	cron := ctFind(objs, "CronJob", cronName)
	if cron == nil {
		t.Errorf("no CronJob %s", cronName)
	}
	if cron != nil {
		schedule := ctStr(cron, "spec", "schedule")
		period := ctCronPeriod(schedule)
		active, _ := ctNum(cron, "spec", "jobTemplate", "spec", "activeDeadlineSeconds")
		if ctStr(cron, "spec", "concurrencyPolicy") != "Forbid" {
			t.Errorf("CronJob concurrencyPolicy %q", ctStr(cron, "spec", "concurrencyPolicy"))
		}
		if period == 0 || active <= 0 || time.Duration(active)*time.Second >= period {
			t.Errorf("CronJob schedule %q (period %s), activeDeadlineSeconds %d: want a deadline under the period", schedule, period, active)
		}
		for _, f := range []string{"startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"} {
			if _, ok := ctNum(cron, "spec", f); !ok {
				t.Errorf("CronJob: no %s", f)
			}
		}
		if _, ok := ctNum(cron, "spec", "jobTemplate", "spec", "backoffLimit"); !ok {
			t.Errorf("CronJob: no backoffLimit")
		}
		if ctStr(ctPodSpec(cron), "restartPolicy") != "Never" {
			t.Errorf("CronJob restartPolicy %q", ctStr(ctPodSpec(cron), "restartPolicy"))
		}
		cfg := ctConfig(t, objs, full, "sweeper")
		deadline, err := time.ParseDuration(cfg["SWEEP_DEADLINE"])
		if err != nil || deadline <= 0 || deadline+15*time.Second > time.Duration(active)*time.Second {
			t.Errorf("SWEEP_DEADLINE %q with activeDeadlineSeconds %d: want at least 15s of margin", cfg["SWEEP_DEADLINE"], active)
		}
		if send, err := time.ParseDuration(cfg["SEND_TIMEOUT"]); err != nil || 2*send > deadline {
			t.Errorf("SEND_TIMEOUT %q is more than half of SWEEP_DEADLINE %q", cfg["SEND_TIMEOUT"], cfg["SWEEP_DEADLINE"])
		}
		if cfg["EMAIL_FROM"] == "" {
			t.Errorf("sweeper: no EMAIL_FROM")
		}
	}

	// Every workload: security context, resources, env from rendered or existing Secrets and ConfigMaps.
	workloads := append(ctOfKind(objs, "Deployment"), ctOfKind(objs, "CronJob")...)
	for _, w := range workloads {
		name := ctStr(w, "kind") + " " + ctStr(w, "metadata", "name")
		spec := ctPodSpec(w)
		if ctGet(spec, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext.runAsNonRoot not true", name)
		}
		if ctStr(spec, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s: pod seccompProfile %v", name, ctGet(spec, "securityContext", "seccompProfile"))
		}
		if ctGet(spec, "automountServiceAccountToken") != false {
			t.Errorf("%s: the service-account token is mounted", name)
		}
		// The development database reads neither a ConfigMap nor a Secret: nothing to roll it on.
		devdb := ctStr(w, "metadata", "labels", "app.kubernetes.io/component") == "devdb"
		if ann := ctMap(ctPodMeta(w), "annotations"); !devdb && (ann["checksum/secrets"] == nil || ann["checksum/config"] == nil) {
			t.Errorf("%s: pod annotations %v lack the checksums", name, ann)
		}
		for _, ci := range ctList(spec, "containers") {
			sc := ctMap(ci, "securityContext")
			if sc["runAsNonRoot"] != true || sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false ||
				!slices.Contains(ctList(sc, "capabilities", "drop"), any("ALL")) || ctStr(sc, "seccompProfile", "type") != "RuntimeDefault" {
				t.Errorf("%s: container securityContext %v", name, sc)
			}
			if ctMap(ci, "resources", "requests") == nil || ctMap(ci, "resources", "limits") == nil {
				t.Errorf("%s: resources %v", name, ctGet(ci, "resources"))
			}
			if !strings.Contains(ctStr(ci, "image"), "cineflow/cineflow-") {
				t.Errorf("%s: image %q", name, ctStr(ci, "image"))
			}
			for _, ef := range ctList(ci, "envFrom") {
				if cm := ctStr(ef, "configMapRef", "name"); cm != "" && !configMaps[cm] {
					t.Errorf("%s: envFrom ConfigMap %s is not rendered", name, cm)
				}
			}
			for _, e := range ctList(ci, "env") {
				ref := ctMap(e, "valueFrom", "secretKeyRef")
				if ref == nil {
					continue
				}
				sname, key := ctStr(ref, "name"), ctStr(ref, "key")
				keys, rendered := secrets[sname]
				if !rendered {
					keys = c.existing[sname]
				}
				if !slices.Contains(keys, key) {
					t.Errorf("%s: %s from Secret %s key %s, which is neither rendered nor a given existingSecret (rendered: %v)",
						name, ctStr(e, "name"), sname, key, secrets)
				}
			}
		}
	}
	ctEnvNames := func(w ctObj) []string {
		var names []string
		for _, e := range ctList(ctPodSpec(w), "containers", 0, "env") {
			names = append(names, ctStr(e, "name"))
		}
		return names
	}
	for workload, want := range map[string][]string{
		"Deployment/" + full + "-core":         {"DB_URL", "JWT_SECRET", "NOTIFICATION_API_TOKEN"},
		"Deployment/" + full + "-notification": {"DB_URL", "NOTIFICATION_API_TOKEN"},
		"CronJob/" + cronName:                  {"DB_URL"},
	} {
		kind, name, _ := strings.Cut(workload, "/")
		got := ctEnvNames(ctFind(objs, kind, name))
		for _, v := range want {
			if !slices.Contains(got, v) {
				t.Errorf("%s: no %s in env %v", workload, v, got)
			}
		}
	}

	// The helm test hook.
	var tests []ctObj
	for _, p := range ctOfKind(objs, "Pod") {
		if ctStr(p, "metadata", "annotations", "helm.sh/hook") == "test" {
			tests = append(tests, p)
		}
	}
	if len(tests) != 1 {
		t.Fatalf("%d helm test pods, want 1", len(tests))
	}
	script := strings.Join(ctStrings(ctList(tests[0], "spec", "containers", 0, "command")), " ")
	for _, url := range []string{"http://" + full + "-core:3000/readyz", "http://" + full + "-notification:3001/readyz"} {
		if !strings.Contains(script, url) {
			t.Errorf("helm test pod does not GET %s: %s", url, script)
		}
	}
}

func ctStrings(l []any) []string {
	var out []string
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// ctCheckCase asserts what a case of the matrix is about.
func ctCheckCase(t *testing.T, name string, objs []ctObj) {
	t.Helper()
	kinds := ctKinds(objs)
	absent := func(ks ...string) {
		for _, k := range ks {
			if kinds[k] != 0 {
				t.Errorf("%d %s rendered, want none", kinds[k], k)
			}
		}
	}
	secretNames := func() []string {
		var n []string
		for _, s := range ctOfKind(objs, "Secret") {
			n = append(n, ctStr(s, "metadata", "name"))
		}
		slices.Sort(n)
		return n
	}
	envOf := func(kind, name string) map[string]ctObj {
		out := map[string]ctObj{}
		for _, e := range ctList(ctPodSpec(ctFind(objs, kind, name)), "containers", 0, "env") {
			out[ctStr(e, "name")] = e.(map[string]any)
		}
		return out
	}
	switch name {
	case "defaults":
		absent("NetworkPolicy", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "Ingress", "PersistentVolumeClaim")
		// Two pods each by default: a disruption budget each, one pod down at a time.
		for _, c := range []string{"core", "notification"} {
			pdb := ctFind(objs, "PodDisruptionBudget", ctFullname+"-"+c)
			if n, _ := ctNum(pdb, "spec", "maxUnavailable"); n != 1 || ctStr(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != c {
				t.Errorf("%s PodDisruptionBudget %v, want maxUnavailable 1 over the %s pods", c, ctGet(pdb, "spec"), c)
			}
		}
		// The images the release pushes: ghcr.io/cineflow/cineflow-<name>:<appVersion>.
		appVersion := ctAppVersion(t)
		for _, w := range []struct{ kind, name, image string }{{"Deployment", "core", "core"},
			{"Deployment", "notification", "notification"}, {"CronJob", "sweeper", "sweeper"}} {
			want := "ghcr.io/cineflow/cineflow-" + w.image + ":" + appVersion
			if got := ctStr(ctPodSpec(ctFind(objs, w.kind, ctFullname+"-"+w.name)), "containers", 0, "image"); got != want {
				t.Errorf("%s image %q, want %q", w.name, got, want)
			}
		}
		want := []string{ctFullname + "-database", ctFullname + "-jwt", ctFullname + "-notification-token", ctFullname + "-resend"}
		if got := secretNames(); !slices.Equal(got, want) {
			t.Errorf("Secrets %v, want %v", got, want)
		}
		jwt := ctFind(objs, "Secret", ctFullname+"-jwt")
		if v := ctStr(jwt, "data", "jwt-secret"); len(v) < 64 { // base64 of 48 characters
			t.Errorf("generated JWT secret %q is too short", v)
		}
		core := envOf("Deployment", ctFullname+"-core")
		if _, ok := core["ADMIN_EMAIL"]; ok {
			t.Errorf("ADMIN_EMAIL set without admin values")
		}
		if ctStr(ctFind(objs, "CronJob", ctFullname+"-sweeper"), "spec", "schedule") != "*/2 * * * *" {
			t.Errorf("default schedule is not */2 * * * *")
		}
		cfg := ctConfig(t, objs, ctFullname, "sweeper")
		if cfg["SWEEP_DEADLINE"] != "90s" || cfg["APP_ENV"] != "production" || cfg["PUSHGATEWAY_URL"] != "" {
			t.Errorf("sweeper config %v", cfg)
		}
		if dep := ctFind(objs, "Deployment", ctFullname+"-core"); ctGet(dep, "spec", "replicas") == nil {
			t.Errorf("core Deployment without replicas")
		}
		if ctList(ctPodSpec(ctFind(objs, "Deployment", ctFullname+"-core")), "topologySpreadConstraints") == nil {
			t.Errorf("no topologySpreadConstraints by default")
		}
	case "existing-secrets":
		if got := secretNames(); len(got) != 0 {
			t.Errorf("Secrets %v rendered, want none (every kind has an existingSecret)", got)
		}
		core := envOf("Deployment", ctFullname+"-core")
		for v, secret := range map[string]string{"DB_URL": "cf-db", "JWT_SECRET": "cf-jwt", "NOTIFICATION_API_TOKEN": "cf-token",
			"ADMIN_EMAIL": "cf-admin", "ADMIN_PASSWORD": "cf-admin"} {
			if got := ctStr(core[v], "valueFrom", "secretKeyRef", "name"); got != secret {
				t.Errorf("core %s from Secret %q, want %q", v, got, secret)
			}
		}
		if got := ctStr(envOf("CronJob", ctFullname+"-sweeper")["RESEND_API_KEY"], "valueFrom", "secretKeyRef", "name"); got != "cf-resend" {
			t.Errorf("sweeper RESEND_API_KEY from %q, want cf-resend", got)
		}
		if got := ctStr(envOf("Deployment", ctFullname+"-notification")["DB_URL"], "valueFrom", "secretKeyRef", "key"); got != "noti" {
			t.Errorf("notification DB_URL key %q, want noti", got)
		}
	case "monitoring":
		if cfg := ctConfig(t, objs, ctFullname, "sweeper"); cfg["PUSHGATEWAY_URL"] != "http://pushgateway.monitoring:9091" {
			t.Errorf("PUSHGATEWAY_URL %q", cfg["PUSHGATEWAY_URL"])
		}
		// The monitoring templates are another file's; check them when they exist.
		tpl := func(f string) bool {
			_, err := os.Stat(filepath.Join(chartDir(t), "templates", f))
			return err == nil
		}
		if tpl("servicemonitor.yaml") {
			if kinds["ServiceMonitor"] != 2 {
				t.Errorf("%d ServiceMonitors, want 2", kinds["ServiceMonitor"])
			}
			for _, sm := range ctOfKind(objs, "ServiceMonitor") {
				if ctStr(sm, "metadata", "labels", "release") != "kps" {
					t.Errorf("ServiceMonitor %s without the additional label", ctStr(sm, "metadata", "name"))
				}
			}
		}
		if tpl("prometheusrule.yaml") && kinds["PrometheusRule"] != 1 {
			t.Errorf("%d PrometheusRules, want 1", kinds["PrometheusRule"])
		}
		if tpl("dashboards.yaml") {
			found := false
			for _, cm := range ctOfKind(objs, "ConfigMap") {
				found = found || ctStr(cm, "metadata", "labels", "grafana_dashboard") == "1"
			}
			if !found {
				t.Errorf("no ConfigMap labelled grafana_dashboard: \"1\"")
			}
		}
	case "network-policy":
		if kinds["NetworkPolicy"] != 3 {
			t.Fatalf("%d NetworkPolicies, want 3", kinds["NetworkPolicy"])
		}
		noti := ctFind(objs, "NetworkPolicy", ctFullname+"-notification")
		if ctMap(noti, "spec", "podSelector", "matchLabels")["app.kubernetes.io/component"] != "notification" {
			t.Errorf("notification policy selects %v", ctGet(noti, "spec", "podSelector"))
		}
		// Every ingress rule of the notification service names its peers: the core, the test pod
		// and the metrics scrapers; nothing else, and never "from anywhere".
		var components []string
		for _, rule := range ctList(noti, "spec", "ingress") {
			from := ctList(rule, "from")
			if len(from) == 0 {
				t.Errorf("notification ingress rule %v admits anyone", rule)
			}
			for _, peer := range from {
				if c := ctStr(peer, "podSelector", "matchLabels", "app.kubernetes.io/component"); c != "" {
					components = append(components, c)
				} else if ctMap(peer, "namespaceSelector") == nil {
					t.Errorf("notification ingress peer %v", peer)
				}
			}
		}
		slices.Sort(components)
		if !slices.Equal(components, []string{"core", "test"}) {
			t.Errorf("notification admits components %v, want core and test", components)
		}
		egressPorts := func(policy string) []int {
			var ports []int
			for _, rule := range ctList(ctFind(objs, "NetworkPolicy", ctFullname+"-"+policy), "spec", "egress") {
				for _, p := range ctList(rule, "ports") {
					if n, ok := ctNum(p, "port"); ok {
						ports = append(ports, n)
					}
				}
			}
			return ports
		}
		for policy, want := range map[string][]int{"core": {53, 27017, 3001, 4318}, "notification": {53, 27017, 4318},
			"sweeper": {53, 27017, 443, 9091, 4318}} {
			got := egressPorts(policy)
			for _, p := range want {
				if !slices.Contains(got, p) {
					t.Errorf("%s egress ports %v lack %d", policy, got, p)
				}
			}
			if policy != "sweeper" && slices.Contains(got, 443) {
				t.Errorf("%s may reach port 443", policy)
			}
		}
		if in := ctList(ctFind(objs, "NetworkPolicy", ctFullname+"-sweeper"), "spec", "ingress"); len(in) != 0 {
			t.Errorf("sweeper ingress %v, want none", in)
		}
		// Prometheus (the namespaceSelector peers) is admitted on the metrics port and on nothing
		// else; the metrics port admits nobody else.
		for _, c := range []string{"core", "notification"} {
			scraped := false
			for _, rule := range ctList(ctFind(objs, "NetworkPolicy", ctFullname+"-"+c), "spec", "ingress") {
				var ports []string
				for _, p := range ctList(rule, "ports") {
					ports = append(ports, fmt.Sprint(ctGet(p, "port")))
				}
				prometheus := false
				for _, peer := range ctList(rule, "from") {
					prometheus = prometheus || ctMap(peer, "namespaceSelector") != nil
				}
				metrics := slices.Contains(ports, "metrics")
				if prometheus && !slices.Equal(ports, []string{"metrics"}) || metrics && (!prometheus || len(ctList(rule, "from")) != 1) {
					t.Errorf("%s ingress rule %v: Prometheus must be admitted on the metrics port only, and alone", c, rule)
				}
				scraped = scraped || prometheus && metrics
			}
			if !scraped {
				t.Errorf("%s policy does not admit Prometheus on the metrics port", c)
			}
		}
	case "hpa-pdb":
		if kinds["HorizontalPodAutoscaler"] != 2 || kinds["PodDisruptionBudget"] != 2 {
			t.Errorf("kinds %v: want 2 HPAs and 2 PDBs", kinds)
		}
		for _, h := range ctOfKind(objs, "HorizontalPodAutoscaler") {
			if ctStr(h, "apiVersion") != "autoscaling/v2" || ctStr(h, "spec", "scaleTargetRef", "name") != ctStr(h, "metadata", "name") {
				t.Errorf("HPA %v", h)
			}
		}
		for _, d := range ctOfKind(objs, "Deployment") {
			if ctGet(d, "spec", "replicas") != nil {
				t.Errorf("Deployment %s sets replicas under an HPA", ctStr(d, "metadata", "name"))
			}
		}
		if got := ctGet(ctFind(objs, "PodDisruptionBudget", ctFullname+"-notification"), "spec", "minAvailable"); got != "50%" {
			t.Errorf("notification PDB minAvailable %v", got)
		}
		if got, _ := ctNum(ctFind(objs, "PodDisruptionBudget", ctFullname+"-core"), "spec", "maxUnavailable"); got != 1 {
			t.Errorf("core PDB maxUnavailable %v", got)
		}
		absent("NetworkPolicy")
	case "admin-and-every-minute":
		if ctFind(objs, "Secret", ctFullname+"-admin") == nil {
			t.Errorf("no admin Secret")
		}
		core := envOf("Deployment", ctFullname+"-core")
		if ctStr(core["ADMIN_PASSWORD"], "valueFrom", "secretKeyRef", "name") != ctFullname+"-admin" {
			t.Errorf("ADMIN_PASSWORD %v", core["ADMIN_PASSWORD"])
		}
		if cfg := ctConfig(t, objs, ctFullname, "sweeper"); cfg["SWEEP_DEADLINE"] != "30s" {
			t.Errorf("SWEEP_DEADLINE %q, want 30s (50 - 20)", cfg["SWEEP_DEADLINE"])
		}
		dep := ctFind(objs, "Deployment", ctFullname+"-core")
		if img := ctStr(ctPodSpec(dep), "containers", 0, "image"); !strings.HasSuffix(img, "@sha256:"+strings.Repeat("a", 64)) {
			t.Errorf("image %q does not use the digest", img)
		}
		if ctStr(ctPodSpec(dep), "imagePullSecrets", 0, "name") != "regcred" {
			t.Errorf("imagePullSecrets %v", ctGet(ctPodSpec(dep), "imagePullSecrets"))
		}
	case "single-replica":
		// One core pod, and a notification HPA that may go down to one: no budget would let a
		// drain through, so none is made.
		absent("PodDisruptionBudget")
	case "trial", "trial-persistence", "trial-network-policy":
		ctCheckTrial(t, name, objs)
	case "ingress":
		ings := ctOfKind(objs, "Ingress")
		if len(ings) != 1 {
			t.Fatalf("%d Ingresses, want 1", len(ings))
		}
		ing := ings[0]
		if ctStr(ing, "apiVersion") != "networking.k8s.io/v1" || ctStr(ing, "spec", "ingressClassName") != "nginx" {
			t.Errorf("Ingress %s: apiVersion %s, class %q", ctStr(ing, "metadata", "name"), ctStr(ing, "apiVersion"), ctStr(ing, "spec", "ingressClassName"))
		}
		if got := ctMap(ing, "metadata", "annotations"); got["cert-manager.io/cluster-issuer"] != "letsencrypt" || got["example.com/release"] != ctRelease {
			t.Errorf("Ingress annotations %v: want them as given, rendered as templates", got)
		}
		// Every path leads to the core Service's http port: the API, never the notification
		// service, never a metrics port.
		hosts := map[string]string{}
		for _, rule := range ctList(ing, "spec", "rules") {
			for _, p := range ctList(rule, "http", "paths") {
				hosts[ctStr(rule, "host")] = ctStr(p, "path") + " " + ctStr(p, "pathType")
				if svc, port := ctStr(p, "backend", "service", "name"), ctStr(p, "backend", "service", "port", "name"); svc != ctFullname+"-core" || port != "http" {
					t.Errorf("Ingress path %v leads to %s:%s, want %s-core:http", p, svc, port, ctFullname)
				}
				if strings.Contains(ctStr(p, "path"), "metrics") {
					t.Errorf("Ingress path %v names metrics", p)
				}
			}
		}
		want := map[string]string{"tickets.example.com": "/mba/api Prefix", "api.example.com": "/mba/api Prefix",
			"old.example.com": "/mba/api/v1 ImplementationSpecific"}
		if !maps.Equal(hosts, want) {
			t.Errorf("Ingress hosts and paths %v, want %v", hosts, want)
		}
		tls := map[string]string{}
		for _, e := range ctList(ing, "spec", "tls") {
			for _, h := range ctList(e, "hosts") {
				tls[h.(string)] = ctStr(e, "secretName")
			}
		}
		if want := map[string]string{"tickets.example.com": "tickets.example.com-tls", "api.example.com": "api-tls"}; !maps.Equal(tls, want) {
			t.Errorf("Ingress TLS %v, want %v", tls, want)
		}
	case "global":
		// global.imageRegistry moves every image, the helm test's included.
		var images []string
		for _, w := range append(append(ctOfKind(objs, "Deployment"), ctOfKind(objs, "CronJob")...), ctOfKind(objs, "Pod")...) {
			spec := ctPodSpec(w)
			if ctStr(w, "kind") == "Pod" {
				spec = ctMap(w, "spec")
			}
			for _, c := range ctList(spec, "containers") {
				images = append(images, ctStr(c, "image"))
			}
			var pulls []string
			for _, ps := range ctList(spec, "imagePullSecrets") {
				pulls = append(pulls, ctStr(ps, "name"))
			}
			if !slices.Equal(pulls, []string{"mirror-cred", "regcred"}) {
				t.Errorf("%s %s: imagePullSecrets %v, want [mirror-cred regcred]", ctStr(w, "kind"), ctStr(w, "metadata", "name"), pulls)
			}
		}
		if len(images) != 4 {
			t.Errorf("images %v, want 4 (core, notification, sweeper, helm test)", images)
		}
		for _, img := range images {
			if !strings.HasPrefix(img, "mirror.example.com/") {
				t.Errorf("image %q is not from global.imageRegistry", img)
			}
		}
		// Names built on a 50-character full name stay within their limits (ctCheckCommon), and
		// the ServiceMonitors still select the metrics Services.
		for _, sm := range ctOfKind(objs, "ServiceMonitor") {
			sel := ctMap(sm, "spec", "selector", "matchLabels")
			var picked []string
			for _, svc := range ctOfKind(objs, "Service") {
				if ctLabelsMatch(sel, ctMap(svc, "metadata", "labels")) {
					picked = append(picked, ctStr(svc, "metadata", "name"))
				}
			}
			if len(picked) != 1 || !strings.HasSuffix(picked[0], "-metrics") {
				t.Errorf("ServiceMonitor %s selects %v, want its metrics Service", ctStr(sm, "metadata", "name"), picked)
			}
		}
	case "exposed-services":
		core := ctFind(objs, "Service", ctFullname+"-core")
		if ctStr(core, "spec", "type") != "LoadBalancer" || ctStr(core, "spec", "externalTrafficPolicy") != "Local" ||
			ctStr(core, "spec", "loadBalancerIP") != "203.0.113.10" ||
			!slices.Equal(ctStrings(ctList(core, "spec", "loadBalancerSourceRanges")), []string{"198.51.100.0/24"}) {
			t.Errorf("core Service spec %v", ctGet(core, "spec"))
		}
		if n, _ := ctNum(core, "spec", "ports", 0, "nodePort"); n != 30080 {
			t.Errorf("core nodePort %v, want 30080", ctGet(core, "spec", "ports", 0))
		}
		noti := ctFind(objs, "Service", ctFullname+"-notification")
		if n, _ := ctNum(noti, "spec", "ports", 0, "nodePort"); ctStr(noti, "spec", "type") != "NodePort" || n != 30081 ||
			ctStr(noti, "spec", "externalTrafficPolicy") != "Cluster" || ctGet(noti, "spec", "loadBalancerIP") != nil {
			t.Errorf("notification Service spec %v", ctGet(noti, "spec"))
		}
		for _, c := range []string{"core", "notification"} {
			m := ctFind(objs, "Service", ctFullname+"-"+c+"-metrics")
			if p, _ := ctNum(m, "spec", "ports", 0, "port"); ctStr(m, "spec", "type") != "ClusterIP" || p != 9100 ||
				ctStr(m, "metadata", "annotations", "prometheus.io/scrape") != "true" {
				t.Errorf("%s metrics Service %v: want ClusterIP on 9100 with the annotations, whatever the API Service's type", c, m)
			}
		}
	case "development-without-resend":
		if _, ok := envOf("CronJob", ctFullname+"-sweeper")["RESEND_API_KEY"]; ok {
			t.Errorf("RESEND_API_KEY set without a key")
		}
		if cfg := ctConfig(t, objs, ctFullname, "sweeper"); cfg["OUTBOX_DIR"] == "" || !strings.HasPrefix(cfg["OUTBOX_DIR"], "/tmp") {
			t.Errorf("OUTBOX_DIR %q: want a writable emptyDir under /tmp", cfg["OUTBOX_DIR"])
		}
	}
}

// TestChartSecretValues: given values are stored as given; generated ones are 48 characters.
func TestChartSecretValues(t *testing.T) {
	objs := ctRender(t, ctCase{files: []string{ctRequired}, sets: []string{
		"jwt.secret=" + strings.Repeat("j", 40), "notificationToken.token=tok", "admin.email=a@cineflow.test"}}.args(t)...)
	check := func(secret, key, want string, length int) {
		t.Helper()
		s := ctFind(objs, "Secret", ctFullname+"-"+secret)
		if s == nil {
			t.Fatalf("no Secret %s-%s", ctFullname, secret)
		}
		raw, err := base64.StdEncoding.DecodeString(ctStr(s, "data", key))
		if err != nil {
			t.Fatalf("Secret %s key %s: %v", secret, key, err)
		}
		if want != "" && string(raw) != want {
			t.Errorf("Secret %s key %s = %q, want %q", secret, key, raw, want)
		}
		if length > 0 && (len(raw) != length || !regexp.MustCompile(`^[A-Za-z0-9]+$`).Match(raw)) {
			t.Errorf("Secret %s key %s = %q, want %d random alphanumerics", secret, key, raw, length)
		}
	}
	check("jwt", "jwt-secret", strings.Repeat("j", 40), 0)
	check("notification-token", "notification-api-token", "tok", 0)
	check("admin", "admin-email", "a@cineflow.test", 0)
	check("admin", "admin-password", "", 48)
	check("database", "core-db-url", "mongodb://mongo:27017/mba?replicaSet=rs0", 0)
	check("resend", "resend-api-key", "re_test_key", 0)
}

// TestChartValuesRejected: values the schema or the chart's validation must refuse, with the
// message that names the problem.
func TestChartValuesRejected(t *testing.T) {
	for _, c := range []struct {
		name string
		sets []string
		want []string // all must appear in helm's error output
	}{
		{"unknown top-level key", []string{"replicas=2"}, []string{"schema", "additional properties 'replicas' not allowed"}},
		{"unknown nested key", []string{"core.image.name=x"}, []string{"schema", "/core/image", "additional properties 'name' not allowed"}},
		{"unknown deep key", []string{"metrics.serviceMonitor.labels.a=b"}, []string{"schema", "additional properties 'labels' not allowed"}},
		{"replicaCount a string", []string{"core.replicaCount=two"}, []string{"schema", "/core/replicaCount", "want integer"}},
		{"schedule a number", []string{"sweeper.schedule=5"}, []string{"schema", "/sweeper/schedule", "want string"}},
		{"enabled a string", []string{"metrics.serviceMonitor.enabled=yes"}, []string{"schema", "/metrics/serviceMonitor/enabled", "want boolean"}},
		{"bad enum", []string{"logLevel=verbose"}, []string{"schema", "/logLevel"}},
		{"bad duration", []string{"core.config.bookingHoldTTL=5 minutes"}, []string{"schema", "/core/config/bookingHoldTTL"}},
		{"bad backoff duration", []string{"core.config.signinBackoffMax=forever"}, []string{"schema", "/core/config/signinBackoffMax"}},
		{"zero account failure burst", []string{"core.config.signinAccountFailureBurst=0"}, []string{"schema", "/core/config/signinAccountFailureBurst"}},
		{"tiny limiter tables", []string{"core.config.authLimiterEntries=10"}, []string{"schema", "/core/config/authLimiterEntries"}},
		{"batch size over 100", []string{"sweeper.config.batchSize=500"}, []string{"schema", "/sweeper/config/batchSize"}},
		{"deadline not under the period", []string{"sweeper.activeDeadlineSeconds=120"},
			[]string{"sweeper.activeDeadlineSeconds (120) must be shorter than the period"}},
		{"every minute with the default deadline", []string{"sweeper.schedule=* * * * *"},
			[]string{"sweeper.activeDeadlineSeconds (110) must be shorter than the period", "(60s)"}},
		{"SWEEP_DEADLINE too short", []string{"sweeper.activeDeadlineSeconds=25"}, []string{"gives SWEEP_DEADLINE=5s"}},
		{"send timeout over half the deadline", []string{"sweeper.config.sendTimeout=1m"}, []string{"sweeper.config.sendTimeout"}},
		{"grace period too short", []string{"core.terminationGracePeriodSeconds=20"}, []string{"core.terminationGracePeriodSeconds (20) must be larger"}},
		{"no core database URL", []string{"database.coreURL="}, []string{"database.coreURL is required"}},
		{"no notification database URL", []string{"database.notificationURL="}, []string{"database.notificationURL is required"}},
		{"no Resend key in production", []string{"resend.apiKey="}, []string{"resend.apiKey or resend.existingSecret is required"}},
		{"short JWT secret", []string{"jwt.secret=short"}, []string{"jwt.secret must be at least 32 characters"}},
		{"development database beside a database URL", []string{"devDatabase.enabled=true"},
			[]string{"devDatabase.enabled=true points both services at the in-cluster development database", "database.coreURL"}},
		{"metrics on the API port", []string{"metrics.port=3001"}, []string{"metrics.port (3001) must differ"}},
		{"metrics port out of range", []string{"metrics.port=70000"}, []string{"schema", "/metrics/port"}},
		{"bad ingress path type", []string{"ingress.pathType=Anything"}, []string{"schema", "/ingress/pathType"}},
		{"extra host without a name", []string{"ingress.extraHosts[0].path=/x"}, []string{"schema", "/ingress/extraHosts/0", "name"}},
		{"bad traffic policy", []string{"core.service.externalTrafficPolicy=Nowhere"}, []string{"schema", "/core/service/externalTrafficPolicy"}},
		{"node port a word", []string{"core.service.nodePorts.http=high"}, []string{"schema", "/core/service/nodePorts/http"}},
		{"source range not a CIDR", []string{"core.service.loadBalancerSourceRanges[0]=anywhere"}, []string{"schema", "/core/service/loadBalancerSourceRanges/0"}},
		{"unknown development database key", []string{"devDatabase.replicas=2"}, []string{"schema", "additional properties 'replicas' not allowed"}},
		{"bad volume size", []string{"devDatabase.persistence.size=big"}, []string{"schema", "/devDatabase/persistence/size"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", ctRelease, chartDir(t)}, ctCase{files: []string{ctRequired}, sets: c.sets}.args(t)...)
			out, errOut, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm template accepted %v:\n%.400s", c.sets, out)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("error does not say %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// TestChartValuesDocumented: every key of values.yaml has a "## @param" line, every "## @param"
// names a key, and the schema knows every key (additionalProperties: false everywhere else).
func TestChartValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*## @param ([A-Za-z0-9_.\[\]-]+) \S`).FindAllStringSubmatch(string(raw), -1) {
		params[m[1]] = true
	}
	var values ctObj
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	schemaRaw, err := os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema ctObj
	if err := yaml.Unmarshal(schemaRaw, &schema); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(prefix string, v any, node ctObj)
	walk = func(prefix string, v any, node ctObj) {
		node = ctResolve(schema, node)
		m, isMap := v.(map[string]any)
		documented := params[prefix]
		if prefix != "" {
			seen[prefix] = true
		}
		if isMap && len(m) > 0 && !documented {
			// Walk into the object: its keys are the schema's properties, or, in a free-form map
			// (resources.requests), typed by additionalProperties.
			props, values := ctMap(node, "properties"), ctMap(node, "additionalProperties")
			for k, sub := range m {
				key := strings.TrimPrefix(prefix+"."+k, ".")
				child := ctMap(props, k)
				if child == nil {
					child = values
				}
				walk(key, sub, child)
			}
			return
		}
		if !documented {
			t.Errorf("%s: no ## @param line", prefix)
		}
		if node == nil {
			t.Errorf("%s: not in values.schema.json", prefix)
		}
	}
	walk("", values, schema)
	for p := range params {
		if !seen[p] {
			t.Errorf("## @param %s names no key of values.yaml", p)
		}
	}
	// Every object of the schema with properties is closed, but global: a parent chart shares its
	// globals (global.storageClass, global.security…) with every subchart, this one included.
	var closed func(path string, node any)
	closed = func(path string, node any) {
		switch n := node.(type) {
		case map[string]any:
			if _, ok := n["properties"]; ok && n["additionalProperties"] != false && path != "/properties/global" {
				t.Errorf("schema %s: properties without additionalProperties: false", path)
			}
			for k, v := range n {
				closed(path+"/"+k, v)
			}
		case []any:
			for i, v := range n {
				closed(fmt.Sprintf("%s/%d", path, i), v)
			}
		}
	}
	closed("", schema)
}

// ctResolve follows a "$ref": "#/definitions/x" of the schema.
func ctResolve(schema, node ctObj) ctObj {
	if ref, ok := node["$ref"].(string); ok {
		return ctMap(schema, "definitions", strings.TrimPrefix(ref, "#/definitions/"))
	}
	return node
}

// TestChartChecksumsStable: the pods' checksum annotations come from the values, not from the
// rendered Secrets, so a generated secret (random in every rendering without a cluster) neither
// changes them between renderings nor rolls the pods on the first upgrade; a changed secret
// value changes the checksum of the pods that read it, and only theirs.
func TestChartChecksumsStable(t *testing.T) {
	annotations := func(sets ...string) map[string]string {
		out := map[string]string{}
		objs := ctRender(t, ctCase{files: []string{ctRequired}, sets: sets}.args(t)...)
		for _, w := range append(ctOfKind(objs, "Deployment"), ctOfKind(objs, "CronJob")...) {
			out[ctStr(w, "metadata", "name")] = ctStr(ctPodMeta(w), "annotations", "checksum/secrets")
		}
		return out
	}
	first, second := annotations(), annotations()
	if !maps.Equal(first, second) || len(first) != 3 {
		t.Fatalf("checksums differ between two renderings: %v, %v", first, second)
	}
	changed := annotations("resend.apiKey=re_other")
	for name, sum := range first {
		if rolled := changed[name] != sum; rolled != (name == ctFullname+"-sweeper") {
			t.Errorf("%s: checksum changed %v when only the Resend key changed", name, rolled)
		}
	}
}

// ctAppVersion is the chart's appVersion (Chart.yaml).
func ctAppVersion(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion %q: %v", c.AppVersion, err)
	}
	return c.AppVersion
}

// ctLabelsMatch reports whether labels carry every key and value of selector.
func ctLabelsMatch(selector, labels ctObj) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// ctCheckTrial asserts what devDatabase.enabled=true renders: the development database (one pod
// that never runs twice on its data, a ClusterIP Service on 27017, the chart's security context
// with only its volumes writable), both URLs pointing at it, the sweeper in development mode when
// there is no Resend key, and a first admin to add movies with.
func ctCheckTrial(t *testing.T, name string, objs []ctObj) {
	t.Helper()
	db := ctFullname + "-devdb"
	dep, svc := ctFind(objs, "Deployment", db), ctFind(objs, "Service", db)
	if dep == nil || svc == nil {
		t.Fatalf("no Deployment and Service %s", db)
	}
	if n, _ := ctNum(dep, "spec", "replicas"); n != 1 || ctStr(dep, "spec", "strategy", "type") != "Recreate" {
		t.Errorf("%s: replicas %v, strategy %v: want one pod, Recreate", db, ctGet(dep, "spec", "replicas"), ctGet(dep, "spec", "strategy"))
	}
	if p, _ := ctNum(svc, "spec", "ports", 0, "port"); ctStr(svc, "spec", "type") != "ClusterIP" || p != 27017 ||
		ctStr(svc, "spec", "selector", "app.kubernetes.io/component") != "devdb" {
		t.Errorf("Service %s: %v, want ClusterIP 27017 selecting the devdb pod", db, ctGet(svc, "spec"))
	}
	spec := ctPodSpec(dep)
	if u, _ := ctNum(spec, "securityContext", "runAsUser"); u != 65532 {
		t.Errorf("%s: runAsUser %v, want 65532", db, ctGet(spec, "securityContext"))
	}
	cont := ctMap(spec, "containers", 0)
	if !strings.Contains(ctStr(cont, "image"), "cineflow/cineflow-devdb:") {
		t.Errorf("%s: image %q", db, ctStr(cont, "image"))
	}
	if args := strings.Join(ctStrings(ctList(cont, "args")), " "); args != "--addr 0.0.0.0:27017 --dir /data" {
		t.Errorf("%s: args %q", db, args)
	}
	mounts := map[string]string{}
	for _, m := range ctList(cont, "volumeMounts") {
		mounts[ctStr(m, "mountPath")] = ctStr(m, "name")
	}
	volumes := map[string]ctObj{}
	for _, v := range ctList(spec, "volumes") {
		volumes[ctStr(v, "name")] = v.(map[string]any)
	}
	if mounts["/data"] == "" || mounts["/tmp"] == "" || len(mounts) != 2 {
		t.Errorf("%s: mounts %v, want /data and /tmp writable (the root filesystem is read-only)", db, mounts)
	}
	data := volumes[mounts["/data"]]
	claims := ctOfKind(objs, "PersistentVolumeClaim")
	switch name {
	case "trial":
		if ctMap(data, "emptyDir") == nil || len(claims) != 0 {
			t.Errorf("%s: data volume %v and %d claims: want an emptyDir without persistence", db, data, len(claims))
		}
	default:
		if len(claims) != 1 || ctStr(data, "persistentVolumeClaim", "claimName") != ctStr(claims[0], "metadata", "name") {
			t.Fatalf("%s: data volume %v and %d claims: want the claim", db, data, len(claims))
		}
		pvc := claims[0]
		class, hasClass := ctMap(pvc, "spec")["storageClassName"]
		wantSize, wantClass := "8Gi", any("")
		if name == "trial-persistence" {
			wantSize, wantClass = "2Gi", "standard"
		}
		if ctStr(pvc, "spec", "resources", "requests", "storage") != wantSize || !hasClass || class != wantClass ||
			!slices.Equal(ctStrings(ctList(pvc, "spec", "accessModes")), []string{"ReadWriteOnce"}) {
			t.Errorf("claim %v: want %s, storageClassName %q, ReadWriteOnce", ctGet(pvc, "spec"), wantSize, wantClass)
		}
	}

	// Both URLs name the development database; the chart's Secret holds them.
	dbSecret := ctFind(objs, "Secret", ctFullname+"-database")
	for key, want := range map[string]string{"core-db-url": "mongodb://" + db + ":27017/mba", "notification-db-url": "mongodb://" + db + ":27017/noti"} {
		raw, _ := base64.StdEncoding.DecodeString(ctStr(dbSecret, "data", key))
		if string(raw) != want {
			t.Errorf("database Secret %s = %q, want %q", key, raw, want)
		}
	}
	// The services stay in production mode; the sweeper too when it has a Resend key, else it
	// runs with the dev mailer.
	resend := name == "trial-persistence"
	for c, want := range map[string]string{"core": "production", "notification": "production", "sweeper": map[bool]string{true: "production", false: "development"}[resend]} {
		if got := ctConfig(t, objs, ctFullname, c)["APP_ENV"]; got != want {
			t.Errorf("%s APP_ENV %q, want %q", c, got, want)
		}
	}
	env := map[string]bool{}
	for _, e := range ctList(ctPodSpec(ctFind(objs, "CronJob", ctFullname+"-sweeper")), "containers", 0, "env") {
		env[ctStr(e, "name")] = true
	}
	if env["RESEND_API_KEY"] != resend {
		t.Errorf("sweeper RESEND_API_KEY set: %v, want %v", env["RESEND_API_KEY"], resend)
	}
	// A first admin: admin@cineflow.local with a generated password.
	admin := ctFind(objs, "Secret", ctFullname+"-admin")
	email, _ := base64.StdEncoding.DecodeString(ctStr(admin, "data", "admin-email"))
	password, _ := base64.StdEncoding.DecodeString(ctStr(admin, "data", "admin-password"))
	if string(email) != "admin@cineflow.local" || len(password) != 48 {
		t.Errorf("admin Secret: email %q, password of %d characters: want admin@cineflow.local and 48", email, len(password))
	}
	if name == "trial-network-policy" {
		pol := ctFind(objs, "NetworkPolicy", db)
		var from []string
		for _, rule := range ctList(pol, "spec", "ingress") {
			for _, p := range ctList(rule, "ports") {
				if ctStr(p, "port") != "mongodb" {
					t.Errorf("%s policy admits port %v", db, ctGet(p, "port"))
				}
			}
			for _, peer := range ctList(rule, "from") {
				from = append(from, ctStr(peer, "podSelector", "matchLabels", "app.kubernetes.io/component"))
			}
		}
		slices.Sort(from)
		if !slices.Equal(from, []string{"core", "notification", "sweeper"}) || ctList(pol, "spec", "egress") != nil && len(ctList(pol, "spec", "egress")) != 0 ||
			!slices.Contains(ctStrings(ctList(pol, "spec", "policyTypes")), "Egress") {
			t.Errorf("%s policy %v: want ingress from core, notification and sweeper only, no egress", db, ctGet(pol, "spec"))
		}
	}
}

// TestChartMetadata: Chart.yaml carries what Artifact Hub shows (license, links, the four images
// at the chart's appVersion, exactly the chart's default images, the changes), a kubeVersion,
// and maintainers with a URL.
func TestChartMetadata(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion  string            `json:"appVersion"`
		KubeVersion string            `json:"kubeVersion"`
		Annotations map[string]string `json:"annotations"`
		Maintainers []struct {
			Name, URL string
		} `json:"maintainers"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^>=\s*1\.[0-9]+\.[0-9]+-0$`).MatchString(chart.KubeVersion) {
		t.Errorf("kubeVersion %q, want >=1.N.0-0", chart.KubeVersion)
	}
	if len(chart.Maintainers) == 0 {
		t.Error("no maintainers")
	}
	for _, m := range chart.Maintainers {
		if m.Name == "" || !strings.HasPrefix(m.URL, "https://") {
			t.Errorf("maintainer %+v: want a name and a URL", m)
		}
	}
	a := chart.Annotations
	for k, want := range map[string]string{"artifacthub.io/license": "Apache-2.0", "artifacthub.io/prerelease": "false",
		"artifacthub.io/containsSecurityUpdates": "false"} {
		if a[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, a[k], want)
		}
	}
	var links []struct{ Name, URL string }
	if err := yaml.Unmarshal([]byte(a["artifacthub.io/links"]), &links); err != nil || len(links) == 0 {
		t.Errorf("artifacthub.io/links %q: %v", a["artifacthub.io/links"], err)
	}
	var changes []struct{ Kind, Description string }
	if err := yaml.Unmarshal([]byte(a["artifacthub.io/changes"]), &changes); err != nil || len(changes) == 0 {
		t.Errorf("artifacthub.io/changes %q: %v", a["artifacthub.io/changes"], err)
	}
	for _, c := range changes {
		if !slices.Contains([]string{"added", "changed", "deprecated", "removed", "fixed", "security"}, c.Kind) || c.Description == "" {
			t.Errorf("change %+v: kind must be one of Artifact Hub's, with a description", c)
		}
	}
	var images []struct{ Name, Image string }
	if err := yaml.Unmarshal([]byte(a["artifacthub.io/images"]), &images); err != nil {
		t.Fatalf("artifacthub.io/images: %v", err)
	}
	var got []string
	for _, im := range images {
		got = append(got, im.Image)
	}
	// The chart's default image of each workload, as values.yaml gives it.
	var values map[string]any
	vraw, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(vraw, &values); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, key := range []string{"core", "notification", "sweeper", "devDatabase"} {
		img := ctMap(values, key, "image")
		want = append(want, fmt.Sprintf("%s/%s:%s", img["registry"], img["repository"], chart.AppVersion))
	}
	if !slices.Equal(got, want) {
		t.Errorf("artifacthub.io/images %v, want the default images at appVersion %v", got, want)
	}
	// ... which are what the release pushes: <registry>/cineflow-<name> (k8s/images.sh).
	for _, name := range []string{"core", "notification", "sweeper", "devdb"} {
		if !slices.Contains(want, "ghcr.io/cineflow/cineflow-"+name+":"+chart.AppVersion) {
			t.Errorf("no default image ghcr.io/cineflow/cineflow-%s (what `make images` pushes): %v", name, want)
		}
	}
}
