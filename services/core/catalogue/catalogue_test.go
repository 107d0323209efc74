package catalogue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

type fakeOutbox struct {
	mu     sync.Mutex
	emails []core.Email
	fail   error
}

func (o *fakeOutbox) Enqueue(_ context.Context, e core.Email) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	o.emails = append(o.emails, e)
	return nil
}

type tpKey struct{}

func newTestCatalogue(t *testing.T, opts catalogue.CatalogueOptions) (*catalogue.Catalogue, *mongostore.Catalogue) {
	t.Helper()
	stores := mongostore.NewCatalogue(devdb.TestDB(t))
	if err := stores.EnsureIndexes(t.Context()); err != nil {
		t.Fatal(err)
	}
	opts.TraceParent = func(ctx context.Context) string { s, _ := ctx.Value(tpKey{}).(string); return s }
	return catalogue.NewCatalogue(stores.Stores(), opts), stores
}

var (
	catAdmin  = &core.User{ID: "650000000000000000000001", Email: "root@example.com", Role: core.RoleAdmin, Status: core.StatusApproved}
	catClient = &core.User{ID: "650000000000000000000002", Name: "Ann", Email: "ann@example.com", Role: core.RoleClient, Status: core.StatusApproved}
	catOther  = &core.User{ID: "650000000000000000000003", Email: "bob@example.com", Role: core.RoleClient, Status: core.StatusApproved}
	catPend   = &core.User{ID: "650000000000000000000004", Email: "pen@example.com", Role: core.RoleClient, Status: core.StatusPending}
	catCust   = &core.User{ID: "650000000000000000000005", Email: "cus@example.com", Role: core.RoleCustomer, Status: core.StatusApproved}
)

func ptr[T any](v T) *T { return &v }

func theatrePatch(name string) core.TheatrePatch {
	return core.TheatrePatch{Name: ptr(name), City: ptr("Pune"), PinCode: ptr(411001), Address: ptr("1 Main St")}
}

func moviePatch(name string) core.MoviePatch {
	return core.MoviePatch{Name: ptr(name), Description: ptr("d"), Casts: &[]string{"A"}, TrailerURL: ptr("https://x.example/t"),
		ReleaseDate: ptr("2024-01-15"), Director: ptr("D")}
}

func TestCatalogueTheatreCreatedEmail(t *testing.T) {
	t.Parallel()
	ob := &fakeOutbox{}
	ctx := context.WithValue(t.Context(), tpKey{}, "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01")

	// no outbox: the theatre is created, no email
	c0, _ := newTestCatalogue(t, catalogue.CatalogueOptions{})
	if _, err := c0.CreateTheatre(ctx, catClient, theatrePatch("First")); err != nil {
		t.Fatal(err)
	}
	c, stores := newTestCatalogue(t, catalogue.CatalogueOptions{Outbox: ob})
	th, err := c.CreateTheatre(ctx, catClient, theatrePatch("Rex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ob.emails) != 1 {
		t.Fatalf("emails: %+v", ob.emails)
	}
	e := ob.emails[0]
	if e.Key != "theatre-created:"+th.ID || e.Kind != catalogue.EmailKindTheatreCreated || e.Ref != th.ID ||
		len(e.Recipients) != 1 || e.Recipients[0] != catClient.Email || !strings.Contains(e.TraceParent, "0123456789abcdef") ||
		!strings.Contains(e.Content, "Rex") || !strings.Contains(e.Content, "Pune") || !strings.Contains(e.Content, "1 Main St") || e.Subject == "" {
		t.Fatalf("email %+v", e)
	}
	if v, err := c.TheatreCreatedGuard(ctx, e.Kind, e.Ref); err != nil || v != core.GuardSend {
		t.Fatalf("guard of an existing theatre: %v %v", v, err)
	}

	// the outbox refuses: the theatre is undone, the error returned
	ob.fail = errs.E(errs.Unavailable, "outbox down")
	if _, err := c.CreateTheatre(ctx, catClient, theatrePatch("Lost")); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("create with the outbox down: %v", err)
	}
	ts, _, err := stores.Theatres.List(ctx, core.TheatreFilter{Name: "Lost", Page: core.Page{Limit: 10}})
	if err != nil || len(ts) != 0 {
		t.Fatalf("undone theatre still there: %+v %v", ts, err)
	}

	// a theatre that is not there: its email is dropped
	ob.fail = nil
	if v, _ := c.TheatreCreatedGuard(ctx, catalogue.EmailKindTheatreCreated, "650000000000000000000009"); v != core.GuardDrop {
		t.Fatalf("guard of a missing theatre: %v", v)
	}
}

func TestCatalogueAuthorizationRules(t *testing.T) {
	t.Parallel()
	c, _ := newTestCatalogue(t, catalogue.CatalogueOptions{})
	ctx := t.Context()
	for _, u := range []*core.User{nil, catPend, catCust} {
		if _, err := c.CreateMovie(ctx, u, moviePatch("X")); !errs.Is(err, errs.Forbidden) && !errs.Is(err, errs.Unauthorized) {
			t.Errorf("%v creates a movie: %v", u, err)
		}
		if _, err := c.CreateTheatre(ctx, u, theatrePatch("X")); !errs.Is(err, errs.Forbidden) && !errs.Is(err, errs.Unauthorized) {
			t.Errorf("%v creates a theatre: %v", u, err)
		}
	}
	th, err := c.CreateTheatre(ctx, catClient, theatrePatch("Rex"))
	if err != nil || th.Owner != catClient.ID {
		t.Fatal(err)
	}
	m, err := c.CreateMovie(ctx, catOther, moviePatch("Heat"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateTheatre(ctx, catOther, th.ID, core.TheatrePatch{City: ptr("Goa")}); !errs.Is(err, errs.Forbidden) {
		t.Errorf("other client changes the theatre: %v", err)
	}
	show := core.NewShow{TheatreID: th.ID, MovieID: m.ID, ShowPatch: core.ShowPatch{Timing: ptr("2030-01-01"), NoOfSeats: ptr(10), Price: ptr(1.5)}}
	if _, err := c.CreateShow(ctx, catOther, show); !errs.Is(err, errs.Forbidden) {
		t.Errorf("other client adds a show: %v", err)
	}
	sh, err := c.CreateShow(ctx, catClient, show)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateShow(ctx, catOther, sh.ID, core.ShowPatch{Price: ptr(2.0)}); !errs.Is(err, errs.Forbidden) {
		t.Errorf("other client changes the show: %v", err)
	}
	if _, err := c.UpdateShow(ctx, catAdmin, sh.ID, core.ShowPatch{Price: ptr(2.0)}); err != nil {
		t.Errorf("admin changes the show: %v", err)
	}
}

func TestCatalogueFindShowCache(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, stores := newTestCatalogue(t, catalogue.CatalogueOptions{Now: clock, ShowCacheTTL: time.Second})
	ctx := t.Context()
	th, _ := c.CreateTheatre(ctx, catAdmin, theatrePatch("Rex"))
	m, _ := c.CreateMovie(ctx, catAdmin, moviePatch("Heat"))
	sh, err := c.CreateShow(ctx, catAdmin, core.NewShow{TheatreID: th.ID, MovieID: m.ID,
		ShowPatch: core.ShowPatch{Timing: ptr("2030-01-01T10:00:00Z"), NoOfSeats: ptr(10), Price: ptr(100.0)}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.FindShow(ctx, th.ID, m.ID, sh.Timing); err != nil || got.Price != 100 {
		t.Fatalf("find: %+v %v", got, err)
	}
	// another replica changes the price straight in the store: served from memory until the TTL
	if _, err := stores.Shows.Update(ctx, sh.ID, core.ShowPatch{Price: ptr(200.0)}, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.FindShow(ctx, th.ID, m.ID, sh.Timing); got.Price != 100 {
		t.Fatalf("not cached: %+v", got)
	}
	mu.Lock()
	now = now.Add(1100 * time.Millisecond)
	mu.Unlock()
	if got, _ := c.FindShow(ctx, th.ID, m.ID, sh.Timing); got.Price != 200 {
		t.Fatalf("stale after the TTL: %+v", got)
	}
	// a change through this catalogue is seen at once
	if _, err := c.UpdateShow(ctx, catAdmin, sh.ID, core.ShowPatch{Price: ptr(300.0)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.FindShow(ctx, th.ID, m.ID, sh.Timing); got.Price != 300 {
		t.Fatalf("stale after a local change: %+v", got)
	}
	if _, err := c.FindShow(ctx, th.ID, m.ID, ""); !errs.Is(err, errs.Invalid) {
		t.Fatalf("empty timing: %v", err)
	}
	if _, err := c.FindShow(ctx, "x", m.ID, sh.Timing); !errs.Is(err, errs.Invalid) {
		t.Fatalf("bad theatre id: %v", err)
	}
}

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != errs.Invalid {
		t.Fatalf("want a validation error, got %v", err)
	}
	return e.Fields
}

func TestCatalogueRules(t *testing.T) {
	t.Parallel()
	p := moviePatch(" Heat ")
	if err := p.Validate(true); err != nil || *p.Name != "Heat" || *p.ReleaseStatus != core.ReleaseReleased || (*p.Language)[0] != "English" {
		t.Fatalf("defaults: %v %+v", err, p)
	}
	for _, tc := range []struct {
		field string
		edit  func(*core.MoviePatch)
	}{
		{"trailerUrl", func(p *core.MoviePatch) { p.TrailerURL = ptr("ftp://x.example") }},
		{"trailerUrl", func(p *core.MoviePatch) { p.TrailerURL = ptr("https://") }},
		{"releaseDate", func(p *core.MoviePatch) { p.ReleaseDate = ptr("15/01/2024") }},
		{"releaseStatus", func(p *core.MoviePatch) { p.ReleaseStatus = ptr("COMING_SOON") }},
		{"casts", func(p *core.MoviePatch) { p.Casts = &[]string{" "} }},
		{"name", func(p *core.MoviePatch) { p.Name = ptr("a\x00b") }},
		{"director", func(p *core.MoviePatch) { p.Director = ptr(strings.Repeat("d", 101)) }},
	} {
		p := moviePatch("X")
		tc.edit(&p)
		if f := fieldsOf(t, p.Validate(true)); f[tc.field] == "" {
			t.Errorf("%s: %v", tc.field, f)
		}
	}
	for _, ok := range []string{"2030-06-01T18:30:00Z", "2030-06-01T18:30:00.000+05:30", "2030-06-01"} {
		if _, good := core.ParseTiming(ok); !good {
			t.Errorf("timing %q refused", ok)
		}
	}
	for _, bad := range []string{"2030-06-01 18:30", "tomorrow", "2030-13-01", " 2030-06-01"} {
		if _, good := core.ParseTiming(bad); good {
			t.Errorf("timing %q accepted", bad)
		}
	}
	tp := core.TheatrePatch{PinCode: ptr(1000000)}
	if f := fieldsOf(t, tp.Validate(false)); f["pinCode"] == "" {
		t.Errorf("pinCode: %v", f)
	}
	for _, price := range []float64{0, 0.5, 10.25, 199.99} {
		s := core.ShowPatch{Price: ptr(price)}
		if err := s.Validate(); err != nil {
			t.Errorf("price %v: %v", price, err)
		}
	}
	for _, f := range []string{"2D", "3D", "IMAX", "4DX", "IMAX 3D", ""} {
		s := core.ShowPatch{Format: ptr(f)}
		if err := s.Validate(); err != nil {
			t.Errorf("format %q: %v", f, err)
		}
	}
	ns := core.NewShow{TheatreID: "650000000000000000000001", MovieID: "650000000000000000000001",
		ShowPatch: core.ShowPatch{Timing: ptr("2030-06-01"), NoOfSeats: ptr(5000), Price: ptr(0.0)}}
	if err := ns.Validate(); err != nil || *ns.SeatsPerRow != core.DefaultSeatsPerRow {
		t.Fatalf("new show: %v", err)
	}
}
