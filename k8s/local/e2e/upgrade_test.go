package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cineflow/cineflow/k8s/local/deploy"
)

// upgradeUnderLoad: `helm upgrade` to images of a new tag while reads and bookings flow through
// the core Service; the rollout completes and not one request fails. The client is an ordinary
// Go client: keep-alive connections, a POST retried only when Go's transport may (a connection
// closed before any answer, and the request carries an Idempotency-Key).
func (e *env) upgradeUnderLoad(t *testing.T) {
	began := time.Now()
	ctx := context.Background()
	if err := e.BuildImages(ctx, "e2e-2", deploy.AppImages...); err != nil {
		t.Fatal(err)
	}
	sh := e.newShow(t, "Thief", 3000)
	const readers, bookers = 4, 4
	clients := make([]api, bookers)
	for i := range clients {
		clients[i] = e.customer(t, fmt.Sprintf("up%d", i), fmt.Sprintf("up%d-%s@example.com", i, randomHex(3)))
	}

	var stop atomic.Bool
	var total, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(s string) {
		failed.Add(1)
		mu.Lock()
		if len(failures) < 20 {
			failures = append(failures, time.Now().Format("15:04:05.000")+" "+s)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				total.Add(1)
				r, err := e.core.do("GET", "/movies?limit=5", nil)
				switch {
				case err != nil:
					fail("GET /movies: " + err.Error())
				case r.Status != http.StatusOK:
					fail("GET /movies: " + r.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	for i := 0; i < bookers; i++ {
		wg.Add(1)
		go func(c api) {
			defer wg.Done()
			for !stop.Load() {
				total.Add(1)
				r, err := c.with("Idempotency-Key", randomHex(12)).do("POST", "/bookings", sh.booking(1))
				switch {
				case err != nil:
					fail("POST /bookings: " + err.Error())
				case r.Status != http.StatusCreated:
					fail("POST /bookings: " + r.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}(clients[i])
	}

	time.Sleep(3 * time.Second) // load before
	upBegan := time.Now()
	out, err := e.InstallChart(ctx, ns, release)
	upTook := time.Since(upBegan)
	time.Sleep(5 * time.Second) // load after
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	t.Logf("helm upgrade and rollout took %s; %d requests during the run, %d failed", upTook.Round(100*time.Millisecond), total.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during the upgrade:\n  %s", failed.Load(), total.Load(), strings.Join(failures, "\n  "))
	}
	if total.Load() < 100 {
		t.Errorf("only %d requests: the load did not flow", total.Load())
	}

	// The release carries the new tag, and every pod of the services runs the new images.
	if vals, err := e.RunHelm(ctx, "get", "values", release, "--namespace", ns, "--output", "json"); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(vals, `"tag":"e2e-2"`) {
		t.Errorf("helm get values after the upgrade has no tag e2e-2: %s", vals)
	}
	for _, comp := range []string{"core", "notification"} {
		want := e.Images[comp]
		digest := want[strings.LastIndex(want, "@")+1:]
		pods, err := e.Cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=" + comp})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, digest) {
				t.Errorf("pod %s runs %s, want the upgraded %s", p.Name, img, want)
			}
		}
	}
	e.timed("helm upgrade under load", began)
}
