package notification

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cineflow/cineflow/pkg/errs"
)

func TestValidEmail(t *testing.T) {
	for addr, want := range map[string]bool{
		"ann@example.com": true, "a.b+tag@sub.example.co": true,
		"": false, "ann": false, "ann@": false, "@example.com": false, "ann@localhost": false,
		"Ann <ann@example.com>": false, "ann@example..com": false, "ann@.example.com": false,
		"ann@example.com.": false, "a nn@example.com": false, "ann@exa\nmple.com": false,
		strings.Repeat("a", 250) + "@example.com": false,
	} {
		if got := ValidEmail(addr); got != want {
			t.Errorf("ValidEmail(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestValidateNormalisesRecipients(t *testing.T) {
	n := NewTicket{Subject: "  Hi  ", Content: "x", RecipientEmails: []string{" ann@example.com", "ANN@example.com", "bob@example.com"}}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if n.Subject != "Hi" || len(n.RecipientEmails) != 2 || n.RecipientEmails[0] != "ann@example.com" {
		t.Fatalf("normalised: %+v", n)
	}
	bad := NewTicket{Subject: "a\nb", Content: " ", RecipientEmails: make([]string, 51)}
	err := bad.Validate()
	var e *errs.Error
	if !errs.Is(err, errs.Invalid) || !asErr(err, &e) || len(e.Fields) != 3 {
		t.Fatalf("want 3 field errors, got %v", err)
	}
}

func asErr(err error, target **errs.Error) bool {
	e, ok := err.(*errs.Error)
	*target = e
	return ok
}

func TestResolve(t *testing.T) {
	now := time.Now().UTC()
	base := Ticket{ID: NewID(), Status: StatusPending, Attempts: 2,
		Errors: []AttemptError{{Attempt: 1, Error: "old"}, {Attempt: 2, Error: "old"}}}
	b := &Batch{ID: "b1", Attempts: 1, NextAttemptAt: now.Add(time.Minute), LastError: "timeout",
		Errors: []AttemptError{{Attempt: 1, Error: "timeout"}}, UpdatedAt: now}
	retrying := Resolve(base, GenerationRecords{Batch: b})
	if retrying.Status != StatusPending || retrying.Attempts != 3 || len(retrying.Errors) != 3 ||
		retrying.LastError != "timeout" || !retrying.NextAttemptAt.Equal(b.NextAttemptAt) || retrying.Batch != "b1" {
		t.Fatalf("retrying: %+v", retrying)
	}
	if len(base.Errors) != 2 {
		t.Fatal("Resolve changed its input")
	}
	sent := now
	done := Resolve(base, GenerationRecords{Batch: b, Outcome: &Outcome{Status: StatusSuccess, ProviderMessageID: "m1", SentAt: &sent, At: now}})
	if done.Status != StatusSuccess || done.ProviderMessageID != "m1" || !done.NextAttemptAt.IsZero() {
		t.Fatalf("done: %+v", done)
	}
	projected := done
	if again := Resolve(projected, GenerationRecords{Batch: b, Outcome: &Outcome{Status: StatusFailed, At: now}}); again.Status != StatusSuccess || again.Attempts != done.Attempts {
		t.Fatalf("a projected generation must be returned as it is: %+v", again)
	}
}

// A ticket re-queued twice resolves to its last generation with the history of all three,
// whether its document was never projected, projected as the FAILED generation 0, or
// projected by the first re-queue (generation 1, PENDING).
func TestResolveWalksGenerations(t *testing.T) {
	now := time.Now().UTC()
	id := NewID()
	b0 := &Batch{ID: "b0", Attempts: 2, Done: true, LastError: "503", Errors: []AttemptError{{Attempt: 1, Error: "503"}, {Attempt: 2, Error: "503"}}}
	o0 := &Outcome{Status: StatusFailed, Error: "gave up", At: now}
	b1 := &Batch{ID: "b1", Attempts: 1, Done: true, LastError: "550", Errors: []AttemptError{{Attempt: 1, Error: "550"}}}
	o1 := &Outcome{Status: StatusFailed, Error: "rejected", At: now.Add(time.Minute)}
	b2 := &Batch{ID: "b2", Attempts: 1, NextAttemptAt: now.Add(time.Hour), LastError: "timeout", Errors: []AttemptError{{Attempt: 1, Error: "timeout"}}}
	since1, since2 := now.Add(30*time.Second), now.Add(2*time.Minute)
	gen0 := GenerationRecords{Generation: 0, Batch: b0, Outcome: o0}
	gen1 := GenerationRecords{Generation: 1, Since: since1, Batch: b1, Outcome: o1}
	gen2 := GenerationRecords{Generation: 2, Since: since2, Batch: b2}

	fresh := Ticket{ID: id, Status: StatusPending, Errors: []AttemptError{}}
	want := Resolve(fresh, gen0, gen1, gen2)
	if want.Generation != 2 || want.Status != StatusPending || want.Attempts != 4 || len(want.Errors) != 6 ||
		want.LastError != "timeout" || want.Batch != "b2" || !want.NextAttemptAt.Equal(b2.NextAttemptAt) {
		t.Fatalf("from the stored document: %+v", want)
	}
	projected0 := Resolve(fresh, gen0) // what a projection of generation 0 writes
	if projected0.Status != StatusFailed || projected0.Attempts != 2 || len(projected0.Errors) != 3 {
		t.Fatalf("generation 0: %+v", projected0)
	}
	requeued1 := Resolve(projected0, GenerationRecords{Generation: 0}, GenerationRecords{Generation: 1, Since: since1})
	if requeued1.Status != StatusPending || requeued1.Generation != 1 || requeued1.Attempts != 2 || !requeued1.NextAttemptAt.Equal(since1) {
		t.Fatalf("re-queued into generation 1: %+v", requeued1)
	}
	for name, doc := range map[string]Ticket{"projected generation 0": projected0, "re-queued generation 1": requeued1} {
		gens := []GenerationRecords{{Generation: 0}, gen1, gen2}
		if doc.Generation == 1 {
			gens = []GenerationRecords{{Generation: 1, Batch: b1, Outcome: o1}, gen2}
		}
		got := Resolve(doc, gens...)
		if got.Generation != want.Generation || got.Status != want.Status || got.Attempts != want.Attempts ||
			len(got.Errors) != len(want.Errors) || got.LastError != want.LastError || got.Batch != want.Batch {
			t.Errorf("from the %s: %+v, want %+v", name, got, want)
		}
	}
}

// FuzzValidate: any input either validates into a ticket that keeps every rule, or fails
// with field reasons; it never panics.
func FuzzValidate(f *testing.F) {
	f.Add("Hello", "It works", "ann@example.com", "")
	f.Add("", "", "", "")
	f.Add("a\r\nBcc: x@y.z", "body", "ann@example.com,ANN@example.com", "core")
	f.Add(strings.Repeat("s", 999), "\xff\xfe", "not-an-email", strings.Repeat("r", 201))
	f.Add("Subj", "c", "a@b.co,"+strings.Repeat("x@y.zz,", 60), "")
	f.Fuzz(func(t *testing.T, subject, content, recipients, requester string) {
		n := NewTicket{Subject: subject, Content: content, RecipientEmails: strings.Split(recipients, ","), Requester: requester}
		err := n.Validate()
		if err != nil {
			var e *errs.Error
			if !asErr(err, &e) || e.Code != errs.Invalid || len(e.Fields) == 0 {
				t.Fatalf("error without field reasons: %v", err)
			}
			return
		}
		if n.Subject == "" || len(n.Subject) > MaxSubjectLen || strings.ContainsAny(n.Subject, "\r\n") || !utf8.ValidString(n.Subject) {
			t.Fatalf("accepted subject %q", n.Subject)
		}
		if len(n.RecipientEmails) == 0 || len(n.RecipientEmails) > MaxRecipients {
			t.Fatalf("accepted %d recipients", len(n.RecipientEmails))
		}
		for _, r := range n.RecipientEmails {
			if !ValidEmail(r) {
				t.Fatalf("accepted recipient %q", r)
			}
		}
	})
}

// The root package holds the domain's contracts, which every part shares: it must not depend
// on the database driver (the stores in mongostore/ do), directly or through another package.
func TestRootDependsOnNoDriver(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/cineflow/cineflow/services/notification") {
		t.Fatalf("go list -deps looks wrong:\n%s", out)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "go.mongodb.org/") {
			t.Errorf("services/notification depends on %s", d)
		}
	}
}
