// Command pause is the pod sandbox ("pause") image of the local cluster: it waits for SIGTERM or
// SIGINT and exits 0. containerd runs one per pod to hold its namespaces.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
