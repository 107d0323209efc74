package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var showSeq atomic.Int64

// show is a show created by the admin, with the request body that books it.
type show struct {
	ID, Theatre, Movie, Timing string
	Price                      float64
}

func (s show) booking(n int) map[string]any {
	return map[string]any{"theatreId": s.Theatre, "movieId": s.Movie, "timing": s.Timing, "noOfSeats": n}
}

// newShow creates a movie, a theatre and a show of seats seats.
func (e *env) newShow(t *testing.T, movieName string, seats int) show {
	t.Helper()
	return newShowBy(t, e.admin, movieName, seats)
}

// newShowBy creates, as the signed-in admin, a movie, a theatre and a show of seats seats.
func newShowBy(t *testing.T, admin api, movieName string, seats int) show {
	t.Helper()
	n := showSeq.Add(1)
	var movie, theatre, sh struct {
		ID string `json:"_id"`
	}
	admin.must(t, 201, "POST", "/movies", map[string]any{"name": movieName, "description": "End-to-end test film",
		"casts": []string{"Al Pacino"}, "trailerUrl": "https://example.com/trailer", "releaseDate": "1995-12-15",
		"director": "Michael Mann", "releaseStatus": "RELEASED"}, &movie)
	admin.must(t, 201, "POST", "/theatres", map[string]any{"name": fmt.Sprintf("Odeon %d", n), "description": "Downtown",
		"city": "Pune", "pinCode": 411001, "address": "1 Main Road"}, &theatre)
	timing := time.Date(2031, 1, 1, 18, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Hour).Format(time.RFC3339)
	admin.must(t, 201, "POST", "/shows", map[string]any{"theatreId": theatre.ID, "movieId": movie.ID, "timing": timing,
		"noOfSeats": seats, "price": 250}, &sh)
	return show{ID: sh.ID, Theatre: theatre.ID, Movie: movie.ID, Timing: timing, Price: 250}
}

// customer signs up and in; it returns the signed-in client.
func (e *env) customer(t *testing.T, name, email string) api {
	t.Helper()
	return customerOf(t, e.core, name, email)
}

// customerOf signs up and in through the core API core; it returns the signed-in client.
func customerOf(t *testing.T, core api, name, email string) api {
	t.Helper()
	core.must(t, 201, "POST", "/auth/signup", map[string]any{"name": name, "email": email, "password": name + "-password-1"}, nil)
	var in struct{ Token string }
	core.must(t, 200, "POST", "/auth/signin", map[string]any{"email": email, "password": name + "-password-1"}, &in)
	return core.with("x-access-token", in.Token)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// story: sign up, book, pay through the core Service; the CronJob's sweeper pod delivers the
// confirmation to the fake Resend within one period plus a margin; the ticket is SUCCESS and
// carries the payment's trace id.
func (e *env) story(t *testing.T) {
	began := time.Now()
	sh := e.newShow(t, "Heat", 40)
	email := "asha-" + randomHex(3) + "@example.com"
	asha := e.customer(t, "asha", email)

	var b booking
	asha.must(t, 201, "POST", "/bookings", sh.booking(2), &b)
	if len(b.Seats) != 2 || b.TotalCost != 2*sh.Price || b.Status != "IN_PROCESS" {
		t.Fatalf("booking: %+v, want 2 seats at %v, IN_PROCESS", b, 2*sh.Price)
	}
	traceID := randomHex(16)
	paid := time.Now()
	asha.with("traceparent", "00-"+traceID+"-"+randomHex(8)+"-01").
		must(t, 200, "POST", "/payments", map[string]any{"bookingId": b.ID, "amount": b.TotalCost}, nil)
	var after booking
	asha.must(t, 200, "GET", "/bookings/"+b.ID, nil, &after)
	if after.Status != "SUCCESSFULL" {
		t.Fatalf("booking after payment: %s, want SUCCESSFULL", after.Status)
	}

	// The email reaches the fake Resend, sent by a sweeper Job of the CronJob.
	limit := period + 45*time.Second
	var got []delivery
	err := eventually(limit, time.Second, func() error {
		got = nil
		if err := getJSON(e.fake+"/deliveries?to="+url.QueryEscape(email), &got); err != nil {
			return err
		}
		if len(got) == 0 {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the confirmation email did not reach the fake Resend within one period (%s) plus 45 s: %v\nsweeper Jobs: %s", period, err, e.jobsSummary(t))
	}
	took := time.Since(paid)
	if len(got) != 1 {
		t.Fatalf("%d emails to %s, want 1: %+v", len(got), email, got)
	}
	d := got[0]
	for _, want := range []string{"Heat", b.ID, b.Seats[0], b.Seats[1]} {
		if !strings.Contains(d.Subject+"\n"+d.Text, want) {
			t.Errorf("the email does not name %q:\n%s\n%s", want, d.Subject, d.Text)
		}
	}
	job := e.deliveringJob(t, paid, d.At)
	t.Logf("delivered %s after payment by Job %s (pod of CronJob cineflow-sweeper)", took.Round(100*time.Millisecond), job)

	// The ticket is SUCCESS and carries the payment's trace.
	var tk ticket
	err = eventually(30*time.Second, 500*time.Millisecond, func() error {
		r, err := e.notify.do("GET", "/"+d.TicketID, nil)
		if err != nil {
			return err
		}
		if r.Status != 200 {
			return fmt.Errorf("GET ticket: %s", r)
		}
		if err := jsonUnmarshal(r.Data, &tk); err != nil {
			return err
		}
		if tk.Status != "SUCCESS" {
			return fmt.Errorf("ticket %s is %s", tk.ID, tk.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ticket %s: %v", d.TicketID, err)
	}
	if !strings.Contains(tk.TraceParent, traceID) {
		t.Errorf("ticket traceparent %q does not carry the payment's trace id %s", tk.TraceParent, traceID)
	}
	if len(tk.Recipients) != 1 || tk.Recipients[0] != email {
		t.Errorf("ticket recipients %v, want [%s]", tk.Recipients, email)
	}
	e.timed("story (email delivered after "+took.Round(time.Second).String()+")", began)
}

// deliveringJob finds the sweeper Job that was running when the email arrived (at, by the fake's
// clock, which is this machine's) and requires that it was made by the CronJob after the payment
// and succeeded.
func (e *env) deliveringJob(t *testing.T, paid, at time.Time) string {
	t.Helper()
	var found string
	err := eventually(60*time.Second, time.Second, func() error {
		jobs, err := e.Cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, j := range jobs.Items {
			if !ownedByCronJob(&j, "cineflow-sweeper") || j.Status.StartTime == nil {
				continue
			}
			start := j.Status.StartTime.Time
			if start.After(at.Add(time.Second)) || start.Before(paid.Add(-period)) {
				continue
			}
			if j.Status.Succeeded == 0 {
				return fmt.Errorf("Job %s has not succeeded yet", j.Name)
			}
			found = j.Name
			return nil
		}
		return fmt.Errorf("no Job of CronJob cineflow-sweeper ran at %s: %s", at.Format(time.TimeOnly), e.jobsSummary(t))
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func ownedByCronJob(j *batchv1.Job, name string) bool {
	for _, o := range j.OwnerReferences {
		if o.Kind == "CronJob" && o.Name == name {
			return true
		}
	}
	return false
}

// jobsSummary describes ns's Jobs, for failure messages.
func (e *env) jobsSummary(t *testing.T) string {
	jobs, err := e.Cluster.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, j := range jobs.Items {
		start := "-"
		if j.Status.StartTime != nil {
			start = j.Status.StartTime.Format(time.TimeOnly)
		}
		fmt.Fprintf(&b, "\n  %s started %s active=%d succeeded=%d failed=%d", j.Name, start, j.Status.Active, j.Status.Succeeded, j.Status.Failed)
	}
	return b.String()
}
