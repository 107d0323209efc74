package deliverytest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/racetest"
	"github.com/cineflow/cineflow/services/notification"
)

// The suite of batches, assignments and members (see the package comment).

func runBatches(run runFunc) {
	run("InsertBatch/ReadBack_Opened_SecondInsertFails", func(t *testing.T, ctx context.Context, s Store) {
		at := msNow()
		b := newBatch(at, notification.Member{Ticket: newObjectID()}, notification.Member{Ticket: newObjectID(), Generation: 2})
		if err := s.InsertBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := s.Batch(ctx, b.ID)
		if err != nil || got == nil || !sameBatch(*got, *b) {
			t.Fatalf("read back\n%+v, %v\nwant\n%+v", got, err, b)
		}
		open := openBatches(t, ctx, s, 10)
		if len(open) != 1 || !sameOpen(open[0], notification.OpenBatch{ID: b.ID, Due: b.NextAttemptAt, Size: b.Size, Oldest: b.Oldest, Claims: b.Claims}) {
			t.Fatalf("open batches %+v, want %s's entry", open, b.ID)
		}
		again := *b
		again.Size = 99
		if err := s.InsertBatch(ctx, &again); err == nil {
			t.Fatal("a second insert of the batch's id: no error")
		}
		if got, _ := s.Batch(ctx, b.ID); got.Size != b.Size {
			t.Fatalf("after the second insert: %+v, want the first", got)
		}
		if got, err := s.Batch(ctx, notification.NewID().Hex()); err != nil || got != nil {
			t.Fatalf("unknown batch: %+v, %v; want nil", got, err)
		}
	})

	run("OpenBatches/InOrderOpened_UpToLimit", func(t *testing.T, ctx context.Context, s Store) {
		var ids []string
		for i := range 5 {
			b := newBatch(msNow().Add(-time.Duration(i)*time.Minute), notification.Member{Ticket: newObjectID()})
			if err := s.InsertBatch(ctx, b); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, b.ID)
		}
		for _, limit := range []int{2, 10} {
			open := openBatches(t, ctx, s, limit)
			got := make([]string, len(open))
			for i, o := range open {
				got[i] = o.ID
			}
			if want := ids[:min(limit, len(ids))]; !slices.Equal(got, want) {
				t.Fatalf("open batches, limit %d: %v, want %v", limit, got, want)
			}
		}
	})

	run("SaveBatch/ReplacesBatchAndOpenEntry_DoneLeavesEntry_CloseRemovesIt", func(t *testing.T, ctx context.Context, s Store) {
		at := msNow()
		b := newBatch(at, notification.Member{Ticket: newObjectID()})
		if err := s.InsertBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		b.Attempts, b.Claims, b.NextAttemptAt, b.LastError = 1, 3, at.Add(time.Minute), "429 slow down"
		b.Errors = append(b.Errors, notification.AttemptError{At: at, Attempt: 1, Error: "429 slow down"})
		b.UpdatedAt = at.Add(time.Second)
		if err := s.SaveBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Batch(ctx, b.ID); err != nil || got == nil || !sameBatch(*got, *b) {
			t.Fatalf("saved\n%+v, %v\nwant\n%+v", got, err, b)
		}
		want := notification.OpenBatch{ID: b.ID, Due: b.NextAttemptAt, Size: b.Size, Oldest: b.Oldest, Claims: 3}
		if open := openBatches(t, ctx, s, 10); len(open) != 1 || !sameOpen(open[0], want) {
			t.Fatalf("open entry %+v, want %+v", open, want)
		}
		b.Done, b.Attempts = true, 2
		if err := s.SaveBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Batch(ctx, b.ID); got == nil || !got.Done || got.Attempts != 2 {
			t.Fatalf("done batch read back %+v", got)
		}
		if open := openBatches(t, ctx, s, 10); len(open) != 1 || !sameOpen(open[0], want) {
			t.Fatalf("open entry of a done batch not yet closed: %+v, want it as it was", open)
		}
		for range 2 {
			if err := s.CloseBatch(ctx, b.ID); err != nil {
				t.Fatalf("close (again: gone already is no error): %v", err)
			}
		}
		if open := openBatches(t, ctx, s, 10); len(open) != 0 {
			t.Fatalf("open after close: %+v", open)
		}
		if got, _ := s.Batch(ctx, b.ID); got == nil || !got.Done {
			t.Fatalf("a closed batch is kept: %+v", got)
		}
	})

	run("DiscardBatch/RemovesBatchAndEntry_GoneAlreadyNoError", func(t *testing.T, ctx context.Context, s Store) {
		b, kept := newBatch(msNow(), notification.Member{Ticket: newObjectID()}), newBatch(msNow(), notification.Member{Ticket: newObjectID()})
		for _, x := range []*notification.Batch{b, kept} {
			if err := s.InsertBatch(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if err := s.DiscardBatch(ctx, b.ID); err != nil {
				t.Fatalf("discard (again: gone already is no error): %v", err)
			}
		}
		if got, err := s.Batch(ctx, b.ID); err != nil || got != nil {
			t.Fatalf("discarded batch: %+v, %v", got, err)
		}
		if open := openBatches(t, ctx, s, 10); len(open) != 1 || open[0].ID != kept.ID {
			t.Fatalf("open batches %+v, want %s's alone", open, kept.ID)
		}
		if err := s.DiscardBatch(ctx, notification.NewID().Hex()); err != nil {
			t.Fatalf("discard of a batch never made: %v", err)
		}
	})

	run(fmt.Sprintf("Assign/Race%dBatchesOneTicket_OneOwnsIt_OthersWinTheirOwn", racetest.Racers), func(t *testing.T, ctx context.Context, s Store) {
		shared := newTicket(t, ctx, s)
		batches := make([]*notification.Batch, racetest.Racers)
		own := make([]*notification.Ticket, racetest.Racers)
		for i := range batches {
			own[i] = newTicket(t, ctx, s)
			batches[i] = newBatch(msNow(), notification.Member{Ticket: own[i].ID}, notification.Member{Ticket: shared.ID})
			if err := s.InsertBatch(ctx, batches[i]); err != nil {
				t.Fatal(err)
			}
		}
		lost := make([]map[int]bool, racetest.Racers)
		errsOf := make([]error, racetest.Racers)
		racetest.Race(racetest.Racers, func(i int) { lost[i], errsOf[i] = s.Assign(ctx, batches[i], batches[i].Members) })
		owner := -1
		for i := range lost {
			switch {
			case errsOf[i] != nil:
				t.Fatalf("assign %d: %v (a lost member is not an error)", i, errsOf[i])
			case lost[i][0]:
				t.Fatalf("batch %d lost its own ticket", i)
			case !lost[i][1] && owner >= 0:
				t.Fatalf("batches %d and %d both own the shared ticket", owner, i)
			case !lost[i][1]:
				owner = i
			}
		}
		if owner < 0 {
			t.Fatal("no batch owns the shared ticket")
		}
		// A sweep taking each batch over keeps the members whose assignment names it.
		for i, b := range batches {
			tks, err := s.Members(ctx, b)
			want := []notification.ID{own[i].ID}
			if i == owner {
				want = append(want, shared.ID)
				slices.SortFunc(want, func(x, y notification.ID) int { return bytes.Compare(x[:], y[:]) })
			}
			if err != nil || !slices.Equal(ticketIDs(tks), want) {
				t.Fatalf("batch %d's members: %v, %v; want %v", i, ticketIDs(tks), err, want)
			}
			if !b.Verified || b.Size != len(want) || len(b.Members) != len(want) {
				t.Fatalf("batch %d after Members: verified %v, size %d, members %+v", i, b.Verified, b.Size, b.Members)
			}
		}
	})

	run("Members/ContentOfTheTickets_VerifiedListTakenAsItIs", func(t *testing.T, ctx context.Context, s Store) {
		a, b := newTicket(t, ctx, s), newTicket(t, ctx, s)
		batch := newBatch(msNow(), notification.Member{Ticket: b.ID, Generation: 3}, notification.Member{Ticket: a.ID})
		batch.Verified = true // not assigned: a verified list is not checked
		tks, err := s.Members(ctx, batch)
		if err != nil || len(tks) != 2 {
			t.Fatalf("members: %+v, %v", tks, err)
		}
		byID := map[notification.ID]notification.Ticket{tks[0].ID: tks[0], tks[1].ID: tks[1]}
		if !slices.IsSortedFunc(tks, func(x, y notification.Ticket) int { return bytes.Compare(x.ID[:], y.ID[:]) }) {
			t.Fatalf("members not in id order: %v", ticketIDs(tks))
		}
		for _, c := range []struct {
			tk  *notification.Ticket
			gen int
		}{{a, 0}, {b, 3}} {
			got := byID[c.tk.ID]
			if got.Subject != c.tk.Subject || got.Content != c.tk.Content || !slices.Equal(got.RecipientEmails, c.tk.RecipientEmails) || got.Generation != c.gen {
				t.Fatalf("member %s: %+v, want the ticket's content at generation %d", c.tk.ID.Hex(), got, c.gen)
			}
		}
		gone := newBatch(msNow(), notification.Member{Ticket: newObjectID()}) // no such ticket
		insertAndAssign(t, ctx, s, gone)
		gone.Verified = false
		if tks, err := s.Members(ctx, gone); err != nil || len(tks) != 0 {
			t.Fatalf("a member without its ticket: %+v, %v; want none", tks, err)
		}
	})
}
