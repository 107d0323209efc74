package main

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/notification"
	"github.com/cineflow/cineflow/services/notification/httpapi"
)

const requeuePath = base + httpapi.RequeuePath

// requeue sends a bulk re-queue and returns its answer.
func (s *service) requeue(body map[string]any) (response, notification.RequeueReport) {
	s.t.Helper()
	r := s.do(req{method: "POST", path: requeuePath, body: body})
	var rep notification.RequeueReport
	if r.status == 200 {
		if err := json.Unmarshal(r.env.Data, &rep); err != nil {
			s.t.Fatalf("answer: %v: %s", err, r.raw)
		}
	}
	return r, rep
}

func TestRequeueFailedTickets(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	var failed []notification.ID
	for i := range 12 {
		tk := s.create(i)
		s.decide(tk.ID, notification.StatusFailed)
		failed = append(failed, tk.ID)
	}
	delivered := s.create(100)
	s.decide(delivered.ID, notification.StatusSuccess)
	pending := s.create(101)

	r, rep := s.requeue(map[string]any{"failedSince": since, "dryRun": true})
	wantStatus(t, r, 200)
	if rep.Matched != 12 || rep.Requeued != 0 || rep.More || !rep.DryRun {
		t.Fatalf("dry run: %+v", rep)
	}
	// Five at a time, following next.
	total, pages := 0, 0
	body := map[string]any{"failedSince": since, "reasonContains": "MAILBOX", "limit": 5}
	for {
		r, rep := s.requeue(body)
		wantStatus(t, r, 200)
		pages++
		total += rep.Requeued
		if rep.Requeued > 5 || pages > 5 {
			t.Fatalf("page %d: %+v", pages, rep)
		}
		if !rep.More {
			break
		}
		body["cursor"] = rep.Next
	}
	if total != 12 || pages != 3 {
		t.Fatalf("%d re-queued in %d pages, want 12 in 3", total, pages)
	}
	for _, id := range failed {
		tk := s.do(req{method: "GET", path: base + "/" + id.Hex()}).ticket(t)
		if tk.Status != notification.StatusPending || tk.Generation != 1 {
			t.Errorf("ticket %s: %s generation %d", id.Hex(), tk.Status, tk.Generation)
		}
	}
	for _, id := range []notification.ID{delivered.ID, pending.ID} {
		if tk := s.do(req{method: "GET", path: base + "/" + id.Hex()}).ticket(t); tk.Generation != 0 {
			t.Errorf("ticket %s (%s) was re-queued", id.Hex(), tk.Status)
		}
	}
	// The same request again (a client's retry): nothing left to re-queue.
	delete(body, "cursor")
	if r, rep := s.requeue(body); r.status != 200 || rep.Requeued != 0 || rep.Matched != 0 || rep.More {
		t.Fatalf("repeated: %d %+v", r.status, rep)
	}
	// A single retry of a re-queued ticket conflicts, as before.
	wantStatus(t, s.do(req{method: "POST", path: base + "/" + failed[0].Hex() + "/retry"}), 409)

	// Bad input is a 400 naming the field; no token is a 401.
	for body, field := range map[string]string{
		`{}`:                             "failedSince",
		`{"failedSince":"last tuesday"}`: "failedSince",
		`{"failedSince":"` + since + `","limit":0}`:  "limit",
		`{"failedSince":"` + since + `","limt":10}`:  "limt",
		`{"failedSince":"` + since + `","cursor":5}`: "cursor",
	} {
		r := s.do(req{method: "POST", path: requeuePath, body: body})
		wantStatus(t, r, 400)
		if r.fields()[field] == "" {
			t.Errorf("%s: error %s, want one for %s", body, r.errorText(), field)
		}
	}
	wantStatus(t, s.do(req{method: "POST", path: requeuePath, body: `not json`}), 400)
	wantStatus(t, s.do(req{method: "POST", path: requeuePath, body: map[string]any{"failedSince": since}, noAuth: true}), 401)
	wantStatus(t, s.do(req{method: "POST", path: requeuePath, body: map[string]any{"failedSince": since},
		header: map[string]string{"Authorization": "Bearer not-the-token"}}), 401)
}

// Bulk re-queues and single retries over HTTP, at once, of the same tickets: every ticket's
// generation is re-queued exactly once, by exactly one request.
func TestRequeueFailedConcurrentOverHTTP(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	const n = 30
	since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	var ids []notification.ID
	for i := range n {
		tk := s.create(i)
		s.decide(tk.ID, notification.StatusFailed)
		ids = append(ids, tk.ID)
	}
	var bulk, single atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 3 {
		wg.Go(func() {
			<-start
			body := map[string]any{"failedSince": since, "limit": 2 + 3*w}
			for range 50 {
				resp, err := s.send(req{method: "POST", path: requeuePath, body: body})
				if err != nil {
					t.Error(err)
					return
				}
				r := checkEnvelope(t, "bulk", resp)
				var rep notification.RequeueReport
				if r.status != 200 || json.Unmarshal(r.env.Data, &rep) != nil {
					t.Errorf("bulk: %d %s", r.status, r.raw)
					return
				}
				bulk.Add(int64(rep.Requeued))
				if !rep.More {
					return
				}
				body["cursor"] = rep.Next
			}
		})
	}
	for range 3 {
		wg.Go(func() {
			<-start
			for _, id := range ids {
				resp, err := s.send(req{method: "POST", path: base + "/" + id.Hex() + "/retry"})
				if err != nil {
					t.Error(err)
					return
				}
				switch r := checkEnvelope(t, "retry", resp); r.status {
				case 200:
					single.Add(1)
				case 409:
				default:
					t.Errorf("retry: %d %s", r.status, r.raw)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if bulk.Load()+single.Load() != n {
		t.Fatalf("%d re-queued by bulk requests and %d by retries, want %d in all", bulk.Load(), single.Load(), n)
	}
	for _, id := range ids {
		if tk := s.do(req{method: "GET", path: base + "/" + id.Hex()}).ticket(t); tk.Status != notification.StatusPending || tk.Generation != 1 {
			t.Errorf("ticket %s: %s generation %d", id.Hex(), tk.Status, tk.Generation)
		}
	}
	t.Logf("%d by bulk requests, %d by retries", bulk.Load(), single.Load())
}
