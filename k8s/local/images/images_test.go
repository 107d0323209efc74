package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeCABundle points CABundle at a file the test writes, for the test's duration.
func fakeCABundle(t *testing.T) []byte {
	t.Helper()
	ca := []byte("-----BEGIN CERTIFICATE-----\nnot a real certificate, only bytes to copy\n-----END CERTIFICATE-----\n")
	path := filepath.Join(t.TempDir(), "ca-certificates.crt")
	if err := os.WriteFile(path, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	old := CABundle
	CABundle = path
	t.Cleanup(func() { CABundle = old })
	return ca
}

// entry is a file of a layer, as read back.
type entry struct {
	hdr  *tar.Header
	body []byte
}

// layerFiles reads an (uncompressed) layer's files, keyed by their path without the leading "/".
func layerFiles(t *testing.T, l v1.Layer) (map[string]entry, []string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]entry{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, order
		}
		if err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimSuffix(h.Name, "/")
		files[n] = entry{h, b}
		order = append(order, n)
	}
}

func TestBase(t *testing.T) {
	ca := fakeCABundle(t)
	img, err := Base()
	if err != nil {
		t.Fatalf("Base: %v", err)
	}
	if mt, err := img.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("media type %v, %v; want %s", mt, err, types.OCIManifestSchema1)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("base has %d layers, want 1", len(layers))
	}
	files, order := layerFiles(t, layers[0])

	// Parents come before their children.
	seen := map[string]bool{}
	for _, n := range order {
		if d := filepath.Dir("/" + n); d != "/" && !seen[strings.TrimPrefix(d, "/")] {
			t.Errorf("%s comes before its directory %s", n, d)
		}
		seen[n] = true
	}

	for _, tc := range []struct {
		path     string
		typ      byte
		mode     int64
		uid, gid int
	}{
		{"etc", tar.TypeDir, 0o755, 0, 0},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0},
		{"etc/group", tar.TypeReg, 0o644, 0, 0},
		{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0},
		{"home/nonroot", tar.TypeDir, 0o700, NonRoot, NonRoot},
		{"tmp", tar.TypeDir, 0o1777, 0, 0},
		{"app", tar.TypeDir, 0o755, 0, 0},
	} {
		e, ok := files[tc.path]
		if !ok {
			t.Errorf("no /%s in the base layer", tc.path)
			continue
		}
		h := e.hdr
		if h.Typeflag != tc.typ || h.Mode != tc.mode || h.Uid != tc.uid || h.Gid != tc.gid {
			t.Errorf("/%s: type %c mode %#o owner %d:%d; want type %c mode %#o owner %d:%d",
				tc.path, h.Typeflag, h.Mode, h.Uid, h.Gid, tc.typ, tc.mode, tc.uid, tc.gid)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("/%s: mtime %s, want the epoch (reproducible)", tc.path, h.ModTime)
		}
	}
	if got := files["etc/ssl/certs/ca-certificates.crt"].body; !bytes.Equal(got, ca) {
		t.Errorf("CA bundle in the image = %q, want the contents of CABundle %q", got, ca)
	}
	passwd := string(files["etc/passwd"].body)
	if !strings.Contains(passwd, "\nnonroot:x:65532:65532:nonroot:/home/nonroot:") {
		t.Errorf("/etc/passwd has no user nonroot 65532:\n%s", passwd)
	}
	if group := string(files["etc/group"].body); !strings.Contains(group, "\nnonroot:x:65532:") {
		t.Errorf("/etc/group has no group nonroot 65532:\n%s", group)
	}
	for _, n := range []string{"bin/sh", "usr/bin/sh", "bin", "usr"} {
		if _, ok := files[n]; ok {
			t.Errorf("base has /%s; it should have no shell", n)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if cf.Config.WorkingDir != "/home/nonroot" {
		t.Errorf("working dir %q", cf.Config.WorkingDir)
	}
	env := strings.Join(cf.Config.Env, "\n")
	for _, want := range []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "HOME=/home/nonroot"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %s", cf.Config.Env, want)
		}
	}
	// The config's diff IDs match the layer (a pulled image would be rejected otherwise).
	diff, err := layers[0].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != diff {
		t.Errorf("config diff IDs %v, layer diff ID %s", cf.RootFS.DiffIDs, diff)
	}
}

func TestBaseMissingCABundle(t *testing.T) {
	old := CABundle
	CABundle = filepath.Join(t.TempDir(), "none.crt")
	defer func() { CABundle = old }()
	if _, err := Base(); err == nil || !strings.Contains(err.Error(), "ca-certificates") {
		t.Errorf("Base without the CA bundle: err = %v; want one naming ca-certificates", err)
	}
}

func TestBaseReproducible(t *testing.T) {
	fakeCABundle(t)
	digest := func() v1.Hash {
		img, err := Base()
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if a, b := digest(), digest(); a != b {
		t.Errorf("Base twice: digests %s and %s", a, b)
	}
}

// buildHello builds a tiny static binary (its own module, outside go.work) with GoBuild.
func buildHello(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go tool: %v", err)
	}
	src := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":        "module example.com/hello\n\ngo 1.21\n",
		"hello/main.go": "package main\n\nimport \"fmt\"\n\nvar version = \"dev\"\n\nfunc main() { fmt.Println(\"hello\", version) }\n",
	} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	bin, err := GoBuild(src, "./hello", out, "v9.9.9", []string{"GOWORK=off"})
	if err != nil {
		t.Fatalf("GoBuild: %v", err)
	}
	if want := filepath.Join(out, "hello"); bin != want {
		t.Errorf("GoBuild = %s, want %s", bin, want)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// Static ELF for linux, with the version stamped.
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Errorf("%s is not an ELF binary", bin)
	}
	if !bytes.Contains(b, []byte("v9.9.9")) {
		t.Errorf("%s lacks the stamped main.version v9.9.9", bin)
	}
	return bin
}

func TestRegistryBinaryRoundTrip(t *testing.T) {
	fakeCABundle(t)
	bin := buildHello(t)
	body, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	reg, err := ServeRegistry("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ServeRegistry: %v", err)
	}
	defer reg.Close()
	if !strings.HasPrefix(reg.Addr, "127.0.0.1:") || strings.HasSuffix(reg.Addr, ":0") {
		t.Fatalf("registry address %q", reg.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := &Builder{Registry: reg.Addr}
	ref, err := b.Binary(ctx, "cineflow/hello", "v1", bin)
	if err != nil {
		t.Fatalf("Binary: %v", err)
	}
	repo, digest, ok := strings.Cut(ref, "@")
	if !ok || repo != reg.Addr+"/cineflow/hello" || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("Binary = %q, want %s/cineflow/hello@sha256:...", ref, reg.Addr)
	}

	// Pulled back by digest, and by tag.
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if d, err := img.Digest(); err != nil || d.String() != digest {
		t.Errorf("pulled digest %s (%v), want %s", d, err, digest)
	}
	tagged, err := name.ParseReference(reg.Addr+"/cineflow/hello:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if desc, err := remote.Head(tagged, remote.WithContext(ctx)); err != nil || desc.Digest.String() != digest {
		t.Errorf("tag v1 points at %v (%v), want %s", desc, err, digest)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/app/hello"}; !reflect.DeepEqual(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, want)
	}
	if len(cf.Config.Cmd) != 0 {
		t.Errorf("cmd %q, want none", cf.Config.Cmd)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if cf.OS != "linux" {
		t.Errorf("OS %q, want linux", cf.OS)
	}
	if got := cf.Config.Labels["org.opencontainers.image.version"]; got != "v1" {
		t.Errorf("version label %q, want v1", got)
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created %s, want the epoch", cf.Created.Time)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want 2 (base, binary)", len(layers))
	}
	files, _ := layerFiles(t, layers[len(layers)-1])
	e, ok := files["app/hello"]
	if !ok || len(files) != 1 {
		t.Fatalf("last layer holds %d files (app/hello present: %v), want only /app/hello", len(files), ok)
	}
	if e.hdr.Typeflag != tar.TypeReg || e.hdr.Mode != 0o755 {
		t.Errorf("/app/hello: type %c mode %#o, want a regular file 0755", e.hdr.Typeflag, e.hdr.Mode)
	}
	if !bytes.Equal(e.body, body) {
		t.Errorf("/app/hello: %d bytes differ from the binary's %d", len(e.body), len(body))
	}
	// The base layer came along: its CA bundle is in the first layer.
	if base, _ := layerFiles(t, layers[0]); base["etc/ssl/certs/ca-certificates.crt"].hdr == nil {
		t.Error("first layer lacks the base's CA bundle")
	}

	// The base image was pushed too.
	baseRef, err := name.ParseReference(reg.Addr+"/cineflow/base:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(baseRef, remote.WithContext(ctx)); err != nil {
		t.Errorf("base image not in the registry: %v", err)
	}

	// Reproducible: the same binary and tag give the same digest, from a fresh Builder as well;
	// another tag (a label) gives another.
	if again, err := b.Binary(ctx, "cineflow/hello", "v1", bin); err != nil || again != ref {
		t.Errorf("same input again: %q, %v; want %q", again, err, ref)
	}
	if fresh, err := (&Builder{Registry: reg.Addr}).Binary(ctx, "cineflow/hello", "v1", bin); err != nil || fresh != ref {
		t.Errorf("same input, new Builder: %q, %v; want %q", fresh, err, ref)
	}
	if other, err := b.Binary(ctx, "cineflow/hello", "v2", bin); err != nil || strings.HasSuffix(other, digest) {
		t.Errorf("another tag: %q, %v; want another digest than %s", other, err, digest)
	}
}

func TestGoBuildReproducible(t *testing.T) {
	fakeCABundle(t)
	first := buildHello(t)
	second := buildHello(t) // another source and output directory
	a, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("the same source built twice gave different binaries (%d and %d bytes)", len(a), len(b))
	}
	base, err := Base()
	if err != nil {
		t.Fatal(err)
	}
	digest := func(bin string) v1.Hash {
		img, err := WithBinary(base, "hello", bin, map[string]string{"k": "v"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if da, db := digest(first), digest(second); da != db {
		t.Errorf("WithBinary digests %s and %s for identical binaries", da, db)
	}
}

func TestGoBuildError(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go tool: %v", err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/bad\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "bad"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bad", "main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := GoBuild(src, "./bad", t.TempDir(), "v1", []string{"GOWORK=off"})
	if err == nil || !strings.Contains(err.Error(), "undefined") {
		t.Errorf("GoBuild of broken code: err = %v; want the compiler's message", err)
	}
}
