package httpx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/cineflow/cineflow/pkg/httpx"
	"github.com/cineflow/cineflow/pkg/httpx/httpxtest"
)

// bodyServer serves POST /echo, which reads the body the way the services' handlers and
// wrappers do (c.Body(), where Fiber would inflate an encoded body) and answers its length.
type bodyServer struct {
	addr  string
	base  string
	calls atomic.Int64 // handler runs
}

func startBodyServer(t *testing.T, opts httpx.Options) *bodyServer {
	t.Helper()
	opts.Name = "test"
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := httpx.NewServer(opts)
	bs := &bodyServer{}
	s.App.Post("/echo", func(c *fiber.Ctx) error {
		bs.calls.Add(1)
		return httpx.OK(c, 200, fiber.Map{"bytes": len(c.Body())}, "read")
	})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background(), 0) })
	bs.addr = s.Addr()
	bs.base = "http://" + bs.addr
	return bs
}

// post sends body with a Content-Length (or chunked when chunked is set) and the headers; it
// returns the status, the envelope and whether the server closes the connection.
func (bs *bodyServer) post(t *testing.T, body []byte, chunked bool, header http.Header) (int, httpx.Envelope, bool) {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // no length: net/http sends it chunked
	}
	req, _ := http.NewRequest("POST", bs.base+"/echo", r)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %d bytes (chunked %v, %v): %v", len(body), chunked, header, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeEnvelope(t, resp.Body), resp.Close
}

func decodeEnvelope(t *testing.T, r io.Reader) httpx.Envelope {
	t.Helper()
	raw, _ := io.ReadAll(r)
	var env httpx.Envelope
	if err := json.Unmarshal(raw, &env); err != nil || env.Message == "" || env.Error == nil || env.Data == nil {
		t.Fatalf("not an envelope: %q (%v)", raw, err)
	}
	return env
}

// TestEncodedBodiesAre415: any Content-Encoding but identity, on any header line, is refused
// with a 415 envelope before the handler runs; identity and no encoding pass.
func TestEncodedBodiesAre415(t *testing.T) {
	t.Parallel()
	bs := startBodyServer(t, httpx.Options{})
	body := []byte(`{"name":"x"}`)
	for _, enc := range [][]string{{"gzip"}, {"deflate"}, {"br"}, {"zstd"}, {"compress"}, {"x-unknown"}, {"GZIP"},
		{"gzip, identity"}, {"identity, gzip"}, {"identity,br"}, {"identity", "gzip"}, {"gzip", "identity"}, {"", "deflate"}} {
		before := bs.calls.Load()
		status, env, closed := bs.post(t, body, false, http.Header{"Content-Encoding": enc})
		if status != 415 || env.Success || !strings.Contains(env.Message, "Content-Encoding") {
			t.Errorf("Content-Encoding %q: %d %+v, want a 415 envelope", enc, status, env)
		}
		if bs.calls.Load() != before {
			t.Errorf("Content-Encoding %q: the handler ran", enc)
		}
		if !closed {
			t.Errorf("Content-Encoding %q: the connection stays open with the body unread", enc)
		}
	}
	// Chunked, and without a body at all.
	if status, _, _ := bs.post(t, body, true, http.Header{"Content-Encoding": {"gzip"}}); status != 415 {
		t.Errorf("chunked gzip: %d", status)
	}
	if status, _, _ := bs.post(t, nil, false, http.Header{"Content-Encoding": {"gzip"}}); status != 415 {
		t.Errorf("empty gzip: %d", status)
	}
	for _, enc := range [][]string{nil, {""}, {"identity"}, {" Identity "}, {"identity", "identity"}} {
		status, env, _ := bs.post(t, body, false, http.Header{"Content-Encoding": enc})
		if status != 200 || !env.Success {
			t.Errorf("Content-Encoding %q: %d %+v", enc, status, env)
		}
	}
}

// TestBombsAreNeverInflated: gzip, deflate and br bodies that inflate to 1 GiB are answered
// 415 at once, and the process allocates next to nothing for them. Not parallel: the heap
// measure is the whole process's.
func TestBombsAreNeverInflated(t *testing.T) {
	bs := startBodyServer(t, httpx.Options{})
	for _, enc := range httpxtest.BombEncodings {
		bomb := httpxtest.Bomb(enc) // made before measuring
		var status int
		var took time.Duration
		mem := httpxtest.Measure(func() {
			start := time.Now()
			status, _, _ = bs.post(t, bomb, false, http.Header{"Content-Encoding": {enc}})
			took = time.Since(start)
		})
		t.Logf("%s bomb (%d bytes): %d in %v, %s", enc, len(bomb), status, took, mem)
		if status != 415 {
			t.Errorf("%s bomb: %d, want 415", enc, status)
		}
		if mem.Allocated > 16<<20 || mem.Grown > 16<<20 {
			t.Errorf("%s bomb: %s, want at most 16 MiB", enc, mem)
		}
		if took > 2*time.Second { // inflating 1 GiB alone takes longer; a refusal takes milliseconds
			t.Errorf("%s bomb: answered after %v", enc, took)
		}
	}
	if bs.calls.Load() != 0 {
		t.Error("a handler ran for a bomb")
	}
}

// TestOversizedBodiesAre413: bodies over the limit, announced or chunked, of 2 and 8 MiB,
// get a 413 envelope that a client writing its whole body before reading can read.
func TestOversizedBodiesAre413(t *testing.T) {
	t.Parallel()
	bs := startBodyServer(t, httpx.Options{}) // the default limit: 1 MiB
	for _, size := range []int{2 << 20, 8 << 20} {
		body := bytes.Repeat([]byte("x"), size)
		for _, chunked := range []bool{false, true} {
			status, env, closed := bs.post(t, body, chunked, nil)
			if status != 413 || env.Success || !strings.Contains(env.Message, "too large") || !closed {
				t.Errorf("%d bytes (chunked %v): %d %+v closed %v", size, chunked, status, env, closed)
			}
		}
		head := fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
		resp, raw, err := httpxtest.Raw(bs.addr, head, body, 30*time.Second)
		if err != nil {
			t.Fatalf("raw %d bytes: %v", size, err)
		}
		if resp.StatusCode != 413 {
			t.Errorf("raw %d bytes: %d %s", size, resp.StatusCode, raw)
		}
		decodeEnvelope(t, bytes.NewReader(raw))
		chunkedHead := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
		resp, raw, err = httpxtest.Raw(bs.addr, chunkedHead, chunk(body), 30*time.Second)
		if err != nil || resp.StatusCode != 413 {
			t.Fatalf("raw chunked %d bytes: %v %v %s", size, err, resp, raw)
		}
		decodeEnvelope(t, bytes.NewReader(raw))
		// A multipart form is not parsed (to memory or temporary files) before the limit.
		form := fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n", size)
		prefix, suffix := "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n", "\r\n--b--\r\n"
		formBody := append(append([]byte(prefix), body[:size-len(prefix)-len(suffix)]...), suffix...)
		resp, raw, err = httpxtest.Raw(bs.addr, form, formBody, 30*time.Second)
		if err != nil || resp.StatusCode != 413 {
			t.Fatalf("raw multipart %d bytes: %v %v %s", size, err, resp, raw)
		}
	}
	if bs.calls.Load() != 0 {
		t.Error("a handler ran for an oversized body")
	}
}

// chunk encodes body in 64 KiB chunks.
func chunk(body []byte) []byte {
	var b bytes.Buffer
	for len(body) > 0 {
		n := min(len(body), 64<<10)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// TestBodyAtTheLimit: a body of exactly the limit reaches the handler whole (announced or
// chunked, on a kept-alive connection); one byte more is 413.
func TestBodyAtTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 100 << 10
	bs := startBodyServer(t, httpx.Options{BodyLimit: limit})
	for _, chunked := range []bool{false, true} {
		for _, size := range []int{0, 1, 8 << 10, 8<<10 + 1, limit} {
			status, env, closed := bs.post(t, bytes.Repeat([]byte("y"), size), chunked, nil)
			if status != 200 || env.Data.(map[string]any)["bytes"] != float64(size) || closed {
				t.Errorf("%d bytes (chunked %v): %d %+v closed %v", size, chunked, status, env, closed)
			}
		}
		if status, _, _ := bs.post(t, bytes.Repeat([]byte("y"), limit+1), chunked, nil); status != 413 {
			t.Errorf("limit+1 bytes (chunked %v): %d", chunked, status)
		}
	}
	// Two requests on one connection: the body of the first is consumed whole.
	conn, err := net.Dial("tcp", bs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("z", 20000)
	if _, err := io.WriteString(conn, req+req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	for strings.Count(string(buf), `"bytes":20000`) < 2 {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		if err != nil {
			t.Fatalf("pipelined requests: %v after %q", err, buf)
		}
		buf = buf[:len(buf)+n]
	}
}

// TestDiscardIsBounded: after a refusal, the server reads and throws away at most
// DiscardLimit bytes, and for at most ReadTimeout, then closes: an endless upload cannot hold
// a connection.
func TestDiscardIsBounded(t *testing.T) {
	t.Parallel()
	bs := startBodyServer(t, httpx.Options{BodyLimit: 1 << 10, DiscardLimit: 1 << 20, ReadTimeout: time.Second})

	// An endless body: the server stops reading after about DiscardLimit, so the writes fail
	// once the socket buffers are full.
	conn, err := net.Dial("tcp", bs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(conn, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
	zeros := make([]byte, 64<<10)
	var sent int64
	for sent < 1<<30 {
		n, err := conn.Write(zeros)
		sent += int64(n)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server still reads after %d bytes", sent)
			}
			break
		}
	}
	t.Logf("writes failed after %.1f MiB", float64(sent)/(1<<20))
	if sent >= 32<<20 { // DiscardLimit, plus what the socket buffers hold
		t.Fatalf("the server read and discarded %d bytes", sent)
	}

	// A slow client that keeps sending a little: it reads the answer at once (the server
	// half-closes), and the server closes for good after ReadTimeout, long before the byte
	// bound, so the client's writes then fail. (fasthttp reads the first 8 KiB of a body
	// before the handlers run: the client sends that much at once.)
	conn2, err := net.Dial("tcp", bs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(conn2, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
	conn2.Write(zeros[:16<<10])
	start := time.Now()
	got, err := io.ReadAll(conn2) // the answer, then EOF: the server has half-closed
	if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 413") || !strings.Contains(string(got), "too large") {
		t.Fatalf("slow client got %q, %v", got, err)
	}
	var trickled int
	for {
		if _, err := conn2.Write(zeros[:1024]); err != nil {
			break
		}
		trickled += 1024
		if time.Since(start) > 30*time.Second {
			t.Fatal("the server still reads a slow client's body after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("slow client: cut off after %v and %d bytes", time.Since(start), trickled)
	if trickled >= 1<<20 {
		t.Errorf("the slow client was cut off by the byte bound (%d bytes), not by time", trickled)
	}
}
