package mongox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Clock defaults.
const (
	DefaultClockInterval = 30 * time.Second
	DefaultClockWarn     = time.Second
	clockSamples         = 3
)

// ClockOptions configure a Clock; zero values take the defaults.
type ClockOptions struct {
	// Local is this process's clock (default time.Now): the offset is measured against it.
	Local func() time.Time
	// Interval is how often Run measures the offset again (default DefaultClockInterval).
	Interval time.Duration
	// Warn is the offset beyond which the clock logs a warning (default DefaultClockWarn): once
	// when the offset goes beyond it, once when it comes back.
	Warn   time.Duration
	Logger *slog.Logger // default slog.Default()
}

// Clock is the database server's clock as this process sees it: the local clock plus the
// offset to the server's, measured with the hello command's localTime (which MongoDB and the
// embedded FerretDB both answer). Replicas whose local clocks differ agree on Clock.Now to
// within their measurement errors: each measure takes the reply that came back fastest of a
// few and reckons the server's time at the middle of its round trip, so its error is at most
// half that round trip plus the server's millisecond resolution (well under 10 ms on a LAN),
// plus the local clock's drift since (a few ms per minute on a bad one; Run measures again
// every Interval). Fates that depend on time (a hold's end) are decided by it, so that a
// replica whose clock runs ahead cannot end another replica's promise early.
//
// Until the first successful measure (and if none ever succeeds) the offset is 0: the local
// clock.
type Clock struct {
	client *mongo.Client
	opts   ClockOptions
	offset atomic.Int64 // nanoseconds to add to Local

	mu   sync.Mutex
	over bool // the offset was beyond Warn at the last measure
}

// NewClock returns the clock of client's server. Measure it once, then Run it.
func NewClock(client *mongo.Client, opts ClockOptions) *Clock {
	if opts.Local == nil {
		opts.Local = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultClockInterval
	}
	if opts.Warn <= 0 {
		opts.Warn = DefaultClockWarn
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Clock{client: client, opts: opts}
}

// Now is the server's time: the local clock plus the measured offset.
func (c *Clock) Now() time.Time { return c.opts.Local().Add(c.Offset()) }

// Offset is the last measured offset of the server's clock to the local one (positive: the
// server's is ahead).
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// Measure measures the offset now (a few hello round trips, the fastest kept) and returns it.
// On error the offset in force is kept.
func (c *Clock) Measure(ctx context.Context) (time.Duration, error) {
	var (
		best    time.Duration
		bestRTT time.Duration = -1
		errs    []error
	)
	for range clockSamples {
		off, rtt, err := c.sample(ctx)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if bestRTT < 0 || rtt < bestRTT {
			best, bestRTT = off, rtt
		}
	}
	if bestRTT < 0 {
		return c.Offset(), fmt.Errorf("measuring the database's clock: %w", errors.Join(errs...))
	}
	c.offset.Store(int64(best))
	c.report(best)
	return best, nil
}

// sample is one hello round trip: the server's localTime against the middle of the trip.
func (c *Clock) sample(ctx context.Context) (offset, rtt time.Duration, err error) {
	var reply struct {
		LocalTime time.Time `bson:"localTime"`
	}
	t0 := c.opts.Local()
	err = c.client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&reply)
	t1 := c.opts.Local()
	if err != nil {
		return 0, 0, err
	}
	if reply.LocalTime.IsZero() {
		return 0, 0, errors.New("the server's hello reply has no localTime")
	}
	rtt = t1.Sub(t0)
	mid := t0.Add(rtt / 2)
	// localTime has millisecond resolution: the server's time is somewhere in the millisecond
	// it names, so take its middle.
	return reply.LocalTime.Add(500 * time.Microsecond).Sub(mid), rtt, nil
}

// report logs when the offset goes beyond Warn, and when it comes back.
func (c *Clock) report(off time.Duration) {
	over := off > c.opts.Warn || off < -c.opts.Warn
	c.mu.Lock()
	changed := over != c.over
	c.over = over
	c.mu.Unlock()
	if !changed {
		return
	}
	if over {
		c.opts.Logger.Warn("this process's clock differs from the database's; hold ends and leases follow the database's clock",
			"offset", off.Round(time.Millisecond).String(), "warn_above", c.opts.Warn.String())
	} else {
		c.opts.Logger.Info("this process's clock agrees with the database's again", "offset", off.Round(time.Millisecond).String())
	}
}

// Run measures the offset every Interval until ctx ends, reporting failures to onErr (the
// offset in force is kept meanwhile).
func (c *Clock) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mctx, cancel := context.WithTimeout(ctx, c.opts.Interval)
		_, err := c.Measure(mctx)
		cancel()
		if err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
	}
}
