package mongostore

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/time/rate"

	"github.com/cineflow/cineflow/pkg/devdb"
)

// BenchmarkSignInLookup: sign-in's find by email at 1,000 and 100,000 users, on the embedded
// database. The users are inserted as an earlier version left them (no user_emails), then
// Backfill indexes them (its time is reported). Then: a known email (the newest user, the
// last a scan would meet) and an unknown one past the scan rate; beside them, the find by
// email every sign-in made before user_emails (find-by-email-ms).
func BenchmarkSignInLookup(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			ctx := b.Context()
			s := New(devdb.TestDB(b))
			if err := s.EnsureIndexes(ctx); err != nil {
				b.Fatal(err)
			}
			docs := make([]any, 0, 1000)
			for i := range n {
				docs = append(docs, userDoc{ID: bson.NewObjectID(), Name: "U", Email: fmt.Sprintf("user%d@example.com", i),
					PasswordHash: "$2a$10$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012", Role: "CLIENT", Status: "APPROVED"})
				if len(docs) == cap(docs) || i == n-1 {
					if _, err := s.users.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
						b.Fatal(err)
					}
					docs = docs[:0]
				}
			}
			began := time.Now()
			indexed, err := s.Backfill(ctx)
			if err != nil || indexed != n {
				b.Fatalf("backfill: %d of %d, %v", indexed, n, err)
			}
			backfill := time.Since(began)
			s.scans = rate.NewLimiter(0, 0)
			last := fmt.Sprintf("user%d@example.com", n-1)
			// The find by email of earlier versions: seconds a call at 100,000, so timed 3 times.
			began = time.Now()
			for range 3 {
				if u, err := s.findOne(ctx, bson.D{{Key: "email", Value: last}}); err != nil || u.Email != last {
					b.Fatal(u, err)
				}
			}
			findByEmail := time.Since(began) / 3
			b.Run("known", func(b *testing.B) {
				for b.Loop() {
					if u, err := s.GetByEmail(ctx, last); err != nil || u.Email != last {
						b.Fatal(u, err)
					}
				}
				b.ReportMetric(backfill.Seconds(), "backfill-s")
				b.ReportMetric(float64(findByEmail.Microseconds())/1000, "find-by-email-ms")
			})
			b.Run("unknown", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.GetByEmail(ctx, "nobody@example.com"); err == nil {
						b.Fatal("found nobody")
					}
				}
			})
		})
	}
}
