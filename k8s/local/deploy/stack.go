package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/cineflow/cineflow/k8s/local/cluster"
	"github.com/cineflow/cineflow/k8s/local/images"
)

// Stack is the local registry, the cluster pulling from it, and an Env deploying to both.
type Stack struct {
	Registry *images.Registry
	Cluster  *cluster.Cluster
	*Env
}

// StartStack serves a registry on registryAddr ("127.0.0.1:0": any free port), pushes the
// locally built base and pause images to it, and starts the cluster. Stop undoes all of it.
func StartStack(ctx context.Context, root, registryAddr string, logf func(string, ...any)) (s *Stack, err error) {
	s = &Stack{}
	if s.Registry, err = images.ServeRegistry(registryAddr); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
			s = nil
		}
	}()
	b := &images.Builder{Registry: s.Registry.Addr}
	tmp, err := os.MkdirTemp("", "cineflow-pause-")
	if err != nil {
		return s, err
	}
	defer os.RemoveAll(tmp)
	bin, err := images.GoBuild(filepath.Join(root, "k8s", "local"), "./cmd/pause", tmp, "1", []string{"GOWORK=off"})
	if err != nil {
		return s, err
	}
	if _, err := b.Binary(ctx, "cineflow/pause", "1", bin); err != nil {
		return s, err
	}
	if s.Cluster, err = cluster.Up(ctx, cluster.Options{RepoRoot: root, Registry: s.Registry.Addr,
		PauseImage: s.Registry.Addr + "/cineflow/pause:1", Logf: logf}); err != nil {
		return s, err
	}
	s.Env, err = NewEnv(root, s.Cluster, b, logf)
	return s, err
}

// Stop stops the cluster (every process by its PID, then the host's leftovers) and the registry.
func (s *Stack) Stop() error {
	var errs []error
	began := time.Now()
	if s.Env != nil {
		s.Env.Close()
	}
	if s.Cluster != nil {
		errs = append(errs, s.Cluster.Down())
	}
	if s.Registry != nil {
		errs = append(errs, s.Registry.Close())
	}
	if s.Env != nil {
		s.Logf("cluster stopped in %s", time.Since(began).Round(100*time.Millisecond))
	}
	return errors.Join(errs...)
}
