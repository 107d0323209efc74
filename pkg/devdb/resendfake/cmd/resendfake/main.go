// Command resendfake serves the fake Resend API (package resendfake) for end-to-end tests.
//
// Point a client at it with RESEND_BASE_URL=http://127.0.0.1:3010/ (resend-go honours it).
// Besides the API (POST /emails, POST /emails/batch) it serves:
//
//	GET  /_fake/deliveries  JSON array of delivered emails (?ticket_id=... or ?to=... filter)
//	GET  /_fake/stats       JSON counters, including duplicates (ticket id -> count)
//	GET  /_fake/faults      JSON of the injected faults
//	POST /_fake/faults      set the injected faults from JSON (delay as "300ms")
//	POST /_fake/reset       forget deliveries, idempotency keys and counters
//	GET  /_fake/healthz     "ok"
//
// Flags (each with an environment fallback):
//
//	-addr        RESENDFAKE_ADDR        listen address (127.0.0.1:3010)
//	-api-key     RESENDFAKE_API_KEY     required bearer key ("" accepts any non-empty key)
//	-rate-limit  RESENDFAKE_RATE_LIMIT  requests per second, 0 = unlimited
//	-reject      RESENDFAKE_REJECT      comma-separated recipient addresses to refuse
//	-seed        RESENDFAKE_SEED        random seed for fault fractions and ids
//	-fail-rate   RESENDFAKE_FAIL_RATE   fraction of requests answered 500 before processing
//	-lose-rate   RESENDFAKE_LOSE_RATE   fraction processed, then answered 500
//	-delay       RESENDFAKE_DELAY       response delay for delayed requests
//	-delay-rate  RESENDFAKE_DELAY_RATE  fraction of processed requests delayed
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb/resendfake"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(env(name, "")); err == nil {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(env(name, ""), 64); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(env(name, "")); err == nil {
		return v
	}
	return def
}

func main() {
	addr := flag.String("addr", env("RESENDFAKE_ADDR", "127.0.0.1:3010"), "listen address")
	apiKey := flag.String("api-key", env("RESENDFAKE_API_KEY", ""), `required bearer API key ("" accepts any non-empty key)`)
	rateLimit := flag.Int("rate-limit", envInt("RESENDFAKE_RATE_LIMIT", 0), "requests per second, 0 = unlimited")
	reject := flag.String("reject", env("RESENDFAKE_REJECT", ""), "comma-separated recipient addresses to refuse")
	seed := flag.Int64("seed", int64(envInt("RESENDFAKE_SEED", 1)), "random seed")
	failRate := flag.Float64("fail-rate", envFloat("RESENDFAKE_FAIL_RATE", 0), "fraction of requests answered 500 before processing")
	loseRate := flag.Float64("lose-rate", envFloat("RESENDFAKE_LOSE_RATE", 0), "fraction of requests processed, then answered 500")
	delay := flag.Duration("delay", envDuration("RESENDFAKE_DELAY", 0), "response delay for delayed requests")
	delayRate := flag.Float64("delay-rate", envFloat("RESENDFAKE_DELAY_RATE", 0), "fraction of processed requests delayed")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var rejectList []string
	for _, a := range strings.Split(*reject, ",") {
		if a = strings.TrimSpace(a); a != "" {
			rejectList = append(rejectList, a)
		}
	}
	fake := resendfake.New(resendfake.Options{
		APIKey:    *apiKey,
		RateLimit: *rateLimit,
		Reject:    rejectList,
		Seed:      *seed,
		Faults: resendfake.Faults{
			FailRate: *failRate, LoseRate: *loseRate, Delay: *delay, DelayRate: *delayRate,
		},
	})

	srv := &http.Server{
		Addr:              *addr,
		Handler:           handler(fake, logger),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	logger.Info("resendfake listening", "addr", *addr, "rate_limit", *rateLimit, "reject", len(rejectList))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("resendfake", "err", err)
		os.Exit(1)
	}
}

// faultsJSON is resendfake.Faults with the delay as a Go duration string.
type faultsJSON struct {
	FailRate  float64 `json:"fail_rate"`
	FailNext  int     `json:"fail_next"`
	LoseRate  float64 `json:"lose_rate"`
	LoseNext  int     `json:"lose_next"`
	Delay     string  `json:"delay"`
	DelayRate float64 `json:"delay_rate"`
	DelayNext int     `json:"delay_next"`
}

func handler(fake *resendfake.Server, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	mux.HandleFunc("GET /_fake/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /_fake/deliveries", func(w http.ResponseWriter, r *http.Request) {
		var ds []resendfake.Delivery
		if to := r.URL.Query().Get("to"); to != "" {
			ds = fake.Inbox(to)
		} else {
			ds = fake.Deliveries()
		}
		if r.URL.Query().Has("ticket_id") {
			ticket := r.URL.Query().Get("ticket_id")
			kept := ds[:0]
			for _, d := range ds {
				if d.TicketID == ticket {
					kept = append(kept, d)
				}
			}
			ds = kept
		}
		if ds == nil {
			ds = []resendfake.Delivery{}
		}
		writeJSON(w, ds)
	})
	mux.HandleFunc("GET /_fake/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, fake.Stats())
	})
	mux.HandleFunc("GET /_fake/faults", func(w http.ResponseWriter, r *http.Request) {
		f := fake.Faults()
		writeJSON(w, faultsJSON{
			FailRate: f.FailRate, FailNext: f.FailNext, LoseRate: f.LoseRate, LoseNext: f.LoseNext,
			Delay: f.Delay.String(), DelayRate: f.DelayRate, DelayNext: f.DelayNext,
		})
	})
	mux.HandleFunc("POST /_fake/faults", func(w http.ResponseWriter, r *http.Request) {
		var in faultsJSON
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "bad faults JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		var d time.Duration
		if in.Delay != "" {
			var err error
			if d, err = time.ParseDuration(in.Delay); err != nil {
				http.Error(w, "bad delay: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		fake.SetFaults(resendfake.Faults{
			FailRate: in.FailRate, FailNext: in.FailNext, LoseRate: in.LoseRate, LoseNext: in.LoseNext,
			Delay: d, DelayRate: in.DelayRate, DelayNext: in.DelayNext,
		})
		logger.Info("faults set", "faults", in)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_fake/reset", func(w http.ResponseWriter, r *http.Request) {
		fake.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("/", fake)
	return mux
}
