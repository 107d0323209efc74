package charttest

// A real Kubernetes control plane for the install tests: Debian's etcd, and kube-apiserver and
// kube-controller-manager built from k8s.io/kubernetes in the module k8s/apiserver, started by the
// local cluster's code (k8s/local/cluster) without its node. No kubelet runs, so no pod starts;
// what is checked is what the API server accepts and what the controllers (CronJob, Job, garbage
// collector, namespace, service account) create and delete.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/cineflow/cineflow/k8s/local/cluster"
)

// apiCluster is a running etcd + kube-apiserver + kube-controller-manager, stopped by t.Cleanup.
type apiCluster struct {
	// Kubeconfig is the path of a kubeconfig file for the cluster's admin (system:masters).
	Kubeconfig string
	Config     *rest.Config
	Clientset  kubernetes.Interface
	Dynamic    dynamic.Interface
	mapper     *restmapper.DeferredDiscoveryRESTMapper
}

// apiEtcdBin returns Debian's etcd (package etcd-server). Without it the test is skipped, unless CI
// is set: then it fails.
func apiEtcdBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"etcd", "/usr/bin/etcd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("etcd not found: install Debian's etcd-server (apt-get install -y etcd-server)")
	}
	t.Skip("etcd not found (apt-get install -y etcd-server); skipping the install tests")
	return ""
}

// apiWaitFor polls ok every 200 ms until it returns true or timeout passes.
func apiWaitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// apiStartCluster starts the control plane of the local cluster (k8s/local/cluster:
// StartControlPlane; kube-apiserver and kube-controller-manager built from the module
// k8s/apiserver and cached, Debian's etcd) on free ports of 127.0.0.1. Skipped with -short, and
// when etcd is missing (unless CI is set). When the test failed, the tails of the processes'
// logs are printed.
func apiStartCluster(t *testing.T) *apiCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no Kubernetes API server")
	}
	apiEtcdBin(t)
	began := time.Now()
	// Short paths: the test name can make t.TempDir() long.
	dir, err := os.MkdirTemp("", "cineflow-k8s-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // registered first: runs after every process stopped
	cp, err := cluster.StartControlPlane(context.Background(), repoRoot(t), dir, t.Logf)
	if err != nil {
		t.Fatalf("start the control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Down(); err != nil {
			t.Errorf("stop the control plane: %v", err)
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
				t.Logf("--- last lines of %s ---\n%s", filepath.Base(l), strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	c := &apiCluster{Kubeconfig: cp.Kubeconfig, Config: cp.Config, Clientset: cp.Client}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	t.Logf("control plane ready in %s: API server %s, kubeconfig %s", time.Since(began).Round(100*time.Millisecond), cp.Server, c.Kubeconfig)
	return c
}

func apiWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// apiDecodeObjects splits a multi-document YAML stream into objects (empty documents skipped).
func apiDecodeObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decode YAML: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// resource returns the client for obj's kind, in namespace ns when the kind is namespaced.
func (c *apiCluster) resource(t *testing.T, obj *unstructured.Unstructured, ns string) dynamic.ResourceInterface {
	t.Helper()
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("no resource for %s: %v", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() != "" {
			ns = obj.GetNamespace()
		}
		return c.Dynamic.Resource(m.Resource).Namespace(ns)
	}
	return c.Dynamic.Resource(m.Resource)
}

// get fetches obj (by kind and name) from the server; found is false on NotFound.
func (c *apiCluster) get(t *testing.T, obj *unstructured.Unstructured, ns string) (live *unstructured.Unstructured, found bool) {
	t.Helper()
	live, err := c.resource(t, obj, ns).Get(context.Background(), obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("get %s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	return live, true
}

var apiCRDGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the CustomResourceDefinitions in files and waits until each is
// Established and served.
func (c *apiCluster) installCRDs(t *testing.T, files ...string) {
	t.Helper()
	ctx := context.Background()
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range apiDecodeObjects(t, data) {
			if _, err := c.Dynamic.Resource(apiCRDGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create CRD %s from %s: %v", obj.GetName(), filepath.Base(f), err)
			}
			names = append(names, obj.GetName())
		}
	}
	for _, name := range names {
		apiWaitFor(t, 30*time.Second, "CRD "+name+" Established", func() bool {
			crd, err := c.Dynamic.Resource(apiCRDGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		})
	}
	c.mapper.Reset()
}
