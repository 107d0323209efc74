package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process of the cluster. Its output goes to <dir>/logs/<name>.log and its PID to
// <dir>/pids/<name>.pid, so that another process (a later run, `localcluster down`) can stop it
// by that PID even when the one that started it was killed.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc runs bin with args in its own process group. It gets SIGKILL when the process that
// started it dies (Pdeathsig), so an interrupted test leaves none of its direct children behind.
func startProc(dir, name, bin string, args []string, env []string) (*Proc, error) {
	for _, d := range []string{"logs", "pids"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	p := &Proc{Name: name, Log: filepath.Join(dir, "logs", name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pid := p.cmd.Process.Pid
	if err := writePIDFile(filepath.Join(dir, "pids", name+".pid"), pid, bin); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		f.Close()
		return nil, err
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return tailFile(p.Log, n) }

// Stop sends SIGTERM, then SIGKILL after grace, to the process group, and waits for the process.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// A PID file holds "<pid> <binary path>": the binary lets a later reader check that the PID
// still belongs to the process it recorded, not to one that reused the number.
func writePIDFile(path string, pid int, bin string) error {
	abs, err := exec.LookPath(bin)
	if err != nil {
		abs = bin
	}
	return os.WriteFile(path, []byte(fmt.Sprintf("%d %s\n", pid, abs)), 0o644)
}

// readPIDFile returns the PID recorded in path if that process is still running the recorded
// binary, else 0.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The binary's path is the rest of the line: it may hold spaces.
	pidText, binPath, ok := strings.Cut(strings.TrimRight(string(b), "\n"), " ")
	fields := []string{pidText, binPath}
	if !ok || pidText == "" || binPath == "" {
		return 0, fmt.Errorf("%s: malformed PID file", path)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: malformed PID %q", path, fields[0])
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, nil // gone
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	want, _ := filepath.EvalSymlinks(fields[1])
	if exe != fields[1] && exe != want {
		return 0, nil // the PID now belongs to another program
	}
	return pid, nil
}

// stopPIDFiles stops every process recorded under dir/pids (SIGTERM to its group, SIGKILL after
// grace), in the reverse order of names given (others after them), and removes the files.
func stopPIDFiles(dir string, order []string, grace time.Duration) error {
	entries, err := os.ReadDir(filepath.Join(dir, "pids"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var names []string
	for i := len(order) - 1; i >= 0; i-- {
		names = append(names, order[i])
	}
	for _, e := range entries {
		n := strings.TrimSuffix(e.Name(), ".pid")
		found := false
		for _, o := range order {
			found = found || o == n
		}
		if !found {
			names = append(names, n)
		}
	}
	var errs []error
	for _, n := range names {
		path := filepath.Join(dir, "pids", n+".pid")
		pid, err := readPIDFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
		if pid > 0 {
			killAndWait(pid, grace)
		}
		_ = os.Remove(path)
	}
	return errors.Join(errs...)
}

// killAndWait sends SIGTERM to pid's process group and pid, then SIGKILL after grace, and waits
// until the process is gone (it may not be our child, so it is polled).
func killAndWait(pid int, grace time.Duration) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(grace)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
