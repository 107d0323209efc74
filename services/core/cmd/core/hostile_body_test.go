package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/httpx/httpxtest"
)

// postBody sends body as it is (no JSON marshalling) with the caller's token and headers, and
// checks that the answer is the envelope.
func (s *service) postBody(path, token string, body []byte, header map[string]string) response {
	s.t.Helper()
	hr, err := http.NewRequest("POST", s.base+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("x-access-token", token)
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := s.client.Do(hr)
	if err != nil {
		s.t.Fatalf("POST %s (%d bytes): %v", path, len(body), err)
	}
	return checkEnvelope(s.t, "POST "+path, resp)
}

// TestCompressedBombsAre415 is issue 10's decompression bomb: POST /bookings and /payments,
// signed in and with an Idempotency-Key (whose wrapper reads the body first), with gzip,
// deflate and br bodies that inflate to 1 GiB. Each is answered 415 at once, the process
// allocates next to nothing for it, and the key stays unclaimed. Not parallel: the heap
// measure is the whole process's.
func TestCompressedBombsAre415(t *testing.T) {
	s := startService(t, nil)
	f := s.newShow(10, 100)
	tok, _ := s.customer()
	for _, route := range []string{"/bookings", "/payments"} {
		for _, enc := range httpxtest.BombEncodings {
			bomb := httpxtest.Bomb(enc) // made before measuring
			key := fmt.Sprintf("bomb-%s-%s", strings.Trim(route, "/"), enc)
			var r response
			var took time.Duration
			mem := httpxtest.Measure(func() {
				start := time.Now()
				r = s.postBody(base+route, tok, bomb, map[string]string{"Content-Encoding": enc, "Idempotency-Key": key})
				took = time.Since(start)
			})
			t.Logf("POST %s, %s bomb of %d bytes: %d in %v, %s", route, enc, len(bomb), r.status, took, mem)
			if r.status != 415 || !strings.Contains(r.env.Message, "Content-Encoding") {
				t.Errorf("POST %s, %s bomb: %d %s, want 415", route, enc, r.status, r.raw)
			}
			if mem.Allocated > 16<<20 || mem.Grown > 16<<20 {
				t.Errorf("POST %s, %s bomb: %s; want at most 16 MiB", route, enc, mem)
			}
			if took > 2*time.Second { // inflating 1 GiB alone takes longer; a refusal takes milliseconds
				t.Errorf("POST %s, %s bomb: answered after %v", route, enc, took)
			}
		}
	}
	// The refusals came before the idempotency wrapper: the keys are still free, so a plain
	// request under the same key is a first request (not 422, key reused with another body).
	j, _ := json.Marshal(f.booking(1))
	bk := bookingOf(t, s.expect(s.postBody(base+"/bookings", tok, j, map[string]string{"Idempotency-Key": "bomb-bookings-gzip"}), 201))
	j, _ = json.Marshal(map[string]any{"bookingId": bk.ID, "amount": bk.TotalCost})
	s.expect(s.postBody(base+"/payments", tok, j, map[string]string{"Idempotency-Key": "bomb-payments-br"}), 200)
}

// TestOversizedBodiesAre413: 2 MiB and 8 MiB bodies (the limit is 1 MiB) get a 413 envelope
// that the client reads, whether it is Go's client or one that writes its whole request
// before reading.
func TestOversizedBodiesAre413(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	tok, _ := s.customer()
	addr := strings.TrimPrefix(s.base, "http://")
	for _, size := range []int{2 << 20, 8 << 20} {
		body := []byte(`{"name":"x","email":"x@example.com","password":"` + strings.Repeat("a", size) + `"}`)
		for _, path := range []string{"/auth/signup", "/bookings"} {
			r := s.postBody(base+path, tok, body, map[string]string{"Idempotency-Key": fmt.Sprintf("big-%d", size)})
			if r.status != 413 || !strings.Contains(r.env.Message, "too large") {
				t.Errorf("POST %s, %d bytes: %d %s", path, len(body), r.status, r.raw)
			}
			head := fmt.Sprintf("POST %s%s HTTP/1.1\r\nHost: x\r\nx-access-token: %s\r\nContent-Type: application/json\r\n"+
				"Content-Length: %d\r\n\r\n", base, path, tok, len(body))
			resp, raw, err := httpxtest.Raw(addr, head, body, 60*time.Second)
			if err != nil {
				t.Fatalf("raw POST %s, %d bytes: %v", path, len(body), err)
			}
			resp.Body = io.NopCloser(bytes.NewReader(raw))
			if r := checkEnvelope(t, "raw POST "+path, resp); r.status != 413 || !strings.Contains(r.env.Message, "too large") {
				t.Errorf("raw POST %s, %d bytes: %d %s", path, len(body), r.status, r.raw)
			}
		}
	}
}
