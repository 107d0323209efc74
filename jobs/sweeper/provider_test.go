package sweeper_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
)

// logLines parses the JSON lines a test logger wrote.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, raw := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var l map[string]any
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	return lines
}

func withMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// TestFailingProviderIsLoggedAndFailsTheSweep: with the provider answering 500 to every
// request, the sweep logs the first failure at WARN with what the provider said, summarises
// the repeats, counts the failures by class, and returns ErrProviderFailing (it delivered
// nothing); nothing logged carries the API key or a recipient. Once the provider is back, the
// next sweep delivers everything, once, and logs no warning.
func TestFailingProviderIsLoggedAndFailsTheSweep(t *testing.T) {
	e := newEnv(t, resendfake.Options{})
	e.seed(30, nil)
	e.fake.SetFaults(resendfake.Faults{FailRate: 1})
	var buf bytes.Buffer
	cfg := sweeper.Config{BatchSize: 10, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	rep, err := e.sweeper(cfg).Run(context.Background())
	if !errors.Is(err, sweeper.ErrProviderFailing) || !strings.Contains(err.Error(), "5xx: 3") {
		t.Fatalf("err %v, want ErrProviderFailing naming 5xx: 3", err)
	}
	if !rep.ProviderFailing() || rep.ProviderErrors != 3 || rep.ProviderRejected != 0 || rep.Sent != 0 || rep.Retried != 30 {
		t.Fatalf("report %+v", rep)
	}
	for _, c := range sweeper.ErrorClasses {
		if want := map[sweeper.ErrorClass]int{sweeper.Class5xx: 3}[c]; rep.ProviderErrorsByClass[c] != want {
			t.Fatalf("class %s: %d, want %d (%v)", c, rep.ProviderErrorsByClass[c], want, rep.ProviderErrorsByClass)
		}
	}
	if out := buf.String(); strings.Contains(out, apiKey) || strings.Contains(out, "@example.com") {
		t.Fatalf("the log carries the API key or a recipient:\n%s", out)
	}
	lines := logLines(t, &buf)
	failed := withMsg(lines, "mail provider request failed")
	if len(failed) != 1 {
		t.Fatalf("%d lines for the failed requests, want 1 (the repeats summarised):\n%s", len(failed), buf.String())
	}
	f := failed[0]
	if f["level"] != "WARN" || f["status"] != 500.0 || f["error_name"] != "internal_server_error" || f["class"] != "5xx" ||
		!strings.Contains(fmt.Sprint(f["message"]), "unexpected error") || !strings.Contains(fmt.Sprint(f["next"]), "later sweep") {
		t.Fatalf("failed request line: %v", f)
	}
	sum := withMsg(lines, "mail provider requests failed in this sweep")
	if len(sum) != 1 {
		t.Fatalf("%d summary lines, want 1:\n%s", len(sum), buf.String())
	}
	s := sum[0]
	if s["level"] != "WARN" || s["provider_errors"] != 3.0 || s["not_logged_repeats"] != 2.0 || s["provider_failing"] != true ||
		fmt.Sprint(s["by_class"]) != "map[5xx:3]" {
		t.Fatalf("summary line: %v", s)
	}
	if fin := withMsg(lines, "sweep finished"); len(fin) != 1 || fin[0]["provider_errors"] != 3.0 {
		t.Fatalf("sweep finished: %v", fin)
	}

	e.fake.SetFaults(resendfake.Faults{})
	buf.Reset()
	time.Sleep(5 * time.Millisecond) // the batches are due again
	rep, err = e.sweeper(cfg).Run(context.Background())
	if err != nil || rep.Sent != 30 || rep.ProviderErrors != 0 || rep.ProviderFailing() {
		t.Fatalf("after the provider came back: %+v, %v", rep, err)
	}
	for _, l := range logLines(t, &buf) {
		if l["level"] != "INFO" {
			t.Fatalf("a healthy sweep logged %v", l)
		}
	}
	e.assertExactlyOnce()
}

// TestRefusedEmailIsNotAFailingProvider: a request the provider refuses for good (a single
// email to a refused recipient: 422) is a provider error of class 4xx, logged without the
// address; the sweep, though it delivered nothing, met no failing provider and succeeds.
func TestRefusedEmailIsNotAFailingProvider(t *testing.T) {
	e := newEnv(t, resendfake.Options{Reject: []string{"bounce@example.com"}})
	e.seed(1, func(int) string { return "Bounce@Example.com" })
	var buf bytes.Buffer
	rep, err := e.sweeper(sweeper.Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}).Run(context.Background())
	if err != nil || rep.ProviderFailing() {
		t.Fatalf("a refused email failed the sweep: %+v, %v", rep, err)
	}
	if rep.Sent != 0 || rep.Failed != 1 || rep.ProviderErrors != 1 || rep.ProviderRejected != 1 || rep.ProviderErrorsByClass[sweeper.Class4xx] != 1 {
		t.Fatalf("report %+v", rep)
	}
	if strings.Contains(strings.ToLower(buf.String()), "bounce@") {
		t.Fatalf("the log carries the recipient:\n%s", buf.String())
	}
	failed := withMsg(logLines(t, &buf), "mail provider request failed")
	if len(failed) != 1 || failed[0]["status"] != 422.0 || !strings.Contains(fmt.Sprint(failed[0]["message"]), "[address]") ||
		!strings.Contains(fmt.Sprint(failed[0]["next"]), "FAILED") {
		t.Fatalf("refused request line: %v\n%s", failed, buf.String())
	}
}
