// Package e2e is the end-to-end test of CineFlow on a real single-node Kubernetes cluster
// (k8s/local/cluster), run by `make e2e` (CINEFLOW_E2E=1; root, Debian). It builds the images
// from the sources into a local registry, deploys the dev pieces and installs the chart, then
// proves, in order: that nothing listens outside 127.0.0.1 and the pods' bridge; the user's story through the core Service with the CronJob's sweeper
// delivering; a core pod killed during bookings; a sweeper pod killed in the middle of a backlog;
// a helm upgrade under load; the monitoring targets and the Pushgateway; `skaffold run`; a
// clean `helm uninstall`; and the trial a new user starts with: `make images` into the cluster's
// registry and `helm install --set devDatabase.enabled=true` with the image values it printed,
// nothing else, up to a booking's e-mail. Every process it started is stopped by its PID at the
// end, also when a step fails or the test is interrupted (SIGINT/SIGTERM).
package e2e

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cineflow/cineflow/k8s/local/deploy"
)

const (
	ns      = "cineflow-e2e"
	release = "cineflow"
	// period is the sweeper's schedule in k8s/values-local.yaml ("* * * * *").
	period = time.Minute
)

// env is what the steps share.
type env struct {
	*deploy.Stack
	root    string
	core    api // the core's API base, through its Service
	notify  api // the notification service's API, with its token
	fake    string
	pushgw  string
	admin   api
	timings []string
}

func (e *env) timed(what string, began time.Time) {
	d := time.Since(began).Round(100 * time.Millisecond)
	e.timings = append(e.timings, fmt.Sprintf("%-34s %s", what, d))
	log.Printf("%s took %s", what, d)
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

func TestE2E(t *testing.T) {
	if os.Getenv("CINEFLOW_E2E") == "" {
		t.Skip("the end-to-end test runs with CINEFLOW_E2E=1 (make e2e): it starts a Kubernetes cluster as root")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	began := time.Now()
	e := &env{root: repoRoot(t)}
	ctx := context.Background()

	s, err := deploy.StartStack(ctx, e.root, "127.0.0.1:5001", log.Printf)
	if err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	e.Stack = s
	stop := sync.OnceValue(s.Stop)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
		for _, l := range e.timings {
			t.Log(l)
		}
		t.Logf("whole run: %s", time.Since(began).Round(time.Second))
	})
	// An interrupted test still stops every process it started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		log.Printf("%v: stopping the cluster", sig)
		if err := stop(); err != nil {
			log.Print(err)
		}
		os.Exit(1)
	}()
	// go test's -timeout ends the process without running cleanups: stop the cluster first.
	if deadline, ok := t.Deadline(); ok {
		watchdog := time.AfterFunc(time.Until(deadline)-2*time.Minute, func() {
			log.Print("the test's -timeout is near: stopping the cluster")
			if err := stop(); err != nil {
				log.Print(err)
			}
		})
		defer watchdog.Stop()
	}
	e.timed("cluster up", began)

	if !t.Run("install", e.install) {
		return
	}
	t.Run("listeners", e.listeners)
	t.Run("story", e.story)
	t.Run("core-pod-killed", e.corePodKilled)
	t.Run("sweeper-pod-killed", e.sweeperPodKilled)
	t.Run("upgrade-under-load", e.upgradeUnderLoad)
	t.Run("monitoring", e.monitoring)
	t.Run("skaffold-run", e.skaffoldRun)
	t.Run("uninstall", e.uninstall)
	t.Run("trial", e.trial)
}

// install builds the images, deploys the dev pieces and installs the chart.
func (e *env) install(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	if err := e.BuildImages(ctx, "e2e-1", append(deploy.DevImages, deploy.AppImages...)...); err != nil {
		t.Fatal(err)
	}
	if err := e.BuildPushgateway(ctx); err != nil {
		t.Fatal(err)
	}
	e.timed("images built and pushed", began)

	began = time.Now()
	if err := e.DevPieces(ctx, ns); err != nil {
		t.Fatal(err)
	}
	e.timed("dev pieces ready", began)

	began = time.Now()
	if out, err := e.InstallChart(ctx, ns, release); err != nil {
		t.Fatalf("helm install: %v", err)
	} else {
		t.Logf("helm install:\n%s", out)
	}
	e.timed("helm install, Deployments ready", began)

	e.core = newAPI(e.serviceURL(t, "cineflow-core", "/mba/api/v1"))
	token := e.secret(t, "cineflow-notification-token", "notification-api-token")
	e.notify = newAPI(e.serviceURL(t, "cineflow-notification", "/notiservice/api/v1/notifications")).with("Authorization", "Bearer "+token)
	e.fake = e.serviceURL(t, "resendfake", "/_fake")
	e.pushgw = e.serviceURL(t, "pushgateway", "")
	var signin struct{ Token string }
	e.core.must(t, 200, "POST", "/auth/signin", map[string]any{"email": "admin@cineflow.local", "password": "local-admin-password"}, &signin)
	e.admin = e.core.with("x-access-token", signin.Token)
}

// serviceURL is http://<cluster IP>:<first port><path> of a Service of ns.
func (e *env) serviceURL(t *testing.T, name, path string) string {
	t.Helper()
	svc, err := e.Cluster.Client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Service %s: %v", name, err)
	}
	return fmt.Sprintf("http://%s:%d%s", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port, path)
}

func (e *env) secret(t *testing.T, name, key string) string {
	t.Helper()
	s, err := e.Cluster.Client.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Secret %s: %v", name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		t.Fatalf("Secret %s has no %s", name, key)
	}
	return string(v)
}
