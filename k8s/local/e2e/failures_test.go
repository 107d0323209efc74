package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// outcome of one booking request, after its retries.
type outcome struct {
	worker  int
	key     string
	status  int // final status; 0: unknown (the request's claim died with a pod)
	booking booking
	tries   int
	at      time.Time // when it was answered
	errs    []string  // transport errors and 5xx met on the way
}

// bookWithRetry books under one Idempotency-Key, retrying (same key) on transport errors, 5xx
// and "still in progress" answers, as a client should. A key whose first request died with its
// pod stays "in progress" until the claim's lease (a minute) ends and a retry takes the key
// over; a client that will not wait that long stops after inProgressLimit and checks its
// bookings instead (status 0).
func bookWithRetry(c api, body map[string]any, inProgressLimit time.Duration) outcome {
	o := outcome{key: randomHex(12)}
	c = c.with("Idempotency-Key", o.key)
	first := time.Now()
	var inProgressSince time.Time
	for {
		o.tries++
		r, err := c.do("POST", "/bookings", body)
		switch {
		case err != nil:
			o.errs = append(o.errs, err.Error())
		case r.Status >= 500:
			o.errs = append(o.errs, r.String())
		case r.Status == http.StatusConflict && (strings.Contains(r.Message, "in progress") || strings.Contains(r.Message, "just failed")):
			if inProgressSince.IsZero() {
				inProgressSince = time.Now()
			}
			if time.Since(inProgressSince) > inProgressLimit {
				o.at = time.Now()
				return o
			}
		default:
			o.status, o.at = r.Status, time.Now()
			if r.Status == http.StatusCreated {
				_ = jsonUnmarshal(r.Data, &o.booking)
			}
			return o
		}
		if time.Since(first) > 2*time.Minute {
			o.at = time.Now()
			return o
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// corePodKilled: two core replicas; while 12 customers book, one core pod is killed (SIGKILL,
// no grace). Requests fail over to the other pod (the client retries under the same
// Idempotency-Key); afterwards every acknowledged booking exists, no seat is in two bookings,
// and no retry made a second booking.
func (e *env) corePodKilled(t *testing.T) {
	began := time.Now()
	ctx := context.Background()
	pods := e.corePods(t)
	if len(pods) != 2 {
		t.Fatalf("%d ready core pods, want 2 (core.replicaCount in values-local.yaml)", len(pods))
	}
	const workers, perWorker, seatsEach = 12, 15, 2
	sh := e.newShow(t, "Collateral", workers*perWorker*seatsEach+40)
	clients := make([]api, workers)
	for i := range clients {
		clients[i] = e.customer(t, fmt.Sprintf("kill%d", i), fmt.Sprintf("kill%d-%s@example.com", i, randomHex(3)))
	}

	var acked atomic.Int64
	var killedAt atomic.Value // time.Time
	results := make([][]outcome, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				o := bookWithRetry(clients[w], sh.booking(seatsEach), 10*time.Second)
				o.worker = w
				results[w] = append(results[w], o)
				if o.status == http.StatusCreated {
					acked.Add(1)
				}
			}
		}(w)
	}
	// Kill a core pod once the stream is well under way.
	victim := pods[0]
	if err := eventually(60*time.Second, 20*time.Millisecond, func() error {
		if acked.Load() < workers*perWorker/4 {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("bookings did not get going: %d acknowledged", acked.Load())
	}
	zero := int64(0)
	if err := e.Cluster.Client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("kill core pod %s: %v", victim.Name, err)
	}
	killedAt.Store(time.Now())
	ackedAtKill := acked.Load()
	t.Logf("killed core pod %s (SIGKILL) after %d acknowledged bookings", victim.Name, ackedAtKill)
	wg.Wait()
	// The checks below sign up and book without an Idempotency-Key, which net/http does not
	// replay: wait until the Service no longer routes to the dead pod and drop pooled connections
	// to it, as a client's reconnect would.
	e.awaitCoreWithout(t, victim.Status.PodIP)

	// Every request ended: booked, or refused for a reason of its own, or (only for claims that
	// died with the pod) unknown.
	var all []outcome
	for _, rs := range results {
		all = append(all, rs...)
	}
	kill := killedAt.Load().(time.Time)
	byStatus := map[int]int{}
	var retried, afterKill int
	for _, o := range all {
		byStatus[o.status]++
		if len(o.errs) > 0 {
			retried++
		}
		if o.status == http.StatusCreated && o.at.After(kill) {
			afterKill++
		}
	}
	t.Logf("%d requests: %v (0 = unknown); %d needed retries; %d booked after the kill", len(all), byStatus, retried, afterKill)
	if byStatus[http.StatusCreated]+byStatus[0] != len(all) {
		t.Errorf("requests that neither booked nor died with the pod: %v", byStatus)
		for _, o := range all {
			if o.status != http.StatusCreated && o.status != 0 {
				t.Logf("  worker %d key %s: status %d after %d tries %v", o.worker, o.key, o.status, o.tries, o.errs)
			}
		}
	}
	if byStatus[0] > workers {
		t.Errorf("%d requests ended unknown; at most the %d in flight on the killed pod may", byStatus[0], workers)
	}
	if afterKill == 0 {
		t.Errorf("no booking succeeded after the kill: no fail-over")
	}

	// Nothing lost, nothing doubled: each customer's bookings are the acknowledged ones, plus at
	// most one per unknown request.
	seatOwner := map[string]string{}
	for w, c := range clients {
		var mine []booking
		c.must(t, 200, "GET", "/bookings?limit=500", nil, &mine)
		have := map[string]booking{}
		for _, b := range mine {
			if b.ShowID == sh.ID && (b.Status == "IN_PROCESS" || b.Status == "SUCCESSFULL") {
				have[b.ID] = b
			}
		}
		unknown, ackedHere := 0, map[string]bool{}
		for _, o := range results[w] {
			switch o.status {
			case http.StatusCreated:
				ackedHere[o.booking.ID] = true
				b, ok := have[o.booking.ID]
				if !ok {
					t.Errorf("customer %d: acknowledged booking %s is missing", w, o.booking.ID)
				} else if strings.Join(b.Seats, ",") != strings.Join(o.booking.Seats, ",") {
					t.Errorf("booking %s: seats %v now, %v when acknowledged", b.ID, b.Seats, o.booking.Seats)
				}
			case 0:
				unknown++
			}
		}
		if extra := len(have) - len(ackedHere); extra > unknown {
			t.Errorf("customer %d has %d bookings that were never acknowledged, with only %d unknown requests: a retry booked twice", w, extra, unknown)
		}
		for _, b := range have {
			for _, s := range b.Seats {
				if other, dup := seatOwner[s]; dup {
					t.Errorf("seat %s is in bookings %s and %s", s, other, b.ID)
				}
				seatOwner[s] = b.ID
			}
		}
	}
	// The database agrees: another customer asking for any booked seat by name is refused.
	var booked []string
	for s := range seatOwner {
		booked = append(booked, s)
	}
	sort.Strings(booked)
	prober := e.customer(t, "prober", "prober-"+randomHex(3)+"@example.com")
	var oversold []string
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var pw sync.WaitGroup
	for _, seat := range booked {
		pw.Add(1)
		go func(seat string) {
			defer pw.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			body := map[string]any{"theatreId": sh.Theatre, "movieId": sh.Movie, "timing": sh.Timing, "seats": []string{seat}}
			r, err := prober.do("POST", "/bookings", body)
			if err != nil || r.Status != http.StatusConflict {
				mu.Lock()
				oversold = append(oversold, fmt.Sprintf("%s: %v %v", seat, r, err))
				mu.Unlock()
			}
		}(seat)
	}
	pw.Wait()
	if len(oversold) > 0 {
		t.Errorf("booked seats another customer could book again (want 409 for each):\n  %s", strings.Join(oversold, "\n  "))
	}

	// The seat map agrees: every booked seat is taken (a booking through the other replica shows
	// within SeatMapTTL, 1 s).
	var notTaken []string
	var taken map[string]bool
	err := eventually(5*time.Second, 500*time.Millisecond, func() error {
		var seatMap struct {
			Held []string `json:"held"`
			Sold []string `json:"sold"`
		}
		r, err := e.core.do("GET", "/shows/"+sh.ID+"/seats", nil)
		if err != nil {
			return err
		}
		if err := jsonUnmarshal(r.Data, &seatMap); err != nil {
			return err
		}
		taken = map[string]bool{}
		for _, s := range append(seatMap.Held, seatMap.Sold...) {
			taken[s] = true
		}
		notTaken = nil
		for s := range seatOwner {
			if !taken[s] {
				notTaken = append(notTaken, s)
			}
		}
		if len(notTaken) > 0 {
			sort.Strings(notTaken)
			return fmt.Errorf("booked seats the seat map shows free: %v", notTaken)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("%d seats booked in %d bookings, each once, none bookable again; the seat map holds %d", len(seatOwner), byStatus[http.StatusCreated], len(taken))

	// The Deployment replaces the pod.
	if err := e.WaitDeployments(ctx, ns, 3*time.Minute, "cineflow-core"); err != nil {
		t.Fatal(err)
	}
	e.timed("core pod killed under bookings", began)
}

// awaitCoreWithout waits until the core Service lists no endpoint at ip, closes the pooled
// connections (some may lead to ip), and waits until 10 fresh connections in a row are answered.
func (e *env) awaitCoreWithout(t *testing.T, ip string) {
	t.Helper()
	ctx := context.Background()
	const svc = "cineflow-core"
	err := eventually(60*time.Second, 100*time.Millisecond, func() error {
		slices, err := e.Cluster.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc})
		if err != nil {
			return err
		}
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				for _, a := range ep.Addresses {
					if a == ip {
						return fmt.Errorf("%s still lists %s", svc, ip)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	httpClient.CloseIdleConnections()
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ok := 0
	err = eventually(60*time.Second, 100*time.Millisecond, func() error {
		for ; ok < 10; ok++ {
			resp, err := fresh.Get(strings.TrimSuffix(e.core.base, "/mba/api/v1") + "/healthz")
			if err != nil {
				ok = 0
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ok = 0
				return fmt.Errorf("GET /healthz: %d", resp.StatusCode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s not answering on fresh connections: %v", svc, err)
	}
}

// corePods are the ready core pods.
func (e *env) corePods(t *testing.T) []corev1.Pod {
	t.Helper()
	list, err := e.Cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=core"})
	if err != nil {
		t.Fatal(err)
	}
	var ready []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = append(ready, p)
			}
		}
	}
	return ready
}

// sweeperPodKilled: a backlog of tickets, a slow mail provider, and the running sweeper pod
// killed after its first deliveries. The next scheduled Job takes over the killed sweep's batches
// and delivers the rest; no email arrives twice (the provider saw the same idempotency keys) and
// every ticket ends SUCCESS.
func (e *env) sweeperPodKilled(t *testing.T) {
	began := time.Now()
	const backlog = 600
	// Each provider request takes 2 s, so a sweep of this backlog outlives the kill.
	if err := postJSON(e.fake+"/faults", map[string]any{"delay": "2s", "delay_rate": 1}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := postJSON(e.fake+"/faults", map[string]any{}); err != nil {
			t.Errorf("reset the fake's faults: %v", err)
		}
	}()
	var before fakeStats
	if err := getJSON(e.fake+"/stats", &before); err != nil {
		t.Fatal(err)
	}

	// The backlog, created between two sweeps.
	e.waitNoSweeperRunning(t)
	tag := randomHex(4)
	ids := make([]string, backlog)
	var wg sync.WaitGroup
	errs := make(chan error, backlog)
	sem := make(chan struct{}, 8)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var tk ticket
			r, err := e.notify.do("POST", "/", map[string]any{"subject": fmt.Sprintf("Backlog %s #%d", tag, i),
				"content": "A ticket of the backlog", "recepientEmails": []string{fmt.Sprintf("bulk-%s-%d@example.com", tag, i)}})
			if err == nil && r.Status != 201 {
				err = fmt.Errorf("create ticket: %s", r)
			}
			if err == nil {
				err = jsonUnmarshal(r.Data, &tk)
			}
			if err != nil {
				errs <- err
				return
			}
			ids[i] = tk.ID
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d tickets PENDING; waiting for the next sweep", backlog)

	// Kill the sweeper pod once it has delivered some, not all.
	var victim string
	err := eventually(period+45*time.Second, 100*time.Millisecond, func() error {
		var st fakeStats
		if err := getJSON(e.fake+"/stats", &st); err != nil {
			return err
		}
		if st.Deliveries-before.Deliveries == 0 {
			return errNotYet
		}
		pods := e.runningSweeperPods(t)
		if len(pods) == 0 {
			return fmt.Errorf("deliveries began but no sweeper pod is running: %s", e.jobsSummary(t))
		}
		// SIGKILL the sweeper's process on the node itself: an API deletion would reach the
		// kubelet seconds later, when the sweep may be over.
		for _, p := range pods {
			n, err := killContainer(p)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("pod %s: no process found to kill", p.Name)
			}
			victim = p.Name
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kill the sweeper: %v", err)
	}
	var atKill fakeStats
	_ = getJSON(e.fake+"/stats", &atKill)
	delivered := atKill.Deliveries - before.Deliveries
	t.Logf("killed sweeper pod %s (SIGKILL to its process) after %d of %d deliveries", victim, delivered, backlog)
	if delivered >= backlog {
		t.Fatalf("the sweep had delivered all %d before the kill: the test proved nothing", backlog)
	}

	// The next Job delivers the rest: the killed sweep's batches are taken over after its lease.
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var n int
	err = eventually(3*period, 2*time.Second, func() error {
		var ds []delivery
		if err := getJSON(e.fake+"/deliveries", &ds); err != nil {
			return err
		}
		n = 0
		for _, d := range ds {
			if want[d.TicketID] {
				n++
			}
		}
		if n < backlog {
			return fmt.Errorf("%d of %d delivered", n, backlog)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the backlog was not delivered after the kill: %v\n%s", err, e.jobsSummary(t))
	}
	if n != backlog {
		t.Errorf("%d deliveries for a backlog of %d", n, backlog)
	}
	var after fakeStats
	if err := getJSON(e.fake+"/stats", &after); err != nil {
		t.Fatal(err)
	}
	for id, n := range after.Duplicates {
		if want[id] {
			t.Errorf("ticket %s was delivered %d times", id, n)
		}
	}
	// Every ticket is SUCCESS.
	err = eventually(60*time.Second, time.Second, func() error {
		var pending []string
		for _, id := range ids {
			var tk ticket
			r, err := e.notify.do("GET", "/"+id, nil)
			if err != nil {
				return err
			}
			if err := jsonUnmarshal(r.Data, &tk); err != nil {
				return err
			}
			if tk.Status != "SUCCESS" {
				pending = append(pending, id+"="+tk.Status)
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d tickets not SUCCESS, e.g. %v", len(pending), pending[:min(3, len(pending))])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("all %d delivered once; the provider served %d idempotent replays (a request of the killed sweep answered again)", backlog, after.Replayed-before.Replayed)
	e.timed("sweeper pod killed mid-backlog", began)
}

// runningSweeperPods are the running pods of the CronJob's Jobs.
func (e *env) runningSweeperPods(t *testing.T) []corev1.Pod {
	list, err := e.Cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=sweeper"})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// waitNoSweeperRunning waits until no sweep runs, so that a backlog meets a fresh sweep.
func (e *env) waitNoSweeperRunning(t *testing.T) {
	t.Helper()
	if err := eventually(period, 500*time.Millisecond, func() error {
		if n := len(e.runningSweeperPods(t)); n > 0 {
			return fmt.Errorf("%d sweeper pods running", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// killContainer sends SIGKILL to every process of pod's containers (found on this node by their
// cgroup, which names the container's id) and waits until they are gone; it returns how many
// it killed.
func killContainer(pod corev1.Pod) (int, error) {
	var ids []string
	for _, cs := range pod.Status.ContainerStatuses {
		if _, id, ok := strings.Cut(cs.ContainerID, "://"); ok && id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0, fmt.Errorf("pod %s has no container id yet", pod.Name)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		for _, id := range ids {
			if strings.Contains(string(cg), "/"+id) {
				pids = append(pids, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(10 * time.Second); ; {
			if err := syscall.Kill(pid, 0); err != nil {
				break
			}
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
				break // a zombie: dead, waiting for its shim
			}
			if time.Now().After(deadline) {
				return len(pids), fmt.Errorf("process %d of pod %s survived SIGKILL", pid, pod.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return len(pids), nil
}
