// Command localcluster runs CineFlow on a real single-node Kubernetes cluster on this machine
// (package cluster; root, Debian), for a person to try it: `make cluster` runs `localcluster up`.
//
//	localcluster up     start the cluster, build the images into a registry on 127.0.0.1:5001,
//	                    deploy the dev pieces and the chart (namespace cineflow), print how to
//	                    reach the API, and keep it all running until Ctrl-C, then stop it all
//	localcluster down   stop what a killed `up` (or test) left behind, by its PID files
//
// Flags: -registry (127.0.0.1:5001), -namespace (cineflow), -tag (dev).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"

	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cineflow/cineflow/k8s/local/cluster"
	"github.com/cineflow/cineflow/k8s/local/deploy"
)

func main() {
	registry := flag.String("registry", "127.0.0.1:5001", "address of the local image registry")
	ns := flag.String("namespace", "cineflow", "namespace of the dev pieces and the chart")
	tag := flag.String("tag", "dev", "tag of the images built")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: localcluster [flags] up|down")
		flag.PrintDefaults()
	}
	flag.Parse()
	log.SetFlags(log.Ltime)
	root, err := repoRoot()
	if err != nil {
		log.Fatal(err)
	}
	switch flag.Arg(0) {
	case "up", "":
		if err := up(root, *registry, *ns, *tag); err != nil {
			log.Fatal(err)
		}
	case "down":
		dir, _ := cluster.BuildModuleTools(filepath.Join(root, "k8s", "apiserver"), []string{"k8s.io/kubernetes/cmd/kube-proxy"}, log.Printf)
		if err := cluster.Clean(cluster.DefaultDir(), filepath.Join(dir, "kube-proxy")); err != nil {
			log.Fatal(err)
		}
		log.Print("nothing of the local cluster is left running")
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func up(root, registry, ns, tag string) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	s, err := deploy.StartStack(ctx, root, registry, log.Printf)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Stop()) }()
	if err := s.BuildImages(ctx, tag, append(deploy.DevImages, deploy.AppImages...)...); err != nil {
		return err
	}
	if err := s.BuildPushgateway(ctx); err != nil {
		return err
	}
	if err := s.DevPieces(ctx, ns); err != nil {
		return err
	}
	if _, err := s.InstallChart(ctx, ns, "cineflow"); err != nil {
		return err
	}
	svc, err := s.Cluster.Client.CoreV1().Services(ns).Get(ctx, "cineflow-core", metav1.GetOptions{})
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	fmt.Printf(`
CineFlow is running on a local single-node Kubernetes cluster (ready in %[1]s).

  export KUBECONFIG=%[2]s
  kubectl -n %[3]s get pods
  curl %[4]s/mba/api/v1/movies                 # the core API, through its Service
  # admin: admin@cineflow.local / local-admin-password (k8s/values-local.yaml)
  # emails go to a fake Resend: curl http://$(kubectl -n %[3]s get svc resendfake -o jsonpath='{.spec.clusterIP}')/_fake/deliveries
  # the dev loop on this cluster: skaffold run -p local --default-repo %[5]s/cineflow --insecure-registry %[5]s

Logs of the cluster's processes: %[6]s/logs. Press Ctrl-C to stop everything.
`, time.Since(began).Round(time.Second), s.Cluster.Kubeconfig, ns, base, s.Registry.Addr, s.Cluster.Dir)
	<-ctx.Done()
	log.Print("stopping")
	return nil
}

// repoRoot is the directory holding go.work, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", errors.New("run inside the repository (no go.work found above " + dir + ")")
		}
	}
}
