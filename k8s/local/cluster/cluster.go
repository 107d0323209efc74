// Package cluster runs a real single-node Kubernetes cluster on this machine, as root: Debian's
// etcd, containerd, runc and CNI plugins; kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet and kube-proxy built from the module k8s/apiserver; CoreDNS built from
// its module. Everything listens on 127.0.0.1 or on the pods' bridge (10.88.0.1); every process
// is recorded by PID under the cluster's directory and stopped by that PID.
//
// Only one such cluster runs on a machine at a time (the bridge, CoreDNS's address and the
// kubelet's port are fixed): Up takes a lock, and first stops what a run that was killed left
// behind.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
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
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// CoreDNSVersion is the CoreDNS module version the cluster builds.
const CoreDNSVersion = "v1.14.7"

// Options configure Up.
type Options struct {
	// RepoRoot is the repository's root (k8s/apiserver is built from there).
	RepoRoot string
	// Dir holds the cluster's state, logs and PID files; it is emptied first.
	// Default: $CINEFLOW_CLUSTER_DIR or /var/tmp/cineflow-cluster.
	Dir string
	// Registry is host:port of the plain-HTTP image registry containerd pulls from.
	Registry string
	// PauseImage is the pod sandbox image (in Registry).
	PauseImage string
	// Logf reports progress; nil: silent.
	Logf func(string, ...any)
}

// Cluster is a running cluster.
type Cluster struct {
	Dir        string
	Kubeconfig string
	Server     string
	Config     *rest.Config
	Client     kubernetes.Interface
	kubeProxy  string
	lock       *os.File
	// controlPlaneOnly: started by StartControlPlane; Down leaves the host alone.
	controlPlaneOnly bool
	procs            []*Proc
	logf             func(string, ...any)
}

// startOrder is the order processes start in; they stop in the reverse order.
var startOrder = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "coredns", "kubelet", "kube-proxy"}

// DefaultDir is the cluster's directory unless Options.Dir says otherwise.
func DefaultDir() string {
	if d := os.Getenv("CINEFLOW_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/var/tmp/cineflow-cluster"
}

// Up builds or reuses the binaries and starts the cluster; it returns when the node is Ready.
// On error everything it started is stopped.
func Up(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the local cluster needs root (containerd, iptables, the pods' bridge)")
	}
	if err := EnsurePackages(o.Logf); err != nil {
		return nil, err
	}
	bins, err := BuildModuleTools(filepath.Join(o.RepoRoot, "k8s", "apiserver"), kubePackages(), o.Logf)
	if err != nil {
		return nil, err
	}
	dnsDir, err := GoInstall("github.com/coredns/coredns", CoreDNSVersion, []string{"github.com/coredns/coredns"}, o.Logf)
	if err != nil {
		return nil, err
	}

	c = &Cluster{Dir: o.Dir, kubeProxy: filepath.Join(bins, "kube-proxy"), logf: o.Logf}
	if c.lock, err = lockFile(o.Dir + ".lock"); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Dir); errors.Is(err, os.ErrNotExist) {
		if sign := foreignKubernetes(); sign != "" {
			c.lock.Close()
			return nil, fmt.Errorf("another Kubernetes seems to run on this machine (%s, and no state of ours is in %s): the local cluster would disturb it; stop it first", sign, o.Dir)
		}
	}
	// What a killed run left behind.
	if err := Clean(o.Dir, c.kubeProxy); err != nil {
		c.lock.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Down()
			c = nil
		}
	}()
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return c, err
	}
	if err := prepareHost(); err != nil {
		return c, err
	}
	began := time.Now()
	dir := o.Dir
	if err := c.startControlPlane(ctx, bins); err != nil {
		return c, err
	}
	if _, err := c.start("kube-scheduler", filepath.Join(bins, "kube-scheduler"),
		"--kubeconfig="+c.Kubeconfig, "--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", freePort()), "--leader-elect=false"); err != nil {
		return c, err
	}

	// containerd, with its CNI configuration.
	for _, d := range []string{"cni", "cni-ipam", "containerd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return c, err
		}
	}
	if err := errors.Join(
		writeFile(filepath.Join(dir, "cni", "10-cineflow.conflist"), cniConfig(dir)),
		writeFile(filepath.Join(dir, "containerd", "config.toml"), containerdConfig(dir, o.Registry, o.PauseImage)),
		writeFile(filepath.Join(dir, "resolv.conf"), "nameserver "+DNSIP+"\n")); err != nil {
		return c, err
	}
	containerd, err := c.start("containerd", "containerd", "--config", filepath.Join(dir, "containerd", "config.toml"))
	if err != nil {
		return c, err
	}
	if err := waitFor(ctx, containerd, 30*time.Second, "containerd's socket", func() bool {
		conn, err := net.Dial("unix", containerdSocket(dir))
		if err == nil {
			conn.Close()
		}
		return err == nil
	}); err != nil {
		return c, err
	}

	// CoreDNS on the bridge's address.
	dnsHealth := freePort()
	if err := writeFile(filepath.Join(dir, "Corefile"), corefile(c.Kubeconfig, dnsHealth)); err != nil {
		return c, err
	}
	coredns, err := c.start("coredns", filepath.Join(dnsDir, "coredns"), "-conf", filepath.Join(dir, "Corefile"))
	if err != nil {
		return c, err
	}
	if err := waitFor(ctx, coredns, 30*time.Second, "CoreDNS /health", func() bool {
		return httpOK(nil, fmt.Sprintf("http://127.0.0.1:%d/health", dnsHealth), "")
	}); err != nil {
		return c, err
	}

	// kubelet and kube-proxy.
	kubeletHealth := freePort()
	if err := writeFile(filepath.Join(dir, "kubelet.yaml"), kubeletConfig(dir, kubeletHealth)); err != nil {
		return c, err
	}
	kubelet, err := c.start("kubelet", filepath.Join(bins, "kubelet"),
		"--config="+filepath.Join(dir, "kubelet.yaml"), "--kubeconfig="+c.Kubeconfig,
		"--root-dir="+filepath.Join(dir, "kubelet"), "--cert-dir="+filepath.Join(dir, "kubelet-pki"),
		"--node-ip="+NodeIP, "--hostname-override="+NodeName, "--v=1")
	if err != nil {
		return c, err
	}
	if err := writeFile(filepath.Join(dir, "kube-proxy.yaml"), kubeProxyConfig(c.Kubeconfig, freePort(), freePort())); err != nil {
		return c, err
	}
	if _, err := c.start("kube-proxy", c.kubeProxy, "--config="+filepath.Join(dir, "kube-proxy.yaml")); err != nil {
		return c, err
	}
	if err := waitFor(ctx, kubelet, 120*time.Second, "node "+NodeName+" Ready", func() bool {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}); err != nil {
		return c, err
	}
	o.Logf("cluster ready in %s: API server %s, kubeconfig %s", time.Since(began).Round(100*time.Millisecond), c.Server, c.Kubeconfig)
	return c, nil
}

// startControlPlane starts etcd, kube-apiserver (with an admin token and service-account keys)
// and kube-controller-manager on free ports of 127.0.0.1, with their state in c.Dir, and waits
// until the controllers work (the ServiceAccount default/default exists).
func (c *Cluster) startControlPlane(ctx context.Context, bins string) error {
	dir := c.Dir
	// etcd
	clientPort, peerPort := freePort(), freePort()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcd, err := c.start("etcd", "etcd", "--name=local", "--data-dir="+filepath.Join(dir, "etcd"), "--logger=zap",
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=local="+peerURL, "--initial-cluster-state=new", "--quota-backend-bytes=2147483648")
	if err != nil {
		return err
	}
	if err := waitFor(ctx, etcd, 30*time.Second, "etcd /health", func() bool { return httpOK(nil, etcdURL+"/health", "") }); err != nil {
		return err
	}

	// Credentials: a static admin token and the service-account key pair.
	token := randomHex(24)
	if err := writeFile(filepath.Join(dir, "tokens.csv"), token+",admin,admin-uid,system:masters\n"); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := errors.Join(
		writeFile(saKey, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))),
		writeFile(saPub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))); err != nil {
		return err
	}

	// kube-apiserver; it writes a self-signed serving certificate to cert-dir.
	port := freePort()
	certDir := filepath.Join(dir, "pki")
	apiserver, err := c.start("kube-apiserver", filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port), "--cert-dir="+certDir,
		"--endpoint-reconciler-type=none",
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=false",
		"--profiling=false")
	if err != nil {
		return err
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", port)
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitFor(ctx, apiserver, 120*time.Second, "kube-apiserver /readyz", func() bool {
		return httpOK(insecure, c.Server+"/readyz", token)
	}); err != nil {
		return err
	}
	caFile := filepath.Join(certDir, "apiserver.crt")
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeFile(c.Kubeconfig, kubeconfigFor(c.Server, caFile, token)); err != nil {
		return err
	}
	kc, _ := os.ReadFile(c.Kubeconfig)
	if c.Config, err = clientcmd.RESTConfigFromKubeConfig(kc); err != nil {
		return err
	}
	c.Config.QPS, c.Config.Burst = 50, 100
	c.Config.WarningHandler = rest.NoWarnings{}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}

	if _, err := c.start("kube-controller-manager", filepath.Join(bins, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig, "--secure-port=0", "--leader-elect=false", "--controllers=*",
		"--root-ca-file="+caFile, "--service-account-private-key-file="+saKey,
		"--use-service-account-credentials=true", "--concurrent-cron-job-syncs=2",
		"--node-monitor-grace-period=40s"); err != nil {
		return err
	}
	// The controller manager is up when its service-account controller has made "default".
	return waitFor(ctx, nil, 60*time.Second, "ServiceAccount default/default", func() bool {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
}

// StartControlPlane starts only etcd (Debian's), kube-apiserver and kube-controller-manager, on
// free ports of 127.0.0.1, with their state in dir: no root, no node, no pod ever runs. It is
// for tests of what the API server accepts and what the controllers create and delete (the
// chart's install tests). Down stops it; dir is the caller's to remove.
func StartControlPlane(ctx context.Context, repoRoot, dir string, logf func(string, ...any)) (c *Cluster, err error) {
	if _, err := exec.LookPath("etcd"); err != nil {
		return nil, errors.New("etcd not found: install Debian's etcd-server (apt-get install -y etcd-server)")
	}
	bins, err := BuildModuleTools(filepath.Join(repoRoot, "k8s", "apiserver"),
		[]string{"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager"}, logf)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, logf: logf, controlPlaneOnly: true}
	if err := c.startControlPlane(ctx, bins); err != nil {
		c.Down()
		return nil, err
	}
	return c, nil
}

func kubePackages() []string {
	var pkgs []string
	for _, t := range KubeTools {
		pkgs = append(pkgs, "k8s.io/kubernetes/cmd/"+t)
	}
	return pkgs
}

// Down stops the cluster: the controllers first (so nothing is recreated), then every pod
// (the kubelet tears down their containers and networks), then every process by its PID, and
// finally what is left on the host (shims, mounts, iptables rules, the bridge). The directory is
// kept (logs); the next Up empties it.
func (c *Cluster) Down() error {
	if c == nil {
		return nil
	}
	var errs []error
	for _, n := range []string{"kube-controller-manager", "kube-scheduler"} {
		c.stopNamed(n)
	}
	if c.Client != nil && c.running("kubelet") && c.running("kube-apiserver") {
		errs = append(errs, c.deleteAllPods(60*time.Second))
	}
	if err := stopPIDFiles(c.Dir, startOrder, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.procs {
		p.Stop(5 * time.Second)
	}
	if !c.controlPlaneOnly {
		errs = append(errs, cleanHost(c.Dir, c.kubeProxy))
	}
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
	return errors.Join(errs...)
}

// Clean stops what a cluster in dir left running (by its PID files) and undoes its changes to
// the host. kubeProxy is the kube-proxy binary (for its --cleanup); it may be empty. Without
// dir there is nothing of ours to clean.
func Clean(dir, kubeProxy string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := errors.Join(stopPIDFiles(dir, startOrder, 10*time.Second), cleanHost(dir, kubeProxy))
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

func (c *Cluster) stopNamed(name string) {
	for _, p := range c.procs {
		if p.Name == name {
			p.Stop(10 * time.Second)
			_ = os.Remove(filepath.Join(c.Dir, "pids", name+".pid"))
		}
	}
}

func (c *Cluster) running(name string) bool {
	for _, p := range c.procs {
		if p.Name == name {
			return !p.Exited()
		}
	}
	return false
}

// deleteAllPods deletes every pod at once (a grace period of one second, so that each stays
// until the kubelet has stopped its containers) and waits until they are all gone.
func (c *Cluster) deleteAllPods(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	one := int64(1)
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, ns := range nss.Items {
		_ = c.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &one}, metav1.ListOptions{})
	}
	for {
		pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil && len(pods.Items) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			n := -1
			if pods != nil {
				n = len(pods.Items)
			}
			return fmt.Errorf("%d pods still there after %s", n, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *Cluster) start(name, bin string, args ...string) (*Proc, error) {
	p, err := startProc(c.Dir, name, bin, args, nil)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	c.logf("started %s (pid %d), log %s", name, p.PID(), p.Log)
	return p, nil
}

// waitFor polls ok every 200 ms until it is true, p exits, ctx ends or timeout passes.
func waitFor(ctx context.Context, p *Proc, timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited while waiting for %s; its log ends:\n%s", p.Name, what, p.Tail(30))
		}
		if time.Now().After(deadline) {
			tail := ""
			if p != nil {
				tail = "; " + p.Name + "'s log ends:\n" + p.Tail(30)
			}
			return fmt.Errorf("timed out after %s waiting for %s%s", timeout, what, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func httpOK(client *http.Client, url, token string) bool {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && !strings.Contains(string(b), `"false"`)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// lockFile takes an exclusive lock on path, failing at once when another process holds it.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another local cluster is running (%s is locked): stop it first", path)
	}
	return f, nil
}
