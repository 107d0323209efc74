package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/httpx/httpxtest"
)

// TestCompressedBombsAre415 is issue 10's decompression bomb on the notification service:
// POST / with the token and an Idempotency-Key, and gzip, deflate and br bodies that inflate
// to 1 GiB. Each is answered 415 at once, the process allocates next to nothing for it, and
// no ticket is stored. Not parallel: the heap measure is the whole process's.
func TestCompressedBombsAre415(t *testing.T) {
	s := startService(t, nil)
	for _, enc := range httpxtest.BombEncodings {
		bomb := httpxtest.Bomb(enc) // made before measuring
		var r response
		var took time.Duration
		mem := httpxtest.Measure(func() {
			start := time.Now()
			r = s.do(req{method: "POST", path: base, body: bomb,
				header: map[string]string{"Content-Encoding": enc, "Idempotency-Key": "bomb-" + enc}})
			took = time.Since(start)
		})
		t.Logf("%s bomb of %d bytes: %d in %v, %s", enc, len(bomb), r.status, took, mem)
		if r.status != 415 || !strings.Contains(r.errorText(), "Content-Encoding") {
			t.Errorf("%s bomb: %d %s, want 415", enc, r.status, r.raw)
		}
		if mem.Allocated > 16<<20 || mem.Grown > 16<<20 {
			t.Errorf("%s bomb: %s; want at most 16 MiB", enc, mem)
		}
		if took > 2*time.Second { // inflating 1 GiB alone takes longer; a refusal takes milliseconds
			t.Errorf("%s bomb: answered after %v", enc, took)
		}
	}
	if n := s.count(bson.M{}); n != 0 {
		t.Errorf("%d tickets stored from bombs", n)
	}
}

// TestOversizedBodiesAre413: 2 MiB and 8 MiB bodies (the limit is 1 MiB) get a 413 envelope
// that the client reads, whether it is Go's client or one that writes its whole request
// before reading (today's answer was a connection reset).
func TestOversizedBodiesAre413(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	addr := strings.TrimPrefix(s.base, "http://")
	for _, size := range []int{2 << 20, 8 << 20} {
		body := []byte(fmt.Sprintf(`{"subject":"s","recepientEmails":["a@example.com"],"content":"%s"}`, strings.Repeat("x", size)))
		r := s.do(req{method: "POST", path: base, body: body})
		if r.status != 413 || !strings.Contains(r.errorText(), "too large") {
			t.Errorf("POST %d bytes: %d %s", len(body), r.status, r.raw)
		}
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\n\r\n", base, s.token, len(body))
		resp, raw, err := httpxtest.Raw(addr, head, body, 60*time.Second)
		if err != nil {
			t.Fatalf("raw POST %d bytes: %v", len(body), err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		if r := checkEnvelope(t, "raw POST", resp); r.status != 413 || !strings.Contains(r.errorText(), "too large") {
			t.Errorf("raw POST %d bytes: %d %s", len(body), r.status, r.raw)
		}
	}
	if n := s.count(bson.M{}); n != 0 {
		t.Errorf("%d tickets stored", n)
	}
}
