// The pod sandbox ("pause") container the real node's containerd starts first in every pod: it
// holds the pod's namespaces and does nothing else. Built here because no registry that serves
// registry.k8s.io/pause can be reached; it does what that image does for a pod without a shared
// PID namespace: wait for SIGTERM or SIGINT and exit 0.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
