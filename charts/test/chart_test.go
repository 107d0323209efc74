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
}

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

// ctConfig is the data of a component's ConfigMap.
func ctConfig(t *testing.T, objs []ctObj, component string) map[string]string {
	t.Helper()
	cm := ctFind(objs, "ConfigMap", ctFullname+"-"+component)
	if cm == nil {
		t.Fatalf("no ConfigMap %s-%s", ctFullname, component)
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
	for kind, want := range map[string]int{"Deployment": 2, "Service": 2, "CronJob": 1, "ServiceAccount": 1} {
		if kinds[kind] != want {
			t.Errorf("%d %s, want %d (kinds: %v)", kinds[kind], kind, want, kinds)
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
	for component, port := range map[string]int{"core": 3000, "notification": 3001} {
		name := ctFullname + "-" + component
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
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			if ctStr(cont, probe, "httpGet", "path") != path || ctStr(cont, probe, "httpGet", "port") != "http" {
				t.Errorf("%s: %s %v, want GET %s on port http", name, probe, ctGet(cont, probe), path)
			}
		}
		// SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT fit in the grace period.
		cfg := ctConfig(t, objs, component)
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
			want := "http://" + ctFullname + "-notification:3001/notiservice/api/v1/notifications"
			if cfg["NOTIFICATION_SERVICE_URL"] != want {
				t.Errorf("NOTIFICATION_SERVICE_URL %q, want %q", cfg["NOTIFICATION_SERVICE_URL"], want)
			}
		}
		if dep := ctFind(objs, "Deployment", name); ctStr(dep, "spec", "template", "metadata", "annotations", "checksum/config") == "" {
			t.Errorf("%s: no checksum/config annotation", name)
		}
	}

	// The sweeper.
	cron := ctFind(objs, "CronJob", ctFullname+"-sweeper")
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
		cfg := ctConfig(t, objs, "sweeper")
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
		if ann := ctMap(ctPodMeta(w), "annotations"); ann["checksum/secrets"] == nil || ann["checksum/config"] == nil {
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
			if !strings.Contains(ctStr(ci, "image"), "cineflow/") {
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
		"Deployment/" + ctFullname + "-core":         {"DB_URL", "JWT_SECRET", "NOTIFICATION_API_TOKEN"},
		"Deployment/" + ctFullname + "-notification": {"DB_URL", "NOTIFICATION_API_TOKEN"},
		"CronJob/" + ctFullname + "-sweeper":         {"DB_URL"},
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
	for _, url := range []string{"http://" + ctFullname + "-core:3000/readyz", "http://" + ctFullname + "-notification:3001/readyz"} {
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
		absent("NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule")
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
		cfg := ctConfig(t, objs, "sweeper")
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
		if cfg := ctConfig(t, objs, "sweeper"); cfg["PUSHGATEWAY_URL"] != "http://pushgateway.monitoring:9091" {
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
		if cfg := ctConfig(t, objs, "sweeper"); cfg["SWEEP_DEADLINE"] != "30s" {
			t.Errorf("SWEEP_DEADLINE %q, want 30s (50 - 20)", cfg["SWEEP_DEADLINE"])
		}
		dep := ctFind(objs, "Deployment", ctFullname+"-core")
		if img := ctStr(ctPodSpec(dep), "containers", 0, "image"); !strings.HasSuffix(img, "@sha256:"+strings.Repeat("a", 64)) {
			t.Errorf("image %q does not use the digest", img)
		}
		if ctStr(ctPodSpec(dep), "imagePullSecrets", 0, "name") != "regcred" {
			t.Errorf("imagePullSecrets %v", ctGet(ctPodSpec(dep), "imagePullSecrets"))
		}
	case "development-without-resend":
		if _, ok := envOf("CronJob", ctFullname+"-sweeper")["RESEND_API_KEY"]; ok {
			t.Errorf("RESEND_API_KEY set without a key")
		}
		if cfg := ctConfig(t, objs, "sweeper"); cfg["OUTBOX_DIR"] == "" || !strings.HasPrefix(cfg["OUTBOX_DIR"], "/tmp") {
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
	// Every object of the schema with properties is closed.
	var closed func(path string, node any)
	closed = func(path string, node any) {
		switch n := node.(type) {
		case map[string]any:
			if _, ok := n["properties"]; ok && n["additionalProperties"] != false {
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
