//go:build unix && !linux

package notitest

import (
	"os"
	"syscall"
)

// sysProcAttr puts the service in a process group of its own.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
