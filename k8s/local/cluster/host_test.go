package cluster

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       []string
	}{
		{
			"plain",
			`-A FORWARD -j KUBE-FORWARD`,
			[]string{"-A", "FORWARD", "-j", "KUBE-FORWARD"},
		},
		{
			"quoted comment with spaces",
			`-A INPUT -m comment --comment "block incoming localnet connections" -j KUBE-FIREWALL`,
			[]string{"-A", "INPUT", "-m", "comment", "--comment", "block incoming localnet connections", "-j", "KUBE-FIREWALL"},
		},
		{
			"rule as cleanIptables passes it (after -A)",
			`PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
			[]string{"PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"},
		},
		{
			"escaped quotes inside a comment (CNI bridge plugin)",
			`POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \"cineflow\" id: \"abc123\"" -j CNI-0123456789abcdef`,
			[]string{"POSTROUTING", "-s", "10.88.0.5/32", "-m", "comment", "--comment", `name: "cineflow" id: "abc123"`, "-j", "CNI-0123456789abcdef"},
		},
		{
			"escaped backslash",
			`X --comment "a\\b" -j Y`,
			[]string{"X", "--comment", `a\b`, "-j", "Y"},
		},
		{
			"empty quoted word",
			`X --comment "" -j Y`,
			[]string{"X", "--comment", "", "-j", "Y"},
		},
		{
			"repeated and trailing spaces",
			`  X   -j  Y  `,
			[]string{"X", "-j", "Y"},
		},
		{
			"quotes inside a word",
			`X --comment a"b c"d -j Y`,
			[]string{"X", "--comment", "ab cd", "-j", "Y"},
		},
		{"empty", ``, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := splitRule(tc.line); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("splitRule(%q)\n got %q\nwant %q", tc.line, got, tc.want)
			}
		})
	}
}

func TestUnescapeMount(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`/a\040b`, "/a b"},
		{`/var/tmp/cineflow-cluster/containerd`, "/var/tmp/cineflow-cluster/containerd"},
		{`/a\040b\040c`, "/a b c"},
		{`/tab\011x`, "/tab\tx"},
		{`/new\012line`, "/new\nline"},
		{`/back\134slash`, `/back\slash`},
		{`/end\040`, "/end "},
		{`\040start`, " start"},
		{`/short\04`, `/short\04`}, // too short for an escape: kept
		{`/not\xyzoctal`, `/not\xyzoctal`},
	} {
		if got := unescapeMount(tc.in); got != tc.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// fakeModule writes a go.mod and go.sum into a new directory.
func fakeModule(t *testing.T, gomod, gosum string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"go.mod": gomod, "go.sum": gosum} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	fakeGoMod = "module example.com/tools\n\ngo 1.26\n\nrequire example.com/dep v1.0.0\n"
	fakeGoSum = "example.com/dep v1.0.0 h1:aaaa=\nexample.com/dep v1.0.0/go.mod h1:bbbb=\n"
)

func mustKey(t *testing.T, dir string) string {
	t.Helper()
	k, err := ModuleKey(dir)
	if err != nil {
		t.Fatalf("ModuleKey(%s): %v", dir, err)
	}
	return k
}

func TestModuleKey(t *testing.T) {
	base := mustKey(t, fakeModule(t, fakeGoMod, fakeGoSum))
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(base) {
		t.Errorf("ModuleKey = %q, want 16 hex digits", base)
	}

	// The same files elsewhere: the same key (it names a shared cache directory).
	if again := mustKey(t, fakeModule(t, fakeGoMod, fakeGoSum)); again != base {
		t.Errorf("ModuleKey of identical files = %q, then %q", base, again)
	}

	for _, tc := range []struct{ name, gomod, gosum string }{
		{"go.sum changed", fakeGoMod, strings.Replace(fakeGoSum, "aaaa", "cccc", 1)},
		{"go.sum grew", fakeGoMod, fakeGoSum + "example.com/other v0.1.0/go.mod h1:dddd=\n"},
		{"go.mod changed", strings.Replace(fakeGoMod, "v1.0.0", "v1.0.1", 1), fakeGoSum},
		// The length prefix keeps content from moving between the files unnoticed.
		{"content moved from go.mod to go.sum", strings.TrimSuffix(fakeGoMod, "\n"), "\n" + fakeGoSum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k := mustKey(t, fakeModule(t, tc.gomod, tc.gosum)); k == base {
				t.Errorf("ModuleKey unchanged (%s)", k)
			}
		})
	}

	t.Run("no go.sum", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(fakeGoMod), 0o644); err != nil {
			t.Fatal(err)
		}
		if k, err := ModuleKey(dir); err == nil {
			t.Errorf("ModuleKey without go.sum = %q, nil; want an error", k)
		}
	})
}

// TestKubeVersionLDFlags: the module that builds Kubernetes (k8s/apiserver) gets its version
// stamped in, for component-base's and client-go's version packages; another module gets none.
func TestKubeVersionLDFlags(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	apiserver := filepath.Join(filepath.Dir(file), "..", "..", "apiserver")
	b, err := os.ReadFile(filepath.Join(apiserver, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v1\.([0-9]+)\.[0-9]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("k8s/apiserver/go.mod requires no k8s.io/kubernetes")
	}
	ldflags, version := kubeVersionLDFlags(apiserver)
	if version != string(m[1]) {
		t.Errorf("version %q, want %q (k8s/apiserver/go.mod)", version, m[1])
	}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, want := range []string{pkg + ".gitVersion=" + version, pkg + ".gitMajor=1", pkg + ".gitMinor=" + string(m[2])} {
			if !strings.Contains(ldflags, "-X "+want) {
				t.Errorf("ldflags %q lack -X %s", ldflags, want)
			}
		}
	}
	if ldflags, version := kubeVersionLDFlags(fakeModule(t, fakeGoMod, fakeGoSum)); ldflags != "" || version != "" {
		t.Errorf("a module without Kubernetes: ldflags %q, version %q; want none", ldflags, version)
	}
}

func TestCacheRoot(t *testing.T) {
	t.Setenv("CINEFLOW_K8S_CACHE", "/some/where")
	if got := CacheRoot(); got != "/some/where" {
		t.Errorf("CacheRoot with CINEFLOW_K8S_CACHE = %q", got)
	}
	t.Setenv("CINEFLOW_K8S_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	if got := CacheRoot(); got != "/xdg/cache/cineflow-k8s" {
		t.Errorf("CacheRoot without CINEFLOW_K8S_CACHE = %q, want /xdg/cache/cineflow-k8s", got)
	}
}

func TestBuildModuleToolsCached(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("CINEFLOW_K8S_CACHE", cache)
	// No go in PATH: any attempt to build fails instead of taking minutes.
	t.Setenv("PATH", t.TempDir())
	mod := fakeModule(t, fakeGoMod, fakeGoSum)
	pkgs := []string{"example.com/tools/cmd/alpha", "example.com/dep/cmd/beta"}
	want := filepath.Join(cache, mustKey(t, mod))

	put := func(t *testing.T, name string) {
		t.Helper()
		if err := os.MkdirAll(want, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(want, name), []byte("#!/bin/false\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	noLog := func(t *testing.T) func(string, ...any) {
		return func(f string, a ...any) { t.Errorf("unexpected log (a build?): "+f, a...) }
	}

	t.Run("one binary missing: builds", func(t *testing.T) {
		put(t, "alpha")
		var logged bool
		dir, err := BuildModuleTools(mod, pkgs, func(string, ...any) { logged = true })
		if err == nil {
			t.Fatalf("BuildModuleTools = %s, nil with beta missing and no go to build it", dir)
		}
		if !logged || !strings.Contains(err.Error(), "build") {
			t.Errorf("want a build attempt; logged %v, err %v", logged, err)
		}
	})

	t.Run("a directory is not a binary", func(t *testing.T) {
		if err := os.MkdirAll(filepath.Join(want, "beta"), 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(want, "beta"))
		if _, err := BuildModuleTools(mod, pkgs, func(string, ...any) {}); err == nil {
			t.Error("BuildModuleTools took the directory beta for the binary")
		}
	})

	t.Run("all present: cached", func(t *testing.T) {
		put(t, "alpha")
		put(t, "beta")
		dir, err := BuildModuleTools(mod, pkgs, noLog(t))
		if err != nil {
			t.Fatalf("BuildModuleTools with every binary cached: %v", err)
		}
		if dir != want {
			t.Errorf("BuildModuleTools = %s, want %s", dir, want)
		}
		entries, _ := os.ReadDir(cache)
		if len(entries) != 1 {
			t.Errorf("cache holds %d entries, want only %s", len(entries), filepath.Base(want))
		}
	})

	t.Run("another go.sum: another directory", func(t *testing.T) {
		other := fakeModule(t, fakeGoMod, fakeGoSum+"example.com/x v1.0.0/go.mod h1:eeee=\n")
		dir, err := BuildModuleTools(other, pkgs, func(string, ...any) {})
		if err == nil {
			t.Fatalf("BuildModuleTools reused %s for a module with another go.sum", dir)
		}
		if dir == want {
			t.Errorf("BuildModuleTools directory %s is the first module's", dir)
		}
	})
}

func TestOurContainers(t *testing.T) {
	dir := t.TempDir()
	if got := ourContainers(dir); len(got) != 0 {
		t.Errorf("ourContainers of an empty dir = %v", got)
	}
	tasks := filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", "k8s.io")
	for _, id := range []string{"aaa111", "bbb222"} {
		if err := os.MkdirAll(filepath.Join(tasks, id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tasks, "not-a-task"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Another namespace's tasks are not ours to kill.
	if err := os.MkdirAll(filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", "moby", "ccc333"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := ourContainers(dir)
	sort.Strings(got)
	if strings.Join(got, ",") != "aaa111,bbb222" {
		t.Errorf("ourContainers = %v, want [aaa111 bbb222]", got)
	}
}
