package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestCatalogueListsPageByLink: the catalogue's lists page as every list does: a Link
// rel="next" while more items follow (keeping the filters and the limit), none on the last
// page, and a client that follows it sees every item once.
func TestCatalogueListsPageByLink(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	admin := s.token(adminEmail, adminPassword)
	const n = 7
	var theatres []string
	for i := range n {
		s.expect(s.do(req{method: "POST", path: base + "/movies", token: admin, body: map[string]any{
			"name": fmt.Sprintf("Paged %d", i), "description": "A film", "casts": []string{"A"},
			"trailerUrl": "https://example.com/t", "language": []string{"English"}, "releaseDate": "2024-01-15",
			"director": "D", "releaseStatus": "RELEASED"}}), 201)
		th := s.expect(s.do(req{method: "POST", path: base + "/theatres", token: admin, body: map[string]any{
			"name": fmt.Sprintf("Paged theatre %d", i), "description": "A cinema", "city": "Nashik", "pinCode": 422001,
			"address": "1 Main Road"}}), 201)
		theatres = append(theatres, id(t, th))
	}
	s.expect(s.do(req{method: "POST", path: base + "/theatres", token: admin, body: map[string]any{
		"name": "Elsewhere", "description": "A cinema", "city": "Pune", "pinCode": 411001, "address": "2 Main Road"}}), 201)

	for _, c := range []struct {
		path string
		want int
	}{
		{base + "/movies?limit=3", n},
		{base + "/theatres?city=Nashik&limit=2", n}, // the filter is kept on every page
		{base + "/theatres?city=Nashik&limit=7", n}, // exactly one page: no Link
		{base + "/theatres?city=Nashik&limit=100", n},
	} {
		var ids []string
		paged := follow(t, s, "", c.path, func(it struct {
			ID string `json:"_id"`
		}) string {
			return it.ID
		})
		for _, p := range paged {
			ids = append(ids, p...)
		}
		pages := len(paged)
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s: %s seen twice", c.path, id)
			}
			seen[id] = true
		}
		limit := 0
		fmt.Sscanf(c.path[strings.LastIndex(c.path, "limit=")+6:], "%d", &limit)
		wantPages := (c.want + limit - 1) / limit
		if len(ids) != c.want || pages != wantPages {
			t.Errorf("%s: %d items in %d pages, want %d in %d", c.path, len(ids), pages, c.want, wantPages)
		}
		if strings.Contains(c.path, "city=Nashik") {
			for _, th := range theatres {
				if !seen[th] {
					t.Errorf("%s: theatre %s missing", c.path, th)
				}
			}
		}
	}
}
