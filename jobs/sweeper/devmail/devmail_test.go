package devmail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cineflow/cineflow/jobs/sweeper"
	"github.com/cineflow/cineflow/jobs/sweeper/devmail"
)

// logBuf is a concurrency-safe buffer for a JSON slog handler.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func newLogger() (*slog.Logger, *logBuf) {
	buf := &logBuf{}
	return slog.New(slog.NewJSONHandler(buf, nil)), buf
}

func mail(ticket, to, text string) sweeper.Email {
	return sweeper.Email{TicketID: ticket, From: "tickets@cineflow.test", To: []string{to}, Subject: "Ticket " + ticket, Text: text}
}

func outboxFiles(t *testing.T, dir string) []devmail.Message {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []devmail.Message
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var m devmail.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Name(), "_"+strings.ReplaceAll(m.TicketID, "/", "_")+"_") || !strings.HasPrefix(e.Name(), m.CreatedAt.Format("20060102T150405")) {
			t.Fatalf("file %s does not carry the time and ticket id of %+v", e.Name(), m)
		}
		out = append(out, m)
	}
	return out
}

func TestLogsAndWrites(t *testing.T) {
	logger, logs := newLogger()
	dir := filepath.Join(t.TempDir(), "outbox", "nested")
	m := devmail.New(logger, dir)
	long := strings.Repeat("é", 250)
	out, err := m.Send(context.Background(), "k1", []sweeper.Email{mail("t1", "a@example.com", long), mail("t/2", "b@example.com", "hi")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || !strings.HasPrefix(out[0].MessageID, "dev-") || out[0].MessageID == out[1].MessageID || out[0].Rejected != "" {
		t.Fatalf("out %+v", out)
	}
	recs := logs.records(t)
	if len(recs) != 2 {
		t.Fatalf("logs %v", recs)
	}
	r := recs[0]
	if r["msg"] != devmail.LogMessage || r["level"] != "INFO" || r["ticket_id"] != "t1" || r["subject"] != "Ticket t1" ||
		r["to"].([]any)[0] != "a@example.com" || r["text"] != strings.Repeat("é", 200) || r["message_id"] != out[0].MessageID {
		t.Fatalf("log %v", r)
	}
	files := outboxFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("files %+v", files)
	}
	byTicket := map[string]devmail.Message{}
	for _, f := range files {
		byTicket[f.TicketID] = f
	}
	if f := byTicket["t1"]; f.MessageID != out[0].MessageID || f.Text != long || f.IdempotencyKey != "k1" || f.To[0] != "a@example.com" {
		t.Fatalf("file %+v", f)
	}
	if f := byTicket["t/2"]; f.MessageID != out[1].MessageID {
		t.Fatalf("file %+v", f)
	}
}

func TestIdempotentInMemory(t *testing.T) {
	logger, logs := newLogger()
	m := devmail.New(logger, "")
	emails := []sweeper.Email{mail("t1", "a@example.com", "x")}
	first, err := m.Send(context.Background(), "k", emails)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Send(context.Background(), "k", emails)
	if err != nil || again[0].MessageID != first[0].MessageID {
		t.Fatalf("again %+v %v", again, err)
	}
	if n := len(logs.records(t)); n != 1 {
		t.Fatalf("%d log records", n)
	}
	// Another key sends again.
	other, err := m.Send(context.Background(), "k2", emails)
	if err != nil || other[0].MessageID == first[0].MessageID {
		t.Fatalf("other %+v %v", other, err)
	}
	// Same key, other emails: refused.
	_, err = m.Send(context.Background(), "k", []sweeper.Email{mail("t9", "a@example.com", "x")})
	var se *sweeper.SendError
	if !errors.As(err, &se) || se.Kind != sweeper.Permanent || se.Name != "invalid_idempotent_request" {
		t.Fatalf("err %v", err)
	}
}

func TestIdempotentAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	emails := []sweeper.Email{mail("t1", "a@example.com", "x"), mail("t2", "b@example.com", "y")}
	first, err := devmail.New(nil, dir).Send(context.Background(), "batch-1", emails)
	if err != nil {
		t.Fatal(err)
	}
	logger, logs := newLogger()
	again, err := devmail.New(logger, dir).Send(context.Background(), "batch-1", emails)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].MessageID != first[0].MessageID || again[1].MessageID != first[1].MessageID {
		t.Fatalf("first %+v again %+v", first, again)
	}
	if len(logs.records(t)) != 0 || len(outboxFiles(t, dir)) != 2 {
		t.Fatal("a replay logged or wrote")
	}
}

func TestConcurrentSameKey(t *testing.T) {
	dir := t.TempDir()
	m := devmail.New(slog.New(slog.DiscardHandler), dir)
	emails := []sweeper.Email{mail("t1", "a@example.com", "x")}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			out, err := m.Send(context.Background(), "same", emails)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = out[0].MessageID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids %v", ids)
		}
	}
	if n := len(outboxFiles(t, dir)); n != 1 {
		t.Fatalf("%d files", n)
	}
}

func TestBadInput(t *testing.T) {
	m := devmail.New(nil, "")
	var se *sweeper.SendError
	if _, err := m.Send(context.Background(), "k", nil); !errors.As(err, &se) || se.Kind != sweeper.Permanent {
		t.Fatalf("err %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Send(ctx, "k", []sweeper.Email{mail("t", "a@example.com", "")}); !errors.As(err, &se) || se.Kind != sweeper.Transient {
		t.Fatalf("err %v", err)
	}
}
