package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cineflow/cineflow/services/core"
)

// deletionRaceRounds is how many rounds each deletion race runs.
const deletionRaceRounds = 40

// showsOf lists the shows of a theatre or a movie (filter "theatreId" or "movieId").
func (s *service) showsOf(filter, id string) []core.Show {
	s.t.Helper()
	return data[[]core.Show](s.t, s.expect(s.do(req{method: "GET", path: base + "/shows?" + filter + "=" + id}), 200))
}

// exists reports whether GET path answers 200 (404: gone; anything else fails the test).
func (s *service) exists(path string) bool {
	s.t.Helper()
	r := s.do(req{method: "GET", path: path})
	switch r.status {
	case 200:
		return true
	case 404:
		return false
	}
	s.t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
	return false
}

// raceRound is one round of a deletion race: its theatre and movie, and what the racers were
// answered.
type raceRound struct {
	theatre, movie string
	deleted        int // the DELETE's status
	created        []core.Show
	statuses       []int
	extra          int // the status of the round's extra request, if any
}

const showsPerRound = 3

// runDeletionRace runs, round after round, one deletion (DELETE deletePath, through replica a)
// against showsPerRound creations of shows of the round's theatre and movie (POST /shows,
// through replica b) and the round's extra request, if any, all released at once.
func runDeletionRace(t *testing.T, a, b *service, admin string, deletePath func(theatre, movie string) string,
	extra func(theatre, movie string) func() int) []raceRound {
	t.Helper()
	rounds := make([]raceRound, deletionRaceRounds)
	for i := range rounds {
		r := &rounds[i]
		r.theatre = a.createTheatre(admin, fmt.Sprintf("Racing %d", i), "Pune", 411001).ID
		r.movie = a.createMovie(admin, fmt.Sprintf("Racing film %d", i)).ID
		var more func() int
		if extra != nil {
			more = extra(r.theatre, r.movie)
		}
		r.statuses = make([]int, showsPerRound)
		shows := make([]core.Show, showsPerRound)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			time.Sleep(time.Duration(i%4) * time.Millisecond) // some rounds give the creations a head start
			d := a.do(req{method: "DELETE", path: deletePath(r.theatre, r.movie), token: admin})
			r.deleted = d.status
		})
		for k := range showsPerRound {
			wg.Go(func() {
				<-start
				c := b.do(req{method: "POST", path: base + "/shows", token: admin, body: map[string]any{
					"theatreId": r.theatre, "movieId": r.movie, "timing": fmt.Sprintf("2030-07-%02dT20:00:00Z", k+1),
					"noOfSeats": 10, "price": 100}})
				r.statuses[k] = c.status
				if c.status == 201 {
					shows[k] = data[core.Show](t, c)
				}
			})
		}
		if more != nil {
			wg.Go(func() {
				<-start
				r.extra = more()
			})
		}
		close(start)
		wg.Wait()
		for k, st := range r.statuses {
			switch st {
			case 201:
				r.created = append(r.created, shows[k])
			case 404, 409:
			default:
				t.Fatalf("round %d: POST /shows answered %d", i, st)
			}
		}
		if r.deleted != 200 && r.deleted != 409 {
			t.Fatalf("round %d: DELETE answered %d", i, r.deleted)
		}
	}
	return rounds
}

// checkNoOrphans checks the invariant after each round: no show whose theatre or movie is gone
// (read through both replicas), every show answered 201 has its theatre and movie, and a
// deletion answered 200 left no show. An orphan must not be bookable: each round's booking of
// each timing answers 201 only while the show's theatre and movie exist. It returns the
// orphans and the orphans booked.
func checkNoOrphans(t *testing.T, a, b *service, rounds []raceRound) (orphans, booked int) {
	t.Helper()
	tok, _ := b.customer()
	for i, r := range rounds {
		theatre := a.exists(base + "/theatres/" + r.theatre)
		movie := a.exists(base + "/movies/" + r.movie)
		shows := b.showsOf("theatreId", r.theatre)
		for _, sh := range b.showsOf("movieId", r.movie) {
			if !slices.ContainsFunc(shows, func(x core.Show) bool { return x.ID == sh.ID }) {
				shows = append(shows, sh)
			}
		}
		if (!theatre || !movie) && len(shows) > 0 {
			orphans += len(shows)
			t.Errorf("round %d: %d show(s) left whose theatre (exists %v) or movie (exists %v) is gone (DELETE %d, POST /shows %v)",
				i, len(shows), theatre, movie, r.deleted, r.statuses)
		}
		if r.deleted == 200 && len(shows) > 0 {
			t.Errorf("round %d: the deletion answered 200 and left %d show(s)", i, len(shows))
		}
		for _, sh := range r.created {
			if !theatre || !movie {
				t.Errorf("round %d: show %s answered 201, yet its theatre (exists %v) or movie (exists %v) is gone", i, sh.ID, theatre, movie)
			}
			if !b.exists(base + "/shows/" + sh.ID) {
				t.Errorf("round %d: show %s answered 201 and is gone", i, sh.ID)
			}
		}
		for k := range showsPerRound {
			bk := b.do(req{method: "POST", path: base + "/bookings", token: tok, body: map[string]any{
				"theatreId": r.theatre, "movieId": r.movie, "timing": fmt.Sprintf("2030-07-%02dT20:00:00Z", k+1), "noOfSeats": 1}})
			switch {
			case bk.status == 201 && (!theatre || !movie):
				booked++
				t.Errorf("round %d: a show whose theatre or movie is gone was booked: %s", i, bk.raw)
			case bk.status == 201, bk.status == 404:
			default:
				t.Fatalf("round %d: booking answered %d %s", i, bk.status, bk.raw)
			}
			if bk.status == 201 { // give the seat back: the customer's open seats are bounded
				b.expect(b.do(req{method: "PATCH", path: base + "/bookings/" + id(t, bk), token: tok,
					body: map[string]string{"status": "CANCELLED"}}), 200)
			}
		}
	}
	return orphans, booked
}

// TestTheatreDeletionRacesShowCreation: DELETE /theatres/:id through one replica races three
// POST /shows of that theatre through the other, round after round. No round may leave a show
// whose theatre is gone, and such a show can never be booked.
func TestTheatreDeletionRacesShowCreation(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	admin := a.token(adminEmail, adminPassword)
	rounds := runDeletionRace(t, a, b, admin, func(theatre, _ string) string { return base + "/theatres/" + theatre }, nil)
	won, created := 0, 0
	for _, r := range rounds {
		if r.deleted == 200 {
			won++
		}
		created += len(r.created)
	}
	orphans, booked := checkNoOrphans(t, a, b, rounds)
	t.Logf("%d rounds: %d deletions won, %d shows created; %d orphan shows, %d of their bookings answered 201",
		len(rounds), won, created, orphans, booked)
	if won == 0 || created == 0 {
		t.Fatalf("one side never won (%d deletions, %d shows): the race tests nothing", won, created)
	}
}

// TestMovieDeletionRacesShowCreation: DELETE /movies/:id through one replica races three POST
// /shows of that movie through the other, and a PATCH /theatres/:id/movies adding the movie to
// a second theatre, round after round. No round may leave a show whose movie is gone, nor a
// theatre listing a deleted movie.
func TestMovieDeletionRacesShowCreation(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	admin := a.token(adminEmail, adminPassword)
	seconds := map[string]string{} // movie -> the second theatre of its round
	var mu sync.Mutex
	rounds := runDeletionRace(t, a, b, admin, func(_, movie string) string { return base + "/movies/" + movie },
		func(_, movie string) func() int {
			second := a.createTheatre(admin, "Second "+movie, "Pune", 411001).ID
			mu.Lock()
			seconds[movie] = second
			mu.Unlock()
			return func() int {
				return b.do(req{method: "PATCH", path: base + "/theatres/" + second + "/movies", token: admin,
					body: map[string]any{"movieIds": []string{movie}, "insert": true}}).status
			}
		})
	won, created, listed := 0, 0, 0
	for i, r := range rounds {
		if r.deleted == 200 {
			won++
		}
		created += len(r.created)
		if r.extra != 200 && r.extra != 404 && r.extra != 409 {
			t.Fatalf("round %d: PATCH /theatres/:id/movies answered %d", i, r.extra)
		}
		if a.exists(base + "/movies/" + r.movie) {
			continue
		}
		for _, th := range []string{r.theatre, seconds[r.movie]} {
			got := data[core.Theatre](t, b.expect(b.do(req{method: "GET", path: base + "/theatres/" + th}), 200))
			if slices.Contains(got.Movies, r.movie) {
				listed++
				t.Errorf("round %d: theatre %s lists the deleted movie (DELETE %d, POST /shows %v, PATCH %d)",
					i, th, r.deleted, r.statuses, r.extra)
			}
		}
	}
	orphans, booked := checkNoOrphans(t, a, b, rounds)
	t.Logf("%d rounds: %d deletions won, %d shows created; %d orphan shows, %d of their bookings answered 201, %d theatres list a deleted movie",
		len(rounds), won, created, orphans, booked, listed)
	if won == 0 || created == 0 {
		t.Fatalf("one side never won (%d deletions, %d shows): the race tests nothing", won, created)
	}
}
