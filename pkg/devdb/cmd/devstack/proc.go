package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// child is a running child process.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and its output is flushed
	err  error         // from Wait, once done
}

// startChild starts bin with env, its output prefixed with name. When ctx ends the child
// gets SIGTERM, and is killed if it has not exited stopTimeout later.
func startChild(ctx context.Context, name, bin string, env []string, out *output) (*child, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = env
	w := out.writer(name)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = sysProcAttr() // its own process group: Ctrl-C reaches devstack only
	cmd.Cancel = func() error { return terminate(cmd.Process) }
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		w.flush()
		close(c.done)
	}()
	return c, nil
}

// how says how the child ended, once done.
func (c *child) how() string {
	switch st := c.cmd.ProcessState; {
	case st == nil:
		return fmt.Sprintf("could not run (%v)", c.err)
	case st.Exited():
		return fmt.Sprintf("exited (status %d)", st.ExitCode())
	default:
		return "ended (" + st.String() + ")" // e.g. "signal: killed"
	}
}

// childEnv is base with the variables of set replaced or added.
func childEnv(base []string, set map[string]string) []string {
	env := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+set[k])
	}
	return env
}

// output writes whole lines from several children to one writer, each prefixed with its
// source's name.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

const nameWidth = 12 // len("notification")

func newOutput(w io.Writer) *output { return &output{w: w} }

func (o *output) println(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintln(o.w, line)
}

func (o *output) logf(name, format string, args ...any) {
	o.println(prefix(name) + fmt.Sprintf(format, args...))
}

func prefix(name string) string { return fmt.Sprintf("%-*s | ", nameWidth, name) }

// writer returns a writer whose lines are printed prefixed with name. One writer must not be
// written from two goroutines at once (os/exec copies each child's pipe in one goroutine).
func (o *output) writer(name string) *lineWriter {
	return &lineWriter{o: o, prefix: prefix(name)}
}

type lineWriter struct {
	o      *output
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	rest := l.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		l.o.println(l.prefix + string(rest[:i]))
		rest = rest[i+1:]
	}
	l.buf = append(l.buf[:0], rest...)
	if len(l.buf) > 64<<10 { // a very long line: show it in pieces rather than hold it
		l.flush()
	}
	return len(p), nil
}

// flush prints what is left of an unfinished last line.
func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.o.println(l.prefix + string(l.buf))
		l.buf = l.buf[:0]
	}
}
