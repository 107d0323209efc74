package cluster

import (
	"fmt"
	"path/filepath"
)

// The cluster's addresses. Pods live on the bridge cni0 (PodCIDR, gateway NodeIP), Services on
// ServiceCIDR. The node's own address is the bridge's, so that nothing listens outside 127.0.0.1
// and these private ranges.
const (
	PodCIDR     = "10.88.0.0/16"
	NodeIP      = "10.88.0.1"
	ServiceCIDR = "10.96.0.0/16"
	Bridge      = "cni0"
	NodeName    = "cineflow-node"
	// DNSIP is CoreDNS's address: it runs on the host, bound to the bridge.
	DNSIP = NodeIP
	// KubeletPort is the kubelet's API port (on NodeIP), for `kubectl logs` and `exec`.
	KubeletPort = 10250
)

// containerdConfig is containerd's config.toml: its state under dir, the CRI plugin with a pause
// image from the local registry, that registry over plain HTTP, Debian's CNI plugins, and
// restrict_oom_score_adj (these machines refuse a negative oom_score_adj, which runc otherwise
// sets for every pod sandbox).
func containerdConfig(dir, registry, pauseImage string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt", "io.containerd.grpc.v1.introspection"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors.%[7]q]
    endpoint = [%[8]q]
`, filepath.Join(dir, "containerd", "root"), filepath.Join(dir, "containerd", "state"),
		containerdSocket(dir), filepath.Join(dir, "containerd", "ttrpc.sock"),
		pauseImage, filepath.Join(dir, "cni"), registry, "http://"+registry)
}

func containerdSocket(dir string) string { return filepath.Join(dir, "containerd", "containerd.sock") }

// cniConfig is the bridge network of the pods, with host-local addresses (kept under dir) and
// port mappings.
func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "cineflow",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`, Bridge, filepath.Join(dir, "cni-ipam"), PodCIDR, NodeIP)
}

// kubeletConfig is the kubelet's KubeletConfiguration: cgroupfs without QoS cgroups or node
// allocatable enforcement (the machine is itself a container), no swap check, containerd's
// socket, CoreDNS as cluster DNS, and eviction thresholds low enough for a busy shared disk.
func kubeletConfig(dir string, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://%[4]s
clusterDNS: [%[5]s]
clusterDomain: cluster.local
resolvConf: %[6]s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
`, NodeIP, KubeletPort, healthzPort, containerdSocket(dir), DNSIP, filepath.Join(dir, "resolv.conf"))
}

// kubeProxyConfig runs kube-proxy in iptables mode; every Service connection is masqueraded, so
// that a pod reaching a Service whose endpoint is on the same bridge gets its answer back
// through the host.
func kubeProxyConfig(kubeconfig string, healthzPort, metricsPort int) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
mode: iptables
clusterCIDR: %[3]s
nodePortAddresses: [%[3]s]
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:%[4]d
metricsBindAddress: 127.0.0.1:%[5]d
iptables:
  masqueradeAll: true
  syncPeriod: 5s
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
`, kubeconfig, NodeName, PodCIDR, healthzPort, metricsPort)
}

// corefile serves the cluster's names from the API server on the bridge's address; other
// names are not resolved (the machine reaches no outside DNS).
func corefile(kubeconfig string, healthPort int) string {
	return fmt.Sprintf(`.:53 {
    bind %[1]s
    errors
    health 127.0.0.1:%[2]d
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %[3]s local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
`, DNSIP, healthPort, kubeconfig)
}

// kubeconfigFor is a kubeconfig for the cluster's admin (a static token in system:masters).
func kubeconfigFor(server, caFile, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
`, server, caFile, token)
}
