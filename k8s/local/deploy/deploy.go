// Package deploy puts CineFlow on the local cluster: it builds the images into the local
// registry, applies the dev pieces (the dev database, the fake Resend, the Pushgateway) and
// installs the chart with Helm. `make cluster` and the end-to-end test both use it.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/cineflow/cineflow/k8s/local/cluster"
	"github.com/cineflow/cineflow/k8s/local/images"
)

// PushgatewayVersion is the Pushgateway built for the dev pieces (the version k8s/dev names).
const PushgatewayVersion = "v1.11.0"

// Image is a program packaged as an image: a main package of a module of the repository.
type Image struct {
	Name   string // repository is cineflow/<Name>
	ModDir string // relative to the repository's root
	Pkg    string // relative to ModDir
	GoWork bool   // build inside go.work (the services); else GOWORK=off
}

// AppImages are the chart's three images.
var AppImages = []Image{
	{Name: "core", ModDir: ".", Pkg: "./services/core/cmd/core", GoWork: true},
	{Name: "notification", ModDir: ".", Pkg: "./services/notification/cmd/notification", GoWork: true},
	{Name: "sweeper", ModDir: ".", Pkg: "./jobs/sweeper/cmd/sweeper", GoWork: true},
}

// DevImages are the dev pieces' images and the local cluster's own helpers.
var DevImages = []Image{
	{Name: "devdb", ModDir: ".", Pkg: "./pkg/devdb/cmd/devdb", GoWork: true},
	{Name: "resendfake", ModDir: ".", Pkg: "./pkg/devdb/resendfake/cmd/resendfake", GoWork: true},
	{Name: "probe", ModDir: "k8s/local", Pkg: "./cmd/probe"},
}

// Env is a local cluster with a registry, ready to deploy to.
type Env struct {
	Root     string // the repository
	Cluster  *cluster.Cluster
	Builder  *images.Builder
	Dynamic  dynamic.Interface
	Mapper   *restmapper.DeferredDiscoveryRESTMapper
	Logf     func(string, ...any)
	Images   map[string]string // name -> ref@digest of what was built
	Tags     map[string]string // name -> the tag it was built with
	binDir   string
	helmPath string
}

// NewEnv prepares deploying to c.
func NewEnv(root string, c *cluster.Cluster, b *images.Builder, logf func(string, ...any)) (*Env, error) {
	e := &Env{Root: root, Cluster: c, Builder: b, Logf: logf, Images: map[string]string{}, Tags: map[string]string{}}
	var err error
	if e.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	e.Mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	if e.binDir, err = os.MkdirTemp("", "cineflow-images-"); err != nil {
		return nil, err
	}
	return e, nil
}

// Close removes the built binaries.
func (e *Env) Close() { os.RemoveAll(e.binDir) }

// BuildImages builds each image from the sources, tags it tag and pushes it; Images records it.
func (e *Env) BuildImages(ctx context.Context, tag string, list ...Image) error {
	for _, im := range list {
		began := time.Now()
		env := []string{"GOWORK=off"}
		if im.GoWork {
			env = []string{"GOWORK=" + filepath.Join(e.Root, "go.work")}
		}
		out := filepath.Join(e.binDir, tag)
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		bin, err := images.GoBuild(filepath.Join(e.Root, im.ModDir), im.Pkg, out, tag, env)
		if err != nil {
			return err
		}
		ref, err := e.Builder.Binary(ctx, "cineflow/"+im.Name, tag, bin)
		if err != nil {
			return err
		}
		e.Images[im.Name], e.Tags[im.Name] = ref, tag
		e.Logf("image %s built in %s", ref, time.Since(began).Round(10*time.Millisecond))
	}
	return nil
}

// BuildPushgateway builds the Pushgateway from its module and packages it as cineflow/pushgateway.
func (e *Env) BuildPushgateway(ctx context.Context) error {
	dir, err := cluster.GoInstall("github.com/prometheus/pushgateway", PushgatewayVersion, []string{"github.com/prometheus/pushgateway"}, e.Logf)
	if err != nil {
		return err
	}
	ref, err := e.Builder.Binary(ctx, "cineflow/pushgateway", PushgatewayVersion, filepath.Join(dir, "pushgateway"))
	if err != nil {
		return err
	}
	e.Images["pushgateway"] = ref
	return nil
}

// Apply creates or updates (server-side apply) every object of the YAML files in namespace ns,
// with each container image named in images replaced by its value.
func (e *Env) Apply(ctx context.Context, ns string, replace map[string]string, files ...string) ([]*unstructured.Unstructured, error) {
	var all []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range objs {
			if err := ReplaceImages(o, replace); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			ri, err := e.Resource(o, ns)
			if err != nil {
				return nil, err
			}
			b, err := o.MarshalJSON()
			if err != nil {
				return nil, err
			}
			force := true
			if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, b, metav1.PatchOptions{FieldManager: "cineflow-local", Force: &force}); err != nil {
				return nil, fmt.Errorf("apply %s %s from %s: %w", o.GetKind(), o.GetName(), f, err)
			}
			all = append(all, o)
		}
	}
	return all, nil
}

// Resource is the dynamic client of obj's kind (namespaced in ns when the kind is).
func (e *Env) Resource(obj *unstructured.Unstructured, ns string) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		e.Mapper.Reset()
		if m, err = e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, err
		}
	}
	if m.Scope.Name() == "namespace" {
		return e.Dynamic.Resource(m.Resource).Namespace(ns), nil
	}
	return e.Dynamic.Resource(m.Resource), nil
}

// Decode splits a multi-document YAML into objects (empty documents skipped).
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// ReplaceImages sets the image of every container of a workload whose image (without tag or
// digest) is a key of replace, or whose image's last path element is (prom/pushgateway:v1 ->
// "pushgateway"). It fails on a workload image that matches no key, so that nothing is
// deployed that would be pulled from outside.
func ReplaceImages(obj *unstructured.Unstructured, replace map[string]string) error {
	var podSpec []string
	switch obj.GetKind() {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job":
		podSpec = []string{"spec", "template", "spec"}
	case "CronJob":
		podSpec = []string{"spec", "jobTemplate", "spec", "template", "spec"}
	case "Pod":
		podSpec = []string{"spec"}
	default:
		return nil
	}
	for _, field := range []string{"initContainers", "containers"} {
		cs, found, err := unstructured.NestedSlice(obj.Object, append(podSpec, field)...)
		if err != nil || !found {
			continue
		}
		for i, c := range cs {
			cm, _ := c.(map[string]any)
			img, _ := cm["image"].(string)
			repo, _, _ := strings.Cut(img, "@")
			if j := strings.LastIndexByte(repo, ':'); j > strings.LastIndexByte(repo, '/') {
				repo = repo[:j]
			}
			ref, ok := replace[repo]
			if !ok {
				ref, ok = replace[repo[strings.LastIndexByte(repo, '/')+1:]]
			}
			if !ok {
				return fmt.Errorf("%s %s: no local image for %q", obj.GetKind(), obj.GetName(), img)
			}
			cm["image"] = ref
			cs[i] = cm
		}
		if err := unstructured.SetNestedSlice(obj.Object, cs, append(podSpec, field)...); err != nil {
			return err
		}
	}
	return nil
}

// EnsureNamespace creates ns unless it exists.
func (e *Env) EnsureNamespace(ctx context.Context, ns string) error {
	_, err := e.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// DevPieces applies the dev database, the fake Resend and the Pushgateway (k8s/dev) to ns, and
// installs the ServiceMonitor and PrometheusRule CRDs (the chart's monitoring objects need them).
func (e *Env) DevPieces(ctx context.Context, ns string) error {
	if err := e.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	crds, _ := filepath.Glob(filepath.Join(e.Root, "charts", "test", "testdata", "crds", "*.yaml"))
	applied, err := e.Apply(ctx, "", nil, crds...)
	if err != nil {
		return err
	}
	if err := e.waitEstablished(ctx, applied); err != nil {
		return err
	}
	_, err = e.Apply(ctx, ns, e.Images,
		filepath.Join(e.Root, "k8s", "local", "manifests", "devdb.yaml"),
		filepath.Join(e.Root, "k8s", "local", "manifests", "resendfake.yaml"),
		filepath.Join(e.Root, "k8s", "dev", "pushgateway.yaml"))
	if err != nil {
		return err
	}
	return e.WaitDeployments(ctx, ns, 3*time.Minute, "devdb", "resendfake", "pushgateway")
}

// waitEstablished waits until every CustomResourceDefinition among objs is Established, so that
// the chart's objects of those kinds are accepted at once.
func (e *Env) waitEstablished(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		ri, err := e.Resource(o, "")
		if err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			live, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
			if err == nil && established(live) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not Established after 30 s (%v)", o.GetName(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	e.Mapper.Reset() // the new kinds
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// WaitDeployments waits until each named Deployment of ns has rolled out: every replica
// updated, ready (through its readiness probe) and available, and no old replica left.
func (e *Env) WaitDeployments(ctx context.Context, ns string, timeout time.Duration, names ...string) error {
	deadline := time.Now().Add(timeout)
	for _, n := range names {
		for {
			d, err := e.Cluster.Client.AppsV1().Deployments(ns).Get(ctx, n, metav1.GetOptions{})
			if err == nil && RolledOut(d) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("Deployment %s/%s not ready after %s: %s", ns, n, timeout, e.describePods(ctx, ns))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// RolledOut reports whether d's latest spec is fully rolled out and available.
func RolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want &&
		s.ReadyReplicas == want && s.AvailableReplicas == want
}

// DescribePods summarizes ns's pods (phase, readiness, waiting reasons) for error messages.
func (e *Env) DescribePods(ctx context.Context, ns string) string { return e.describePods(ctx, ns) }

// describePods summarizes ns's pods (phase, readiness, waiting reasons) for error messages.
func (e *Env) describePods(ctx context.Context, ns string) string {
	pods, err := e.Cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, " [%s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				fmt.Fprintf(&b, " last exit %d %s", t.ExitCode, t.Reason)
			}
			b.WriteString("]")
		}
	}
	return b.String()
}

// Helm returns the helm binary, built from the module charts/test (its tool) and cached.
func (e *Env) Helm() (string, error) {
	if e.helmPath == "" {
		dir, err := cluster.BuildModuleTools(filepath.Join(e.Root, "charts", "test"), []string{"helm.sh/helm/v3/cmd/helm"}, e.Logf)
		if err != nil {
			return "", err
		}
		e.helmPath = filepath.Join(dir, "helm")
	}
	return e.helmPath, nil
}

// RunHelm runs helm with args against the cluster and returns its combined output.
func (e *Env) RunHelm(ctx context.Context, args ...string) (string, error) {
	helm, err := e.Helm()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, helm, append(args, "--kubeconfig", e.Cluster.Kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(e.binDir, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(e.binDir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(e.binDir, "helm-data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ImageSets are the --set flags that point the chart at the application images last built: the
// registry, the repository, the tag, and the digest (which the chart prefers to the tag).
func (e *Env) ImageSets() ([]string, error) {
	var sets []string
	for _, im := range AppImages {
		ref := e.Images[im.Name]
		repo, digest, ok := strings.Cut(ref, "@")
		registry, path, ok2 := strings.Cut(repo, "/")
		if !ok || !ok2 {
			return nil, fmt.Errorf("no image of %s built (have %q)", im.Name, ref)
		}
		set := fmt.Sprintf("%[1]s.image.registry=%[2]s,%[1]s.image.repository=%[3]s,%[1]s.image.digest=%[4]s",
			im.Name, registry, path, digest)
		if tag := e.Tags[im.Name]; tag != "" {
			set += fmt.Sprintf(",%s.image.tag=%s", im.Name, tag)
		}
		sets = append(sets, "--set", set)
	}
	return sets, nil
}

// InstallChart installs (or upgrades) the chart as release in ns with k8s/values-local.yaml,
// the images last built, and extra helm arguments; it waits for every Deployment.
func (e *Env) InstallChart(ctx context.Context, ns, release string, extra ...string) (string, error) {
	sets, err := e.ImageSets()
	if err != nil {
		return "", err
	}
	args := append([]string{"upgrade", "--install", release, filepath.Join(e.Root, "charts", "cineflow"),
		"--namespace", ns, "--values", filepath.Join(e.Root, "k8s", "local", "values-local.yaml"),
		"--wait", "--timeout", "5m"}, sets...)
	out, err := e.RunHelm(ctx, append(args, extra...)...)
	if err != nil {
		return out, fmt.Errorf("%w\npods:%s", err, e.describePods(ctx, ns))
	}
	fullname := release + "-cineflow"
	if strings.Contains(release, "cineflow") {
		fullname = release
	}
	return out, e.WaitDeployments(ctx, ns, 3*time.Minute, fullname+"-core", fullname+"-notification")
}
