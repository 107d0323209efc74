//go:build linux

package notitest

import (
	"os"
	"syscall"
)

// sysProcAttr puts the service in a process group of its own and has the kernel kill it if
// the test process dies first (a test binary killed at its timeout leaves no service behind).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
