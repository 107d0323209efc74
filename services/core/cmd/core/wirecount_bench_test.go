package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// wireCounter is a TCP proxy in front of the test database that counts the commands every
// process behind it sends, by command and collection, and the documents they carry (documents
// inserted, update and delete statements): the database work of several replicas, measured
// where they meet. Collections of the expiry queue's buckets count as one ("booking_intents_*").
type wireCounter struct {
	ln     net.Listener
	target string

	mu   sync.Mutex
	cmds map[string]int64 // "insert booking_outcomes" -> commands
	docs map[string]int64 // "insert booking_outcomes" -> documents or statements
}

func startWireCounter(b testing.TB, target string) *wireCounter {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	w := &wireCounter{ln: ln, target: target, cmds: map[string]int64{}, docs: map[string]int64{}}
	go w.accept()
	b.Cleanup(func() { ln.Close() })
	return w
}

func (w *wireCounter) Addr() string { return w.ln.Addr().String() }

func (w *wireCounter) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		go w.serve(c)
	}
}

func (w *wireCounter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", w.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() { _, _ = io.Copy(client, server); client.Close() }()
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:4]))
		if n < 16 || n > 64<<20 {
			return
		}
		msg := make([]byte, n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(client, msg[16:]); err != nil {
			return
		}
		if binary.LittleEndian.Uint32(hdr[12:16]) == 2013 { // OP_MSG
			w.count(msg)
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

// count reads an OP_MSG: section 0 is the command, sections 1 are document sequences.
func (w *wireCounter) count(msg []byte) {
	if len(msg) < 21 {
		return
	}
	flags := binary.LittleEndian.Uint32(msg[16:20])
	body := msg[20:]
	if flags&1 != 0 && len(body) >= 4 { // a checksum ends the message
		body = body[:len(body)-4]
	}
	var name, coll string
	var cmd bson.Raw
	seqDocs := int64(0)
	for len(body) > 0 {
		kind := body[0]
		body = body[1:]
		if len(body) < 4 {
			return
		}
		size := int(binary.LittleEndian.Uint32(body))
		if size > len(body) || size < 4 {
			return
		}
		switch kind {
		case 0:
			cmd = bson.Raw(body[:size])
			if elems, err := cmd.Elements(); err == nil && len(elems) > 0 {
				name = elems[0].Key()
				coll, _ = elems[0].Value().StringValueOK()
			}
		case 1:
			seq := body[4:size]
			if i := strings.IndexByte(string(seq), 0); i >= 0 {
				seq = seq[i+1:]
			}
			for len(seq) >= 4 {
				ds := int(binary.LittleEndian.Uint32(seq))
				if ds < 5 || ds > len(seq) {
					break
				}
				seqDocs++
				seq = seq[ds:]
			}
		default:
			return
		}
		body = body[size:]
	}
	if name == "" {
		return
	}
	docs := seqDocs
	if docs == 0 && cmd != nil {
		for _, field := range []string{"documents", "updates", "deletes"} {
			if v, err := cmd.LookupErr(field); err == nil {
				if arr, ok := v.ArrayOK(); ok {
					vals, _ := arr.Values()
					docs = int64(len(vals))
				}
			}
		}
	}
	if strings.HasPrefix(coll, "booking_intents_") {
		coll = "booking_intents_*"
	}
	key := name + " " + coll
	w.mu.Lock()
	w.cmds[key]++
	w.docs[key] += docs
	w.mu.Unlock()
}

// wireCounts is a snapshot of a wireCounter.
type wireCounts struct{ cmds, docs map[string]int64 }

func (w *wireCounter) snapshot() wireCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := wireCounts{cmds: make(map[string]int64, len(w.cmds)), docs: make(map[string]int64, len(w.docs))}
	for k, v := range w.cmds {
		c.cmds[k] = v
	}
	for k, v := range w.docs {
		c.docs[k] = v
	}
	return c
}

// since is what was counted after o.
func (c wireCounts) since(o wireCounts) wireCounts {
	d := wireCounts{cmds: map[string]int64{}, docs: map[string]int64{}}
	for k, v := range c.cmds {
		if v -= o.cmds[k]; v != 0 {
			d.cmds[k] = v
		}
	}
	for k, v := range c.docs {
		if v -= o.docs[k]; v != 0 {
			d.docs[k] = v
		}
	}
	return d
}

// total is the number of commands, and of documents (and statements) written: inserts,
// updates and deletes.
func (c wireCounts) total() (cmds, writes int64) {
	for k, v := range c.cmds {
		cmds += v
		if op, _, _ := strings.Cut(k, " "); op == "insert" || op == "update" || op == "delete" {
			writes += c.docs[k]
		}
	}
	return cmds, writes
}

// top lists the n busiest command kinds, for the log.
func (c wireCounts) top(n int) string {
	keys := make([]string, 0, len(c.cmds))
	for k := range c.cmds {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return c.cmds[keys[i]] > c.cmds[keys[j]] })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s: %d (%d docs)", k, c.cmds[k], c.docs[k]))
	}
	return strings.Join(parts, "; ")
}
