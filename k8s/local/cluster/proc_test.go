package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lookPath returns the absolute path of a program the tests run, or skips the test.
func lookPath(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s not found: %v", prog, err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// mustStart starts a process with startProc and stops it (SIGKILL at once) when the test ends.
func mustStart(t *testing.T, dir, name, bin string, args []string, env []string) *Proc {
	t.Helper()
	p, err := startProc(dir, name, bin, args, env)
	if err != nil {
		t.Fatalf("startProc(%s, %s %v): %v", name, bin, args, err)
	}
	t.Cleanup(func() { p.Stop(0) })
	return p
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startUnmanaged starts bin outside startProc (not in a process group of its own) and kills and
// reaps it when the test ends.
func startUnmanaged(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStartProcWritesPIDFileAndLog(t *testing.T) {
	sleep := lookPath(t, "sleep")
	dir := t.TempDir()
	// By name, as the cluster starts etcd and containerd: the PID file holds the path found in PATH.
	p := mustStart(t, dir, "sleeper", "sleep", []string{"30"}, nil)

	if p.Name != "sleeper" {
		t.Errorf("Name = %q, want sleeper", p.Name)
	}
	if want := filepath.Join(dir, "logs", "sleeper.log"); p.Log != want {
		t.Errorf("Log = %q, want %q", p.Log, want)
	}
	if _, err := os.Stat(p.Log); err != nil {
		t.Errorf("log file: %v", err)
	}
	if p.PID() <= 1 {
		t.Fatalf("PID() = %d", p.PID())
	}
	if p.Exited() {
		t.Fatalf("sleep 30 exited at once; log:\n%s", p.Tail(10))
	}

	content := readFile(t, filepath.Join(dir, "pids", "sleeper.pid"))
	if want := fmt.Sprintf("%d %s\n", p.PID(), sleep); content != want {
		t.Errorf("PID file = %q, want %q", content, want)
	}
	f := strings.Fields(content)
	if len(f) != 2 || !filepath.IsAbs(f[1]) {
		t.Errorf("PID file %q: want \"<pid> <absolute binary path>\"", content)
	}
	// The process is in its own process group (Stop signals the group).
	if pgid, err := syscall.Getpgid(p.PID()); err != nil || pgid != p.PID() {
		t.Errorf("Getpgid(%d) = %d, %v; want its own group", p.PID(), pgid, err)
	}
	if got, err := readPIDFile(filepath.Join(dir, "pids", "sleeper.pid")); err != nil || got != p.PID() {
		t.Errorf("readPIDFile = %d, %v; want %d", got, err, p.PID())
	}
}

func TestStartProcAbsoluteBinary(t *testing.T) {
	dir := t.TempDir()
	// A copy of sleep under the test's directory, started by its absolute path.
	bin := filepath.Join(dir, "bin", "mysleep")
	copyFile(t, lookPath(t, "sleep"), bin, 0o755)
	p := mustStart(t, dir, "mysleep", bin, []string{"30"}, nil)

	content := readFile(t, filepath.Join(dir, "pids", "mysleep.pid"))
	if want := fmt.Sprintf("%d %s\n", p.PID(), bin); content != want {
		t.Errorf("PID file = %q, want %q", content, want)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID())); err != nil || exe != bin {
		t.Errorf("/proc/%d/exe = %q, %v; want %q", p.PID(), exe, err, bin)
	}
}

func TestStartProcEnvAndTail(t *testing.T) {
	sh := lookPath(t, "sh")
	dir := t.TempDir()
	p := mustStart(t, dir, "printer", sh, []string{"-c", `for i in 1 2 3 4 5; do echo "$PREFIX$i"; done; echo oops >&2`},
		[]string{"PREFIX=line"})
	eventually(t, 5*time.Second, "the printer to exit", p.Exited)

	if got, want := p.Tail(3), "line4\nline5\noops"; got != want {
		t.Errorf("Tail(3) = %q, want %q (stdout and stderr in the log, env passed)", got, want)
	}
	if got, want := p.Tail(100), "line1\nline2\nline3\nline4\nline5\noops"; got != want {
		t.Errorf("Tail(100) = %q, want %q", got, want)
	}
}

func TestStartProcMissingBinary(t *testing.T) {
	dir := t.TempDir()
	p, err := startProc(dir, "ghost", filepath.Join(dir, "no-such-binary"), nil, nil)
	if err == nil {
		p.Stop(0)
		t.Fatal("startProc of a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), "start ghost") {
		t.Errorf("error %q does not name the process", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pids", "ghost.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file of a process that never started: stat err = %v, want not exist", err)
	}
}

func TestProcExitedWhenItEnds(t *testing.T) {
	sh := lookPath(t, "sh")
	dir := t.TempDir()
	// stdin is /dev/null: read gets EOF at once and the shell exits by itself.
	p := mustStart(t, dir, "short", sh, []string{"-c", "read line; exit 3"}, nil)
	eventually(t, 5*time.Second, "a short-lived process to be reported exited", p.Exited)
	if alive(p.PID()) {
		t.Errorf("alive(%d) = true for an exited, reaped process", p.PID())
	}
	// Stop of an exited process returns at once.
	began := time.Now()
	p.Stop(10 * time.Second)
	if d := time.Since(began); d > time.Second {
		t.Errorf("Stop of an exited process took %s", d)
	}
}

func TestProcStopSIGTERM(t *testing.T) {
	dir := t.TempDir()
	p := mustStart(t, dir, "sleeper", "sleep", []string{"30"}, nil)
	pid := p.PID()
	if !alive(pid) {
		t.Fatalf("alive(%d) = false for a running sleep", pid)
	}

	began := time.Now()
	p.Stop(10 * time.Second)
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Stop took %s: sleep should end on SIGTERM, long before the 10s grace", d)
	}
	if !p.Exited() {
		t.Error("Exited() = false after Stop")
	}
	if alive(pid) {
		t.Errorf("alive(%d) = true after Stop", pid)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/proc/%d still exists after Stop (not reaped?): %v", pid, err)
	}
}

func TestProcStopKillsAfterGrace(t *testing.T) {
	sh := lookPath(t, "sh")
	dir := t.TempDir()
	childFile := filepath.Join(dir, "child.pid")
	// The shell and its child (same process group) ignore SIGTERM.
	p := mustStart(t, dir, "stubborn", sh, []string{"-c",
		`trap "" TERM; sleep 30 & echo $! > "$CHILD_FILE"; echo ready; wait`},
		[]string{"CHILD_FILE=" + childFile})
	eventually(t, 5*time.Second, "the shell to install its trap", func() bool { return strings.Contains(p.Tail(5), "ready") })
	child, err := strconv.Atoi(strings.TrimSpace(readFile(t, childFile)))
	if err != nil {
		t.Fatalf("child PID: %v", err)
	}
	if !alive(child) {
		t.Fatalf("the shell's child %d is not running", child)
	}

	const grace = 300 * time.Millisecond
	began := time.Now()
	p.Stop(grace)
	d := time.Since(began)
	if d < grace {
		t.Errorf("Stop returned after %s, before the grace of %s: SIGTERM should have been ignored", d, grace)
	}
	if d > grace+5*time.Second {
		t.Errorf("Stop took %s with a grace of %s", d, grace)
	}
	if !p.Exited() {
		t.Error("Exited() = false after Stop")
	}
	// SIGKILL went to the whole group: the child is gone too (or a zombie awaiting its new parent).
	eventually(t, 5*time.Second, fmt.Sprintf("the shell's child %d to be killed with its group", child), func() bool { return !alive(child) })
}

func TestReadPIDFile(t *testing.T) {
	sleep := lookPath(t, "sleep")
	dir := t.TempDir()
	running := startUnmanaged(t, sleep, "30")
	pid := running.Process.Pid

	// A PID that is dead: a process that ran and was reaped.
	done := exec.Command(lookPath(t, "true"))
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := done.Process.Pid

	// A symbolic link to sleep: the PID file may name the binary by a link.
	link := filepath.Join(dir, "sleep-link")
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, content string
		want          int
	}{
		{"running its binary", fmt.Sprintf("%d %s\n", pid, sleep), pid},
		{"no trailing newline", fmt.Sprintf("%d %s", pid, sleep), pid},
		{"binary by a symbolic link", fmt.Sprintf("%d %s\n", pid, link), pid},
		{"PID now runs another binary", fmt.Sprintf("%d %s\n", pid, lookPath(t, "true")), 0},
		{"PID runs a binary of the same name elsewhere", fmt.Sprintf("%d %s\n", pid, filepath.Join(dir, "sleep")), 0},
		{"dead PID", fmt.Sprintf("%d %s\n", deadPID, lookPath(t, "true")), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".pid")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readPIDFile(path)
			if err != nil {
				t.Fatalf("readPIDFile(%q): %v", tc.content, err)
			}
			if got != tc.want {
				t.Errorf("readPIDFile(%q) = %d, want %d", tc.content, got, tc.want)
			}
		})
	}
}

func TestReadPIDFileDeletedBinary(t *testing.T) {
	dir := t.TempDir()
	// A binary replaced while its process runs (a rebuilt cache): /proc/<pid>/exe then ends in
	// " (deleted)", and the process is still the one recorded.
	bin := filepath.Join(dir, "mysleep")
	copyFile(t, lookPath(t, "sleep"), bin, 0o755)
	p := mustStart(t, dir, "mysleep", bin, []string{"30"}, nil)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	got, err := readPIDFile(filepath.Join(dir, "pids", "mysleep.pid"))
	if err != nil || got != p.PID() {
		t.Errorf("readPIDFile after the binary was deleted = %d, %v; want %d", got, err, p.PID())
	}
}

func TestReadPIDFileMalformed(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content string }{
		{"empty", ""},
		{"PID only", "1234\n"},
		{"no binary", "1234 \n"},
		{"PID not a number", "abc /usr/bin/sleep\n"},
		{"negative PID", "-5 /usr/bin/sleep\n"},
		{"PID 0", "0 /usr/bin/sleep\n"},
		{"PID 1 (init)", "1 /usr/bin/sleep\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.pid")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readPIDFile(path)
			if err == nil {
				t.Fatalf("readPIDFile(%q) = %d, nil; want an error", tc.content, got)
			}
			if got != 0 {
				t.Errorf("readPIDFile(%q) = %d with error %v; want 0", tc.content, got, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	t.Run("binary path with spaces", func(t *testing.T) {
		sleep, err := exec.LookPath("sleep")
		if err != nil {
			t.Skip("no sleep")
		}
		body, err := os.ReadFile(sleep)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "a dir with spaces", "sleep")
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, body, 0o755); err != nil {
			t.Fatal(err)
		}
		p, err := startProc(dir, "spaced", bin, []string{"30"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(time.Second)
		got, err := readPIDFile(filepath.Join(dir, "pids", "spaced.pid"))
		if err != nil || got != p.PID() {
			t.Errorf("readPIDFile = %d, %v; want %d", got, err, p.PID())
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := readPIDFile(filepath.Join(dir, "none.pid"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("readPIDFile of a missing file: err = %v, want os.ErrNotExist", err)
		}
	})
}

func TestStopPIDFilesReverseOrder(t *testing.T) {
	sh := lookPath(t, "sh")
	dir := t.TempDir()
	orderFile := filepath.Join(dir, "order.log")
	// Each process writes its name to order.log when it gets SIGTERM, then exits: the file holds
	// the order they were stopped in (stopPIDFiles waits for each before the next).
	script := `trap 'echo "$NAME" >> "$ORDER"; exit 0' TERM; echo ready; while :; do sleep 1; done`
	var procs []*Proc
	for _, n := range []string{"first", "second", "third", "zextra"} {
		p := mustStart(t, dir, n, sh, []string{"-c", script}, []string{"NAME=" + n, "ORDER=" + orderFile})
		procs = append(procs, p)
	}
	for _, p := range procs {
		eventually(t, 5*time.Second, p.Name+" to install its trap", func() bool { return strings.Contains(p.Tail(5), "ready") })
	}

	// "absent" has no PID file: skipped. "zextra" is not in the order: stopped after the others.
	if err := stopPIDFiles(dir, []string{"first", "absent", "second", "third"}, 5*time.Second); err != nil {
		t.Fatalf("stopPIDFiles: %v", err)
	}
	// A process may log twice (SIGTERM goes to its group and to it); keep each name once.
	var got []string
	for _, n := range strings.Fields(readFile(t, orderFile)) {
		if len(got) == 0 || got[len(got)-1] != n {
			got = append(got, n)
		}
	}
	if want := []string{"third", "second", "first", "zextra"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("stop order = %v, want %v", got, want)
	}
	for _, p := range procs {
		eventually(t, 5*time.Second, p.Name+" to be reaped", p.Exited)
		if alive(p.PID()) {
			t.Errorf("%s (pid %d) still alive", p.Name, p.PID())
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("PID files left: %v", names)
	}
}

func TestStopPIDFilesKillsAfterGrace(t *testing.T) {
	sh := lookPath(t, "sh")
	dir := t.TempDir()
	p := mustStart(t, dir, "stubborn", sh, []string{"-c", `trap "" TERM; echo ready; while :; do sleep 1; done`}, nil)
	eventually(t, 5*time.Second, "the shell to install its trap", func() bool { return strings.Contains(p.Tail(5), "ready") })

	const grace = 300 * time.Millisecond
	began := time.Now()
	if err := stopPIDFiles(dir, startOrder, grace); err != nil {
		t.Fatalf("stopPIDFiles: %v", err)
	}
	if d := time.Since(began); d < grace || d > grace+5*time.Second {
		t.Errorf("stopPIDFiles took %s; want about the grace of %s (SIGTERM ignored, then SIGKILL)", d, grace)
	}
	eventually(t, 5*time.Second, "the stubborn process to be reaped", p.Exited)
	if _, err := os.Stat(filepath.Join(dir, "pids", "stubborn.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file not removed: %v", err)
	}
}

func TestStopPIDFilesStaleAndMalformed(t *testing.T) {
	sleep := lookPath(t, "sleep")
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	if err := os.MkdirAll(pids, 0o755); err != nil {
		t.Fatal(err)
	}
	// A live process whose PID file names another binary: not ours (the PID was reused), so
	// it must be left running; the stale file is removed.
	other := startUnmanaged(t, sleep, "30")
	done := exec.Command(lookPath(t, "true"))
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"reused.pid":    fmt.Sprintf("%d %s\n", other.Process.Pid, lookPath(t, "true")),
		"dead.pid":      fmt.Sprintf("%d %s\n", done.Process.Pid, sleep),
		"malformed.pid": "not a pid file at all\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(pids, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	err := stopPIDFiles(dir, startOrder, time.Second)
	if err == nil || !strings.Contains(err.Error(), "malformed.pid") {
		t.Errorf("stopPIDFiles error = %v; want one naming malformed.pid", err)
	}
	for n := range files {
		if _, err := os.Stat(filepath.Join(pids, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", n, err)
		}
	}
	if !alive(other.Process.Pid) {
		t.Errorf("stopPIDFiles killed pid %d, which its PID file did not match", other.Process.Pid)
	}
}

func TestStopPIDFilesNoDir(t *testing.T) {
	if err := stopPIDFiles(filepath.Join(t.TempDir(), "never-made"), startOrder, time.Second); err != nil {
		t.Errorf("stopPIDFiles without a pids directory: %v", err)
	}
}

func TestAlive(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Error("alive(own pid) = false")
	}

	// Exited and reaped.
	done := exec.Command(lookPath(t, "true"))
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	if alive(done.Process.Pid) {
		t.Errorf("alive(%d) = true for an exited, reaped process", done.Process.Pid)
	}

	// Exited and not yet reaped: a zombie is not alive.
	cmd := startUnmanaged(t, lookPath(t, "sleep"), "30")
	pid := cmd.Process.Pid
	if !alive(pid) {
		t.Fatalf("alive(%d) = false for a running sleep", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a killed, unreaped process to count as not alive", func() bool { return !alive(pid) })
	stat := readFile(t, fmt.Sprintf("/proc/%d/stat", pid))
	if i := strings.LastIndexByte(stat, ')'); i < 0 || !strings.HasPrefix(stat[i:], ") Z") {
		t.Errorf("/proc/%d/stat = %q: expected a zombie before it is reaped", pid, stat)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if got := tailFile(path, 3); got != "" {
		t.Errorf("tailFile of a missing file = %q, want empty", got)
	}
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]string{1: "d", 2: "c\nd", 4: "a\nb\nc\nd", 10: "a\nb\nc\nd"} {
		if got := tailFile(path, n); got != want {
			t.Errorf("tailFile(%d) = %q, want %q", n, got, want)
		}
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
