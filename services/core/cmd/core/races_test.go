package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
	"github.com/cineflow/cineflow/services/core/mongostore"
)

// twoReplicas starts two core instances on one database, response caches off (so a read shows
// the database, not a replica's memory), and wrong-password backoff short (a reset that lost
// its race to another reset is a wrong old password, and the rounds follow at once).
func twoReplicas(t *testing.T) (a, b *service) {
	t.Helper()
	a = startService(t, func(c *Config) {
		c.CacheTTL, c.SigninBackoffBase, c.SigninBackoffMax = -1, time.Millisecond, time.Millisecond
	})
	b = startService(t, func(c *Config) {
		c.DBURL, c.CacheTTL = a.cfg.DBURL, -1
		c.SigninBackoffBase, c.SigninBackoffMax = time.Millisecond, time.Millisecond
		c.AdminEmail, c.AdminPassword = "", ""
	})
	return a, b
}

func sessionOf(t *testing.T, r response) accounts.Session {
	t.Helper()
	var s accounts.Session
	if err := json.Unmarshal(r.env.Data, &s); err != nil || s.Token == "" {
		t.Fatalf("no session in %s", r.raw)
	}
	return s
}

// TestUserChangesNeverLost: a user's password changes race an admin's role and status changes,
// through two replicas, round after round. Every change answered 200 must be in force at the
// end of its round (the password of the acknowledged reset signs in; the role and status are
// those of an acknowledged admin change), a refused one (409) must not be, and nothing else is
// answered.
func TestUserChangesNeverLost(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	svc := []*service{a, b}
	admin := a.token(adminEmail, adminPassword)
	const email = "racer@example.com"
	u := a.expect(a.signUp("Racer", email, "password-0", core.RoleClient), 201).user()
	type state struct {
		role   core.Role
		status core.Status
	}
	var combos []state
	for _, r := range []core.Role{core.RoleCustomer, core.RoleClient, core.RoleAdmin} {
		for _, s := range []core.Status{core.StatusApproved, core.StatusPending, core.StatusRejected} {
			combos = append(combos, state{r, s})
		}
	}
	cur, pw := state{u.Role, u.Status}, "password-0"
	const rounds, resets, approvals = 8, 4, 4
	lost := 0
	for round := range rounds {
		tok := a.token(email, pw)
		// the admin changes of this round: distinct, none equal to the state now
		var sets []state
		for k := range combos {
			if c := combos[(k+round)%len(combos)]; c != cur && len(sets) < approvals {
				sets = append(sets, c)
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		resetStatus := make([]int, resets)
		setStatus := make([]int, len(sets))
		for i := range resets {
			s := svc[i%2]
			wg.Go(func() {
				<-start
				r := s.do(req{method: "PATCH", path: base + "/auth/reset", token: tok,
					body: map[string]string{"oldPassword": pw, "newPassword": fmt.Sprintf("password-%d-%d", round, i)}})
				resetStatus[i] = r.status
			})
		}
		for j, set := range sets {
			s := svc[(j+1)%2]
			wg.Go(func() {
				<-start
				r := s.do(req{method: "PATCH", path: base + "/user/" + u.ID, token: admin,
					body: map[string]any{"userRole": set.role, "userStatus": set.status}})
				setStatus[j] = r.status
			})
		}
		close(start)
		wg.Wait()

		newPw := ""
		for i, st := range resetStatus {
			switch st {
			case 200:
				if newPw != "" {
					t.Errorf("round %d: two resets from one old password acknowledged: one was lost", round)
					lost++
				}
				newPw = fmt.Sprintf("password-%d-%d", round, i)
			case 409, 400, 401, 429: // refused: another reset won (400: before this one read the user; 401:
				// another reset or an admin change ended the token's session before this one was
				// authenticated; 429: another reset of this user was in flight, which the
				// password-change limit counts as a guess until it ends)
			default:
				t.Fatalf("round %d: reset answered %d", round, st)
			}
		}
		var acked []state
		for j, st := range setStatus {
			switch st {
			case 200:
				acked = append(acked, sets[j])
			case 409:
			default:
				t.Fatalf("round %d: user change answered %d", round, st)
			}
		}
		want := pw
		if newPw != "" {
			want = newPw
		}
		r := b.signIn(email, want)
		if r.status != 200 {
			t.Errorf("round %d: the acknowledged password %q does not sign in (%d): the reset was lost", round, want, r.status)
			lost++
			// carry on from whichever password is in force
			for _, p := range append([]string{pw}, func() (ps []string) {
				for i := range resets {
					ps = append(ps, fmt.Sprintf("password-%d-%d", round, i))
				}
				return ps
			}()...) {
				if r = b.signIn(email, p); r.status == 200 {
					want = p
					break
				}
			}
			if r.status != 200 {
				t.Fatalf("round %d: no password signs in", round)
			}
		}
		if want != pw {
			if r := a.signIn(email, pw); r.status != 401 {
				t.Errorf("round %d: the old password still signs in (%d)", round, r.status)
			}
		}
		sess := sessionOf(t, r)
		got := state{sess.Role, sess.Status}
		if len(acked) > 0 && !slices.Contains(acked, got) {
			t.Errorf("round %d: role/status %v is none of the acknowledged changes %v: one was lost", round, got, acked)
			lost++
		}
		if len(acked) == 0 && got != cur {
			t.Errorf("round %d: no change acknowledged, yet role/status went from %v to %v", round, cur, got)
		}
		t.Logf("round %d: resets %v, admin changes %v -> %v", round, resetStatus, setStatus, got)
		cur, pw = got, want
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged changes lost in %d rounds", lost, rounds)
	}
}

// TestTheatreMoviesNeverLost: 20 shows of 20 different movies created at once in one theatre,
// through two replicas, leave all 20 movies in the theatre's list (GET /theatres/:id, its
// /movies, and the ?movieId= filter); then concurrent PATCHes adding and removing movies all
// take effect or answer 409.
func TestTheatreMoviesNeverLost(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	svc := []*service{a, b}
	admin := a.token(adminEmail, adminPassword)
	th := a.createTheatre(admin, "Multiplex", "Pune", 411001)
	const n = 20
	movies := make([]string, 2*n)
	for i := range movies {
		movies[i] = a.createMovie(admin, fmt.Sprintf("Film %d", i)).ID
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	status := make([]int, n)
	for i := range n {
		s := svc[i%2]
		wg.Go(func() {
			<-start
			status[i] = s.do(req{method: "POST", path: base + "/shows", token: admin, body: map[string]any{
				"theatreId": th.ID, "movieId": movies[i], "timing": "2030-01-01T20:00:00Z", "noOfSeats": 10, "price": 100}}).status
		})
	}
	close(start)
	wg.Wait()
	for i, st := range status {
		if st != 201 {
			t.Errorf("show %d: %d", i, st)
		}
	}
	want := map[string]bool{}
	for _, m := range movies[:n] {
		want[m] = true
	}
	checkTheatreMovies(t, svc, th.ID, movies, want)

	// Concurrent PATCHes: remove each of the first 10 movies, add each of the 20 others, one
	// movie per request, half through each replica.
	var mu sync.Mutex
	var ok, refused int
	start = make(chan struct{})
	k := 0
	for i := range n / 2 {
		for _, op := range []struct {
			movie  string
			insert bool
		}{{movies[i], false}, {movies[n+i], true}, {movies[n+n/2+i], true}} {
			s := svc[k%2]
			k++
			wg.Go(func() {
				<-start
				r := s.do(req{method: "PATCH", path: base + "/theatres/" + th.ID + "/movies", token: admin,
					body: map[string]any{"movieIds": []string{op.movie}, "insert": op.insert}})
				switch r.status {
				case 200:
					mu.Lock()
					want[op.movie] = op.insert
					ok++
					mu.Unlock()
				case 409:
					mu.Lock()
					refused++
					mu.Unlock()
				default:
					t.Errorf("PATCH movies: %d %s", r.status, r.raw)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	t.Logf("%d PATCHes took effect, %d answered 409", ok, refused)
	if ok == 0 {
		t.Fatal("no PATCH took effect")
	}
	checkTheatreMovies(t, svc, th.ID, movies, want)
}

// checkTheatreMovies checks, through every replica, that the theatre lists exactly the movies
// marked true in want, in GET /theatres/:id, /theatres/:id/movies and GET /theatres?movieId=.
func checkTheatreMovies(t *testing.T, svc []*service, theatreID string, all []string, want map[string]bool) {
	t.Helper()
	var wantIDs []string
	for _, m := range all {
		if want[m] {
			wantIDs = append(wantIDs, m)
		}
	}
	slices.Sort(wantIDs)
	for k, s := range svc {
		th := data[core.Theatre](t, s.expect(s.do(req{method: "GET", path: base + "/theatres/" + theatreID}), 200))
		got := slices.Clone(th.Movies)
		slices.Sort(got)
		if !slices.Equal(got, wantIDs) {
			var missing, extra []string
			for _, m := range wantIDs {
				if !slices.Contains(got, m) {
					missing = append(missing, m)
				}
			}
			for _, m := range got {
				if !slices.Contains(wantIDs, m) {
					extra = append(extra, m)
				}
			}
			t.Fatalf("replica %d: theatre lists %d movies, want %d; missing %v, extra %v", k, len(got), len(wantIDs), missing, extra)
		}
		ms := data[[]core.Movie](t, s.expect(s.do(req{method: "GET", path: base + "/theatres/" + theatreID + "/movies"}), 200))
		if len(ms) != len(wantIDs) {
			t.Fatalf("replica %d: /theatres/:id/movies has %d movies, want %d", k, len(ms), len(wantIDs))
		}
	}
	for i, m := range all {
		s := svc[i%2]
		ts := data[[]core.Theatre](t, s.expect(s.do(req{method: "GET", path: base + "/theatres?movieId=" + m}), 200))
		found := slices.ContainsFunc(ts, func(x core.Theatre) bool { return x.ID == theatreID })
		if found != want[m] {
			t.Errorf("GET /theatres?movieId=%s lists the theatre: %v, want %v", m, found, want[m])
		}
		runs := s.expect(s.do(req{method: "GET", path: base + "/theatres/" + theatreID + "/movies/" + m}), 200)
		if string(runs.env.Data) != fmt.Sprint(want[m]) {
			t.Errorf("GET /theatres/:id/movies/%s: %s, want %v", m, runs.env.Data, want[m])
		}
	}
}

// TestIdempotencyTakeoverOverHTTP: a booking request whose process died left its
// Idempotency-Key claimed (a claim from two minutes ago, no response). Six retries with the
// key through two replicas: exactly one books, every other one is told the request is in
// progress or gets its response, and only its seats are held.
func TestIdempotencyTakeoverOverHTTP(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	f := a.newShow(10, 100)
	tok, u := a.customer()
	body, err := json.Marshal(f.booking(2))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	const key = "retry-after-a-crash"
	dead := mongostore.NewIdempotencyWith(a.m.DB, mongostore.IdempotencyOptions{Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }})
	if r, _, err := dead.Begin(t.Context(), u.ID+"|bookings|"+key, hex.EncodeToString(sum[:])); err != nil || r != nil {
		t.Fatalf("the dead request's claim: %v %v", err, r)
	}
	const n = 6
	res := make([]response, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		s := []*service{a, b}[i%2]
		wg.Go(func() {
			<-start
			res[i] = s.do(req{method: "POST", path: base + "/bookings", token: tok, body: string(body), header: map[string]string{"Idempotency-Key": key}})
		})
	}
	close(start)
	wg.Wait()
	ran, busy, replayed := 0, 0, 0
	var booked string
	for _, r := range res {
		switch {
		case r.status == 201 && r.header.Get("Idempotent-Replayed") == "":
			ran++
			booked = id(t, r)
		case r.status == 409:
			busy++
		case r.status != 201:
			t.Fatalf("retry: %d %s", r.status, r.raw)
		}
	}
	for _, r := range res {
		if r.status == 201 && r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
			if id(t, r) != booked {
				t.Fatalf("replayed another booking: %s", r.raw)
			}
		}
	}
	if ran != 1 {
		t.Fatalf("%d retries booked, %d in progress, %d replayed; want exactly one booking", ran, busy, replayed)
	}
	if m := seatMap(t, a.expect(a.do(req{method: "GET", path: base + "/shows/" + f.showID + "/seats"}), 200)); len(m.Held) != 2 {
		t.Fatalf("%d seats held; want the 2 of one booking", len(m.Held))
	}
	t.Logf("1 retry booked, %d were told it is in progress, %d got its response", busy, replayed)
}

// TestIdempotencyCleanupRunsInCore: on the embedded database (no TTL indexes) the core's main
// starts the periodic clean-up: records older than the retention go, younger ones stay, and
// Close stops it.
func TestIdempotencyCleanupRunsInCore(t *testing.T) {
	t.Parallel()
	if os.Getenv("TEST_MONGODB_URI") != "" {
		t.Skip("MongoDB expires the records by TTL index")
	}
	s := startService(t, func(c *Config) {
		c.IdempotencyConfig = IdempotencyConfig{Lease: time.Second, Retention: time.Hour, CleanupInterval: 50 * time.Millisecond}
	})
	ctx := t.Context()
	old := mongostore.NewIdempotencyWith(s.m.DB, mongostore.IdempotencyOptions{Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	young := mongostore.NewIdempotency(s.m.DB)
	for i := range 30 {
		_, c, err := old.Begin(ctx, fmt.Sprintf("old-%d", i), "fp")
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Finish(ctx, c, "fp", core.StoredResponse{Status: 201, Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	_, c, err := young.Begin(ctx, "young", "fp")
	if err != nil {
		t.Fatal(err)
	}
	if err := young.Finish(ctx, c, "fp", core.StoredResponse{Status: 201, Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	count := func(coll string) int64 {
		n, err := s.m.DB.Collection(coll).CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(mongostore.IdempotencyKeysCollection)+count(mongostore.IdempotencyResultsCollection) > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("old records still there after 30 s: %d keys, %d responses", count(mongostore.IdempotencyKeysCollection),
				count(mongostore.IdempotencyResultsCollection))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, _, err := young.Begin(ctx, "young", "fp"); err != nil || r == nil {
		t.Fatalf("the young key lost its response: %v", err)
	}
	if !strings.Contains(s.logs.String(), "removing old ones periodically") {
		t.Errorf("no word of the clean-up in the logs:\n%s", grepLines(s.logs.String(), "idempotency"))
	}
}

func TestIdempotencyConfigValidate(t *testing.T) {
	t.Parallel()
	for c, ok := range map[IdempotencyConfig]bool{
		{}: true, {Lease: time.Minute, Retention: 24 * time.Hour, CleanupInterval: time.Minute}: true,
		{Lease: 500 * time.Millisecond}: false, {Lease: -time.Second}: false,
		{Retention: 30 * time.Second}: false, {Lease: time.Hour, Retention: time.Hour}: false,
		{CleanupInterval: time.Millisecond}: false,
	} {
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
	cfg := testConfig(t)
	cfg.IdempotencyConfig.Lease = time.Millisecond
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "IDEMPOTENCY_LEASE") {
		t.Errorf("Config.Validate: %v", err)
	}
}
