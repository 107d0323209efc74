package mongox_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/mongox"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClockFollowsTheDatabase: a process whose clock runs 30 s ahead (or 2 minutes behind) of
// the database's measures that offset, and its Clock.Now is the database's time; a warning is
// logged once when the offset goes beyond the threshold, not at every measure, and once more
// when it comes back.
func TestClockFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	db := devdb.TestDB(t) // the embedded server runs in this process: its clock is time.Now
	var mu sync.Mutex
	skew := 30 * time.Second
	local := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(skew) }
	logs := &lockedBuffer{}
	c := mongox.NewClock(db.Client(), mongox.ClockOptions{Local: local, Warn: time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if got := c.Now().Sub(time.Now()); got < 29*time.Second {
		t.Fatalf("before any measure the clock is the local one: %v ahead", got)
	}
	ctx := context.Background()
	near := func(what string, want time.Duration) {
		t.Helper()
		off, err := c.Measure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := off - want; d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Fatalf("%s: offset %v, want about %v", what, off, want)
		}
		if d := c.Now().Sub(time.Now()); d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Fatalf("%s: Now is %v from the database's clock", what, d)
		}
	}
	near("30 s ahead", -30*time.Second)
	near("30 s ahead, again", -30*time.Second)
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings after two measures beyond the threshold, want 1:\n%s", n, logs)
	}
	mu.Lock()
	skew = 0
	mu.Unlock()
	near("in step", 0)
	if !strings.Contains(logs.String(), "agrees with the database's again") {
		t.Fatalf("no note that the clock came back:\n%s", logs)
	}
	mu.Lock()
	skew = -2 * time.Minute
	mu.Unlock()
	near("2 minutes behind", 2*time.Minute)
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d warnings, want 2:\n%s", n, logs)
	}
}

// TestClockKeepsItsOffsetWhenTheDatabaseIsAway: a failed measure keeps the offset in force.
func TestClockKeepsItsOffsetWhenTheDatabaseIsAway(t *testing.T) {
	t.Parallel()
	db := devdb.TestDB(t)
	local := func() time.Time { return time.Now().Add(-10 * time.Second) }
	c := mongox.NewClock(db.Client(), mongox.ClockOptions{Local: local})
	if _, err := c.Measure(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Measure(ctx); err == nil {
		t.Fatal("a measure with a cancelled context succeeded")
	}
	if off := c.Offset(); off < 9*time.Second || off > 11*time.Second {
		t.Fatalf("offset after a failed measure: %v", off)
	}
}
