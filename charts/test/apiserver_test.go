package charttest

// A real Kubernetes control plane for the install tests: Debian's etcd, and kube-apiserver and
// kube-controller-manager built from k8s.io/kubernetes in the module k8s/apiserver. No kubelet
// runs, so no pod starts; what is checked is what the API server accepts and what the controllers
// (CronJob, Job, garbage collector, namespace, service account) create and delete.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
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
	"k8s.io/client-go/tools/clientcmd"
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

var (
	apiBinOnce sync.Once
	apiBinDir  string
	apiBinErr  error
)

// apiBinaries builds kube-apiserver and kube-controller-manager from the module k8s/apiserver
// and returns the directory holding them. They are cached in
// $CINEFLOW_K8S_CACHE (default: <user cache dir>/cineflow-k8s)/<hash of go.mod and go.sum>/, so
// only the first run pays for the build (about 3.5 minutes on 2 cores).
func apiBinaries(t *testing.T) string {
	t.Helper()
	apiBinOnce.Do(func() { apiBinDir, apiBinErr = apiBuild(t) })
	if apiBinErr != nil {
		t.Fatalf("build kube-apiserver and kube-controller-manager: %v", apiBinErr)
	}
	return apiBinDir
}

var apiTools = []string{"kube-apiserver", "kube-controller-manager"}

func apiBuild(t *testing.T) (string, error) {
	modDir := filepath.Join(repoRoot(t), "k8s", "apiserver")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(modDir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%s/%s\n", runtime.GOOS, runtime.GOARCH)
	root := os.Getenv("CINEFLOW_K8S_CACHE")
	if root == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		root = filepath.Join(base, "cineflow-k8s")
	}
	dir := filepath.Join(root, hex.EncodeToString(h.Sum(nil))[:16])
	if apiHaveAll(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	began := time.Now()
	t.Logf("building %v from %s into %s (minutes, once per go.sum)", apiTools, modDir, dir)
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	for _, tool := range apiTools {
		args = append(args, "k8s.io/kubernetes/cmd/"+tool)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{err: err, out: out}
	}
	if err := os.Rename(tmp, dir); err != nil && !apiHaveAll(dir) {
		return "", err
	}
	t.Logf("built %v in %s", apiTools, time.Since(began).Round(time.Second))
	return dir, nil
}

func apiHaveAll(dir string) bool {
	for _, tool := range apiTools {
		if fi, err := os.Stat(filepath.Join(dir, tool)); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// apiFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func apiFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// apiProc is a process started by the test; t.Cleanup stops it by its PID.
type apiProc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// exited reports whether the process has ended.
func (p *apiProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last n lines of the process's log.
func (p *apiProc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// apiStart runs bin with args, its output in dir/<name>.log. The process gets SIGKILL if the test
// binary dies (Pdeathsig); t.Cleanup sends it SIGTERM, then SIGKILL after 15 s, and waits for it;
// when the test failed, the log's tail is printed.
func apiStart(t *testing.T, dir, name, bin string, args ...string) *apiProc {
	t.Helper()
	p := &apiProc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("--- last lines of %s (pid %d) ---\n%s", name, p.cmd.Process.Pid, p.tail(40))
		}
	})
	return p
}

// apiWaitFor polls ok every 200 ms until it returns true, p exits, or timeout passes.
func apiWaitFor(t *testing.T, p *apiProc, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if p != nil && p.exited() {
			t.Fatalf("%s exited while waiting for %s: %v\n%s", p.name, what, p.cmd.ProcessState, p.tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// apiStartCluster starts etcd, kube-apiserver and kube-controller-manager on free ports of
// 127.0.0.1. Skipped with -short, and when etcd is missing (unless CI is set).
func apiStartCluster(t *testing.T) *apiCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no Kubernetes API server")
	}
	etcd := apiEtcdBin(t)
	bins := apiBinaries(t)
	began := time.Now()
	// Short paths: the test name can make t.TempDir() long.
	dir, err := os.MkdirTemp("", "cineflow-k8s-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // registered first: runs after every process stopped

	// etcd
	clientPort, peerPort := apiFreePort(t), apiFreePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdProc := apiStart(t, dir, "etcd", etcd,
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"), "--logger=zap",
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--initial-cluster-state=new")
	apiWaitFor(t, etcdProc, 30*time.Second, "etcd /health", func() bool {
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && bytes.Contains(b, []byte(`"true"`))
	})

	// Credentials: a static admin token and the service-account key pair.
	token := apiRandomHex(t, 24)
	tokenFile := filepath.Join(dir, "tokens.csv")
	apiWriteFile(t, tokenFile, token+",admin,admin-uid,system:masters\n")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	apiWriteFile(t, saKey, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	saPub := filepath.Join(dir, "sa.pub")
	apiWriteFile(t, saPub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))

	// kube-apiserver; it writes a self-signed serving certificate (and its CA) to cert-dir.
	port := apiFreePort(t)
	certDir := filepath.Join(dir, "pki")
	apiserver := apiStart(t, dir, "kube-apiserver", filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir="+certDir,
		// The "kubernetes" Service's endpoints may not name a loopback address: keep none.
		"--endpoint-reconciler-type=none",
		"--token-auth-file="+tokenFile,
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/12",
		"--profiling=false")
	host := fmt.Sprintf("https://127.0.0.1:%d", port)
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	apiWaitFor(t, apiserver, 90*time.Second, "kube-apiserver /readyz", func() bool {
		req, _ := http.NewRequest("GET", host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := insecure.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	caFile := filepath.Join(certDir, "apiserver.crt")

	kubeconfig := filepath.Join(dir, "kubeconfig")
	apiWriteFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
`, host, caFile, token))
	kcm := apiStart(t, dir, "kube-controller-manager", filepath.Join(bins, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--secure-port=0", "--leader-elect=false",
		"--controllers=*",
		"--root-ca-file="+caFile,
		"--service-account-private-key-file="+saKey,
		"--use-service-account-credentials=true",
		"--concurrent-cron-job-syncs=2")

	c := &apiCluster{Kubeconfig: kubeconfig}
	kc, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.Config, err = clientcmd.RESTConfigFromKubeConfig(kc); err != nil {
		t.Fatal(err)
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	// The controller manager is up when its service-account controller has made "default".
	apiWaitFor(t, kcm, 90*time.Second, "the controller manager (ServiceAccount default/default)", func() bool {
		_, err := c.Clientset.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	})
	t.Logf("cluster ready in %s: API server %s, etcd %s, kubeconfig %s", time.Since(began).Round(100*time.Millisecond), host, etcdURL, kubeconfig)
	return c
}

func apiRandomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
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
		apiWaitFor(t, nil, 30*time.Second, "CRD "+name+" Established", func() bool {
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
