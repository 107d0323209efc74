//go:build !unix

package notitest

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate kills the service: there is no SIGTERM to drain on.
func terminate(p *os.Process) error { return p.Kill() }
