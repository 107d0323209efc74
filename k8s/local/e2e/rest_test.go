package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/cineflow/cineflow/k8s/local/deploy"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

var serviceMonitors = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}

// monitoring: every target the chart's ServiceMonitors select answers /metrics from inside the
// cluster (a pod of the probe image fetches them), and the sweeper's figures are on the
// Pushgateway.
func (e *env) monitoring(t *testing.T) {
	began := time.Now()
	ctx := context.Background()
	sms, err := e.Dynamic.Resource(serviceMonitors).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sms.Items) != 2 {
		t.Fatalf("%d ServiceMonitors, want 2 (core, notification)", len(sms.Items))
	}
	// The sweeps push their figures to the Pushgateway; wait for a recent successful one.
	var last float64
	err = eventually(period+30*time.Second, 2*time.Second, func() error {
		v, err := pushedValue(e.pushgw+"/metrics", "cineflow_sweeper_last_success_timestamp_seconds")
		if err != nil {
			return err
		}
		last = v
		if age := time.Since(time.Unix(int64(v), 0)); age > 2*period {
			return fmt.Errorf("the last successful sweep pushed was %s ago", age.Round(time.Second))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the Pushgateway has the sweeper's figures; last success %s", time.Unix(int64(last), 0).Format(time.TimeOnly))

	// What each target must expose: a metric of its own service that exists from the start
	// (a pod that has served no request yet has no request counters).
	wants := map[string]string{}
	var urls []string
	for _, sm := range sms.Items {
		targets := e.serviceMonitorTargets(t, &sm)
		if len(targets) == 0 {
			t.Errorf("ServiceMonitor %s selects no target", sm.GetName())
		}
		want := "cineflow_notification_tickets_created_total"
		if strings.HasSuffix(sm.GetName(), "-core") {
			want = "cineflow_core_outbox_pending"
		}
		for _, u := range targets {
			wants[u] = want
		}
		urls = append(urls, targets...)
	}
	if len(urls) != 3 {
		t.Errorf("%d targets, want 3 (two core pods, one notification pod): %v", len(urls), urls)
	}
	// The Pushgateway too, by its cluster DNS name.
	pushURL := "http://pushgateway." + ns + ".svc.cluster.local:9091/metrics"
	wants[pushURL] = `cineflow_sweeper_last_success_timestamp_seconds{`
	urls = append(urls, pushURL)
	// The API Services never serve /metrics (METRICS_PORT): 404 there.
	apiMetrics := map[string]bool{}
	for _, svc := range []string{"cineflow-core:3000", "cineflow-notification:3001"} {
		u := "http://" + strings.Replace(svc, ":", "."+ns+".svc.cluster.local:", 1) + "/metrics"
		apiMetrics[u] = true
		urls = append(urls, u)
	}
	results := e.probe(t, urls)
	for _, r := range results {
		if apiMetrics[r.URL] {
			if r.Status != 404 {
				t.Errorf("%s through the API Service: %d %s, want 404 (metrics are on their own port)", r.URL, r.Status, r.Error)
			}
			continue
		}
		if r.Status != 200 {
			t.Errorf("%s from inside the cluster: %d %s", r.URL, r.Status, r.Error)
			continue
		}
		if !strings.Contains(r.Body, wants[r.URL]) {
			t.Errorf("%s answers without %s", r.URL, wants[r.URL])
		}
	}
	t.Logf("%d targets answered /metrics from inside the cluster: %v", len(results)-3, urls[:len(urls)-3])

	e.timed("monitoring", began)
}

// serviceMonitorTargets resolves a ServiceMonitor as Prometheus would: the Services its selector
// matches, their EndpointSlices' ready addresses, at each endpoint's port and path.
func (e *env) serviceMonitorTargets(t *testing.T, sm *unstructured.Unstructured) []string {
	t.Helper()
	ctx := context.Background()
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	var selector []string
	for k, v := range sel {
		selector = append(selector, k+"="+v)
	}
	svcs, err := e.Cluster.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: strings.Join(selector, ",")})
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, svc := range svcs.Items {
		slices, err := e.Cluster.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc.Name})
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range eps {
			m, _ := ep.(map[string]any)
			portName, _ := m["port"].(string)
			path, _ := m["path"].(string)
			if path == "" {
				path = "/metrics"
			}
			for _, sl := range slices.Items {
				for _, p := range sl.Ports {
					if p.Name == nil || *p.Name != portName || p.Port == nil {
						continue
					}
					for _, addr := range sl.Endpoints {
						if addr.Conditions.Ready != nil && *addr.Conditions.Ready {
							urls = append(urls, fmt.Sprintf("http://%s:%d%s", addr.Addresses[0], *p.Port, path))
						}
					}
				}
			}
		}
	}
	return urls
}

type probeResult struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Error  string `json:"error"`
}

// probe runs the probe image as a pod that GETs urls, and returns what it printed.
func (e *env) probe(t *testing.T, urls []string) []probeResult {
	t.Helper()
	ctx := context.Background()
	name := "probe-" + randomHex(3)
	no, yes, user := false, true, int64(65532)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "e2e-probe"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &no,
			SecurityContext:              &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &user},
			Containers: []corev1.Container{{
				Name: "probe", Image: e.Images["probe"], Args: urls,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	if _, err := e.Cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer e.Cluster.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
	var phase corev1.PodPhase
	if err := eventually(2*time.Minute, 500*time.Millisecond, func() error {
		p, err := e.Cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase = p.Status.Phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return nil
		}
		return fmt.Errorf("probe pod %s", phase)
	}); err != nil {
		t.Fatal(err)
	}
	// Its output, through the API server and the kubelet (kubectl logs).
	raw, err := e.Cluster.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	var out []probeResult
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r probeResult
		if err := json.Unmarshal(sc.Bytes(), &r); err == nil {
			out = append(out, r)
		}
	}
	if len(out) != len(urls) {
		t.Fatalf("probe pod %s (%s) printed %d results for %d URLs:\n%s", name, phase, len(out), len(urls), raw)
	}
	return out
}

// pushedValue reads one sample of metric (job="sweeper") from the Pushgateway's /metrics.
func pushedValue(url, metric string) (float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, metric+"{") && strings.Contains(line, `job="sweeper"`) {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s{job=\"sweeper\"}", url, metric)
}

// skaffoldRun: `skaffold run -p local` builds the three images with ko onto the local base image,
// pushes them to the local registry, and deploys the chart into its own namespace.
func (e *env) skaffoldRun(t *testing.T) {
	began := time.Now()
	ctx := context.Background()
	const skNS = "cineflow-skaffold"
	skaffold, err := deploy.Skaffold(e.root, log.Printf)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.DevPieces(ctx, skNS); err != nil {
		t.Fatal(err)
	}
	// skaffold gets a home of its own; ko's `go build` keeps the real Go caches.
	goEnv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	caches := strings.Fields(string(goEnv))
	if len(caches) != 3 {
		t.Fatalf("go env: %q", goEnv)
	}
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, skaffold, "run", "--profile", "local",
		"--default-repo", e.Registry.Addr+"/cineflow", "--insecure-registry", e.Registry.Addr,
		"--kubeconfig", e.Cluster.Kubeconfig, "--namespace", skNS,
		"--tag", "skaffold-e2e", "--status-check=true", "--interactive=false", "--update-check=false")
	cmd.Dir = e.root
	helm, err := e.Helm()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(helm)+":"+os.Getenv("PATH"),
		"GOWORK="+filepath.Join(e.root, "go.work"), "GOCACHE="+caches[0], "GOMODCACHE="+caches[1], "GOPATH="+caches[2], "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"SKAFFOLD_DETECT_MINIKUBE=false", "KUBECONFIG="+e.Cluster.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("skaffold run: %v\n%s", err, out)
	}
	t.Logf("skaffold run:\n%s", tail(string(out), 25))
	pods, err := e.Cluster.Client.CoreV1().Pods(skNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=cineflow"})
	if err != nil {
		t.Fatal(err)
	}
	running := map[string]bool{}
	for _, p := range pods.Items {
		img := p.Spec.Containers[0].Image
		if !strings.HasPrefix(img, e.Registry.Addr+"/cineflow/cineflow-") {
			t.Errorf("pod %s runs %s, not an image skaffold pushed to %s", p.Name, img, e.Registry.Addr)
		}
		if p.Status.Phase == corev1.PodRunning {
			running[p.Labels["app.kubernetes.io/component"]] = true
		}
	}
	if !running["core"] || !running["notification"] {
		t.Errorf("after skaffold run, running components: %v", running)
	}
	// The API answers through the Service skaffold deployed.
	svc, err := e.Cluster.Client.CoreV1().Services(skNS).Get(ctx, "cineflow-core", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// kube-proxy programs the new Service's endpoints a moment after the pods are ready.
	skCore := newAPI(fmt.Sprintf("http://%s:3000/mba/api/v1", svc.Spec.ClusterIP))
	if err := eventually(30*time.Second, 500*time.Millisecond, func() error {
		r, err := skCore.do("GET", "/movies", nil)
		if err == nil && r.Status != 200 {
			err = fmt.Errorf("GET /movies: %s", r)
		}
		return err
	}); err != nil {
		t.Errorf("the core skaffold deployed does not answer through its Service: %v", err)
	}

	del := exec.CommandContext(ctx, skaffold, "delete", "--profile", "local", "--kubeconfig", e.Cluster.Kubeconfig, "--namespace", skNS)
	del.Dir, del.Env = e.root, cmd.Env
	if out, err := del.CombinedOutput(); err != nil {
		t.Errorf("skaffold delete: %v\n%s", err, out)
	}
	if err := e.Cluster.Client.CoreV1().Namespaces().Delete(ctx, skNS, metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete namespace %s: %v", skNS, err)
	}
	e.timed("skaffold run", began)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// uninstall: `helm uninstall` leaves nothing of the release: no object of any namespaced kind
// labelled with it or named after it, and its Jobs' pods garbage-collected.
func (e *env) uninstall(t *testing.T) {
	began := time.Now()
	ctx := context.Background()
	if out, err := e.RunHelm(ctx, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredNamespacedResources()
	if err != nil {
		t.Fatal(err)
	}
	err = eventually(2*time.Minute, 2*time.Second, func() error {
		var left []string
		for _, l := range lists {
			gv, _ := schema.ParseGroupVersion(l.GroupVersion)
			for _, r := range l.APIResources {
				if !contains(r.Verbs, "list") || r.Name == "events" {
					continue
				}
				items, err := e.Dynamic.Resource(gv.WithResource(r.Name)).Namespace(ns).List(ctx, metav1.ListOptions{})
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					continue
				} else if err != nil {
					return err
				}
				for _, it := range items.Items {
					if it.GetLabels()["app.kubernetes.io/instance"] == release || strings.HasPrefix(it.GetName(), release+"-") {
						left = append(left, r.Name+"/"+it.GetName())
					}
				}
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left behind: %v", left)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after helm uninstall: %v", err)
	}
	e.timed("helm uninstall", began)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// listeners: every socket the cluster's processes (and this test, serving the registry) listen
// on is on 127.0.0.1 or the pods' bridge: nothing is reachable from outside the machine.
func (e *env) listeners(t *testing.T) {
	pids := map[int]string{os.Getpid(): "e2e.test"}
	files, _ := filepath.Glob(filepath.Join(e.Cluster.Dir, "pids", "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, _, _ := strings.Cut(string(b), " ")
		n, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatalf("%s: %q", f, b)
		}
		pids[n] = strings.TrimSuffix(filepath.Base(f), ".pid")
	}
	if len(pids) < 9 {
		t.Fatalf("%d processes recorded, want the 8 of the cluster and this test: %v", len(pids), pids)
	}
	pidRe := regexp.MustCompile(`pid=(\d+)`)
	seen := map[string]bool{}
	for _, proto := range []string{"-ltnpH", "-lunpH"} {
		out, err := exec.Command("ss", proto).Output()
		if err != nil {
			t.Fatalf("ss %s: %v", proto, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			for _, m := range pidRe.FindAllStringSubmatch(line, -1) {
				pid, _ := strconv.Atoi(m[1])
				name, ours := pids[pid]
				if !ours {
					continue
				}
				addr := f[3]
				seen[name] = true
				if !strings.HasPrefix(addr, "127.0.0.1:") && !strings.HasPrefix(addr, "10.88.0.1:") && !strings.HasPrefix(addr, "[::1]:") {
					t.Errorf("%s (pid %d) listens on %s: outside 127.0.0.1 and the pods' bridge", name, pid, addr)
				}
			}
		}
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kubelet", "coredns", "e2e.test"} {
		if !seen[name] {
			t.Errorf("no listening socket of %s found: is ss reading this machine?", name)
		}
	}
	t.Logf("listening processes, all on 127.0.0.1 or %s: %v", "10.88.0.1", seen)
}
