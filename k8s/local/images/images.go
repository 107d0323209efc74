// Package images builds OCI images without Docker and serves them from a registry on
// 127.0.0.1 (go-containerregistry, the library behind crane and ko).
//
// The base image is built here too: CA certificates (Debian's bundle), /etc/passwd and
// /etc/group with the user nonroot (65532, the distroless convention the chart's security
// context expects), a home and /tmp; no shell, no package manager. An application image is
// that base plus one layer holding a static Go binary, run as 65532.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group of every image.
const NonRoot = 65532

// CABundle is the host's CA certificates (Debian's ca-certificates), copied into the base image.
var CABundle = "/etc/ssl/certs/ca-certificates.crt"

// Registry is an in-memory OCI registry served over plain HTTP.
type Registry struct {
	// Addr is its host:port (on 127.0.0.1).
	Addr string
	srv  *http.Server
}

// ServeRegistry starts a registry on addr ("127.0.0.1:0" for any free port).
func ServeRegistry(addr string) (*Registry, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Registry{Addr: l.Addr().String()}
	r.srv = &http.Server{
		Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

// Close stops the registry (its images are lost).
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}

// File is one entry of a layer.
type File struct {
	Path     string // absolute, inside the image
	Mode     int64  // permission bits; with Dir, a directory
	Dir      bool
	UID, GID int
	Body     []byte
}

// Layer returns an uncompressed tar layer of files (in order; parents first).
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.Path[1:], Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: epoch, Format: tar.FormatPAX}
		if f.Dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// BaseFiles are the base image's files.
func BaseFiles() ([]File, error) {
	ca, err := os.ReadFile(CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA certificates for the base image: %w (Debian package ca-certificates)", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\nnonroot:x:%d:\n", NonRoot)
	return []File{
		{Path: "/etc", Mode: 0o755, Dir: true},
		{Path: "/etc/passwd", Mode: 0o644, Body: []byte(passwd)},
		{Path: "/etc/group", Mode: 0o644, Body: []byte(group)},
		{Path: "/etc/nsswitch.conf", Mode: 0o644, Body: []byte("hosts: files dns\n")},
		{Path: "/etc/ssl", Mode: 0o755, Dir: true},
		{Path: "/etc/ssl/certs", Mode: 0o755, Dir: true},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Body: ca},
		{Path: "/home", Mode: 0o755, Dir: true},
		{Path: "/home/nonroot", Mode: 0o700, Dir: true, UID: NonRoot, GID: NonRoot},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
		{Path: "/app", Mode: 0o755, Dir: true},
	}, nil
}

// Base returns the base image.
func Base() (v1.Image, error) {
	files, err := BaseFiles()
	if err != nil {
		return nil, err
	}
	layer, err := Layer(files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{"PATH=/app", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "HOME=/home/nonroot"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.description": "CineFlow's base image: CA certificates and the user nonroot"}
	return mutate.ConfigFile(img, cf)
}

// WithBinary returns base plus the binary at bin as /app/<name>, its entrypoint.
func WithBinary(base v1.Image, name, bin string, labels map[string]string) (v1.Image, error) {
	body, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	layer, err := Layer([]File{{Path: "/app/" + name, Mode: 0o755, Body: body}})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = []string{"/app/" + name}
	cf.Config.Cmd = nil
	for k, v := range labels {
		cf.Config.Labels[k] = v
	}
	cf.Created = v1.Time{Time: time.Unix(0, 0)}
	return mutate.ConfigFile(img, cf)
}

// Push writes img to ref (a registry on 127.0.0.1 is spoken to over plain HTTP) and returns
// ref@digest.
func Push(ctx context.Context, img v1.Image, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Name() + "@" + d.String(), nil
}

// GoBuild builds the main package pkg (a path relative to dir, or an import path) statically
// for linux/GOARCH, stamping main.version, and returns the binary's path in outDir.
func GoBuild(dir, pkg, outDir, version string, env []string) (string, error) {
	name := filepath.Base(pkg)
	if name == "." {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		name = filepath.Base(abs)
	}
	out := filepath.Join(outDir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// Builder builds images from Go packages on the locally built base and pushes them to a
// registry.
type Builder struct {
	Registry string // host:port
	base     v1.Image
}

// BaseRef pushes the base image (once) and returns its reference.
func (b *Builder) BaseRef(ctx context.Context) (string, error) {
	if b.base == nil {
		img, err := Base()
		if err != nil {
			return "", err
		}
		b.base = img
	}
	return Push(ctx, b.base, b.Registry+"/cineflow/base:latest")
}

// Binary pushes the image <registry>/<repo>:<tag> of the binary bin and returns ref@digest.
func (b *Builder) Binary(ctx context.Context, repo, tag, bin string) (string, error) {
	if _, err := b.BaseRef(ctx); err != nil {
		return "", err
	}
	img, err := WithBinary(b.base, filepath.Base(bin), bin, map[string]string{
		"org.opencontainers.image.version": tag,
		"org.opencontainers.image.source":  "https://github.com/cineflow/cineflow",
	})
	if err != nil {
		return "", err
	}
	return Push(ctx, img, b.Registry+"/"+repo+":"+tag)
}
