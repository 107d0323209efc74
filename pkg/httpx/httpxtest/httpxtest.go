// Package httpxtest holds what the services' tests share to prove the body rules of
// pkg/httpx over real HTTP: compressed bombs, a client that writes its whole request before
// reading, and a measure of the heap a piece of work costs.
package httpxtest

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
)

// BombSize is the inflated size of every Bomb: 1 GiB of zeros.
const BombSize = 1 << 30

// BombEncodings are the Content-Encodings Bomb makes (what Fiber would inflate).
var BombEncodings = []string{"gzip", "deflate", "br"}

var (
	bombMu sync.Mutex
	bombs  = map[string][]byte{}
)

// Bomb returns BombSize zero bytes compressed with encoding ("gzip", "deflate" as HTTP
// means it: zlib, or "br"), made once per process. The gzip and deflate bombs hold about
// 1,044,000 bytes, under the default 1 MiB body limit; the br bomb under 1 KiB.
func Bomb(encoding string) []byte {
	bombMu.Lock()
	defer bombMu.Unlock()
	if b, ok := bombs[encoding]; ok {
		return b
	}
	var b []byte
	switch encoding {
	case "gzip", "deflate":
		raw := zeroDeflate()
		if encoding == "gzip" {
			crc := zeroCRC32()
			b = append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff}, raw...) // RFC 1952, no name, unknown OS
			b = binary.LittleEndian.AppendUint32(b, crc)
			b = binary.LittleEndian.AppendUint32(b, uint32(BombSize&0xffffffff))
		} else {
			b = append([]byte{0x78, 0xda}, raw...)                             // RFC 1950: deflate, 32 KiB window, best compression
			b = binary.BigEndian.AppendUint32(b, uint32(BombSize%65521)<<16|1) // Adler-32 of zeros
		}
	case "br":
		var buf bytes.Buffer
		w := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: 4, LGWin: 24})
		if _, err := io.Copy(w, io.LimitReader(zeroReader{}, BombSize)); err != nil {
			panic(err)
		}
		if err := w.Close(); err != nil {
			panic(err)
		}
		b = buf.Bytes()
	default:
		panic("httpxtest.Bomb: unknown encoding " + encoding)
	}
	bombs[encoding] = b
	return b
}

// zeroDeflate is a raw deflate stream of BombSize zeros, made without compressing them all:
// once the compressor is warm, every 16 MiB of zeros followed by a sync flush compresses to
// the same bytes, so the stream is the first segment, then copies of the second.
func zeroDeflate() []byte {
	const seg = 16 << 20
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zero := make([]byte, seg)
	var segs [][]byte
	for range 3 {
		fw.Write(zero)
		fw.Flush()
		segs = append(segs, bytes.Clone(buf.Bytes()))
		buf.Reset()
	}
	if !bytes.Equal(segs[1], segs[2]) {
		panic("httpxtest: the deflate segments of zeros differ; cannot build the bomb by repetition")
	}
	fw.Close() // after a flush: an empty final block
	out := append([]byte{}, segs[0]...)
	for range BombSize/seg - 1 {
		out = append(out, segs[1]...)
	}
	return append(out, buf.Bytes()...)
}

func zeroCRC32() uint32 {
	zero := make([]byte, 16<<20)
	var crc uint32
	for range BombSize / len(zero) {
		crc = crc32.Update(crc, crc32.IEEETable, zero)
	}
	return crc
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Raw sends a whole HTTP/1.1 request over a new TCP connection to addr (host:port) the way
// the simplest client does: it writes head (the request line and headers, ending with a
// blank line) and the whole body, and only then reads the response. It fails, instead of
// hanging, when the exchange takes longer than timeout.
func Raw(addr, head string, body []byte, timeout time.Duration) (*http.Response, []byte, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, nil, err
	}
	if _, err := io.WriteString(conn, head); err != nil {
		return nil, nil, fmt.Errorf("writing the headers: %w", err)
	}
	if _, err := conn.Write(body); err != nil {
		return nil, nil, fmt.Errorf("writing the body: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the response: %w", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, raw, err
}

// Memory is what a piece of work cost the process's heap.
type Memory struct {
	// Allocated is every byte allocated meanwhile (runtime.MemStats.TotalAlloc), garbage
	// included: the strict measure.
	Allocated uint64
	// Grown is how much the heap in use grew (HeapAlloc after minus before, no collection
	// in between, so it holds garbage too).
	Grown int64
}

func (m Memory) String() string {
	return fmt.Sprintf("%.1f MiB allocated, heap grown %.1f MiB", float64(m.Allocated)/(1<<20), float64(m.Grown)/(1<<20))
}

// Measure runs f and reports what it cost the heap of the whole process (so run it where no
// other test runs at the same time).
func Measure(f func()) Memory {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return Memory{Allocated: after.TotalAlloc - before.TotalAlloc, Grown: int64(after.HeapAlloc) - int64(before.HeapAlloc)}
}
