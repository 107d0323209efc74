package mongostore_test

import (
	"testing"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/accounts/accountstest"
	"github.com/cineflow/cineflow/services/core/booking"
	"github.com/cineflow/cineflow/services/core/booking/bookingtest"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/catalogue/cataloguetest"
	"github.com/cineflow/cineflow/services/core/mongostore"
	"github.com/cineflow/cineflow/services/core/outbox"
	"github.com/cineflow/cineflow/services/core/outbox/outboxtest"
)

// The conformance suites of the core's store contracts, run against the MongoDB stores on a
// database of each subtest's own: the embedded database, or the MongoDB of TEST_MONGODB_URI.

func TestUserStoreConformance(t *testing.T) {
	t.Parallel()
	accountstest.RunUserStore(t, func(t *testing.T) accounts.UserStore {
		s := mongostore.New(devdb.TestDB(t))
		if err := s.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Backfill(t.Context()); err != nil { // as the service does at start
			t.Fatal(err)
		}
		return s
	})
}

// newCatalogue returns the catalogue stores on a database of the test's own.
func newCatalogue(t *testing.T) *mongostore.Catalogue {
	t.Helper()
	s := mongostore.NewCatalogue(devdb.TestDB(t))
	if err := s.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMovieStoreConformance(t *testing.T) {
	t.Parallel()
	cataloguetest.RunMovieStore(t, func(t *testing.T) catalogue.MovieStore { return newCatalogue(t).Movies })
}

func TestTheatreStoreConformance(t *testing.T) {
	t.Parallel()
	cataloguetest.RunTheatreStore(t, func(t *testing.T) catalogue.TheatreStore { return newCatalogue(t).Theatres })
}

func TestShowStoreConformance(t *testing.T) {
	t.Parallel()
	cataloguetest.RunShowStore(t, func(t *testing.T) catalogue.ShowStore { return newCatalogue(t).Shows })
}

func TestDeletionStoreConformance(t *testing.T) {
	t.Parallel()
	cataloguetest.RunDeletionStore(t, func(t *testing.T) catalogue.DeletionStore { return newCatalogue(t).Deletions })
}

func TestBookingStoreConformance(t *testing.T) {
	t.Parallel()
	bookingtest.RunBookingStore(t, func(t *testing.T) booking.BookingStore {
		s := mongostore.NewBookings(devdb.TestDB(t))
		if err := s.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.BackfillLists(t.Context()); err != nil { // as the service does at start
			t.Fatal(err)
		}
		return s
	})
}

// TestBookingStoreConformanceBeforeListsBackfill: until the lists' backfill has run (a
// rolling upgrade from a version without the lists), the pages come from the old query; the
// contract is the same.
func TestBookingStoreConformanceBeforeListsBackfill(t *testing.T) {
	t.Parallel()
	bookingtest.RunBookingStore(t, func(t *testing.T) booking.BookingStore {
		s := mongostore.NewBookings(devdb.TestDB(t))
		if err := s.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestLapseStoreConformance(t *testing.T) {
	t.Parallel()
	bookingtest.RunLapseStore(t, func(t *testing.T) booking.LapseStore { return mongostore.NewLapses(devdb.TestDB(t)) })
}

func TestOutboxStoreConformance(t *testing.T) {
	t.Parallel()
	outboxtest.RunOutboxStore(t, func(t *testing.T) outbox.OutboxStore {
		s := mongostore.NewOutbox(devdb.TestDB(t))
		if err := s.EnsureIndexes(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}
