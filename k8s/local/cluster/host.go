package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DebianPackages are what the cluster needs from Debian: etcd, the container runtime, the CNI
// plugins, and the tools kube-proxy and the kubelet call.
var DebianPackages = map[string]string{
	"etcd":                               "etcd-server",
	"containerd":                         "containerd",
	"ctr":                                "containerd",
	"runc":                               "runc",
	"conntrack":                          "conntrack",
	"iptables":                           "iptables",
	"ip":                                 "iproute2",
	"mount":                              "mount",
	"/usr/lib/cni/bridge":                "containernetworking-plugins",
	"/etc/ssl/certs/ca-certificates.crt": "ca-certificates",
}

// EnsurePackages installs (with apt-get, as root) the Debian packages whose programs are missing.
func EnsurePackages(logf func(string, ...any)) error {
	need := map[string]bool{}
	for prog, pkg := range DebianPackages {
		if strings.HasPrefix(prog, "/") {
			if _, err := os.Stat(prog); err != nil {
				need[pkg] = true
			}
		} else if _, err := exec.LookPath(prog); err != nil {
			need[pkg] = true
		}
	}
	if len(need) == 0 {
		return nil
	}
	var pkgs []string
	for p := range need {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %v: run as root, or apt-get install -y %s", pkgs, strings.Join(pkgs, " "))
	}
	logf("installing Debian packages %v", pkgs)
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// prepareHost turns on packet forwarding and iptables for bridged traffic, and creates the pods'
// bridge with the node's address, so that CoreDNS can bind it before the first pod exists.
func prepareHost() error {
	for _, s := range []struct{ path, value string }{
		{"/proc/sys/net/ipv4/ip_forward", "1"},
		{"/proc/sys/net/bridge/bridge-nf-call-iptables", "1"},
	} {
		if err := os.WriteFile(s.path, []byte(s.value), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("set %s: %w", s.path, err)
		}
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); errors.Is(err, os.ErrNotExist) {
		_ = exec.Command("modprobe", "br_netfilter").Run()
	}
	if err := exec.Command("ip", "link", "show", Bridge).Run(); err != nil {
		if out, err := exec.Command("ip", "link", "add", Bridge, "type", "bridge").CombinedOutput(); err != nil {
			return fmt.Errorf("ip link add %s: %w: %s", Bridge, err, out)
		}
	}
	out, _ := exec.Command("ip", "-4", "-o", "addr", "show", "dev", Bridge).Output()
	if !strings.Contains(string(out), " "+NodeIP+"/") {
		if out, err := exec.Command("ip", "addr", "add", NodeIP+"/16", "dev", Bridge).CombinedOutput(); err != nil {
			return fmt.Errorf("ip addr add %s: %w: %s", NodeIP, err, out)
		}
	}
	if out, err := exec.Command("ip", "link", "set", Bridge, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s up: %w: %s", Bridge, err, out)
	}
	return nil
}

// cleanHost undoes what the cluster left on the machine: processes started by containerd's
// shims for dir (they outlive containerd), mounts under dir, the Services' iptables rules,
// the pods' network namespaces and the bridge.
func cleanHost(dir, kubeProxy string) error {
	var errs []error
	killShims(dir)
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if kubeProxy != "" && isFile(kubeProxy) {
		// Removes KUBE-* chains and rules; it reports errors for chains that were never made.
		_ = exec.Command(kubeProxy, "--cleanup").Run()
	}
	if err := cleanIptables(); err != nil {
		errs = append(errs, err)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "cni-") {
				_ = exec.Command("ip", "netns", "delete", f[0]).Run()
			}
		}
	}
	if exec.Command("ip", "link", "show", Bridge).Run() == nil {
		if out, err := exec.Command("ip", "link", "delete", Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", Bridge, err, out))
		}
	}
	return errors.Join(errs...)
}

// killShims kills the containerd-shim processes that serve dir's containerd (their command line
// names its socket), and every process left in the cgroup of one of its containers (those it
// has task state for), then removes those cgroups. Containers of another containerd on the
// machine are not touched.
func killShims(dir string) {
	ids := ourContainers(dir)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		ours := strings.Contains(cmdline, "containerd-shim") && strings.Contains(cmdline, containerdSocket(dir))
		for _, id := range ids {
			ours = ours || strings.Contains(string(cg), "/k8s.io/"+id)
		}
		if ours {
			killAndWait(pid, 2*time.Second)
		}
	}
	for _, id := range ids {
		groups, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io/" + id)
		for _, g := range append(groups, "/sys/fs/cgroup/k8s.io/"+id) {
			_ = syscall.Rmdir(g)
		}
	}
	// The namespace's parent cgroups go when they are empty (another containerd's are not).
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
	for _, g := range append(parents, "/sys/fs/cgroup/k8s.io") {
		_ = syscall.Rmdir(g)
	}
}

// ourContainers are the ids of the containers and pod sandboxes dir's containerd still has
// task state for (containerd removes it when a task is deleted).
func ourContainers(dir string) []string {
	entries, _ := os.ReadDir(filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", "k8s.io"))
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// foreignKubernetes describes signs of a Kubernetes on this machine that is not ours (called
// when no state of ours exists): the pods' bridge, or kube-proxy's or the kubelet's iptables
// chains. The local cluster would disturb it, and its clean-up would remove them.
func foreignKubernetes() string {
	if exec.Command("ip", "link", "show", Bridge).Run() == nil {
		return "the network interface " + Bridge + " exists"
	}
	for _, table := range []string{"filter", "nat"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		if strings.Contains(string(out), "\n:KUBE-") {
			return "iptables chains KUBE-* exist in table " + table
		}
	}
	return ""
}

// cleanIptables removes the chains kube-proxy, the kubelet and the CNI bridge plugin made
// (KUBE-*, CNI-*), and the rules of other chains that jump to them.
func cleanIptables() error {
	var errs []error
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			continue
		}
		ours := func(chain string) bool { return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-") }
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				if c := strings.Fields(line[1:]); len(c) > 0 && ours(c[0]) {
					chains = append(chains, c[0])
				}
			case strings.HasPrefix(line, "-A "):
				f := strings.Fields(line)
				if len(f) > 1 && !ours(f[1]) && (strings.Contains(line, "-j KUBE-") || strings.Contains(line, "-j CNI-")) {
					args := append([]string{"-t", table, "-D"}, splitRule(line[3:])...)
					if b, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("iptables %v: %w: %s", args, err, b))
					}
				}
			}
		}
		for _, c := range chains {
			_ = exec.Command("iptables", "-t", table, "-F", c).Run()
		}
		for _, c := range chains {
			if b, err := exec.Command("iptables", "-t", table, "-X", c).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables -t %s -X %s: %w: %s", table, c, err, b))
			}
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an iptables-save rule into arguments, keeping double-quoted words whole.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"':
			quoted, have = !quoted, true
		case ch == '\\' && quoted && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == ' ' && !quoted:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// unmountUnder unmounts (lazily, deepest first) every mount point under dir.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			p := unescapeMount(fields[4])
			if p == dir || strings.HasPrefix(p, dir+"/") {
				points = append(points, p)
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
