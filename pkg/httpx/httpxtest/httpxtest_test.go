package httpxtest

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"testing"

	"github.com/andybalholm/brotli"
)

// TestBombsInflateToOneGiB proves the bombs are what they claim: each inflates to exactly
// BombSize bytes (checksums included), and the gzip and deflate ones fit the default body
// limit, so that without the Content-Encoding rule a server would read and inflate them.
func TestBombsInflateToOneGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("inflates 3 GiB")
	}
	for _, enc := range BombEncodings {
		b := Bomb(enc)
		var r io.Reader
		var err error
		switch enc {
		case "gzip":
			r, err = gzip.NewReader(bytes.NewReader(b))
		case "deflate":
			r, err = zlib.NewReader(bytes.NewReader(b))
		case "br":
			r = brotli.NewReader(bytes.NewReader(b))
		}
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		n, err := io.Copy(io.Discard, r)
		if err != nil || n != BombSize {
			t.Errorf("%s: inflated %d bytes, %v; want %d", enc, n, err, BombSize)
		}
		if len(b) > 1<<20 {
			t.Errorf("%s: %d bytes, more than the default body limit", enc, len(b))
		}
		t.Logf("%s: %d bytes inflate to %d", enc, len(b), n)
		if &Bomb(enc)[0] != &b[0] {
			t.Errorf("%s: made twice", enc)
		}
	}
}
