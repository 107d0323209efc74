// Package devdb runs FerretDB (a MongoDB wire-compatible server on SQLite) inside the
// current process. It is the database of `make run` and of the tests; it is never linked
// into the service or sweeper binaries (a test in each of them checks that).
package devdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Options configure an embedded server.
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" picks a free port.
	Addr string
	// Dir holds the SQLite files, one per database. Empty means a new temporary directory,
	// removed on Close.
	Dir string
	// Logger receives FerretDB's own log; nil discards it.
	Logger *slog.Logger
}

// Server is a running embedded FerretDB.
type Server struct {
	uri     string
	addr    string
	cancel  context.CancelFunc
	done    chan error
	tempDir string
	ids     *idIndexer
}

// Start starts FerretDB and returns once it accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	s := &Server{done: make(chan error, 1)}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "devdb-")
		if err != nil {
			return nil, err
		}
		dir, s.tempDir = d, d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devdb: data directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// FerretDB cannot report the port it picked for ":0", so pick it here: a free port below the
	// kernel's ephemeral range, which no other process's ":0" is ever given, so it stays free
	// until FerretDB binds it. (A failed bind inside ferretdb.New leaks its backend, whose
	// finalizer then panics the process: the pick must not race.) If it is taken anyway, by
	// another picker, pick again.
	var f *ferretdb.FerretDB
	var addr string
	for attempt := 0; ; attempt++ {
		addr = opts.Addr
		host, port, perr := net.SplitHostPort(addr)
		pick := perr == nil && port == "0"
		if pick {
			port, err := freePort(host)
			if err != nil {
				return nil, fmt.Errorf("devdb: %w", err)
			}
			addr = net.JoinHostPort(host, fmt.Sprint(port))
		}
		var err error
		f, err = ferretdb.New(&ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: addr},
			Logger:    logger,
			Handler:   "sqlite",
			SQLiteURL: "file:" + abs + "/",
		})
		if err == nil {
			break
		}
		if pick && attempt < 5 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		s.removeTemp()
		return nil, fmt.Errorf("devdb: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- f.Run(runCtx) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-s.done:
			cancel()
			s.removeTemp()
			if err == nil {
				err = errors.New("stopped before accepting connections")
			}
			return nil, fmt.Errorf("devdb: listen on %s: %w", addr, err)
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("devdb: %s did not accept connections within 15s", addr)
		}
	}
	s.addr = addr
	s.uri = "mongodb://" + addr + "/"
	s.ids = newIDIndexer(abs, opts.Logger)
	s.ids.start()
	return s, nil
}

// URI is the MongoDB connection string of the server.
func (s *Server) URI() string { return s.uri }

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and removes its temporary directory, if it made one.
func (s *Server) Close() error {
	if s.ids != nil {
		s.ids.close()
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	s.removeTemp()
	return nil
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
	}
}

// freePort returns a port of host that was free a moment ago, chosen at random below the
// kernel's ephemeral port range (so no ":0" bind of another process takes it), or, when that
// range leaves too little room, one the kernel picks.
func freePort(host string) (int, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const first = 10000
	if lo-first >= 1000 {
		for i := 0; i < 50; i++ {
			port := first + rand.IntN(lo-first)
			if l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
