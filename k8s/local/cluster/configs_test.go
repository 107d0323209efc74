package cluster

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// testDir is the cluster directory the configs are made for (it need not exist).
const testDir = "/var/tmp/cineflow-test-cluster"

// parseTOML is a minimal reader of the TOML containerdConfig writes: [section] headers, and
// key = value lines whose value is a quoted string, a list of quoted strings, a boolean or an
// integer. Anything else fails the test, so a malformed line is noticed.
func parseTOML(t *testing.T, s string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{"": {}}
	section := ""
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, dup := out[section]; dup {
				t.Fatalf("line %d: section [%s] twice", i+1, section)
			}
			out[section] = map[string]any{}
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("line %d: not key = value: %q", i+1, line)
		}
		if _, dup := out[section][k]; dup {
			t.Fatalf("line %d: key %s twice in [%s]", i+1, k, section)
		}
		out[section][k] = tomlValue(t, i+1, v)
	}
	return out
}

func tomlValue(t *testing.T, line int, v string) any {
	t.Helper()
	switch {
	case strings.HasPrefix(v, `"`):
		s, err := strconv.Unquote(v)
		if err != nil {
			t.Fatalf("line %d: bad string %s: %v", line, v, err)
		}
		return s
	case strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		var list []string
		for _, e := range strings.Split(v[1:len(v)-1], ",") {
			s, err := strconv.Unquote(strings.TrimSpace(e))
			if err != nil {
				t.Fatalf("line %d: bad list element %q: %v", line, e, err)
			}
			list = append(list, s)
		}
		return list
	case v == "true" || v == "false":
		return v == "true"
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("line %d: unknown value %q", line, v)
	}
	return n
}

func TestContainerdConfig(t *testing.T) {
	const registry = "127.0.0.1:5001"
	const pause = registry + "/cineflow/pause:1"
	s := containerdConfig(testDir, registry, pause)
	noFormatErrors(t, s)
	cfg := parseTOML(t, s)

	const cri = `plugins."io.containerd.grpc.v1.cri"`
	mirror := cri + `.registry.mirrors."` + registry + `"`
	for _, tc := range []struct {
		section, key string
		want         any
	}{
		{"", "version", 2},
		{"", "root", testDir + "/containerd/root"},
		{"", "state", testDir + "/containerd/state"},
		{"grpc", "address", testDir + "/containerd/containerd.sock"},
		{"ttrpc", "address", testDir + "/containerd/ttrpc.sock"},
		{cri, "sandbox_image", pause},
		{cri, "restrict_oom_score_adj", true},
		{cri + ".containerd", "snapshotter", "overlayfs"},
		{cri + ".containerd", "default_runtime_name", "runc"},
		{cri + ".containerd.runtimes.runc", "runtime_type", "io.containerd.runc.v2"},
		{cri + ".cni", "bin_dir", "/usr/lib/cni"},
		{cri + ".cni", "conf_dir", testDir + "/cni"},
		{mirror, "endpoint", []string{"http://" + registry}},
	} {
		sec, ok := cfg[tc.section]
		if !ok {
			t.Errorf("no section [%s] in:\n%s", tc.section, s)
			continue
		}
		if got := sec[tc.key]; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("[%s] %s = %#v, want %#v", tc.section, tc.key, got, tc.want)
		}
	}
	if got := containerdSocket(testDir); got != testDir+"/containerd/containerd.sock" {
		t.Errorf("containerdSocket = %q", got)
	}
	// Every path in the config is under the cluster's directory, but Debian's CNI plugins.
	for sec, kv := range cfg {
		for k, v := range kv {
			if p, ok := v.(string); ok && strings.HasPrefix(p, "/") && p != "/usr/lib/cni" && !strings.HasPrefix(p, testDir+"/") {
				t.Errorf("[%s] %s = %q is outside %s", sec, k, p, testDir)
			}
		}
	}
}

func TestCNIConfig(t *testing.T) {
	s := cniConfig(testDir)
	var cfg struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type         string          `json:"type"`
			Bridge       string          `json:"bridge"`
			IsGateway    bool            `json:"isGateway"`
			IPMasq       bool            `json:"ipMasq"`
			HairpinMode  bool            `json:"hairpinMode"`
			Capabilities map[string]bool `json:"capabilities"`
			IPAM         *struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
				Ranges  [][]struct {
					Subnet  string `json:"subnet"`
					Gateway string `json:"gateway"`
				} `json:"ranges"`
				Routes []struct {
					Dst string `json:"dst"`
				} `json:"routes"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("cniConfig is not the expected JSON: %v\n%s", err, s)
	}
	if cfg.Name != "cineflow" || cfg.CNIVersion == "" {
		t.Errorf("name %q, cniVersion %q", cfg.Name, cfg.CNIVersion)
	}
	var types []string
	for _, p := range cfg.Plugins {
		types = append(types, p.Type)
	}
	if want := []string{"bridge", "portmap", "loopback"}; !reflect.DeepEqual(types, want) {
		t.Fatalf("plugins %v, want %v", types, want)
	}
	br := cfg.Plugins[0]
	if br.Bridge != "cni0" || !br.IsGateway || !br.IPMasq || !br.HairpinMode {
		t.Errorf("bridge plugin: bridge %q isGateway %v ipMasq %v hairpinMode %v; want cni0, true, true, true", br.Bridge, br.IsGateway, br.IPMasq, br.HairpinMode)
	}
	if br.IPAM == nil {
		t.Fatal("bridge plugin without ipam")
	}
	if br.IPAM.Type != "host-local" {
		t.Errorf("ipam type %q, want host-local", br.IPAM.Type)
	}
	if want := filepath.Join(testDir, "cni-ipam"); br.IPAM.DataDir != want {
		t.Errorf("ipam dataDir %q, want %q", br.IPAM.DataDir, want)
	}
	if len(br.IPAM.Ranges) != 1 || len(br.IPAM.Ranges[0]) != 1 {
		t.Fatalf("ipam ranges %+v, want one", br.IPAM.Ranges)
	}
	if r := br.IPAM.Ranges[0][0]; r.Subnet != "10.88.0.0/16" || r.Gateway != "10.88.0.1" {
		t.Errorf("ipam range %+v, want subnet 10.88.0.0/16 gateway 10.88.0.1", r)
	}
	_, subnet, err := net.ParseCIDR(br.IPAM.Ranges[0][0].Subnet)
	if err != nil || !subnet.Contains(net.ParseIP(br.IPAM.Ranges[0][0].Gateway)) {
		t.Errorf("gateway %s not in subnet %s (%v)", br.IPAM.Ranges[0][0].Gateway, br.IPAM.Ranges[0][0].Subnet, err)
	}
	if !cfg.Plugins[1].Capabilities["portMappings"] {
		t.Error("portmap plugin without the portMappings capability")
	}
}

// parseYAML parses a YAML document into a map, failing the test on an error.
func parseYAML(t *testing.T, what, s string) map[string]any {
	t.Helper()
	noFormatErrors(t, s)
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s is not YAML: %v\n%s", what, err, s)
	}
	return m
}

// lookup returns the value at a dotted path of m ("iptables.masqueradeAll").
func lookup(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func TestKubeletConfig(t *testing.T) {
	m := parseYAML(t, "kubeletConfig", kubeletConfig(testDir, 10248))
	for _, tc := range []struct {
		path string
		want any
	}{
		{"apiVersion", "kubelet.config.k8s.io/v1beta1"},
		{"kind", "KubeletConfiguration"},
		{"address", "10.88.0.1"},
		{"port", float64(KubeletPort)},
		{"readOnlyPort", float64(0)},
		{"healthzBindAddress", "127.0.0.1"},
		{"healthzPort", float64(10248)},
		{"cgroupDriver", "cgroupfs"},
		{"cgroupsPerQOS", false},
		{"enforceNodeAllocatable", []any{}},
		{"failSwapOn", false},
		{"containerRuntimeEndpoint", "unix://" + testDir + "/containerd/containerd.sock"},
		{"clusterDNS", []any{"10.88.0.1"}},
		{"clusterDomain", "cluster.local"},
		{"resolvConf", testDir + "/resolv.conf"},
		{"authorization.mode", "AlwaysAllow"},
	} {
		if got := lookup(m, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
	// evictionHard's keys have dots: looked up directly.
	eh, _ := m["evictionHard"].(map[string]any)
	for _, k := range []string{"memory.available", "nodefs.available", "nodefs.inodesFree", "imagefs.available"} {
		v, _ := eh[k].(string)
		if v == "" || strings.Contains(v, "%%") {
			t.Errorf("evictionHard[%s] = %#v", k, eh[k])
		}
	}
	if got := eh["nodefs.available"]; got != "1%" {
		t.Errorf("evictionHard[nodefs.available] = %#v, want \"1%%\"", got)
	}
}

func TestKubeProxyConfig(t *testing.T) {
	const kubeconfig = testDir + "/kubeconfig"
	m := parseYAML(t, "kubeProxyConfig", kubeProxyConfig(kubeconfig, 10256, 10249))
	for _, tc := range []struct {
		path string
		want any
	}{
		{"apiVersion", "kubeproxy.config.k8s.io/v1alpha1"},
		{"kind", "KubeProxyConfiguration"},
		{"clientConnection.kubeconfig", kubeconfig},
		{"hostnameOverride", NodeName},
		{"mode", "iptables"},
		{"clusterCIDR", "10.88.0.0/16"},
		{"bindAddress", "127.0.0.1"},
		{"healthzBindAddress", "127.0.0.1:10256"},
		{"metricsBindAddress", "127.0.0.1:10249"},
		{"iptables.masqueradeAll", true},
	} {
		if got := lookup(m, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
}

func TestCorefile(t *testing.T) {
	const kubeconfig = testDir + "/kubeconfig"
	s := corefile(kubeconfig, 8181)
	noFormatErrors(t, s)
	if strings.Count(s, "{") != strings.Count(s, "}") {
		t.Errorf("unbalanced braces:\n%s", s)
	}
	var binds, health, kubeconfigs [][]string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "bind":
			binds = append(binds, f[1:])
		case "health":
			health = append(health, f[1:])
		case "kubeconfig":
			kubeconfigs = append(kubeconfigs, f[1:])
		case "forward", "proxy":
			t.Errorf("Corefile forwards to outside DNS: %q", line)
		}
	}
	if want := [][]string{{"10.88.0.1"}}; !reflect.DeepEqual(binds, want) {
		t.Errorf("bind lines %v, want %v", binds, want)
	}
	if want := [][]string{{"127.0.0.1:8181"}}; !reflect.DeepEqual(health, want) {
		t.Errorf("health lines %v, want %v", health, want)
	}
	if want := [][]string{{kubeconfig, "local"}}; !reflect.DeepEqual(kubeconfigs, want) {
		t.Errorf("kubeconfig lines %v, want %v", kubeconfigs, want)
	}
	if !strings.Contains(s, "kubernetes cluster.local ") {
		t.Errorf("no kubernetes plugin for cluster.local:\n%s", s)
	}
}

func TestKubeconfigFor(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "apiserver.crt")
	if err := os.WriteFile(ca, []byte("not checked here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const server = "https://127.0.0.1:6443"
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef"
	s := kubeconfigFor(server, ca, token)

	cfg, err := clientcmd.Load([]byte(s))
	if err != nil {
		t.Fatalf("clientcmd.Load: %v\n%s", err, s)
	}
	if cfg.CurrentContext != "local" {
		t.Errorf("current-context %q, want local", cfg.CurrentContext)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("no context %q", cfg.CurrentContext)
	}
	if ctx.Namespace != "default" {
		t.Errorf("context namespace %q, want default", ctx.Namespace)
	}
	cl, user := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cl == nil || user == nil {
		t.Fatalf("context %+v: cluster %v, user %v", ctx, cl, user)
	}
	if cl.Server != server || cl.CertificateAuthority != ca {
		t.Errorf("cluster server %q CA %q; want %q, %q", cl.Server, cl.CertificateAuthority, server, ca)
	}
	if user.Token != token {
		t.Errorf("user token %q, want %q", user.Token, token)
	}

	// What Up does with it.
	rc, err := clientcmd.RESTConfigFromKubeConfig([]byte(s))
	if err != nil {
		t.Fatalf("RESTConfigFromKubeConfig: %v", err)
	}
	if rc.Host != server || rc.BearerToken != token || rc.TLSClientConfig.CAFile != ca {
		t.Errorf("rest.Config host %q token %q CA %q", rc.Host, rc.BearerToken, rc.TLSClientConfig.CAFile)
	}
}

// TestConfigsListenOnlyLocally checks the configs name no address but 127.0.0.1 and the
// bridge's 10.88.0.1 (and the pod and service ranges as ranges, and the CNI default route).
func TestConfigsListenOnlyLocally(t *testing.T) {
	const registry = "127.0.0.1:5001"
	configs := map[string]string{
		"containerd": containerdConfig(testDir, registry, registry+"/cineflow/pause:1"),
		"cni":        cniConfig(testDir),
		"kubelet":    kubeletConfig(testDir, 10248),
		"kube-proxy": kubeProxyConfig(testDir+"/kubeconfig", 10256, 10249),
		"coredns":    corefile(testDir+"/kubeconfig", 8181),
		"kubeconfig": kubeconfigFor("https://127.0.0.1:6443", testDir+"/pki/apiserver.crt", "t0ken"),
	}
	hosts := map[string]bool{"127.0.0.1": true, NodeIP: true}
	ranges := map[string]bool{PodCIDR: true, ServiceCIDR: true}
	ipv4 := regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?`)
	for name, s := range configs {
		found := 0
		for _, a := range ipv4.FindAllString(s, -1) {
			found++
			switch {
			case strings.Contains(a, "/"):
				// The CNI config's 0.0.0.0/0 is the pods' default route, not an address.
				if !ranges[a] && !(name == "cni" && a == "0.0.0.0/0") {
					t.Errorf("%s: unexpected range %s", name, a)
				}
			case !hosts[a]:
				t.Errorf("%s: address %s is neither 127.0.0.1 nor %s", name, a, NodeIP)
			}
		}
		if found == 0 {
			t.Errorf("%s: no address found (the test's pattern is wrong?)", name)
		}
		for _, bad := range []string{"localhost", "[::]", "::/0", ":::"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}

	// The addresses that are listened on, one by one.
	kubelet := parseYAML(t, "kubeletConfig", configs["kubelet"])
	proxy := parseYAML(t, "kubeProxyConfig", configs["kube-proxy"])
	for _, tc := range []struct {
		what string
		addr any
		want string
	}{
		{"kubelet address", kubelet["address"], NodeIP},
		{"kubelet healthzBindAddress", kubelet["healthzBindAddress"], "127.0.0.1"},
		{"kube-proxy bindAddress", proxy["bindAddress"], "127.0.0.1"},
		{"kube-proxy healthzBindAddress", proxy["healthzBindAddress"], "127.0.0.1"},
		{"kube-proxy metricsBindAddress", proxy["metricsBindAddress"], "127.0.0.1"},
	} {
		s, _ := tc.addr.(string)
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if host != tc.want {
			t.Errorf("%s = %#v, want host %s", tc.what, tc.addr, tc.want)
		}
	}
	if ro, ok := kubelet["readOnlyPort"].(float64); !ok || ro != 0 {
		t.Errorf("kubelet readOnlyPort = %#v, want 0 (disabled)", kubelet["readOnlyPort"])
	}
}

// noFormatErrors fails when fmt left a verb error (a bad %-verb or argument index) in s.
func noFormatErrors(t *testing.T, s string) {
	t.Helper()
	if i := strings.Index(s, "%!"); i >= 0 {
		t.Errorf("format error in config: %q", s[i:min(len(s), i+40)])
	}
}
