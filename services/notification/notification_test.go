package notification

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

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
	base := Ticket{ID: bson.NewObjectID(), Status: StatusPending, Attempts: 2,
		Errors: []AttemptError{{Attempt: 1, Error: "old"}, {Attempt: 2, Error: "old"}}}
	b := &Batch{ID: "b1", Attempts: 1, NextAttemptAt: now.Add(time.Minute), LastError: "timeout",
		Errors: []AttemptError{{Attempt: 1, Error: "timeout"}}, UpdatedAt: now}
	retrying := Resolve(base, b, nil)
	if retrying.Status != StatusPending || retrying.Attempts != 3 || len(retrying.Errors) != 3 ||
		retrying.LastError != "timeout" || !retrying.NextAttemptAt.Equal(b.NextAttemptAt) {
		t.Fatalf("retrying: %+v", retrying)
	}
	if len(base.Errors) != 2 {
		t.Fatal("Resolve changed its input")
	}
	sent := now
	done := Resolve(base, b, &Outcome{Status: StatusSuccess, ProviderMessageID: "m1", SentAt: &sent, At: now})
	if done.Status != StatusSuccess || done.ProviderMessageID != "m1" || !done.NextAttemptAt.IsZero() {
		t.Fatalf("done: %+v", done)
	}
	projected := done
	if again := Resolve(projected, b, &Outcome{Status: StatusFailed, At: now}); again.Status != StatusSuccess || again.Attempts != done.Attempts {
		t.Fatalf("a projected ticket must be returned as is: %+v", again)
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
