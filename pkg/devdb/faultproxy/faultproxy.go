// Package faultproxy is a TCP proxy that speaks enough of the MongoDB wire protocol to fail
// chosen commands the way a network fails them: it forwards a write and drops its reply (the
// write lands, the client sees an error), cuts the connection before the write reaches the
// server, or delays the reply. Tests put it between a service and its database and then check
// that every invariant still holds.
package faultproxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Fault is what the proxy does to a matched command.
type Fault int

// The faults.
const (
	// DropReply forwards the command, waits for the server's reply, then closes the client's
	// connection without passing the reply on: the command took effect, the client sees a
	// network error.
	DropReply Fault = iota
	// CutBefore closes the client's connection before the command reaches the server.
	CutBefore
	// Delay holds the server's reply for Rule.Delay before passing it on.
	Delay
)

func (f Fault) String() string {
	switch f {
	case DropReply:
		return "drop-reply"
	case CutBefore:
		return "cut-before"
	case Delay:
		return "delay"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Rule picks commands by name and collection (and, optionally, by their body).
type Rule struct {
	Command    string              // "insert", "update", "delete", "find", ...; "" matches any
	Collection string              // "" matches any; a name ending in "*" matches by prefix
	Match      func(bson.Raw) bool // optional: also match on the command body (section 0)
	Fault      Fault
	Delay      time.Duration
	Skip       int // let this many matching commands through first
	Times      int // fire this many times, then let every command through (0: always)

	seen  atomic.Int64
	fired atomic.Int64
}

// Fired is how many times the rule fired.
func (r *Rule) Fired() int { return int(r.fired.Load()) }

// decide counts a matching command and reports whether the rule fires on it.
func (r *Rule) decide() bool {
	n := int(r.seen.Add(1))
	if n <= r.Skip {
		return false
	}
	if r.Times > 0 && n > r.Skip+r.Times {
		return false
	}
	r.fired.Add(1)
	return true
}

// Proxy listens on 127.0.0.1 and forwards every connection to the target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	rules []*Rule
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	done  chan struct{}
}

// Start starts a proxy to target ("host:port").
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Add adds a rule; the first rule that matches a command decides its fate.
func (p *Proxy) Add(r *Rule) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, r)
	return r
}

// Clear removes every rule.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	close(p.done)
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// collMatches reports whether a rule's collection pattern matches coll.
func collMatches(pattern, coll string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(coll, prefix)
	}
	return pattern == "" || pattern == coll
}

func (p *Proxy) rule(cmd, coll string, body bson.Raw) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		if (r.Command == "" || r.Command == cmd) && collMatches(r.Collection, coll) &&
			(r.Match == nil || r.Match(body)) && r.decide() {
			return r
		}
	}
	return nil
}

// The wire protocol: a 16-byte header (length, request id, response to, op code), then the
// body. OP_MSG (2013) bodies are flag bits and sections; section kind 0 is the command.
const (
	opMsg       = 2013
	moreToCome  = 1 << 1
	maxMsgBytes = 48 << 20
)

type message struct {
	raw    []byte
	opCode int32
	flags  uint32
}

func readMessage(r io.Reader) (*message, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[0:4]))
	if n < 16 || n > maxMsgBytes {
		return nil, fmt.Errorf("faultproxy: bad message length %d", n)
	}
	raw := make([]byte, n)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r, raw[16:]); err != nil {
		return nil, err
	}
	m := &message{raw: raw, opCode: int32(binary.LittleEndian.Uint32(hdr[12:16]))}
	if m.opCode == opMsg && n >= 20 {
		m.flags = binary.LittleEndian.Uint32(raw[16:20])
	}
	return m, nil
}

// command returns the command's name, its collection (the name's string value) and body.
func (m *message) command() (string, string, bson.Raw) {
	if m.opCode != opMsg {
		return "", "", nil
	}
	b := m.raw[20:]
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		switch kind {
		case 0:
			if len(b) < 4 {
				return "", "", nil
			}
			size := int(binary.LittleEndian.Uint32(b))
			if size > len(b) {
				return "", "", nil
			}
			doc := bson.Raw(b[:size])
			elems, err := doc.Elements()
			if err != nil || len(elems) == 0 {
				return "", "", nil
			}
			name := elems[0].Key()
			coll, _ := elems[0].Value().StringValueOK()
			return name, coll, doc
		case 1:
			if len(b) < 4 {
				return "", "", nil
			}
			size := int(binary.LittleEndian.Uint32(b))
			if size > len(b) {
				return "", "", nil
			}
			b = b[size:]
		default:
			return "", "", nil
		}
	}
	return "", "", nil
}

func (p *Proxy) serve(client net.Conn) {
	p.track(client, true)
	defer p.track(client, false)
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.track(server, true)
	defer p.track(server, false)
	defer server.Close()
	for {
		req, err := readMessage(client)
		if err != nil {
			return
		}
		cmd, coll, body := req.command()
		r := p.rule(cmd, coll, body)
		if r != nil && r.Fault == CutBefore {
			return
		}
		if _, err := server.Write(req.raw); err != nil {
			return
		}
		if req.flags&moreToCome != 0 {
			continue // no reply to this one
		}
		for {
			reply, err := readMessage(server)
			if err != nil {
				return
			}
			if r != nil {
				switch r.Fault {
				case DropReply:
					return
				case Delay:
					select {
					case <-time.After(r.Delay):
					case <-p.done:
						return
					}
				}
			}
			if _, err := client.Write(reply.raw); err != nil {
				return
			}
			if reply.flags&moreToCome == 0 {
				break
			}
		}
	}
}
