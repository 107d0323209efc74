package charttest

// The chart's monitoring: ServiceMonitors, the PrometheusRule and the Grafana dashboard.
//
// TestMonitoringTemplates (also in -short mode) renders them and checks their shape, and runs
// `promtool check rules` on the rules exactly as the chart renders them.
//
// TestMonitoringPrometheus (not in -short mode) proves the PromQL against a real Prometheus:
// it builds the binaries, runs the system the way `make run` does (bin/devstack: embedded
// database, notification, core on its fixed port 3000, the sweeper every 5s) with the sweeper
// sending through the fake Resend (which refuses one recipient, for one failed email) and
// pushing to a real Pushgateway, and a real Prometheus scraping both services and the
// Pushgateway every second with the chart's rules loaded. After a scripted scenario (sign-ups,
// bookings, a seat conflict, payments, a wrong amount, a cancel, tickets straight to the
// notification service) and a sweep, it evaluates every expression of the dashboard (its
// $namespace and $release as the release the system is labelled with) and every rule on that
// Prometheus and requires each to return data. Core and notification are scraped twice (a second
// "replica" exporting the same figures): the expressions that read figures every replica
// exports alike must give the same answer with one replica or two. Then the fake Resend answers
// 500 to every request: CineFlowEmailProviderFailing must fire within two sweep periods of the
// first failed request, and resolve within two sweep periods of the fake answering again.
//
// Prometheus and the Pushgateway are Debian's packages (prometheus, prometheus-pushgateway).
// Missing binaries skip the tests, or fail them when CI is set.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	monDashboardFile   = "files/dashboards/cineflow-delivery.json"
	monInstallPromHint = "apt-get update && apt-get install -y prometheus prometheus-pushgateway"
	// monRateInterval replaces Grafana's $__rate_interval when the dashboard's PromQL is evaluated
	// on Prometheus (scrapes are every second there, so one minute holds plenty of samples).
	monRateInterval = "1m"
	// monNamespace and monRelease are where monRenderObjects installs the chart; they replace the
	// dashboard's $namespace and $release, and label the system the Prometheus test scrapes.
	monNamespace, monRelease = "shop", "rel"
	// monSweepEvery is the system's sweep period (devstack's SWEEP_INTERVAL).
	monSweepEvery = 5 * time.Second
	// monReplica2 is the instance label of the second scrape of core and of notification: a
	// second replica exporting the very same figures.
	monReplica2 = "replica-2"
)

// monMonitoringValues turns every monitoring object on.
var monMonitoringValues = []string{
	"--set", "metrics.serviceMonitor.enabled=true",
	"--set", "metrics.serviceMonitor.additionalLabels.release=kps",
	"--set", "metrics.prometheusRule.enabled=true",
	"--set", "metrics.prometheusRule.additionalLabels.release=kps",
	"--set", "metrics.dashboards.enabled=true",
	"--set", "sweeper.pushgatewayURL=http://pushgateway:9091",
}

// monWantAlerts are the alerts the chart ships with monMonitoringValues.
var monWantAlerts = []string{
	"CineFlowSweeperNotSucceeding", "CineFlowSweeperNeverSucceeded", "CineFlowSweeperPushStale", "CineFlowEmailProviderFailing",
	"CineFlowOldestPendingTicketTooOld", "CineFlowDeliveryFailureRatioHigh", "CineFlowTicketStatsDown",
	"CineFlowBookingLatencyP99High", "CineFlowOutboxStuck", "CineFlowOutboxRelayPaused", "CineFlowClockOffsetHigh",
	"CineFlowCoreHTTP5xxRatioHigh", "CineFlowNotificationHTTP5xxRatioHigh",
}

// monObject is one rendered Kubernetes object.
type monObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec json.RawMessage   `json:"spec"`
	Data map[string]string `json:"data"`
}

// monRenderObjects runs helm template on the chart and returns the objects of the given kinds.
func monRenderObjects(t *testing.T, args ...string) []monObject {
	t.Helper()
	base := []string{"template", monRelease, chartDir(t), "--namespace", monNamespace,
		// what the chart requires before it renders anything
		"--set", "database.coreURL=mongodb://mongo:27017/mba", "--set", "database.notificationURL=mongodb://mongo:27017/noti",
		"--set", "resend.apiKey=re_test_key"}
	out, errOut, err := helm(t, append(base, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, errOut)
	}
	var objs []monObject
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var o monObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered document does not parse: %v\n%s", err, doc)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	return objs
}

func monOfKind(objs []monObject, kind string) []monObject {
	var out []monObject
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// monRuleGroups is the spec of a PrometheusRule, which is also a Prometheus rules file.
type monRuleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// monRenderRules renders the PrometheusRule with monMonitoringValues (and extra values) and
// returns its spec, and the spec written as a rules file in dir.
func monRenderRules(t *testing.T, dir string, extra ...string) (monRuleGroups, string) {
	t.Helper()
	rules := monOfKind(monRenderObjects(t, append(slices.Clone(monMonitoringValues), extra...)...), "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("want one PrometheusRule with monitoring on, got %d", len(rules))
	}
	var g monRuleGroups
	if err := json.Unmarshal(rules[0].Spec, &g); err != nil {
		t.Fatalf("PrometheusRule spec: %v", err)
	}
	y, err := yaml.JSONToYAML(rules[0].Spec)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "cineflow.rules.yaml")
	if err := os.WriteFile(file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	return g, file
}

// monPromBinary returns the path of a Prometheus tool, skipping (or failing on CI) when missing.
func monPromBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if p = "/usr/bin/" + name; monFileExists(p) {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (CI is set, so this fails): %s", name, monInstallPromHint)
	}
	t.Skipf("%s is not installed; install it with: %s", name, monInstallPromHint)
	return ""
}

func monFileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// monDashboardQuery is one PromQL expression of the dashboard.
type monDashboardQuery struct{ Panel, RefID, Expr string }

// monDashboardQueries returns every target expression of every panel (rows' panels included).
func monDashboardQueries(t *testing.T, raw []byte) []monDashboardQuery {
	t.Helper()
	type panel struct {
		Title      string            `json:"title"`
		Type       string            `json:"type"`
		Datasource map[string]string `json:"datasource"`
		Targets    []struct {
			RefID      string            `json:"refId"`
			Expr       string            `json:"expr"`
			Datasource map[string]string `json:"datasource"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		UID        string            `json:"uid"`
		Title      string            `json:"title"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct{ Name, Type, Query string } `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", monDashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard needs a uid and a title")
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type, Query string }) bool {
		return v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("dashboard lacks the DS_PROMETHEUS data source variable")
	}
	// One release at a time: every panel filters by these (TestMonitoringTemplates checks it).
	for _, name := range []string{"namespace", "release"} {
		if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type, Query string }) bool {
			return v.Name == name && v.Type == "query" && strings.HasPrefix(v.Query, "label_values(")
		}) {
			t.Errorf("dashboard lacks the %s query variable", name)
		}
	}
	var out []monDashboardQuery
	var walk func([]json.RawMessage)
	walk = func(raws []json.RawMessage) {
		for _, r := range raws {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("panel: %v", err)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource["uid"] != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
				}
				out = append(out, monDashboardQuery{Panel: p.Title, RefID: tg.RefID, Expr: tg.Expr})
			}
		}
	}
	walk(dash.Panels)
	return out
}

// monPromQL turns a dashboard expression into plain PromQL: $__rate_interval, $namespace and
// $release are the only Grafana variables it may use (the last two as monNamespace and
// monRelease).
func monPromQL(expr string) (string, error) {
	q := strings.NewReplacer("$__rate_interval", monRateInterval, "$namespace", monNamespace, "$release", monRelease).Replace(expr)
	if strings.Contains(q, "$") {
		return "", fmt.Errorf("uses a Grafana variable other than $__rate_interval, $namespace and $release: %s", expr)
	}
	return q, nil
}

// monSelectorRe finds every selector of a CineFlow metric: its name and its matchers, if any.
var monSelectorRe = regexp.MustCompile(`\b(cineflow_[a-zA-Z0-9_]*|push_time_seconds)\b(\{[^}]*\})?`)

// monUnfiltered returns the selectors of expr that lack any of the matchers want.
func monUnfiltered(expr string, want ...string) []string {
	var bad []string
	for _, m := range monSelectorRe.FindAllStringSubmatch(expr, -1) {
		for _, w := range want {
			if !strings.Contains(m[2], w) {
				bad = append(bad, m[0])
				break
			}
		}
	}
	return bad
}

// monFleetWide are the figures every replica of a service exports alike (read from the
// database): a panel or a rule takes them with max (or min), never sums them over replicas.
var monFleetWide = []string{"cineflow_notification_tickets", "cineflow_notification_tickets_delivered_total", "cineflow_notification_oldest_pending_age_seconds",
	"cineflow_notification_ticket_stats_up", "cineflow_core_outbox_pending", "cineflow_core_outbox_oldest_pending_age_seconds"}

// monOnlyFleetWide reports whether every CineFlow metric expr reads is one of monFleetWide.
func monOnlyFleetWide(expr string) bool {
	ms := monSelectorRe.FindAllStringSubmatch(expr, -1)
	for _, m := range ms {
		if !slices.Contains(monFleetWide, m[1]) {
			return false
		}
	}
	return len(ms) > 0
}

// monWithMatcher adds matcher (e.g. instance!="replica-2") to every selector of a CineFlow
// metric in expr.
func monWithMatcher(expr, matcher string) string {
	return monSelectorRe.ReplaceAllStringFunc(expr, func(sel string) string {
		m := monSelectorRe.FindStringSubmatch(sel)
		if m[2] == "" {
			return m[1] + "{" + matcher + "}"
		}
		return m[1] + "{" + matcher + ", " + m[2][1:]
	})
}

// monAlertSignal returns what an alert measures, to be evaluated on its own: the expression with
// its top-level comparison against a number removed ("signal > 600" gives "signal"), or, for
// absent(x), x itself (absent returns data only while it fires; x returning data is the same
// as absent(x) being healthy, and proves the selector names a real series). Anything else is
// refused, which keeps alert expressions to those two shapes.
func monAlertSignal(expr string) (string, error) {
	e := strings.TrimSpace(expr)
	for _, fn := range []string{"absent(", "absent_over_time("} {
		if strings.HasPrefix(e, fn) && strings.HasSuffix(e, ")") && monClosingParen(e, len(fn)-1) == len(e)-1 {
			inner := strings.TrimSpace(e[len(fn) : len(e)-1])
			if fn == "absent_over_time(" { // absent_over_time(x[5m]): x
				inner = strings.TrimSpace(regexp.MustCompile(`\[[^\]]*\]$`).ReplaceAllString(inner, ""))
			}
			return inner, nil
		}
	}
	ops := monTopLevelComparisons(e)
	if len(ops) != 1 {
		return "", fmt.Errorf("want exactly one top-level comparison (or absent(...)), found %d in %q", len(ops), expr)
	}
	op := ops[0]
	lhs, rhs := strings.TrimSpace(e[:op[0]]), strings.TrimSpace(e[op[1]:])
	rhs = strings.TrimSpace(strings.TrimPrefix(rhs, "bool"))
	if _, err := strconv.ParseFloat(rhs, 64); err != nil {
		return "", fmt.Errorf("the comparison's right side %q is not a number in %q", rhs, expr)
	}
	for _, kw := range []string{" and ", " or ", " unless "} {
		if slices.ContainsFunc(monTopLevelWords(lhs), func(w string) bool { return " "+w+" " == kw }) {
			return "", fmt.Errorf("set operator %q at the top level of %q", strings.TrimSpace(kw), expr)
		}
	}
	return lhs, nil
}

// monClosingParen returns the index of the parenthesis closing the one at open (-1 if none).
func monClosingParen(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '"', '\'', '`':
			i = monSkipString(s, i)
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// monSkipString returns the index of the quote closing the string literal that starts at i.
func monSkipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' && q != '`' {
			j++
			continue
		}
		if s[j] == q {
			return j
		}
	}
	return len(s) - 1
}

// monTopLevelComparisons returns the [start, end) of each comparison operator outside (), {},
// [] and strings.
func monTopLevelComparisons(s string) [][2]int {
	var out [][2]int
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\'', '`':
			i = monSkipString(s, i)
			continue
		case '(', '{', '[':
			depth++
			continue
		case ')', '}', ']':
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		two := ""
		if i+1 < len(s) {
			two = s[i : i+2]
		}
		switch {
		case two == "==" || two == "!=" || two == ">=" || two == "<=":
			out = append(out, [2]int{i, i + 2})
			i++
		case c == '>' || c == '<':
			out = append(out, [2]int{i, i + 1})
		}
	}
	return out
}

// monTopLevelWords returns the identifiers outside (), {}, [] and strings.
func monTopLevelWords(s string) []string {
	var words []string
	depth, monStart := 0, -1
	isWord := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for i := 0; i <= len(s); i++ {
		var c byte
		if i < len(s) {
			c = s[i]
		}
		if depth == 0 && i < len(s) && isWord(c) {
			if monStart < 0 {
				monStart = i
			}
			continue
		}
		if monStart >= 0 {
			words = append(words, s[monStart:i])
			monStart = -1
		}
		switch c {
		case '"', '\'', '`':
			i = monSkipString(s, i)
		case '(', '{', '[':
			depth++
		case ')', '}', ']':
			depth--
		}
	}
	return words
}

// TestMonitoringRunbooks: every alert the chart ships links a section of docs/runbooks.md
// that exists (its heading is the alert's name), under the base URL the values give; and the
// page has a section for no alert the chart does not ship.
func TestMonitoringRunbooks(t *testing.T) {
	const base = "https://runbooks.example.com/cineflow.md"
	rules := monOfKind(monRenderObjects(t, append(slices.Clone(monMonitoringValues),
		"--set", "metrics.prometheusRule.runbookBaseURL="+base)...), "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("want one PrometheusRule, got %d", len(rules))
	}
	var g monRuleGroups
	if err := json.Unmarshal(rules[0].Spec, &g); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)\s*$`).FindAllStringSubmatch(string(page), -1) {
		sections[m[1]] = true
	}
	shipped := map[string]bool{}
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			if r.Alert == "" {
				continue
			}
			shipped[r.Alert] = true
			want := base + "#" + strings.ToLower(r.Alert)
			if got := r.Annotations["runbook_url"]; got != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, got, want)
			}
			if !sections[r.Alert] {
				t.Errorf("alert %s has no section in docs/runbooks.md (a heading \"## %s\")", r.Alert, r.Alert)
			}
		}
	}
	for s := range sections {
		if !shipped[s] {
			t.Errorf("docs/runbooks.md has a section for %s, which the chart does not ship", s)
		}
	}
	if len(shipped) != len(monWantAlerts) {
		t.Errorf("rendered %d alerts, want %d", len(shipped), len(monWantAlerts))
	}
}

func TestMonitoringAlertSignal(t *testing.T) {
	for expr, want := range map[string]string{
		`time() - max(x{job="a>b"}) > 600`:                                 `time() - max(x{job="a>b"})`,
		`absent(cineflow_sweeper_last_success_timestamp_seconds{job="s"})`: `cineflow_sweeper_last_success_timestamp_seconds{job="s"}`,
		"histogram_quantile(0.99,\n sum by (le) (rate(h[5m]))\n) > 0.5":    "histogram_quantile(0.99,\n sum by (le) (rate(h[5m]))\n)",
		`(a or b * 0) / c >= 0.05`:                                         `(a or b * 0) / c`,
		`max(cineflow_notification_ticket_stats_up) < 1`:                   `max(cineflow_notification_ticket_stats_up)`,
		`absent_over_time(up{job="x"}[5m])`:                                `up{job="x"}`,
		`sum(rate(x{code=~"5.."}[5m])) / sum(rate(x[5m])) > bool 0.1`:      `sum(rate(x{code=~"5.."}[5m])) / sum(rate(x[5m]))`,
		`a > 1 and b > 2`:        "",
		`a > b`:                  "",
		`up == 0 or absent(up)`:  "",
		`vector(1)`:              "",
		`absent(a) or absent(b)`: "",
		`a or b > 3`:             "",
	} {
		got, err := monAlertSignal(expr)
		if want == "" {
			if err == nil {
				t.Errorf("alertSignal(%q) = %q, want an error", expr, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("alertSignal(%q) = %q, %v; want %q", expr, got, err, want)
		}
	}
}

func TestMonitoringTemplates(t *testing.T) {
	// Off by default.
	def := monRenderObjects(t)
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		if n := len(monOfKind(def, kind)); n != 0 {
			t.Errorf("defaults render %d %s, want none", n, kind)
		}
	}
	for _, cm := range monOfKind(def, "ConfigMap") {
		if _, ok := cm.Data[filepath.Base(monDashboardFile)]; ok {
			t.Errorf("defaults render the dashboard ConfigMap %s", cm.Metadata.Name)
		}
	}

	objs := monRenderObjects(t, monMonitoringValues...)

	// ServiceMonitors: one per service, its metrics Service's metrics port on /metrics (never the
	// API Service: its port answers 404 on /metrics).
	services := map[string]monObject{}
	for _, s := range monOfKind(objs, "Service") {
		services[s.Metadata.Name] = s
	}
	sms := monOfKind(objs, "ServiceMonitor")
	if len(sms) != 2 {
		t.Fatalf("want 2 ServiceMonitors, got %d", len(sms))
	}
	for _, component := range []string{"core", "notification"} {
		name := "rel-cineflow-" + component
		i := slices.IndexFunc(sms, func(o monObject) bool { return o.Metadata.Name == name })
		if i < 0 {
			t.Errorf("no ServiceMonitor %s", name)
			continue
		}
		sm := sms[i]
		if sm.APIVersion != "monitoring.coreos.com/v1" {
			t.Errorf("%s: apiVersion %s", name, sm.APIVersion)
		}
		if sm.Metadata.Labels["release"] != "kps" || sm.Metadata.Labels["app.kubernetes.io/component"] != component {
			t.Errorf("%s: labels %v lack additionalLabels or the component", name, sm.Metadata.Labels)
		}
		var spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			NamespaceSelector struct {
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Endpoints []struct {
				Port, Path, Interval string
				Relabelings          []struct {
					SourceLabels []string `json:"sourceLabels"`
					TargetLabel  string   `json:"targetLabel"`
				} `json:"relabelings"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal(sm.Spec, &spec); err != nil {
			t.Fatal(err)
		}
		if len(spec.Endpoints) != 1 || spec.Endpoints[0].Port != "metrics" || spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("%s: endpoints %+v, want port metrics path /metrics", name, spec.Endpoints)
		} else if rl := spec.Endpoints[0].Relabelings; len(rl) != 1 || rl[0].TargetLabel != "release" ||
			!slices.Equal(rl[0].SourceLabels, []string{"__meta_kubernetes_service_label_app_kubernetes_io_instance"}) {
			// The dashboard and the rules tell releases apart by this label.
			t.Errorf("%s: relabelings %+v, want release from the Service's app.kubernetes.io/instance", name, rl)
		}
		if !slices.Equal(spec.NamespaceSelector.MatchNames, []string{"shop"}) {
			t.Errorf("%s: namespaceSelector %v", name, spec.NamespaceSelector.MatchNames)
		}
		if len(spec.Selector.MatchLabels) == 0 {
			t.Errorf("%s: empty selector", name)
		}
		// The selector picks exactly its own metrics Service, which has the metrics port.
		var picked []string
		for sname, svc := range services {
			if monLabelsMatch(spec.Selector.MatchLabels, svc.Metadata.Labels) {
				picked = append(picked, sname)
			}
		}
		if !slices.Equal(picked, []string{name + "-metrics"}) {
			t.Errorf("%s selects Services %v, want [%s-metrics]", name, picked, name)
		} else {
			var svcSpec struct {
				Ports []struct{ Name string } `json:"ports"`
			}
			if err := json.Unmarshal(services[picked[0]].Spec, &svcSpec); err != nil || len(svcSpec.Ports) != 1 || svcSpec.Ports[0].Name != "metrics" {
				t.Errorf("Service %s: ports %+v (%v), want the metrics port alone", picked[0], svcSpec.Ports, err)
			}
		}
	}

	// The PrometheusRule: every alert, labelled, and promtool accepts it.
	g, file := monRenderRules(t, t.TempDir())
	var alerts []string
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("alert %s needs a severity label and summary and description annotations", r.Alert)
				}
				if _, err := monAlertSignal(r.Expr); err != nil {
					t.Errorf("alert %s: %v", r.Alert, err)
				}
			}
			// The sweeper's alerts watch this release's own sweeper: its Pushgateway group.
			if strings.Contains(r.Expr, "sweeper_") || strings.Contains(r.Expr, "push_time_seconds") {
				if bad := monUnfiltered(r.Expr, `job="sweeper"`, `namespace="`+monNamespace+`"`, `release="`+monRelease+`"`); len(bad) > 0 {
					t.Errorf("alert %s: selectors %v do not pick this release's sweeper group", r.Alert, bad)
				}
			}
		}
	}
	slices.Sort(alerts)
	want := slices.Clone(monWantAlerts)
	slices.Sort(want)
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
	prules := monOfKind(objs, "PrometheusRule")
	if prules[0].Metadata.Labels["release"] != "kps" {
		t.Errorf("PrometheusRule labels %v lack additionalLabels", prules[0].Metadata.Labels)
	}
	// Thresholds come from the values.
	custom := monRenderObjects(t, append(slices.Clone(monMonitoringValues), "--set", "metrics.prometheusRule.sweeperStaleSeconds=1234",
		"--set", "metrics.prometheusRule.emailProviderFailingFor=7m",
		"--set-json", "metrics.prometheusRule.http5xxRatio=0.25", "--set", "metrics.prometheusRule.bookingLatencyP99Seconds=2")...)
	var customRules monRuleGroups
	if err := json.Unmarshal(monOfKind(custom, "PrometheusRule")[0].Spec, &customRules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, grp := range customRules.Groups {
		for _, r := range grp.Rules {
			exprs = append(exprs, r.Expr)
			if r.Alert == "CineFlowEmailProviderFailing" && r.For != "7m" {
				t.Errorf("CineFlowEmailProviderFailing: for %q, want metrics.prometheusRule.emailProviderFailingFor (7m)", r.For)
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for _, s := range []string{"> 1234", "> 0.25", "> 2"} {
		if !strings.Contains(all, s) {
			t.Errorf("PrometheusRule ignores a threshold value: no %q in the expressions:\n%s", s, all)
		}
	}
	// Without a Pushgateway there are no sweeper figures: no sweeper alerts.
	noPush := monRenderObjects(t, append(slices.Clone(monMonitoringValues), "--set", "sweeper.pushgatewayURL=")...)
	if spec := string(monOfKind(noPush, "PrometheusRule")[0].Spec); strings.Contains(spec, "sweeper_") {
		t.Errorf("sweeper alerts rendered without sweeper.pushgatewayURL")
	}

	// The dashboard ConfigMap: the sidecar's label, the file as it is.
	raw, err := os.ReadFile(filepath.Join(chartDir(t), monDashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var dashCM *monObject
	for _, cm := range monOfKind(objs, "ConfigMap") {
		if _, ok := cm.Data[filepath.Base(monDashboardFile)]; ok {
			dashCM = &cm
		}
	}
	if dashCM == nil {
		t.Fatalf("no ConfigMap holds %s", filepath.Base(monDashboardFile))
	}
	if dashCM.Metadata.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v, want grafana_dashboard: \"1\"", dashCM.Metadata.Labels)
	}
	if strings.TrimSpace(dashCM.Data[filepath.Base(monDashboardFile)]) != strings.TrimSpace(string(raw)) {
		t.Errorf("the ConfigMap's dashboard differs from %s", monDashboardFile)
	}
	relabelled := monRenderObjects(t, append(slices.Clone(monMonitoringValues), "--set", "metrics.dashboards.labels.grafana_dashboard=null",
		"--set", "metrics.dashboards.labels.team=cinema", "--set", "metrics.dashboards.annotations.grafana_folder=CineFlow")...)
	for _, cm := range monOfKind(relabelled, "ConfigMap") {
		if _, ok := cm.Data[filepath.Base(monDashboardFile)]; ok {
			if cm.Metadata.Labels["team"] != "cinema" || cm.Metadata.Annotations["grafana_folder"] != "CineFlow" {
				t.Errorf("dashboard ConfigMap ignores metrics.dashboards.labels/annotations: %v %v", cm.Metadata.Labels, cm.Metadata.Annotations)
			}
		}
	}
	qs := monDashboardQueries(t, raw)
	if len(qs) < 20 {
		t.Errorf("dashboard has %d queries, want the full set", len(qs))
	}
	for _, q := range qs {
		if _, err := monPromQL(q.Expr); err != nil {
			t.Errorf("panel %q %s: %v", q.Panel, q.RefID, err)
		}
		// Every panel shows one release: every selector filters by the two variables.
		if bad := monUnfiltered(q.Expr, `namespace="$namespace"`, `release="$release"`); len(bad) > 0 {
			t.Errorf("panel %q %s: selectors %v lack namespace=\"$namespace\" and release=\"$release\"", q.Panel, q.RefID, bad)
		}
	}

	// promtool on exactly the rendered rules.
	promtool := monPromBinary(t, "promtool")
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	} else {
		t.Logf("promtool check rules: %s", bytes.TrimSpace(out))
	}
}

func monLabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// --- the real check ---

// monFreePort returns a TCP port free on 127.0.0.1 right now.
func monFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// monProc is a process the test started; stop ends it (and its process group) by its id.
type monProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// monStart runs bin with args in its own process group, output to <logdir>/<name>.log, and
// stops it in t.Cleanup (SIGTERM to the group, SIGKILL after 15s).
func monStart(t *testing.T, logDir, name string, env []string, dir, bin string, args ...string) *monProc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &monProc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid // Setpgid: the group id is the process id
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Logf("%s (pid %d) did not stop on SIGTERM: killing its process group", name, pgid)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// devstack's children are in its group: make sure none outlives it.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- last lines of %s's log (%s) ---\n%s", name, logPath, monTail(logPath, 40))
		}
	})
	return p
}

func (p *monProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func monTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// monWaitFor polls check every 250ms until it returns nil, failing with its last error after d
// or as soon as one of procs exits.
func monWaitFor(t *testing.T, what string, d time.Duration, procs []*monProc, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("waiting for %s: %s exited: %v\n%s", what, p.name, p.cmd.ProcessState, monTail(p.log, 40))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func monHttpOK(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// monBuildEnv is the environment for building the workspace modules: the test runs with
// GOWORK=off (charts/test is outside go.work), the services need the workspace.
func monBuildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") {
			env = append(env, kv)
		}
	}
	return append(env, "CGO_ENABLED=0")
}

// monServiceEnv is the environment of the system under test: this process's, without the
// variables that would point it elsewhere (a developer's DB_URL, tokens, tracing), plus extra.
func monServiceEnv(extra ...string) []string {
	drop := []string{"DB_URL", "DEVDB_ADDR", "DEVDB_DIR", "PORT", "HOST", "NOTIFICATION_API_TOKEN", "NOTIFICATION_SERVICE_URL",
		"POD_NAMESPACE", "CINEFLOW_RELEASE",
		"ADMIN_EMAIL", "ADMIN_PASSWORD", "JWT_SECRET", "APP_ENV", "RESEND_", "EMAIL_FROM", "PUSHGATEWAY_URL",
		"OUTBOX_DIR", "SWEEP_", "OTEL_", "BOOKING_", "LOG_LEVEL", "GOWORK="}
	var env []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// monClient is a small JSON HTTP client for the scenario.
type monClient struct {
	t    *testing.T
	base string
	hdr  map[string]string
}

// do sends body (marshalled) and returns the status and the decoded envelope's data.
func (c monClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(raw, &env)
	data := map[string]any{}
	_ = json.Unmarshal(env.Data, &data)
	data["_raw"] = string(raw)
	return resp.StatusCode, data
}

// must sends and requires the status.
func (c monClient) must(want int, method, path string, body any) map[string]any {
	c.t.Helper()
	code, data := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data["_raw"])
	}
	return data
}

func (c monClient) with(k, v string) monClient {
	h := map[string]string{}
	for hk, hv := range c.hdr {
		h[hk] = hv
	}
	h[k] = v
	c.hdr = h
	return c
}

func monStr(t *testing.T, data map[string]any, key string) string {
	t.Helper()
	s, _ := data[key].(string)
	if s == "" {
		t.Fatalf("no %q in %s", key, data["_raw"])
	}
	return s
}

// monDashboardVariables returns the query of each query variable of the dashboard, by name.
func monDashboardVariables(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	var dash struct {
		Templating struct {
			List []struct{ Name, Type, Query string } `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range dash.Templating.List {
		if v.Type == "query" {
			out[v.Name] = v.Query
		}
	}
	return out
}

// monValues evaluates q at the Unix time at (now when "") and returns each series' value by
// its labels (rendered as {a="x", b="y"}, sorted; {} for a scalar).
func monValues(promURL, q, at string) (map[string]float64, error) {
	params := url.Values{"query": {q}}
	if at != "" {
		params.Set("time", at)
	}
	resp, err := http.Get(promURL + "/api/v1/query?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r monPromResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode: %v", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	out := map[string]float64{}
	if r.Data.ResultType == "scalar" {
		var v []any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil || len(v) != 2 {
			return nil, fmt.Errorf("scalar %s: %v", r.Data.Result, err)
		}
		f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64)
		out["{}"] = f
		return out, err
	}
	var series []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
	}
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return nil, err
	}
	for _, s := range series {
		var labels []string
		for k, v := range s.Metric {
			labels = append(labels, fmt.Sprintf("%s=%q", k, v))
		}
		slices.Sort(labels)
		if len(s.Value) != 2 {
			return nil, fmt.Errorf("series %v: value %v", s.Metric, s.Value)
		}
		f, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, err
		}
		out["{"+strings.Join(labels, ", ")+"}"] = f
	}
	return out, nil
}

// monBetween reports whether both, first and second hold the same series and each value of
// both lies between the values of first and second (with 5% of slack for rounding).
func monBetween(both, first, second map[string]float64) bool {
	if len(both) != len(first) || len(both) != len(second) {
		return false
	}
	for k, x := range both {
		a, ok1 := first[k]
		b, ok2 := second[k]
		if !ok1 || !ok2 {
			return false
		}
		if math.IsNaN(x) && (math.IsNaN(a) || math.IsNaN(b)) {
			continue
		}
		lo, hi := math.Min(a, b), math.Max(a, b)
		if x < lo-0.05*math.Abs(lo)-1e-9 || x > hi+0.05*math.Abs(hi)+1e-9 {
			return false
		}
	}
	return true
}

// monProviderOutage makes the fake Resend answer 500 to every request and measures how long
// CineFlowEmailProviderFailing takes to fire (from the first failed request) and, once the
// fake answers again, to resolve; each must take at most two sweep periods. It also checks
// what the sweeper logged of the failures and the figures it pushed.
func monProviderOutage(t *testing.T, promURL, resendURL string, stack, prom *monProc, authed monClient) {
	t.Helper()
	setFaults := func(body string) {
		t.Helper()
		resp, err := http.Post(resendURL+"/_fake/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST /_fake/faults %s: %s", body, resp.Status)
		}
	}
	failedRequests := func() int {
		resp, err := http.Get(resendURL + "/_fake/stats")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var st struct {
			FailedBefore int `json:"failed_before"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st.FailedBefore
	}
	alert := fmt.Sprintf(`ALERTS{alertname="CineFlowEmailProviderFailing", alertstate="firing", namespace=%q, release=%q}`, monNamespace, monRelease)
	firing := func() (bool, error) {
		n, _, _, err := monQuery(promURL, alert)
		return n > 0, err
	}
	if on, err := firing(); err != nil || on {
		t.Fatalf("CineFlowEmailProviderFailing fires before the outage (%v)", err)
	}
	email := func(subject string) {
		authed.must(201, "POST", "", map[string]any{"subject": subject, "content": "Your seats", "recepientEmails": []string{"gail@example.com"}})
	}

	start := time.Now()
	setFaults(`{"fail_rate": 1}`)
	email("During the outage")
	var firstFailure time.Time
	monWaitFor(t, "CineFlowEmailProviderFailing to fire", 60*time.Second, []*monProc{stack, prom}, func() error {
		if firstFailure.IsZero() && failedRequests() > 0 {
			firstFailure = time.Now()
		}
		if on, err := firing(); err != nil || !on {
			return fmt.Errorf("not firing (%v); failed requests so far: %d", err, failedRequests())
		}
		return nil
	})
	fired := time.Now()
	if firstFailure.IsZero() {
		firstFailure = fired
	}
	t.Logf("CineFlowEmailProviderFailing fired %s after the first failed request (%s after the provider began failing; sweep period %s)",
		fired.Sub(firstFailure).Round(100*time.Millisecond), fired.Sub(start).Round(100*time.Millisecond), monSweepEvery)
	if d := fired.Sub(firstFailure); d > 2*monSweepEvery {
		t.Errorf("CineFlowEmailProviderFailing took %s from the first failed request to fire, want at most two sweep periods (%s)", d, 2*monSweepEvery)
	}
	q := fmt.Sprintf(`cineflow_sweeper_last_run_provider_errors_by_class{job="sweeper", namespace=%q, release=%q, class="5xx"} > 0`, monNamespace, monRelease)
	if n, _, _, err := monQuery(promURL, q); err != nil || n != 1 {
		t.Errorf("%s: %d series (%v), want the sweep's 5xx counted", q, n, err)
	}
	// The sweeper said what the provider answered, at WARN, without the key or a recipient.
	logged, _ := os.ReadFile(stack.log)
	warned := false
	for _, line := range strings.Split(string(logged), "\n") {
		if !strings.Contains(line, `"msg":"mail provider request failed"`) {
			continue
		}
		warned = warned || strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, `"status":500`) &&
			strings.Contains(line, `"error_name":"internal_server_error"`)
		if strings.Contains(line, "re_test_key") || strings.Contains(line, "@example.com") {
			t.Errorf("the sweeper's warning carries the API key or a recipient: %s", line)
		}
	}
	if !warned {
		t.Errorf("the sweeper logged no WARN line with the provider's status and error name")
	}

	restored := time.Now()
	setFaults(`{}`)
	email("After the outage")
	monWaitFor(t, "CineFlowEmailProviderFailing to resolve", 60*time.Second, []*monProc{stack, prom}, func() error {
		if on, err := firing(); err != nil || on {
			return fmt.Errorf("still firing (%v)", err)
		}
		return nil
	})
	resolved := time.Now()
	t.Logf("CineFlowEmailProviderFailing resolved %s after the provider answered again", resolved.Sub(restored).Round(100*time.Millisecond))
	if d := resolved.Sub(restored); d > 2*monSweepEvery {
		t.Errorf("CineFlowEmailProviderFailing took %s to resolve, want at most two sweep periods (%s)", d, 2*monSweepEvery)
	}
}

// monPromResult is the answer of /api/v1/query.
type monPromResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// monQuery evaluates q now and returns the number of series (1 for a scalar), how many of them
// have a number (not NaN) and a short rendering of the first values.
func monQuery(promURL, q string) (n, numbers int, shown string, err error) {
	resp, err := http.Get(promURL + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	var r monPromResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, 0, "", fmt.Errorf("decode: %v", err)
	}
	if r.Status != "success" {
		return 0, 0, "", fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "vector", "matrix":
		var series []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &series); err != nil {
			return 0, 0, "", err
		}
		var out []string
		for i, s := range series {
			v := ""
			if len(s.Value) == 2 {
				v = fmt.Sprint(s.Value[1])
			}
			if v != "NaN" && v != "" {
				numbers++
			}
			if i < 3 {
				out = append(out, fmt.Sprintf("%v=%s", s.Metric, v))
			} else if i == 3 {
				out = append(out, "…")
			}
		}
		return len(series), numbers, strings.Join(out, " "), nil
	default:
		return 1, 1, string(r.Data.Result), nil
	}
}

func TestMonitoringPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system, Prometheus and the Pushgateway (not in -short mode)")
	}
	prometheus := monPromBinary(t, "prometheus")
	pushgateway := monPromBinary(t, "prometheus-pushgateway")
	promtool := monPromBinary(t, "promtool")

	// devstack runs core on the fixed port 3000 (as make run does).
	if l, err := net.Listen("tcp", ":3000"); err != nil {
		t.Fatalf("port 3000 is taken (%v): devstack runs the core service on it, as `make run` does. "+
			"Stop whatever listens there (another `make run`?) and run the test again.", err)
	} else {
		l.Close()
	}

	root := repoRoot(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	logs := filepath.Join(tmp, "logs")
	for _, d := range []string{bin, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Build as `make build` does, one module at a time (workspace modules: GOWORK must not be off).
	t0 := time.Now()
	for _, b := range []struct{ dir, pkg string }{
		{"services/core", "./cmd/..."}, {"services/notification", "./cmd/..."}, {"jobs/sweeper", "./cmd/..."},
		{"pkg/devdb", "./cmd/..."}, {"pkg/devdb", "./resendfake/cmd/resendfake"},
	} {
		cmd := exec.Command("go", "build", "-o", bin+"/", b.pkg)
		cmd.Dir, cmd.Env = filepath.Join(root, b.dir), monBuildEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s in %s: %v\n%s", b.pkg, b.dir, err, out)
		}
	}
	t.Logf("built the binaries in %s", time.Since(t0).Round(time.Second))

	// The chart's rules, exactly as rendered; promtool must accept them.
	// CineFlowEmailProviderFailing waits a little over one sweep period, as its default does
	// for the chart's 2-minute schedule.
	rules, rulesFile := monRenderRules(t, tmp, "--set", "metrics.prometheusRule.emailProviderFailingFor="+(monSweepEvery+time.Second).String())
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	// The fake Resend refuses one recipient: that ticket ends FAILED.
	const bounce = "bounce@example.com"
	resendPort, pgPort, notifPort, promPort, dbPort := monFreePort(t), monFreePort(t), monFreePort(t), monFreePort(t), monFreePort(t)
	resendURL := fmt.Sprintf("http://127.0.0.1:%d", resendPort)
	resend := monStart(t, logs, "resendfake", monServiceEnv(), tmp, filepath.Join(bin, "resendfake"),
		"-addr", fmt.Sprintf("127.0.0.1:%d", resendPort), "-reject", bounce)
	pgURL := fmt.Sprintf("http://127.0.0.1:%d", pgPort)
	pg := monStart(t, logs, "pushgateway", monServiceEnv(), tmp, pushgateway, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", pgPort))
	monWaitFor(t, "the fake Resend", 20*time.Second, []*monProc{resend}, func() error { return monHttpOK(resendURL + "/_fake/healthz") })
	monWaitFor(t, "the Pushgateway", 20*time.Second, []*monProc{pg}, func() error { return monHttpOK(pgURL + "/-/ready") })

	// The system, as make run starts it (working directory: an empty temp dir, so no .env).
	const token = "test-notification-token"
	work := filepath.Join(tmp, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	stack := monStart(t, logs, "devstack", monServiceEnv(
		fmt.Sprintf("PORT=%d", notifPort), "SWEEP_INTERVAL="+monSweepEvery.String(), "PUSHGATEWAY_URL="+pgURL,
		// The sweeper's grouping key, as the chart's CronJob sets it.
		"POD_NAMESPACE="+monNamespace, "CINEFLOW_RELEASE="+monRelease,
		"OUTBOX_DIR="+filepath.Join(tmp, "outbox"), "NOTIFICATION_API_TOKEN="+token,
		"RESEND_API_KEY=re_test_key", "RESEND_BASE_URL="+resendURL+"/", "RETRY_BACKOFF_BASE=1s", "METRICS_STATS_TTL=1s",
	), work, filepath.Join(bin, "devstack"),
		"-db-addr", fmt.Sprintf("127.0.0.1:%d", dbPort), "-db-dir", filepath.Join(tmp, "db"),
		"-notification", filepath.Join(bin, "notification"), "-core", filepath.Join(bin, "core"), "-sweeper", filepath.Join(bin, "sweeper"))
	coreURL := "http://127.0.0.1:3000"
	notifURL := fmt.Sprintf("http://127.0.0.1:%d", notifPort)
	monWaitFor(t, "notification and core to be ready", 120*time.Second, []*monProc{stack}, func() error {
		if err := monHttpOK(notifURL + "/readyz"); err != nil {
			return err
		}
		return monHttpOK(coreURL + "/readyz")
	})

	// Prometheus, every second: both services, labelled namespace and release as the chart's
	// ServiceMonitors label them, each scraped twice (the second as instance="replica-2": a second
	// replica exporting the very same figures); the Pushgateway with honor_labels; the chart's rules.
	promDir := filepath.Join(tmp, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %[1]q
scrape_configs:
  - job_name: core
    static_configs:
      - {targets: ["127.0.0.1:3000"], labels: {namespace: %[4]q, release: %[5]q}}
      - {targets: ["127.0.0.1:3000"], labels: {namespace: %[4]q, release: %[5]q, instance: %[6]q}}
  - job_name: notification
    static_configs:
      - {targets: ["127.0.0.1:%[2]d"], labels: {namespace: %[4]q, release: %[5]q}}
      - {targets: ["127.0.0.1:%[2]d"], labels: {namespace: %[4]q, release: %[5]q, instance: %[6]q}}
  - job_name: pushgateway
    honor_labels: true
    static_configs: [{targets: ["127.0.0.1:%[3]d"]}]
`, rulesFile, notifPort, pgPort, monNamespace, monRelease, monReplica2)
	configFile := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", configFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	prom := monStart(t, logs, "prometheus", monServiceEnv(), promDir, prometheus,
		"--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	monWaitFor(t, "Prometheus", 60*time.Second, []*monProc{prom}, func() error { return monHttpOK(promURL + "/-/ready") })
	monWaitFor(t, "Prometheus to scrape core, notification (each twice) and the Pushgateway", 30*time.Second, []*monProc{prom, stack}, func() error {
		n, _, shown, err := monQuery(promURL, `up == 1`)
		if err != nil {
			return err
		}
		if n != 5 {
			return fmt.Errorf("targets up: %s", shown)
		}
		return nil
	})

	// The scenario.
	core := monClient{t: t, base: coreURL + "/mba/api/v1"}
	admin := core.with("x-access-token", monStr(t, core.must(200, "POST", "/auth/signin",
		map[string]any{"email": "admin@cineflow.local", "password": "dev-admin-password"}), "token"))
	movie := monStr(t, admin.must(201, "POST", "/movies", map[string]any{"name": "Heat", "description": "Crime drama",
		"casts": []string{"Al Pacino"}, "trailerUrl": "https://example.com/heat", "releaseDate": "1995-12-15",
		"director": "Michael Mann", "releaseStatus": "RELEASED"}), "_id")
	theatre := monStr(t, admin.must(201, "POST", "/theatres", map[string]any{"name": "Odeon", "description": "Downtown",
		"city": "Pune", "pinCode": 411001, "address": "1 Main Road"}), "_id")
	const timing = "2030-06-01T18:30:00Z"
	admin.must(201, "POST", "/shows", map[string]any{"theatreId": theatre, "movieId": movie, "timing": timing,
		"noOfSeats": 40, "price": 250})
	customer := func(name, email string) monClient {
		core.must(201, "POST", "/auth/signup", map[string]any{"name": name, "email": email, "password": name + "-password"})
		return core.with("x-access-token", monStr(t, core.must(200, "POST", "/auth/signin",
			map[string]any{"email": email, "password": name + "-password"}), "token"))
	}
	asha, ben, chen := customer("asha", "asha@example.com"), customer("ben", "ben@example.com"), customer("chen", bounce)
	book := func(c monClient, want int, seats any) map[string]any {
		body := map[string]any{"theatreId": theatre, "movieId": movie, "timing": timing}
		if n, ok := seats.(int); ok {
			body["noOfSeats"] = n
		} else {
			body["seats"] = seats
		}
		return c.must(want, "POST", "/bookings", body)
	}
	b1 := monStr(t, book(asha, 201, 2), "_id")
	asha.must(200, "POST", "/payments", map[string]any{"bookingId": b1, "amount": 500})
	b2 := monStr(t, book(ben, 201, []string{"A1", "A2"}), "_id")
	book(asha, 409, []string{"A2"}) // a conflict
	if code, data := ben.do("POST", "/payments", map[string]any{"bookingId": b2, "amount": 1}); code < 400 || code >= 500 {
		t.Fatalf("a wrong amount: status %d, want 4xx: %s", code, data["_raw"])
	}
	ben.must(200, "POST", "/payments", map[string]any{"bookingId": b2, "amount": 500})
	b3 := monStr(t, book(chen, 201, 1), "_id")
	chen.must(200, "POST", "/payments", map[string]any{"bookingId": b3, "amount": 250}) // its email is refused
	b4 := monStr(t, book(ben, 201, 3), "_id")
	ben.must(200, "PATCH", "/bookings/"+b4, map[string]any{"status": "CANCELLED"})
	core.must(401, "GET", "/bookings", nil)
	admin.must(200, "GET", "/movies", nil)

	noti := monClient{t: t, base: notifURL + "/notiservice/api/v1/notifications"}
	authed := noti.with("Authorization", "Bearer "+token)
	for _, to := range []string{"dana@example.com", "eli@example.com", bounce} {
		authed.must(201, "POST", "", map[string]any{"subject": "Hello", "content": "It works", "recepientEmails": []string{to}})
	}
	noti.must(401, "GET", "", nil)
	if code, data := authed.do("POST", "", map[string]any{"subject": ""}); code < 400 || code >= 500 {
		t.Fatalf("an invalid ticket: status %d, want 4xx: %s", code, data["_raw"])
	}
	authed.must(200, "GET", "?status=PENDING", nil)

	// Sweeps deliver everything but the refused recipient's emails (the theatre owner's, three
	// payment confirmations and the three direct tickets go through core's outbox and the
	// notification service first).
	monWaitFor(t, "a sweep that delivers and fails", 90*time.Second, []*monProc{stack, prom}, func() error {
		for _, q := range []string{
			`cineflow_notification_tickets{status="FAILED"} >= 2`, `cineflow_notification_tickets{status="SUCCESS"} >= 5`,
			`cineflow_notification_tickets{status="PENDING"} == 0`, `cineflow_core_outbox_pending == 0`,
			`cineflow_sweeper_last_success_timestamp_seconds{job="sweeper"}`,
		} {
			if n, _, _, err := monQuery(promURL, q); err != nil || n == 0 {
				return fmt.Errorf("%s: no data yet (%v)", q, err)
			}
		}
		return nil
	})
	// A second round of requests, so that the one-minute windows of the HTTP panels hold
	// requests of every kind when the expressions are evaluated (else their quantiles are NaN).
	b5 := monStr(t, book(asha, 201, 1), "_id")
	asha.must(200, "POST", "/payments", map[string]any{"bookingId": b5, "amount": 250})
	book(ben, 409, []string{"A1"})
	admin.must(200, "GET", "/movies", nil)
	authed.must(200, "GET", "?status=FAILED", nil)
	time.Sleep(5 * time.Second) // a few more scrapes and rule evaluations

	// Every dashboard expression and every rule returns data.
	raw, err := os.ReadFile(filepath.Join(chartDir(t), monDashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	type check struct{ what, expr string }
	var checks []check
	for _, q := range monDashboardQueries(t, raw) {
		expr, err := monPromQL(q.Expr)
		if err != nil {
			t.Errorf("panel %q %s: %v", q.Panel, q.RefID, err)
			continue
		}
		checks = append(checks, check{fmt.Sprintf("dashboard panel %q (%s)", q.Panel, q.RefID), expr})
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				checks = append(checks, check{"recording rule " + r.Record, r.Expr})
				continue
			}
			signal, err := monAlertSignal(r.Expr)
			if err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
				continue
			}
			checks = append(checks, check{"alert " + r.Alert + " (its signal)", signal})
		}
	}
	var empty []string
	for _, c := range checks {
		n, numbers, shown, err := monQuery(promURL, c.expr)
		switch {
		case err != nil:
			empty = append(empty, fmt.Sprintf("%s: error %v\n    %s", c.what, err, c.expr))
		case n == 0:
			empty = append(empty, fmt.Sprintf("%s: no data\n    %s", c.what, c.expr))
		case numbers == 0:
			empty = append(empty, fmt.Sprintf("%s: only NaN (%s)\n    %s", c.what, shown, c.expr))
		default:
			t.Logf("ok  %s: %d series %s", c.what, n, shown)
		}
	}
	if len(empty) > 0 {
		t.Errorf("%d of %d expressions return nothing (or only NaN) on a Prometheus scraping the running system:\n  %s",
			len(empty), len(checks), strings.Join(empty, "\n  "))
	} else {
		t.Logf("all %d expressions (dashboard and rules) return data", len(checks))
	}

	// The dashboard's variables offer this release: label_values(<selector>, <label>) finds it.
	for name, q := range monDashboardVariables(t, raw) {
		m := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`).FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(<selector>, <label>)", name, q)
			continue
		}
		sel, _ := monPromQL(m[1])
		vals, err := monValues(promURL, fmt.Sprintf("count by (%s) (%s)", m[2], sel), "")
		want := map[string]string{"namespace": monNamespace, "release": monRelease}[name]
		if _, ok := vals[fmt.Sprintf("{%s=%q}", m[2], want)]; err != nil || !ok {
			t.Errorf("variable %s (%s) offers %v (%v), want %s among them", name, q, vals, err, want)
		}
	}

	// Figures every replica exports alike are not double-counted: each expression that reads
	// only such figures answers, with both replicas, what one of them alone answers (between
	// the two replicas' answers, which differ by the times of their scrapes); a sum over the
	// replicas would answer both together.
	at := strconv.FormatInt(time.Now().Add(-2*time.Second).Unix(), 10)
	fleetChecks := 0
	for _, c := range checks {
		if !monOnlyFleetWide(c.expr) {
			continue
		}
		fleetChecks++
		both, err1 := monValues(promURL, c.expr, at)
		first, err2 := monValues(promURL, monWithMatcher(c.expr, fmt.Sprintf("instance!=%q", monReplica2)), at)
		second, err3 := monValues(promURL, monWithMatcher(c.expr, fmt.Sprintf("instance=%q", monReplica2)), at)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if !monBetween(both, first, second) {
			t.Errorf("%s counts a figure once per replica: %v with two replicas, %v and %v with each alone\n    %s", c.what, both, first, second, c.expr)
		} else {
			t.Logf("ok  %s: as with one replica %v", c.what, both)
		}
	}
	if fleetChecks < 8 {
		t.Errorf("only %d expressions read replica-wide figures alone; want the backlog panels and rules", fleetChecks)
	}

	// The mail provider fails every request (500). CineFlowEmailProviderFailing fires within two
	// sweep periods of the first failed request, and resolves within two sweep periods of the
	// provider answering again.
	monProviderOutage(t, promURL, resendURL, stack, prom, authed)

	// Prometheus loaded every rule and evaluates each without error.
	resp, err := http.Get(promURL + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var loaded struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					State     string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&loaded); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range loaded.Data.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Name)
			if r.Health != "ok" {
				t.Errorf("rule %s in %s: health %q %s", r.Name, g.Name, r.Health, r.LastError)
			} else {
				t.Logf("rule %s: health ok, state %s", r.Name, r.State)
			}
		}
	}
	slices.Sort(names)
	want := slices.Clone(monWantAlerts)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("Prometheus loaded rules %v, want %v", names, want)
	}
}
