package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/config/configtest"
	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
	"github.com/cineflow/cineflow/services/notification"
	nstore "github.com/cineflow/cineflow/services/notification/mongostore"
)

const testKey = "re_cmd_test_key_42"

// world is a database of its own with n pending tickets, and a fake Resend.
type world struct {
	dbURL string
	db    *mongo.Database
	fake  *resendfake.Server
	url   string
	ids   []notification.ID
}

func newWorld(t testing.TB, n int, fakeOpts resendfake.Options) *world {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(devdb.TestURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	name := devdb.TestDatabase(t)
	w := &world{db: client.Database(name), dbURL: strings.TrimSuffix(devdb.TestURI(t), "/") + "/" + name}
	if err := nstore.New(w.db).EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	fakeOpts.APIKey = testKey
	w.fake = resendfake.New(fakeOpts)
	srv := httptest.NewServer(w.fake)
	t.Cleanup(srv.Close)
	w.url = srv.URL
	w.seed(t, n)
	return w
}

// seed inserts tickets as the notification service stores them (the ticket, then its queue
// entry), 1,000 per insert.
func (w *world) seed(t testing.TB, n int) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	for start := 0; start < n; start += 1000 {
		var docs []any
		var entries []notification.QueueEntry
		for i := start; i < min(n, start+1000); i++ {
			tk := notification.Ticket{ID: notification.NewID(), Subject: fmt.Sprintf("Booking #%d confirmed", i),
				Content:         strings.Repeat("Your seats are A1, A2. Enjoy the show! ", 10),
				RecipientEmails: []string{fmt.Sprintf("fan%d@example.com", i)}, Status: notification.StatusPending,
				Errors: []notification.AttemptError{}, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now}
			w.ids = append(w.ids, tk.ID)
			docs = append(docs, tk)
			entries = append(entries, notification.NewQueueEntry(&tk, 0, now))
		}
		if _, err := w.db.Collection(nstore.TicketsCollection).InsertMany(context.Background(), docs); err != nil {
			t.Fatal(err)
		}
		if err := nstore.New(w.db).Enqueue(context.Background(), entries...); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *world) env(extra ...string) []string {
	return append([]string{"DB_URL=" + w.dbURL, "RESEND_API_KEY=" + testKey, "RESEND_BASE_URL=" + w.url,
		"EMAIL_FROM=CineFlow <tickets@cineflow.test>", "RESEND_RATE_LIMIT=1000", "SWEEP_DB_SHARE=1", "LOG_LEVEL=warn"}, extra...)
}

// deliveredOnce returns how many tickets were not delivered exactly once.
func (w *world) notExactlyOnce() int {
	bad := 0
	for _, id := range w.ids {
		if w.fake.DeliveredCount(id.Hex()) != 1 {
			bad++
		}
	}
	return bad
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the sweeper once per test run.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sweeper-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sweeper")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// runBinary runs one sweep as a process and returns its exit code and stderr. It runs in
// development mode unless env sets APP_ENV (the binary's default is production).
func runBinary(t testing.TB, env []string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t))
	cmd.Env = append(append(os.Environ(), "APP_ENV=development"), env...)
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func TestBinaryDoesNotLinkTheDevDatabase(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("FerretDB")) || bytes.Contains(out, []byte("pkg/devdb")) {
		t.Fatal("the sweeper binary links the embedded dev database")
	}
}

func TestSweepProcessDeliversAndExitsZero(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 120, resendfake.Options{})
	code, stderr := runBinary(t, w.env())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if bad := w.notExactlyOnce(); bad != 0 {
		t.Fatalf("%d tickets not delivered exactly once", bad)
	}
	if strings.Contains(stderr, testKey) {
		t.Fatal("the API key reached the log")
	}
}

func TestUnreachableDatabaseExitsNonZeroWithClearError(t *testing.T) {
	t.Parallel()
	start := time.Now()
	code, stderr := runBinary(t, []string{"DB_URL=mongodb://app:s3cretpw@127.0.0.1:1/noti", "DB_CONNECT_TIMEOUT=500ms"})
	if code == 0 {
		t.Fatalf("exit 0 with no database\n%s", stderr)
	}
	if !strings.Contains(stderr, "unreachable") || strings.Contains(stderr, "s3cretpw") {
		t.Fatalf("want a clear error without the password, got:\n%s", stderr)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("took %v to give up", time.Since(start))
	}
}

func TestBadConfigurationExitsNonZero(t *testing.T) {
	t.Parallel()
	for _, env := range [][]string{
		{"RESEND_RATE_LIMIT=0"},
		{"RESEND_RATE_LIMIT=lots"},
		{"BATCH_SIZE=101"},
		{"APP_ENV=production", "RESEND_API_KEY="},
		{"SWEEP_DEADLINE=never"},
	} {
		code, stderr := runBinary(t, append([]string{"DB_URL=mongodb://127.0.0.1:1/", "DB_CONNECT_TIMEOUT=200ms"}, env...))
		if code != 1 || stderr == "" {
			t.Fatalf("%v: exit %d, stderr %q", env, code, stderr)
		}
	}
}

// TestFailsClosedWithoutAPIKey: with APP_ENV unset the sweeper is in production mode and
// refuses to run without RESEND_API_KEY, saying so (and touching no ticket); with
// APP_ENV=development it runs with the dev mailer. A key given is never printed.
func TestFailsClosedWithoutAPIKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2, resendfake.Options{})
	var base []string // the test's environment without APP_ENV and RESEND_API_KEY
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APP_ENV=") && !strings.HasPrefix(kv, "RESEND_API_KEY=") {
			base = append(base, kv)
		}
	}
	run := func(env ...string) (int, string) {
		cmd := exec.Command(binary(t))
		cmd.Env = append(append(base, "DB_URL="+w.dbURL, "OUTBOX_DIR="+t.TempDir(), "LOG_LEVEL=info"), env...)
		cmd.Dir = t.TempDir()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	code, stderr := run()
	if code != 1 || !strings.Contains(stderr, "RESEND_API_KEY is required in production") || !strings.Contains(stderr, "APP_ENV=development") {
		t.Fatalf("APP_ENV unset, no key: exit %d\n%s", code, stderr)
	}
	tk, err := nstore.New(w.db).Get(context.Background(), w.ids[0])
	if err != nil || tk.Status != notification.StatusPending || tk.Attempts != 0 {
		t.Fatalf("ticket after the refusal: %+v, %v", tk, err)
	}
	if code, stderr := run("APP_ENV=staging", "RESEND_API_KEY="+testKey); code != 1 || !strings.Contains(stderr, "APP_ENV must be") ||
		strings.Contains(stderr, testKey) {
		t.Fatalf("APP_ENV=staging: exit %d\n%s", code, stderr)
	}
	if code, stderr := run("APP_ENV=development"); code != 0 || !strings.Contains(stderr, "RESEND_API_KEY is not set") {
		t.Fatalf("APP_ENV=development, no key: exit %d\n%s", code, stderr)
	}
	if bad := w.fake.Requests(); bad != 0 {
		t.Fatalf("%d provider requests without a key", bad)
	}
}

func TestWrongAPIKeyExitsNonZeroAndChargesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 5, resendfake.Options{})
	code, stderr := runBinary(t, w.env("RESEND_API_KEY=re_wrong_key_123"))
	if code != 1 || !strings.Contains(stderr, "API key") || strings.Contains(stderr, "re_wrong_key_123") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	tk, err := nstore.New(w.db).Get(context.Background(), w.ids[0])
	if err != nil || tk.Status != notification.StatusPending || tk.Attempts != 0 {
		t.Fatalf("ticket after auth failure: %+v, %v", tk, err)
	}
}

func TestDevMailerWritesTheOutbox(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3, resendfake.Options{})
	outbox := t.TempDir()
	code, stderr := runBinary(t, w.env("RESEND_API_KEY=", "OUTBOX_DIR="+outbox, "LOG_LEVEL=info"))
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(outbox, "*.json"))
	if len(files) != 3 || w.fake.Requests() != 0 {
		t.Fatalf("%d outbox files, %d provider requests", len(files), w.fake.Requests())
	}
	if !strings.Contains(stderr, "Booking #") {
		t.Fatal("the dev mailer did not log the emails")
	}
	for _, id := range w.ids {
		tk, err := nstore.New(w.db).Get(context.Background(), id)
		if err != nil || tk.Status != notification.StatusSuccess {
			t.Fatalf("ticket %s: %+v %v", id.Hex(), tk, err)
		}
	}
}

// pushgateway records what the sweeper pushes.
type pushgateway struct {
	mu     sync.Mutex
	bodies []string
	paths  []string
	method []string
	types  []string
}

func (p *pushgateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.bodies, p.paths, p.method = append(p.bodies, string(b)), append(p.paths, r.URL.Path), append(p.method, r.Method)
	p.types = append(p.types, r.Header.Get("Content-Type"))
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// gauges decodes push i: the value of each gauge, by name and, for labelled ones, by
// name{label="value"}.
func (p *pushgateway) gauges(t *testing.T, i int) map[string]float64 {
	t.Helper()
	p.mu.Lock()
	body, ctype := p.bodies[i], p.types[i]
	p.mu.Unlock()
	dec := expfmt.NewDecoder(strings.NewReader(body), expfmt.Format(ctype))
	out := map[string]float64{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("push %d (%s): %v", i, ctype, err)
		}
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			out[name] = m.GetGauge().GetValue()
		}
	}
}

func TestRunMetricsArePushed(t *testing.T) {
	t.Parallel()
	pg := &pushgateway{}
	srv := httptest.NewServer(pg)
	defer srv.Close()
	w := newWorld(t, 10, resendfake.Options{})
	if code, stderr := runBinary(t, w.env("PUSHGATEWAY_URL="+srv.URL, "POD_NAMESPACE=shop", "CINEFLOW_RELEASE=blue")); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if code, _ := runBinary(t, []string{"DB_URL=mongodb://127.0.0.1:1/", "DB_CONNECT_TIMEOUT=200ms", "PUSHGATEWAY_URL=" + srv.URL}); code != 1 {
		t.Fatal("want exit 1 without a database")
	}
	okGauges, failedGauges := pg.gauges(t, 0), pg.gauges(t, 1)
	pg.mu.Lock()
	defer pg.mu.Unlock()
	// Grouped by namespace and release when they are known (a second release pushing to the
	// same Pushgateway keeps its own group), by job alone outside Kubernetes.
	if len(pg.bodies) != 2 || pg.paths[0] != "/metrics/job/sweeper/namespace/shop/release/blue" || pg.method[0] != http.MethodPost ||
		pg.paths[1] != "/metrics/job/sweeper" {
		t.Fatalf("pushes: %v %v", pg.method, pg.paths)
	}
	for _, c := range []string{"429", "4xx", "5xx", "timeout", "network"} {
		name := fmt.Sprintf("cineflow_sweeper_last_run_provider_errors_by_class{class=%q}", c)
		if v, ok := okGauges[name]; !ok || v != 0 {
			t.Fatalf("%s = %v (pushed: %v), want 0", name, v, ok)
		}
	}
	if v, ok := okGauges["cineflow_sweeper_provider_failing"]; !ok || v != 0 || okGauges["cineflow_sweeper_last_run_sent"] != 10 {
		t.Fatalf("successful push: %v", okGauges)
	}
	if _, ok := failedGauges["cineflow_sweeper_provider_failing"]; ok {
		t.Fatal("a sweep that made no provider request pushed cineflow_sweeper_provider_failing")
	}
	// Protobuf bodies still carry the metric names as plain bytes.
	ok, failed := pg.bodies[0], pg.bodies[1]
	for _, name := range []string{"cineflow_sweeper_last_run_sent", "cineflow_sweeper_last_run_duration_seconds", "cineflow_sweeper_last_run_backlog", "cineflow_sweeper_last_success_timestamp_seconds", "cineflow_build_info"} {
		if !strings.Contains(ok, name) {
			t.Fatalf("successful push lacks %s", name)
		}
	}
	if strings.Contains(failed, "cineflow_sweeper_last_success_timestamp_seconds") || !strings.Contains(failed, "cineflow_sweeper_last_run_duration_seconds") {
		t.Fatal("a failed sweep must push its run gauges but not a success time")
	}
}

// TestFailingProviderFailsTheJobAndTheRetrySendsOnce: the provider takes every request and
// then answers 500 (the emails went out; the answers were lost). The sweep logs what the
// provider said at WARN, exits 1 (Kubernetes shows the Job failed), and pushes its figures with
// cineflow_sweeper_provider_failing 1 but no success time. A second sweep right after it, as a Job
// retry (backoffLimit > 0) would run, with the provider answering again: exit 0, every ticket
// delivered exactly once (the re-sends are answered from the provider's idempotency keys),
// cineflow_sweeper_provider_failing back to 0 and a success time.
func TestFailingProviderFailsTheJobAndTheRetrySendsOnce(t *testing.T) {
	t.Parallel()
	pg := &pushgateway{}
	srv := httptest.NewServer(pg)
	defer srv.Close()
	w := newWorld(t, 25, resendfake.Options{})
	w.fake.SetFaults(resendfake.Faults{LoseRate: 1})
	env := w.env("PUSHGATEWAY_URL="+srv.URL, "POD_NAMESPACE=shop", "CINEFLOW_RELEASE=blue", "BATCH_SIZE=5",
		"RETRY_BACKOFF_BASE=1ms", "RETRY_BACKOFF_MAX=1ms", "LOG_LEVEL=info")
	code, stderr := runBinary(t, env)
	if code != 1 {
		t.Fatalf("exit %d with the provider failing every request\n%s", code, stderr)
	}
	if w.fake.Stats().Deliveries != 25 {
		t.Fatalf("the fake delivered %d of 25", w.fake.Stats().Deliveries)
	}
	var warned, failed bool
	for _, line := range strings.Split(stderr, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l["msg"] {
		case "mail provider request failed":
			warned = l["level"] == "WARN" && l["status"] == 500.0 && l["error_name"] == "internal_server_error" && l["class"] == "5xx"
		case "sweep failed":
			failed = l["level"] == "ERROR" && strings.Contains(fmt.Sprint(l["error"]), "5xx: 5")
		}
	}
	if !warned || !failed {
		t.Fatalf("want a WARN line with the provider's answer and an ERROR naming 5 failed 5xx requests:\n%s", stderr)
	}
	if strings.Contains(stderr, testKey) || strings.Contains(stderr, "@example.com") {
		t.Fatalf("the log carries the API key or a recipient:\n%s", stderr)
	}
	g := pg.gauges(t, 0)
	if _, ok := g["cineflow_sweeper_last_success_timestamp_seconds"]; ok || g["cineflow_sweeper_provider_failing"] != 1 ||
		g[`cineflow_sweeper_last_run_provider_errors_by_class{class="5xx"}`] != 5 || g["cineflow_sweeper_last_run_provider_errors"] != 5 {
		t.Fatalf("failing sweep pushed %v", g)
	}

	w.fake.SetFaults(resendfake.Faults{})
	if code, stderr := runBinary(t, env); code != 0 {
		t.Fatalf("retry: exit %d\n%s", code, stderr)
	}
	if bad := w.notExactlyOnce(); bad != 0 || len(w.fake.Duplicates()) != 0 || w.fake.Stats().Replayed != 5 {
		t.Fatalf("%d tickets not delivered exactly once, stats %+v", bad, w.fake.Stats())
	}
	g = pg.gauges(t, 1)
	if _, ok := g["cineflow_sweeper_last_success_timestamp_seconds"]; !ok || g["cineflow_sweeper_provider_failing"] != 0 || g["cineflow_sweeper_last_run_sent"] != 25 {
		t.Fatalf("retry pushed %v", g)
	}
}

// TestKilledSweepLosesNothing kills a sweep with SIGKILL in the middle of a backlog; the
// next sweep after the lease ends delivers the rest, and nobody gets an email twice.
func TestKilledSweepLosesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 400, resendfake.Options{})
	w.fake.SetFaults(resendfake.Faults{Delay: 200 * time.Millisecond, DelayRate: 1})
	cmd := exec.Command(binary(t))
	cmd.Env = append(os.Environ(), w.env("BATCH_SIZE=20", "SWEEP_CONCURRENCY=2", "SWEEP_DEADLINE=6s", "LEASE_MARGIN=1s")...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for w.fake.Stats().Deliveries < 60 && time.Since(start) < 30*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	delivered := w.fake.Stats().Deliveries
	if delivered == 0 || delivered >= 400 {
		t.Fatalf("killed after %d deliveries; want mid-run", delivered)
	}
	w.fake.SetFaults(resendfake.Faults{})
	time.Sleep(time.Until(start.Add(7500 * time.Millisecond))) // the killed sweep's leases end
	if code, stderr := runBinary(t, w.env()); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if d := w.fake.Duplicates(); len(d) > 0 {
		t.Fatalf("%d tickets delivered twice after the kill", len(d))
	}
	if bad := w.notExactlyOnce(); bad != 0 {
		t.Fatalf("%d tickets not delivered exactly once", bad)
	}
}

// BenchmarkDrain10k drains 10,000 pending tickets through the real binary against the fake
// Resend limited to 5 requests/s: the physical limit is 10,000 / (5 × 100) = 20 s.
func BenchmarkDrain10k(b *testing.B) {
	for range b.N {
		w := newWorld(b, 10000, resendfake.Options{RateLimit: 5})
		cmd := exec.Command(binary(b))
		cmd.Env = append(os.Environ(), w.env("RESEND_RATE_LIMIT=5", "LOG_LEVEL=info", "SWEEP_DEADLINE=120s")...)
		stderr, _ := cmd.StderrPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		hwm := watchHWM(cmd.Process.Pid)
		var finished map[string]any
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "sweep finished" {
				finished = line
			}
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("sweeper: %v", err)
		}
		wall := time.Since(start)
		rss := hwm()
		st, err := nstore.New(w.db).Stats(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		dups := len(w.fake.Duplicates())
		lost := w.notExactlyOnce() - dups
		b.ReportMetric(finished["delivered_in_seconds"].(float64), "drain_s")
		b.ReportMetric(wall.Seconds(), "process_s")
		b.ReportMetric(float64(dups), "duplicates")
		b.ReportMetric(float64(lost), "lost")
		b.ReportMetric(float64(st.ByStatus[notification.StatusFailed]), "failed")
		b.ReportMetric(float64(st.ByStatus[notification.StatusSuccess]), "success")
		b.ReportMetric(float64(w.fake.RateLimited()), "provider_429s")
		b.ReportMetric(rss, "peak_rss_MiB")
		if dups != 0 || lost != 0 || st.ByStatus[notification.StatusFailed] != 0 {
			b.Fatalf("duplicates %d, lost %d, failed %d", dups, lost, st.ByStatus[notification.StatusFailed])
		}
	}
}

// BenchmarkSweeperMemory shows that the sweeper's memory does not grow with the backlog: it
// works in pages of SWEEP_PAGE_SIZE tickets. Peak resident size for a 2,000 and a 20,000
// ticket backlog, provider without rate limit.
func BenchmarkSweeperMemory(b *testing.B) {
	for _, n := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("backlog=%d", n), func(b *testing.B) {
			for range b.N {
				w := newWorld(b, n, resendfake.Options{})
				cmd := exec.Command(binary(b))
				cmd.Env = append(os.Environ(), w.env("SWEEP_DEADLINE=300s", "PROJECT_FOR=1s")...)
				start := time.Now()
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				hwm := watchHWM(cmd.Process.Pid)
				if err := cmd.Wait(); err != nil {
					b.Fatalf("sweeper: %v\n%s", err, out.String())
				}
				if bad := w.notExactlyOnce(); bad != 0 {
					b.Fatalf("%d tickets not delivered exactly once", bad)
				}
				b.ReportMetric(hwm(), "peak_rss_MiB")
				b.ReportMetric(time.Since(start).Seconds(), "process_s")
			}
		})
	}
}

// watchHWM polls a process's peak resident size (VmHWM) until it exits; the returned
// function gives the last value read, in MiB. (The rusage of a child is no use here: Linux
// carries the parent's high-water mark across the exec.)
func watchHWM(pid int) func() float64 {
	var mu sync.Mutex
	peak := 0.0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(raw), "\n") {
				var kb float64
				if _, err := fmt.Sscanf(line, "VmHWM: %f kB", &kb); err == nil {
					mu.Lock()
					peak = max(peak, kb/1024)
					mu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() float64 {
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// TestSIGTERMStopsCleanly: SIGTERM in the middle of a backlog stops claiming, finishes what
// is in flight, releases the rest and exits 0; the next sweep (no lease to wait for)
// delivers the rest, and nobody gets an email twice.
func TestSIGTERMStopsCleanly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 300, resendfake.Options{})
	w.fake.SetFaults(resendfake.Faults{Delay: 200 * time.Millisecond, DelayRate: 1})
	cmd := exec.Command(binary(t))
	cmd.Env = append(os.Environ(), w.env("BATCH_SIZE=20", "SWEEP_CONCURRENCY=2", "LOG_LEVEL=info")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for w.fake.Stats().Deliveries < 40 && time.Since(start) < 30*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"stopped":"signal"`) {
		t.Fatalf("the sweep did not report stopping on the signal:\n%s", stderr.String())
	}
	w.fake.SetFaults(resendfake.Faults{})
	if code, out := runBinary(t, w.env()); code != 0 {
		t.Fatalf("second sweep: exit %d\n%s", code, out)
	}
	if bad := w.notExactlyOnce(); bad != 0 {
		t.Fatalf("%d tickets not delivered exactly once (duplicates %v)", bad, w.fake.Duplicates())
	}
}

// TestImageRunsInProduction: the image sets no APP_ENV, so it runs as the binary defaults:
// in production mode.
func TestImageRunsInProduction(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dockerfile), "APP_ENV") {
		t.Error("jobs/sweeper/Dockerfile mentions APP_ENV: the image must run in production mode, the binary's default")
	}
}

// TestCommandLine: sweeper --version, --help and an unknown flag.
func TestCommandLine(t *testing.T) {
	configtest.CheckCommandLine(t, binary(t), "sweeper", "RESEND_API_KEY", "SWEEP_DEADLINE", "90s", "PUSHGATEWAY_URL")
}
