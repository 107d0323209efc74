package httpx

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/cineflow/cineflow/pkg/errs"
)

// The request body, as every service takes it (see guardBody):
//
//   - fasthttp streams request bodies (StreamRequestBody), so that nothing is read before the
//     first middleware has seen the headers. On its own, fasthttp refuses a body over the limit
//     while reading it and closes the connection: a client still sending its body then gets a
//     reset instead of the answer.
//   - guardBody answers from the headers alone where it can: a Content-Encoding other than
//     identity is 415 (Fiber would inflate gzip, deflate and br bodies without any bound), a
//     Content-Length over the limit is 413. Otherwise it reads the body, at most limit+1
//     bytes (a chunked body stops there), so that every handler sees the whole body in memory,
//     as before.
//   - A refusal that leaves body bytes unread answers with Connection: close, and the
//     connection closes gracefully (lingerConn): once the answer is flushed, the server
//     half-closes its side and reads and discards what the client still sends, at most
//     DiscardLimit bytes and for at most ReadTimeout, then closes. A client that writes its
//     whole body before reading reads the answer instead of a reset, and a huge or endless
//     upload cannot hold the connection for longer than that.

// defaultDiscardLimit bounds the bytes read and thrown away after a refused body.
const defaultDiscardLimit = 64 << 20

var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// guardBody is the first middleware after recovery: it refuses encoded and oversized bodies
// before any handler or wrapper can read them, and reads every other body whole.
func (s *Server) guardBody(c *fiber.Ctx) error {
	req := c.Request()
	if enc := refusedEncoding(&req.Header); enc != "" {
		if req.Header.ContentLength() != 0 {
			closeAfterAnswer(c, true)
		}
		return errs.E(errs.Unsupported, "compressed request bodies are not accepted (Content-Encoding: %s): send the body uncompressed", enc)
	}
	stream := req.BodyStream()
	if stream == nil {
		return c.Next() // no body (or one already in memory)
	}
	limit := s.opts.BodyLimit
	length := req.Header.ContentLength() // -1: chunked
	if length > limit {
		closeAfterAnswer(c, true)
		return s.tooLarge()
	}
	if length == 0 {
		return c.Next()
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer bodyBuffers.Put(buf)
	if length > 0 {
		buf.Grow(length)
	}
	n, err := buf.ReadFrom(io.LimitReader(stream, int64(limit)+1))
	switch {
	case err != nil:
		closeAfterAnswer(c, false)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			return fiber.NewError(fiber.StatusRequestTimeout, "request body not received in time")
		}
		return errs.E(errs.Invalid, "request body could not be read (malformed chunked encoding or an early end)")
	case n > int64(limit):
		closeAfterAnswer(c, true)
		return s.tooLarge()
	}
	req.SetBody(buf.Bytes()) // a copy; also releases the stream
	return c.Next()
}

func (s *Server) tooLarge() error {
	return errs.E(errs.TooLarge, "request body too large: the limit is %d bytes", s.opts.BodyLimit)
}

// refusedEncoding returns the Content-Encoding of a request whose body would need decoding
// ("" when it has none, or only identity): every header line and every listed coding count.
func refusedEncoding(h *fasthttp.RequestHeader) string {
	var refused string
	h.VisitAll(func(key, value []byte) {
		if refused != "" || !strings.EqualFold(string(key), fiber.HeaderContentEncoding) {
			return
		}
		for _, coding := range strings.Split(string(value), ",") {
			if coding = strings.TrimSpace(coding); coding != "" && !strings.EqualFold(coding, "identity") {
				refused = strings.TrimSpace(string(value))
				return
			}
		}
	})
	if len(refused) > 40 {
		refused = refused[:40] + "..."
	}
	return refused
}

// closeAfterAnswer makes the connection close once the answer is written; linger says the
// client may still be sending a body, which lingerConn then reads and discards.
func closeAfterAnswer(c *fiber.Ctx, linger bool) {
	c.Response().Header.SetConnectionClose()
	if lc, ok := c.Context().Conn().(*lingerConn); ok && linger {
		lc.linger.Store(true)
	}
}

// lingerListener hands out lingerConns.
type lingerListener struct {
	net.Listener
	discard int64
	timeout time.Duration
}

func (l *lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c, l: l}, nil
}

// lingerConn closes gracefully when asked to (see closeAfterAnswer): the answer has been
// flushed when fasthttp calls Close, so it half-closes, discards what the client still
// sends (bounded by bytes and time), then closes.
type lingerConn struct {
	net.Conn
	l      *lingerListener
	linger atomic.Bool
}

func (c *lingerConn) Close() error {
	if c.linger.Swap(false) {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil &&
			c.Conn.SetReadDeadline(time.Now().Add(c.l.timeout)) == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, c.l.discard))
		}
	}
	return c.Conn.Close()
}
