package deploy

import (
	"path/filepath"

	"github.com/cineflow/cineflow/k8s/local/cluster"
)

// Skaffold returns the skaffold binary built from the module k8s/skaffold (its tool), cached
// like every other tool; k8s/skaffold's own tests build it into the same place.
func Skaffold(root string, logf func(string, ...any)) (string, error) {
	dir, err := cluster.BuildModuleTools(filepath.Join(root, "k8s", "skaffold"),
		[]string{"github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold"}, logf)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "skaffold"), nil
}
