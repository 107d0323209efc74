package mongostore

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core"
)

// TestIntentBuckets: intents go to the bucket of their expiry; the buckets list earliest first
// with their spans; a bucket reads whole, loses deleted intents, and drops as one; a show's
// intents are found in every bucket and in the queue of earlier versions, whose intents are
// forwarded into their buckets.
func TestIntentBuckets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewBookings(devdb.TestDB(t)).SetIntentBucketWidth(10 * time.Second)
	base := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	in := func(id, show string, at time.Time) core.Intent {
		return core.Intent{ID: id + ":0", BookingID: id, ShowID: show, UserID: "u", Seats: []string{"A1"}, Slots: []int{1},
			ExpiresAt: at}
	}
	for _, x := range []core.Intent{in("a", "s1", base.Add(12*time.Second)), in("b", "s2", base.Add(15*time.Second)),
		in("c", "s1", base.Add(3*time.Second)), in("d", "s1", base.Add(19999*time.Millisecond))} {
		if err := s.AddIntent(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	// An earlier version's intent, in the single queue.
	if _, err := s.intents.InsertOne(ctx, intentDoc{ID: "e:0", BookingID: "e", ShowID: "s1", UserID: "u",
		ExpiresAt: base.Add(25 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	buckets, err := s.IntentBuckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != 2 || !buckets[0].Start.Equal(base) || !buckets[0].End.Equal(base.Add(10*time.Second)) ||
		!buckets[1].Start.Equal(base.Add(10*time.Second)) || !buckets[1].End.Equal(base.Add(20*time.Second)) {
		t.Fatalf("buckets %+v", buckets)
	}
	ids := func(ins []core.Intent) []string {
		var out []string
		for _, x := range ins {
			out = append(out, x.BookingID)
		}
		slices.Sort(out)
		return out
	}
	got, err := s.BucketIntents(ctx, buckets[1].Name)
	if err != nil || !slices.Equal(ids(got), []string{"a", "b", "d"}) {
		t.Fatalf("second bucket %v %v", ids(got), err)
	}
	if got[0].Seats[0] != "A1" || got[0].Slots[0] != 1 || got[0].UserID != "u" {
		t.Fatalf("intent read back %+v", got[0])
	}
	if show, err := s.ShowIntents(ctx, "s1"); err != nil || !slices.Equal(ids(show), []string{"a", "c", "d", "e"}) {
		t.Fatalf("show s1's intents %v %v", ids(show), err)
	}
	if err := s.DeleteIntents(ctx, base.Add(15*time.Second), []string{"b:0"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.BucketIntents(ctx, buckets[1].Name); err != nil || !slices.Equal(ids(got), []string{"a", "d"}) {
		t.Fatalf("after a delete %v %v", ids(got), err)
	}
	if n, err := s.ForwardLegacyIntents(ctx, 100); err != nil || n != 1 {
		t.Fatalf("forwarded %d %v", n, err)
	}
	if n, err := s.intents.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Fatalf("%d left in the old queue (%v)", n, err)
	}
	buckets, err = s.IntentBuckets(ctx)
	if err != nil || len(buckets) != 3 || !buckets[2].Start.Equal(base.Add(20*time.Second)) {
		t.Fatalf("buckets after forwarding %+v %v", buckets, err)
	}
	if err := s.DropIntentBucket(ctx, buckets[0].Name); err != nil {
		t.Fatal(err)
	}
	if err := s.DropIntentBucket(ctx, buckets[0].Name); err != nil {
		t.Fatalf("dropping a dropped bucket: %v", err)
	}
	if err := s.DropIntentBucket(ctx, BookingsCollection); err == nil {
		t.Fatal("dropped a collection that is not a bucket")
	}
	if after, err := s.IntentBuckets(ctx); err != nil || len(after) != 2 || after[0].Name != buckets[1].Name {
		t.Fatalf("buckets after the drop %+v %v", after, err)
	}
	if show, err := s.ShowIntents(ctx, "s1"); err != nil || !slices.Equal(ids(show), []string{"a", "d", "e"}) {
		t.Fatalf("show s1's intents after the drop %v %v", ids(show), err)
	}
}

func TestIntentBucketWidthFor(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		time.Second: time.Second, time.Minute: time.Second, 5 * time.Minute: 5 * time.Second,
		10 * time.Minute: 10 * time.Second, 2 * time.Hour: 10 * time.Second, 90 * time.Second: time.Second,
	} {
		if got := IntentBucketWidthFor(ttl); got != want {
			t.Errorf("width for %v: %v, want %v", ttl, got, want)
		}
	}
}

func TestParseIntentBucket(t *testing.T) {
	for _, name := range []string{"booking_intents", "booking_intents_", "booking_intents_1_1", "booking_intents_2_1",
		"booking_intents_x_2", "booking_intents_1", "bookings", "booking_intents_1_2_3"} {
		if b, ok := parseIntentBucket(name); ok {
			t.Errorf("%q parsed as %+v", name, b)
		}
	}
	s := &Bookings{bucketWidth: DefaultIntentBucketWidth}
	at := time.Date(2026, 1, 1, 0, 0, 7, 0, time.UTC)
	if b, ok := parseIntentBucket(s.IntentBucketName(at)); !ok || !b.Start.Equal(at.Truncate(10*time.Second)) ||
		b.End.Sub(b.Start) != DefaultIntentBucketWidth {
		t.Fatalf("%q: %+v %v", s.IntentBucketName(at), b, ok)
	}
}
