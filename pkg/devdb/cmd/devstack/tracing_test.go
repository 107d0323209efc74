package main

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb/otlptest"
)

const (
	corePort      = 3000 // fixed in devstack
	coreAPI       = "/mba/api/v1"
	paymentsRoute = "POST " + coreAPI + "/payments"
	notiRoute     = "POST " + notificationAPI
	relaySpan     = "outbox.relay"
	sendSpan      = "resend.send" // jobs/sweeper: one per provider batch, linked to each ticket's traceparent
	spanKindSrv   = otlptest.KindServer
)

// ---- the stack ----

// lockedBuffer collects devstack's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// buildStack builds the four binaries into dir, each from its module, in workspace mode.
func buildStack(t testing.TB, dir string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	gowork := strings.TrimSpace(string(out))
	if err != nil || gowork == "" || gowork == "off" {
		t.Fatalf("the test builds the binaries in workspace mode, but `go env GOWORK` = %q (%v)", gowork, err)
	}
	root := filepath.Dir(gowork)
	for _, b := range []struct{ module, pkg string }{
		{"pkg/devdb", "./cmd/devstack"},
		{"services/notification", "./cmd/notification"},
		{"services/core", "./cmd/core"},
		{"jobs/sweeper", "./cmd/sweeper"},
	} {
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), b.pkg)
		cmd.Dir = filepath.Join(root, b.module)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s in %s: %v\n%s", b.pkg, b.module, err, out)
		}
		t.Logf("built %s in %s", filepath.Base(b.pkg), time.Since(start).Round(time.Millisecond))
	}
}

// stackEnv is the test process's environment without anything that would point the stack
// elsewhere (a database, a mail provider, a collector, a token, an admin), plus set.
func stackEnv(set map[string]string) []string {
	drop := []string{"DB_URL", "PORT", "DEVDB_ADDR", "DEVDB_DIR", "NOTIFICATION_API_TOKEN", "NOTIFICATION_SERVICE_URL",
		"RESEND_API_KEY", "RESEND_BASE_URL", "JWT_SECRET", "ADMIN_EMAIL", "ADMIN_PASSWORD", "OUTBOX_DIR", "SWEEP_INTERVAL",
		"APP_ENV", "PUSHGATEWAY_URL"}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(drop, k) || strings.HasPrefix(k, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return childEnv(env, set)
}

// strays lists the processes still running one of the binaries in binDir (Linux: /proc).
func strays(binDir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(exe, binDir+string(filepath.Separator)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ---- HTTP helpers ----

type envelope struct {
	Success bool            `json:"success"`
	Error   json.RawMessage `json:"error"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

type caller struct {
	t      testing.TB
	client *http.Client
	base   string
}

func (c caller) call(method, path string, header map[string]string, body any, want int) envelope {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		c.t.Fatalf("%s %s: not a JSON envelope: %v: %s", method, path, err, raw)
	}
	return env
}

func field(t testing.TB, env envelope, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env.Data, &m); err != nil {
		t.Fatalf("data is not an object: %s", env.Data)
	}
	v, ok := m[name]
	if !ok {
		t.Fatalf("no %q in %s", name, env.Data)
	}
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	t.Fatalf("%q is %T in %s", name, v, env.Data)
	return ""
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// ---- the test ----

// TestTracingEndToEnd runs the whole system as `make run` does (bin/devstack with its
// database, notification, core and sweeper) exporting traces to an OTLP/HTTP receiver in the
// test, scripts a payment, and checks that one trace goes from the payment in core through
// the outbox relay to the notification service, and that the sweeper's send span links to it.
// Skipped with -short; it needs port 3000 (the core's, fixed in devstack) free.
func TestTracingEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole stack (about a minute): skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc to make sure no process outlives the test")
	}
	began := time.Now()
	if err := portFree(fmt.Sprintf(":%d", corePort)); err != nil {
		t.Fatalf("port %d is in use: devstack always starts the core there, so this test cannot run while "+
			"something else (another `make run`?) listens on it: %v", corePort, err)
	}

	rc, otlpURL := otlptest.Start(t)

	tmp := t.TempDir()
	binDir := filepath.Join(tmp, "bin")
	buildStack(t, binDir)

	notiAddr := freeAddr(t)
	_, notiPort, _ := net.SplitHostPort(notiAddr)
	dbAddr := freeAddr(t)
	outboxDir := filepath.Join(tmp, "outbox")
	work := filepath.Join(tmp, "work") // devstack's and the children's working directory: no .env
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}

	var output lockedBuffer
	ds := exec.Command(filepath.Join(binDir, "devstack"),
		"-db-addr", dbAddr, "-db-dir", filepath.Join(tmp, "db"),
		"-notification", filepath.Join(binDir, "notification"),
		"-core", filepath.Join(binDir, "core"),
		"-sweeper", filepath.Join(binDir, "sweeper"))
	ds.Dir = work
	ds.Env = stackEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": otlpURL,
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"SWEEP_INTERVAL":              "3s",
		"OUTBOX_DIR":                  outboxDir,
		"PORT":                        notiPort,
	})
	ds.Stdout, ds.Stderr = &output, &output
	ds.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ds.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = ds.Wait(); close(exited) }()

	t.Cleanup(func() {
		// devstack stops its children (SIGTERM, killed after 10s), then the database.
		_ = ds.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if waitErr != nil {
				t.Errorf("devstack after SIGTERM: %v", waitErr)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("devstack did not exit within 30s of SIGTERM: killed")
			_ = syscall.Kill(-ds.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// Each child runs in its own process group: any left behind is found by its binary.
		deadline := time.Now().Add(5 * time.Second)
		for left := strays(binDir); len(left) > 0; left = strays(binDir) {
			if time.Now().After(deadline) {
				for _, pid := range left {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				t.Errorf("processes outlived devstack (killed): %v", left)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if t.Failed() {
			t.Logf("devstack output:\n%s", tail(output.String(), 150))
		}
		t.Logf("total %s", time.Since(began).Round(time.Millisecond))
	})

	// Up when the core answers /readyz (devstack starts it after the notification service).
	client := &http.Client{Timeout: 10 * time.Second}
	coreURL := fmt.Sprintf("http://127.0.0.1:%d", corePort)
	notiURL := "http://" + notiAddr
	upBy := time.Now().Add(3 * time.Minute)
	for {
		resp, err := client.Get(coreURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("devstack exited before the core was ready (%v)", waitErr)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(upBy) {
			t.Fatalf("the core did not answer 200 on %s/readyz within 3m", coreURL)
		}
	}
	t.Logf("stack up after %s", time.Since(began).Round(time.Millisecond))

	// The script: an admin sets up a show; a customer signs up, books and pays.
	core := caller{t: t, client: client, base: coreURL + coreAPI}
	admin := field(t, core.call("POST", "/auth/signin", nil,
		map[string]string{"email": devAdminEmail, "password": devAdminPass}, 200), "token")
	asAdmin := map[string]string{"x-access-token": admin}
	movie := field(t, core.call("POST", "/movies", asAdmin, map[string]any{
		"name": "Heat", "description": "Crime drama", "casts": []string{"Al Pacino"}, "trailerUrl": "https://example.com/heat",
		"language": []string{"English"}, "releaseDate": "1995-12-15", "director": "Michael Mann", "releaseStatus": "RELEASED"}, 201), "_id")
	theatre := field(t, core.call("POST", "/theatres", asAdmin, map[string]any{
		"name": "Odeon", "description": "Downtown", "city": "Pune", "pinCode": 411001, "address": "1 Main Road"}, 201), "_id")
	core.call("PATCH", "/theatres/"+theatre+"/movies", asAdmin, map[string]any{"movieIds": []string{movie}, "insert": true}, 200)
	const timing = "2030-06-01T18:30:00Z"
	core.call("POST", "/shows", asAdmin, map[string]any{
		"theatreId": theatre, "movieId": movie, "timing": timing, "noOfSeats": 40, "price": 250}, 201)

	email := fmt.Sprintf("trace-%d@example.com", time.Now().UnixNano())
	core.call("POST", "/auth/signup", nil, map[string]string{"name": "Asha", "email": email, "password": "asha-password"}, 201)
	customer := field(t, core.call("POST", "/auth/signin", nil, map[string]string{"email": email, "password": "asha-password"}, 200), "token")
	asCustomer := map[string]string{"x-access-token": customer}
	bk := core.call("POST", "/bookings", asCustomer, map[string]any{
		"theatreId": theatre, "movieId": movie, "timing": timing, "noOfSeats": 2}, 201)
	bookingID := field(t, bk, "_id")
	total, err := strconv.ParseFloat(field(t, bk, "totalCost"), 64)
	if err != nil {
		t.Fatal(err)
	}
	traceID, clientSpan := randHex(t, 16), randHex(t, 8)
	payHeader := map[string]string{"x-access-token": customer, "traceparent": "00-" + traceID + "-" + clientSpan + "-01"}
	paid := core.call("POST", "/payments", payHeader, map[string]any{"bookingId": bookingID, "amount": total}, 200)
	t.Logf("paid booking %s (status %s) in trace %s, client span %s", bookingID, field(t, paid, "status"), traceID, clientSpan)

	// The dev mailer delivers the confirmation at a sweep: the ticket is SUCCESS.
	type ticket struct {
		ID          string   `json:"_id"`
		Subject     string   `json:"subject"`
		Recipients  []string `json:"recepientEmails"`
		Status      string   `json:"status"`
		TraceParent string   `json:"traceparent"`
	}
	noti := caller{t: t, client: client, base: notiURL + notificationAPI}
	asSweeper := map[string]string{"Authorization": "Bearer " + devToken}
	var tk ticket
	deliveredBy := time.Now().Add(90 * time.Second)
	for delivered := false; !delivered; {
		var tks []ticket
		if err := json.Unmarshal(noti.call("GET", "?limit=100", asSweeper, nil, 200).Data, &tks); err != nil {
			t.Fatal(err)
		}
		for _, k := range tks {
			if slices.Contains(k.Recipients, email) {
				tk, delivered = k, k.Status == "SUCCESS"
			}
		}
		if delivered {
			break
		}
		if time.Now().After(deliveredBy) {
			t.Fatalf("the confirmation to %s was not delivered within 90s (ticket: %+v)", email, tk)
		}
		select {
		case <-exited:
			t.Fatalf("devstack exited (%v)", waitErr)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("ticket %s %s (%q) after %s", tk.ID, tk.Status, tk.Subject, time.Since(began).Round(time.Millisecond))
	if parts := strings.Split(tk.TraceParent, "-"); len(parts) != 4 || parts[1] != traceID {
		t.Errorf("ticket traceparent %q, want one in trace %s", tk.TraceParent, traceID)
	}
	if files, _ := filepath.Glob(filepath.Join(outboxDir, "*_"+tk.ID+"_*.json")); len(files) != 1 {
		t.Errorf("dev mailer outbox: %d files for ticket %s, want 1", len(files), tk.ID)
	}

	// The spans: wait until every one is in, then check how they connect.
	var (
		spans                        []otlptest.Span
		inTrace                      map[string]otlptest.Span // span id -> span, in the payment's trace
		coreSpan, notiSpan, linkSpan *otlptest.Span
		relays                       int
	)
	find := func() bool {
		spans, _, _ = rc.Snapshot()
		inTrace = map[string]otlptest.Span{}
		coreSpan, notiSpan, linkSpan, relays = nil, nil, nil, 0
		for i := range spans {
			sp := &spans[i]
			if sp.TraceID == traceID {
				inTrace[sp.SpanID] = *sp
				// Found by name and kind; service.name is checked below, with its own message.
				switch {
				case sp.Name == paymentsRoute && sp.Kind == spanKindSrv:
					coreSpan = sp
				case sp.Name == notiRoute && sp.Kind == spanKindSrv:
					notiSpan = sp
				case sp.Name == relaySpan:
					relays++
				}
			}
			if sp.Name == sendSpan && slices.ContainsFunc(sp.Links, func(l otlptest.Link) bool { return l.TraceID == traceID }) {
				linkSpan = sp
			}
		}
		return coreSpan != nil && notiSpan != nil && relays > 0 && linkSpan != nil
	}
	report := func() string {
		var b strings.Builder
		spans, requests, errs := rc.Snapshot()
		fmt.Fprintf(&b, "%d spans in %d export requests", len(spans), requests)
		if len(errs) > 0 {
			fmt.Fprintf(&b, "; receiver errors: %v", errs)
		}
		fmt.Fprintf(&b, "\nspans of trace %s:\n", traceID)
		for _, sp := range spans {
			if sp.TraceID == traceID {
				fmt.Fprintf(&b, "  %s\n", sp)
			}
		}
		b.WriteString("sweeper send spans:\n")
		for _, sp := range spans {
			if sp.Name == sendSpan {
				fmt.Fprintf(&b, "  %s\n", sp)
			}
		}
		counts := map[string]int{}
		for _, sp := range spans {
			counts[sp.Service+" "+strconv.Quote(sp.Name)]++
		}
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("every span seen (service name: count):\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %d\n", k, counts[k])
		}
		return b.String()
	}
	spansBy := time.Now().Add(30 * time.Second)
	for !find() {
		if time.Now().After(spansBy) {
			t.Fatalf("within 30s of the delivery, want in trace %s core's server span %q, an %q span and the "+
				"notification service's server span %q, and a sweeper %q span linked to the trace; got core span %v, "+
				"notification span %v, %d relay spans, linked send span %v\n%s",
				traceID, paymentsRoute, relaySpan, notiRoute, sendSpan, coreSpan != nil, notiSpan != nil, relays, linkSpan != nil, report())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Each span names its service in its resource (service.name), as telemetry.Setup says.
	for _, c := range []struct {
		what string
		sp   *otlptest.Span
		want string
	}{{"core's server span " + strconv.Quote(paymentsRoute), coreSpan, "core"},
		{"the notification service's server span " + strconv.Quote(notiRoute), notiSpan, "notification"},
		{"the sweeper's " + strconv.Quote(sendSpan) + " span", linkSpan, "sweeper"}} {
		if c.sp.Service != c.want {
			t.Errorf("%s (span %s) comes with service.name %q, want %q", c.what, c.sp.SpanID, c.sp.Service, c.want)
		}
	}
	// core's server span continues the client's span (the traceparent the test sent).
	if coreSpan.ParentID != clientSpan {
		t.Errorf("core's server span %s has parent %s, want the test's client span %s\n%s",
			coreSpan.SpanID, cmp.Or(coreSpan.ParentID, "-"), clientSpan, report())
	}
	// The notification service's span descends, parent by parent, from the relay's span, and
	// that from core's server span: one chain back to the payment.
	var chain []string
	sawRelay := false
	for sp := *notiSpan; ; {
		chain = append(chain, sp.Service+":"+sp.Name)
		if sp.Name == relaySpan {
			if sp.Service != "core" {
				t.Errorf("the %s span (span %s) comes with service.name %q, want %q", relaySpan, sp.SpanID, sp.Service, "core")
			}
			sawRelay = true
		}
		if sp.SpanID == coreSpan.SpanID {
			break
		}
		next, ok := inTrace[sp.ParentID]
		if !ok {
			t.Fatalf("the chain from the notification span breaks at %q (parent %s not received): %s\n%s",
				sp.Name, cmp.Or(sp.ParentID, "-"), strings.Join(chain, " <- "), report())
		}
		sp = next
	}
	if !sawRelay {
		t.Fatalf("chain from the notification span: %s, want it through %q\n%s", strings.Join(chain, " <- "), relaySpan, report())
	}
	t.Logf("trace %s: %s", traceID, strings.Join(chain, " <- "))

	// The sweeper's send span is in a trace of its own, linked to the payment's trace at the
	// span the ticket recorded.
	if linkSpan.TraceID == traceID {
		t.Errorf("the sweeper's %s span is in the payment's trace; want a trace of its own linked to it", sendSpan)
	}
	tkSpan, _, _ := strings.Cut(strings.TrimPrefix(tk.TraceParent, "00-"+traceID+"-"), "-")
	i := slices.IndexFunc(linkSpan.Links, func(l otlptest.Link) bool { return l.TraceID == traceID })
	l := linkSpan.Links[i]
	if l.SpanID != tkSpan {
		t.Errorf("the %s link points at span %s, want the ticket's traceparent span %s", sendSpan, l.SpanID, tkSpan)
	}
	if _, ok := inTrace[l.SpanID]; !ok {
		t.Errorf("the %s link points at span %s, which is not a span of trace %s\n%s", sendSpan, l.SpanID, traceID, report())
	}
	t.Logf("sweeper %s span %s (trace %s) links to %s/%s; %d spans received in all, checked after %s",
		sendSpan, linkSpan.SpanID, linkSpan.TraceID, l.TraceID, l.SpanID, len(spans), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Log(report())
	}
}
