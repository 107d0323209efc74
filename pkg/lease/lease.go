// Package lease elects, among the replicas of a service, the one that does a named job (a
// periodic clean-up, an expirer, a back-fill), so that work needing doing once is done by one
// replica instead of by every one.
//
// Time is cut into windows of length Window (by the Now clock; give every replica the same
// one, the database's: see mongox.Clock). The holder of window w of a job is whoever first
// inserts its record, keyed "<job>:<w>": an insert into a unique key, the one write the
// embedded test database makes atomic (no conditional update is needed, nor used). So:
//
//   - the holder of w claims w+1 during the last third of w; the others try a window only once
//     it has begun (they read it by its exact key every Poll and insert it if nobody has), so a
//     live holder keeps the job from window to window;
//   - a holder that did not get w+1 stops leading Margin before the end of w;
//   - a holder that stops (Release) deletes its records: another replica takes over at its next
//     poll; one that dies without a word leads nobody once its windows end, at most 4/3 of a
//     window after its death, and another takes over at its next poll after that;
//   - a holder deletes, once per window, the records of windows that ended more than a window
//     ago, from the front of the store (any job's: the store's records stay a few per job).
//
// What leadership promises, and what not: it is an efficiency device, not a safety one. Every
// piece of work a holder does must still be decided by its own insert (a booking's outcome, a
// claim), so that two replicas doing it at once stay correct, only wasteful. Two replicas can
// both believe they lead:
//   - when their clocks differ by more than Margin: for up to (skew - Margin) around a window's
//     end, the old holder still leading by its clock while the new one leads by its own. With
//     clocks that agree within Margin (the database's clock, measured by each replica, agrees
//     to a few milliseconds), there is no such overlap. A skew up to Window/3 leaves no gap
//     either (the holder claims the next window a third of a window before it begins);
//   - while a unit of work begun by a holder just before it stopped leading is still running
//     (Leader is asked before a unit, not during it): keep units short, or check Leader between
//     them;
//   - when a process is paused (a GC stop, a frozen VM) between asking Leader and working.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Defaults.
const (
	DefaultWindow = 15 * time.Second
	DefaultMargin = 2 * time.Second
)

// Record is one window's record: who holds window Window of Job, which ends at Ends.
type Record struct {
	Job    string
	Window int64
	Holder string
	Ends   time.Time
}

// Store keeps the records. Claim is an insert into a unique key: of concurrent claims of one
// window, exactly one succeeds.
type Store interface {
	// Claim inserts r; false when the record of its window of its job exists already
	// (whoever wrote it).
	Claim(ctx context.Context, r Record) (bool, error)
	// Holder reads who holds window w of job ("" when nobody does).
	Holder(ctx context.Context, job string, w int64) (string, error)
	// Delete deletes the record of window w of job (none is not an error).
	Delete(ctx context.Context, job string, w int64) error
	// Front returns up to n records from the front of the store (the oldest inserted, about),
	// at a cost that does not grow with the records kept.
	Front(ctx context.Context, n int) ([]Record, error)
}

// Options configure an Elector; zero values take the defaults.
type Options struct {
	// Window is the length of a leadership window (default DefaultWindow).
	Window time.Duration
	// Margin is how long before the end of its last window a holder stops (default
	// DefaultMargin, at most a third of Window): the clock skew tolerated without overlap.
	Margin time.Duration
	// Poll is how often Run reads the current window (default Window/5).
	Poll time.Duration
	// Now is the clock windows are reckoned by (default time.Now): every replica's should
	// agree, e.g. the database's (mongox.Clock.Now).
	Now func() time.Time
	// ID names this elector in the records (default host name and a random suffix).
	ID string
	// OnChange, if set, is called (from Poll) when this elector starts or stops leading.
	OnChange func(leading bool)
}

// Elector is one replica's candidacy for one job. Leader says whether it holds the job now;
// Run keeps it a candidate (or the holder) until its context ends; Release gives the job up.
type Elector struct {
	store Store
	job   string
	opts  Options
	wake  chan struct{}

	mu       sync.Mutex
	held     map[int64]bool // windows whose record names this elector
	lost     map[int64]bool // windows whose record names another
	polled   int64          // the window of the last poll
	swept    int64          // the window in which old records were last deleted
	leading  bool           // at the last poll (for OnChange)
	released bool
}

// New returns job's elector on store.
func New(store Store, job string, opts Options) *Elector {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Margin <= 0 {
		opts.Margin = DefaultMargin
	}
	opts.Margin = min(opts.Margin, opts.Window/3)
	if opts.Poll <= 0 {
		opts.Poll = opts.Window / 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ID == "" {
		opts.ID = newID()
	}
	return &Elector{store: store, job: job, opts: opts, wake: make(chan struct{}, 1),
		held: map[int64]bool{}, lost: map[int64]bool{}, polled: -1, swept: -1}
}

func newID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Job is the elector's job name.
func (e *Elector) Job() string { return e.job }

// ID names the elector in the records.
func (e *Elector) ID() string { return e.opts.ID }

// window returns the window t falls in and how far into it t is.
func (e *Elector) window(t time.Time) (int64, time.Duration) {
	ns, w := t.UnixNano(), int64(e.opts.Window)
	i := ns / w
	if ns < 0 && ns%w != 0 {
		i--
	}
	return i, time.Duration(ns - i*w)
}

// Leader reports whether this elector holds the job now, by its clock: it holds the current
// window, and either the next one too or the current window's end is more than Margin away.
// It reads no database. When the clock has entered a window the elector has not looked at
// yet (a clock moved by a test), it wakes Run to look now.
func (e *Elector) Leader() bool {
	w, pos := e.window(e.opts.Now())
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leaderLocked(w, pos)
}

func (e *Elector) leaderLocked(w int64, pos time.Duration) bool {
	if e.released {
		return false
	}
	if !e.held[w] {
		if e.polled != w && !e.lost[w] {
			select {
			case e.wake <- struct{}{}:
			default:
			}
		}
		return false
	}
	return e.held[w+1] || pos < e.opts.Window-e.opts.Margin
}

// Poll does one round of the election: it claims the current window if nobody holds it, and,
// holding it, claims the next during the last third of it; it deletes old records once per
// window held. It returns whether this elector leads after it.
func (e *Elector) Poll(ctx context.Context) (bool, error) {
	w, pos := e.window(e.opts.Now())
	e.mu.Lock()
	if e.released {
		e.mu.Unlock()
		return false, nil
	}
	held, heldNext, lostNext := e.held[w], e.held[w+1], e.lost[w+1]
	e.polled = w
	e.mu.Unlock()
	var first error
	if !held {
		// Every poll reads the current window anew: a holder that released it deleted its
		// record, and the window is free again.
		held, first = e.claim(ctx, w)
	}
	if held && pos >= e.opts.Window*2/3 && !heldNext && !lostNext {
		if _, err := e.claim(ctx, w+1); err != nil && first == nil {
			first = err
		}
	}
	e.mu.Lock()
	for k := range e.held {
		if k < w {
			delete(e.held, k)
		}
	}
	for k := range e.lost {
		if k < w {
			delete(e.lost, k)
		}
	}
	sweep := e.held[w] && e.swept != w && !e.released
	if sweep {
		e.swept = w
	}
	leading := e.leaderLocked(e.window(e.opts.Now()))
	changed := leading != e.leading
	e.leading = leading
	e.mu.Unlock()
	if sweep {
		if err := e.sweep(ctx); err != nil && first == nil {
			first = err
		}
	}
	if changed && e.opts.OnChange != nil {
		e.opts.OnChange(leading)
	}
	return leading, first
}

// claim makes window w ours if its record is ours, or there is none and our insert wins.
func (e *Elector) claim(ctx context.Context, w int64) (bool, error) {
	holder, err := e.store.Holder(ctx, e.job, w)
	if err != nil {
		return false, err
	}
	if holder == "" {
		ends := time.Unix(0, (w+1)*int64(e.opts.Window)).UTC()
		won, err := e.store.Claim(ctx, Record{Job: e.job, Window: w, Holder: e.opts.ID, Ends: ends})
		if err != nil {
			// It may have landed: the next poll reads whose it is.
			return false, err
		}
		if !won {
			if holder, err = e.store.Holder(ctx, e.job, w); err != nil {
				return false, err
			}
		} else {
			holder = e.opts.ID
		}
	}
	mine := holder == e.opts.ID
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.released {
		if mine { // released meanwhile: give this one up too
			_ = e.store.Delete(context.WithoutCancel(ctx), e.job, w)
		}
		return false, nil
	}
	if mine {
		e.held[w] = true
		delete(e.lost, w)
	} else if holder != "" {
		e.lost[w] = true
	}
	return mine, nil
}

// sweepFront is how many records one sweep reads from the front of the store.
const sweepFront = 32

// sweep deletes, from the front of the store, the records of windows that ended more than a
// window ago (any job's: they are no use to anyone).
func (e *Elector) sweep(ctx context.Context) error {
	recs, err := e.store.Front(ctx, sweepFront)
	if err != nil {
		return err
	}
	old := e.opts.Now().Add(-e.opts.Window)
	var errs []error
	for _, r := range recs {
		if r.Ends.Before(old) {
			errs = append(errs, e.store.Delete(ctx, r.Job, r.Window))
		}
	}
	return errors.Join(errs...)
}

// Run polls every Poll (and at once when Leader finds the clock in a window not looked at)
// until ctx ends, reporting failures to onErr. It does not release: call Release after. A poll
// may take up to a window (a slow database): a claim that lands late still makes its window
// ours, so it is not cut short at the next tick.
func (e *Elector) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(e.opts.Poll)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, e.opts.Window)
		_, err := e.Poll(pctx)
		cancel()
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.wake:
		}
	}
}

// Release gives the job up for good: Leader answers false from now on, and the records of the
// windows held are deleted, so that another elector takes over at its next poll (a claim in
// flight meanwhile is deleted too). Releasing again does nothing.
func (e *Elector) Release(ctx context.Context) error {
	e.mu.Lock()
	e.released = true
	var ws []int64
	for w := range e.held {
		ws = append(ws, w)
	}
	clear(e.held)
	e.mu.Unlock()
	var errs []error
	for _, w := range ws {
		errs = append(errs, e.store.Delete(ctx, e.job, w))
	}
	return errors.Join(errs...)
}
