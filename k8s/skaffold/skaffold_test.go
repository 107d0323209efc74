// Package skaffold checks the repository's skaffold.yaml with skaffold itself and confirms that
// every path it names exists. It is its own module (outside go.work, run it with GOWORK=off) whose
// only dependency is skaffold, built from source: `go install` cannot fetch skaffold (the module
// proxy refuses its version list), but a module that requires it, with the replace lines of
// skaffold's own go.mod, builds cmd/skaffold.
//
//	cd k8s/skaffold && GOWORK=off go test -count=1 ./...
//
// The first run builds skaffold (about 4.5 minutes on two idle cores, 28 when they were shared
// with a Kubernetes build) into the user cache directory, keyed by go.mod and go.sum, so later
// runs reuse it; -short skips the tests that need it.
package skaffold

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// repoRoot is the repository's root directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func moduleDir(t testing.TB) string { return filepath.Join(repoRoot(t), "k8s", "skaffold") }

var (
	skaffoldOnce sync.Once
	skaffoldPath string
	skaffoldErr  error
)

// skaffoldBin returns skaffold built from this module's tool dependency, building it the first
// time into $CINEFLOW_K8S_CACHE (default <user cache>/cineflow-k8s)/<hash of go.mod and
// go.sum>/skaffold: the place and key of k8s/local's cluster.BuildModuleTools, so that `make e2e`
// (which runs `skaffold run`) finds the same binary. This module cannot import k8s/local without
// mixing client-go into skaffold's dependencies, hence the copy of the key.
func skaffoldBin(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not building skaffold")
	}
	skaffoldOnce.Do(func() { skaffoldPath, skaffoldErr = buildSkaffold(moduleDir(t)) })
	if skaffoldErr != nil {
		t.Fatalf("build skaffold: %v", skaffoldErr)
	}
	return skaffoldPath
}

func buildSkaffold(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%s/%s\n", runtime.GOOS, runtime.GOARCH)
	root := os.Getenv("CINEFLOW_K8S_CACHE")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		root = filepath.Join(cache, "cineflow-k8s")
	}
	binDir := filepath.Join(root, hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(binDir, "skaffold")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	// Build beside the final path and rename: a build cut short never leaves a broken binary
	// where the next run would trust it.
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer os.Remove(tmp)
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// skaffold runs skaffold in the repository's root with its state (config, cache) in a temporary
// home, no kube config, no update check, no survey, and returns stdout and stderr.
func skaffold(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return skaffoldEnv(t, nil, args...)
}

// skaffoldEnv is skaffold with extra environment variables (which win over the defaults).
func skaffoldEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(skaffoldBin(t), args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
		"SKAFFOLD_UPDATE_CHECK=false",
		"SKAFFOLD_INTERACTIVE=false",
		"SKAFFOLD_COLLECT_METRICS=false",
		// No Docker Engine: nothing may reach the user's.
		"DOCKER_HOST=unix://"+filepath.Join(home, "no-docker.sock"),
		"DOCKER_CONTEXT=",
		"DOCKER_TLS_VERIFY=",
	)
	cmd.Env = append(cmd.Env, env...) // exec keeps the last value of a variable
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestSkaffoldBuilds makes sure skaffold builds and runs.
func TestSkaffoldBuilds(t *testing.T) {
	out, errOut, err := skaffold(t, "version")
	if err != nil {
		t.Fatalf("skaffold version: %v\n%s%s", err, out, errOut)
	}
	t.Logf("skaffold version: %s", strings.TrimSpace(out))
}

// effectiveConfig is what `skaffold diagnose --yaml-only` prints: every config, profiles and
// requires resolved.
type effectiveConfig struct {
	APIVersion string `yaml:"apiVersion"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Build struct {
		Artifacts []struct {
			Image     string   `yaml:"image"`
			Platforms []string `yaml:"platforms"`
		} `yaml:"artifacts"`
	} `yaml:"build"`
	Manifests struct {
		RawYaml []string `yaml:"rawYaml"`
	} `yaml:"manifests"`
	Deploy struct {
		Helm *struct {
			Releases []struct {
				Name        string   `yaml:"name"`
				ChartPath   string   `yaml:"chartPath"`
				ValuesFiles []string `yaml:"valuesFiles"`
			} `yaml:"releases"`
		} `yaml:"helm"`
	} `yaml:"deploy"`
}

func decodeAll(t *testing.T, r io.Reader) []effectiveConfig {
	t.Helper()
	var cfgs []effectiveConfig
	dec := yaml.NewDecoder(r)
	for {
		var c effectiveConfig
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			return cfgs
		}
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		cfgs = append(cfgs, c)
	}
}

// TestSkaffoldDiagnose has skaffold itself read, validate (schema skaffold/v4beta13) and resolve
// skaffold.yaml, with and without the production and local profiles, and checks the effective
// configuration: the dev loop deploys the dev pieces before the chart with the dev values;
// production deploys the chart alone with the production values; local (the cluster of k8s/local,
// whose dev pieces are already there) builds with ko for this machine and deploys the chart alone
// with the local values. `make e2e` runs `skaffold run -p local` for real.
func TestSkaffoldDiagnose(t *testing.T) {
	skaffoldBin(t) // skips with -short
	for _, tc := range []struct {
		name       string
		args       []string
		configs    []string // config names, in deploy order
		valuesFile string
		platforms  string
	}{
		{"dev", nil, []string{"cineflow-dev-deps", "cineflow"}, "k8s/dev/values-dev.yaml", "linux/amd64,linux/arm64"},
		{"production", []string{"--profile", "production"}, []string{"cineflow"}, "k8s/values-production.yaml", "linux/amd64,linux/arm64"},
		{"local", []string{"--profile", "local"}, []string{"cineflow"}, "k8s/local/values-local.yaml", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"diagnose", "--yaml-only"}, tc.args...)
			out, errOut, err := skaffold(t, args...)
			if err != nil {
				t.Fatalf("skaffold %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
			}
			cfgs := decodeAll(t, strings.NewReader(out))
			var names []string
			for _, c := range cfgs {
				names = append(names, c.Metadata.Name)
				if c.APIVersion != "skaffold/v4beta13" {
					t.Errorf("config %s: apiVersion %q", c.Metadata.Name, c.APIVersion)
				}
			}
			if strings.Join(names, ",") != strings.Join(tc.configs, ",") {
				t.Fatalf("configs %v, want %v\n%s", names, tc.configs, out)
			}
			main := cfgs[len(cfgs)-1]
			var images []string
			for _, a := range main.Build.Artifacts {
				images = append(images, a.Image)
				if strings.Join(a.Platforms, ",") != tc.platforms {
					t.Errorf("artifact %s: platforms %v", a.Image, a.Platforms)
				}
			}
			if got := strings.Join(images, ","); got != "cineflow-core,cineflow-notification,cineflow-sweeper" {
				t.Errorf("artifacts %s", got)
			}
			if main.Deploy.Helm == nil || len(main.Deploy.Helm.Releases) != 1 {
				t.Fatalf("want one helm release:\n%s", out)
			}
			rel := main.Deploy.Helm.Releases[0]
			if !strings.HasSuffix(filepath.ToSlash(rel.ChartPath), "charts/cineflow") {
				t.Errorf("chartPath %s", rel.ChartPath)
			}
			if len(rel.ValuesFiles) != 1 || !strings.HasSuffix(filepath.ToSlash(rel.ValuesFiles[0]), tc.valuesFile) {
				t.Errorf("valuesFiles %v, want [%s]", rel.ValuesFiles, tc.valuesFile)
			}
		})
	}
}

// TestSkaffoldDiagnoseArtifacts runs the full `skaffold diagnose`: besides the configuration it
// reads every artifact's Dockerfile and Docker context (.dockerignore applied), checks that what
// each COPY names exists, and lists the files each image depends on, with no cluster. The one
// thing it would fetch from the network, each base image's configuration (for ONBUILD
// triggers), comes from a stub Docker Engine (see fakeDockerEngine): none of our base images has
// ONBUILD triggers.
func TestSkaffoldDiagnoseArtifacts(t *testing.T) {
	skaffoldBin(t) // skips with -short
	engine, asked := fakeDockerEngine(t)
	for _, profile := range []string{"", "production"} {
		t.Run("profile="+profile, func(t *testing.T) {
			args := []string{"diagnose"}
			if profile != "" {
				args = append(args, "--profile", profile)
			}
			out, errOut, err := skaffoldEnv(t, []string{"DOCKER_HOST=" + engine}, append(args, "--verbosity", "warn")...)
			if err != nil {
				t.Fatalf("skaffold %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
			}
			// The diagnostics end where the effective configuration begins; skaffold repeats them for
			// each config.
			diag, _, _ := strings.Cut(out, "apiVersion:")
			if i := strings.Index(diag, "Configuration\n"); i >= 0 {
				diag = diag[:i]
			}
			t.Logf("skaffold %s (DOCKER_HOST=%s):\n%s", strings.Join(args, " "), engine, diag)
			for _, image := range []string{"cineflow-core", "cineflow-notification", "cineflow-sweeper"} {
				if !strings.Contains(out, "Docker artifact: "+image) {
					t.Errorf("no diagnostics of %s:\n%s", image, out)
				}
			}
			// skaffold prints every artifact once per config (the dev loop has two).
			deps := regexp.MustCompile(`Dependencies: (\d+) files`).FindAllStringSubmatch(out, -1)
			if len(deps) == 0 || len(deps)%3 != 0 {
				t.Errorf("want the dependencies of 3 artifacts:\n%s", out)
			}
			for _, m := range deps {
				// Each image depends on at least go.work, pkg/ and its own module.
				if n, _ := strconv.Atoi(m[1]); n < 10 {
					t.Errorf("an artifact with %s dependencies:\n%s", m[1], out)
				}
			}
		})
	}
	t.Logf("base images looked up: %v", asked())
}

// fakeDockerEngine serves the two calls of the Docker Engine API that `skaffold diagnose` makes
// (version negotiation, and image inspection of each FROM image, for its ONBUILD triggers) and
// answers every image with a configuration without ONBUILD triggers. It returns the DOCKER_HOST
// to use and the images asked for so far.
func fakeDockerEngine(t *testing.T) (host string, asked func() []string) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]bool{}
	inspect := regexp.MustCompile(`^(?:/v[0-9.]+)?/images/(.+)/json$`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.45")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/_ping" || strings.HasSuffix(r.URL.Path, "/_ping") {
			io.WriteString(w, "OK")
			return
		}
		if m := inspect.FindStringSubmatch(r.URL.Path); m != nil {
			mu.Lock()
			seen[m[1]] = true
			mu.Unlock()
			fmt.Fprintf(w, `{"Id":"sha256:%064x","RepoTags":[%q],"Os":"linux","Architecture":"amd64","Config":{"OnBuild":null}}`, len(m[1]), m[1])
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"message":"fake Docker Engine: %s %s is not served"}`, r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		var names []string
		for n := range seen {
			names = append(names, n)
		}
		sort.Strings(names)
		return names
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}

// skaffoldFile is the part of a skaffold.yaml that names files.
type skaffoldFile struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Requires []struct {
		Path string `yaml:"path"`
	} `yaml:"requires"`
	Build struct {
		Artifacts []struct {
			Image   string `yaml:"image"`
			Context string `yaml:"context"`
			Docker  *struct {
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"docker"`
		} `yaml:"artifacts"`
	} `yaml:"build"`
	Manifests struct {
		RawYaml   []string `yaml:"rawYaml"`
		Kustomize *struct {
			Paths []string `yaml:"paths"`
		} `yaml:"kustomize"`
	} `yaml:"manifests"`
	Deploy struct {
		Helm *struct {
			Releases []helmRelease `yaml:"releases"`
		} `yaml:"helm"`
	} `yaml:"deploy"`
	Profiles []struct {
		Name    string `yaml:"name"`
		Patches []struct {
			Op    string    `yaml:"op"`
			Path  string    `yaml:"path"`
			Value yaml.Node `yaml:"value"`
		} `yaml:"patches"`
	} `yaml:"profiles"`
}

type helmRelease struct {
	Name              string            `yaml:"name"`
	ChartPath         string            `yaml:"chartPath"`
	ValuesFiles       []string          `yaml:"valuesFiles"`
	SetValueTemplates map[string]string `yaml:"setValueTemplates"`
}

// readSkaffold parses every config of a skaffold.yaml file.
func readSkaffold(t *testing.T, file string) []skaffoldFile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cfgs []skaffoldFile
	dec := yaml.NewDecoder(f)
	for {
		var c skaffoldFile
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			return cfgs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		cfgs = append(cfgs, c)
	}
}

// TestSkaffoldPaths confirms that every file and directory skaffold.yaml names, and those of the
// configs it requires, exists: artifact contexts and Dockerfiles, the chart, values files (of the
// profiles too), raw manifests. The image values it sets exist in the chart's values.yaml, and its
// image templates name its artifacts.
func TestSkaffoldPaths(t *testing.T) {
	root := repoRoot(t)
	seen := map[string]bool{}
	var walk func(file string)
	walk = func(file string) {
		if seen[file] {
			return
		}
		seen[file] = true
		base := filepath.Dir(file)
		rel := func(p string) string { r, _ := filepath.Rel(root, filepath.Join(base, p)); return r }
		mustExist := func(what, p string, dir bool) {
			t.Helper()
			fi, err := os.Stat(filepath.Join(base, p))
			switch {
			case err != nil:
				t.Errorf("%s: %s %s does not exist", rel(filepath.Base(file)), what, rel(p))
			case fi.IsDir() != dir:
				t.Errorf("%s: %s %s: directory=%v, want %v", rel(filepath.Base(file)), what, rel(p), fi.IsDir(), dir)
			}
		}
		cfgs := readSkaffold(t, file)
		if len(cfgs) == 0 {
			t.Errorf("%s: no config", file)
		}
		for _, c := range cfgs {
			if c.APIVersion != "skaffold/v4beta13" || c.Kind != "Config" || c.Metadata.Name == "" {
				t.Errorf("%s: apiVersion %q kind %q name %q", rel(filepath.Base(file)), c.APIVersion, c.Kind, c.Metadata.Name)
			}
			images := map[string]bool{}
			for _, a := range c.Build.Artifacts {
				images[a.Image] = true
				ctx := a.Context
				if ctx == "" {
					ctx = "."
				}
				mustExist("artifact "+a.Image+" context", ctx, true)
				if a.Docker == nil {
					t.Errorf("artifact %s: not a docker artifact", a.Image)
					continue
				}
				df := a.Docker.Dockerfile
				if df == "" {
					df = "Dockerfile"
				}
				mustExist("artifact "+a.Image+" dockerfile", filepath.Join(ctx, df), false)
			}
			if c.Deploy.Helm != nil {
				for _, r := range c.Deploy.Helm.Releases {
					mustExist("release "+r.Name+" chart", r.ChartPath, true)
					mustExist("release "+r.Name+" chart", filepath.Join(r.ChartPath, "Chart.yaml"), false)
					for _, v := range r.ValuesFiles {
						mustExist("release "+r.Name+" values file", v, false)
					}
					checkValueTemplates(t, filepath.Join(base, r.ChartPath), r, images)
				}
			}
			for _, m := range c.Manifests.RawYaml {
				if matches, _ := filepath.Glob(filepath.Join(base, m)); len(matches) == 0 {
					t.Errorf("%s: manifest %s matches no file", rel(filepath.Base(file)), rel(m))
				}
			}
			if c.Manifests.Kustomize != nil {
				for _, p := range c.Manifests.Kustomize.Paths {
					mustExist("kustomization", p, true)
				}
			}
			for _, p := range c.Profiles {
				for _, patch := range p.Patches {
					if !strings.Contains(patch.Path, "valuesFiles") || patch.Op == "remove" {
						continue
					}
					var files []string
					if patch.Value.Kind == yaml.SequenceNode {
						if err := patch.Value.Decode(&files); err != nil {
							t.Errorf("profile %s: patch %s: %v", p.Name, patch.Path, err)
						}
					} else {
						var one string
						if err := patch.Value.Decode(&one); err != nil {
							t.Errorf("profile %s: patch %s: %v", p.Name, patch.Path, err)
						}
						files = append(files, one)
					}
					for _, v := range files {
						mustExist("profile "+p.Name+" values file", v, false)
					}
				}
			}
			for _, r := range c.Requires {
				if r.Path == "" {
					continue
				}
				p := filepath.Join(base, r.Path)
				if fi, err := os.Stat(p); err == nil && fi.IsDir() {
					p = filepath.Join(p, "skaffold.yaml")
				}
				mustExist("required config", r.Path, false)
				if _, err := os.Stat(p); err == nil {
					walk(p)
				}
			}
		}
	}
	walk(filepath.Join(root, "skaffold.yaml"))
	if len(seen) < 2 {
		t.Errorf("skaffold.yaml requires no other config; want k8s/dev/skaffold.yaml")
	}
}

var imageTemplate = regexp.MustCompile(`\{\{\s*\.IMAGE_(?:REPO|TAG|DIGEST|DOMAIN|REPO_NO_DOMAIN|FULLY_QUALIFIED)_([A-Za-z0-9_]+)\s*\}\}`)

// checkValueTemplates confirms that every key a release sets exists in the chart's values.yaml (a
// typo would otherwise deploy the chart's default image) and that every image template names an
// artifact (skaffold leaves unknown ones unexpanded).
func checkValueTemplates(t *testing.T, chart string, r helmRelease, images map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Errorf("release %s: %v", r.Name, err)
		return
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Errorf("release %s: chart values: %v", r.Name, err)
		return
	}
	// skaffold names an image's template variables after the image, every character other than
	// a letter, digit or underscore replaced by "_".
	byVar := map[string]string{}
	for img := range images {
		byVar[regexp.MustCompile(`[^A-Za-z0-9_]`).ReplaceAllString(img, "_")] = img
	}
	used := map[string]bool{}
	keys := make([]string, 0, len(r.SetValueTemplates))
	for k := range r.SetValueTemplates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var cur any = values
		for _, part := range strings.Split(k, ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				cur = nil
				break
			}
			if cur, ok = m[part]; !ok {
				cur = nil
				break
			}
		}
		if cur == nil {
			t.Errorf("release %s: setValueTemplates key %s is not in %s/values.yaml", r.Name, k, filepath.Base(chart))
		}
		for _, m := range imageTemplate.FindAllStringSubmatch(r.SetValueTemplates[k], -1) {
			img, ok := byVar[m[1]]
			if !ok {
				t.Errorf("release %s: %s uses %s, no artifact of that name", r.Name, k, m[0])
			}
			used[img] = true
		}
	}
	for img := range images {
		if !used[img] {
			t.Errorf("release %s: artifact %s is never set into the chart", r.Name, img)
		}
	}
}
