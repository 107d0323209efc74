package charttest

// The k8s/ directory: the plain manifests rendered from the chart (k8s/cineflow.yaml, by
// k8s/render.sh, `make k8s`) must be what the chart renders now, and the dev pieces the skaffold
// loop deploys beside the chart (k8s/dev) must be objects an API server accepts.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// renderPlain runs k8s/render.sh, as `make k8s` does, with the Helm this package builds, and
// returns what it would write to k8s/cineflow.yaml.
func renderPlain(t *testing.T) []byte {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "k8s", "render.sh"), "-")
	cmd.Env = append(os.Environ(), "HELM="+helmBin(t))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("k8s/render.sh: %v\n%s", err, errOut.String())
	}
	return out.Bytes()
}

// TestK8sPlainManifestsUpToDate: k8s/cineflow.yaml is byte for byte what the chart renders now.
func TestK8sPlainManifestsUpToDate(t *testing.T) {
	want := renderPlain(t)
	got, err := os.ReadFile(filepath.Join(repoRoot(t), "k8s", "cineflow.yaml"))
	if err != nil {
		t.Fatalf("%v: run `make k8s` to render the plain manifests", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("k8s/cineflow.yaml is not what the chart renders now: run `make k8s` (k8s/render.sh) and commit the result.\n%s",
			firstDifference(got, want))
	}
}

// firstDifference describes the first line where the committed file and the fresh rendering
// differ.
func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("first difference at line %d:\n  k8s/cineflow.yaml: %q\n  rendered now:      %q", i+1, gl, wl)
		}
	}
	return "the files differ"
}

// object is one decoded manifest and where it came from.
type object struct {
	where string
	obj   runtime.Object
	meta  metav1.Object
}

// strictDecoder decodes manifests into the typed objects of client-go's scheme, refusing unknown
// and duplicate fields, as the API server's strict field validation does.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeManifests splits a multi-document YAML file and decodes each non-empty document, checking
// the fields every object needs (apiVersion, kind, metadata.name).
func decodeManifests(t *testing.T, file string) []object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(repoRoot(t), file)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []object
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		var generic map[string]any
		if err := yaml.Unmarshal(doc, &generic); err != nil {
			t.Errorf("%s, document %d: %v", rel, i, err)
			continue
		}
		if len(generic) == 0 { // comments only
			continue
		}
		where := fmt.Sprintf("%s, document %d", rel, i)
		apiVersion, _ := generic["apiVersion"].(string)
		kind, _ := generic["kind"].(string)
		md, _ := generic["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		if apiVersion == "" || kind == "" || name == "" {
			t.Errorf("%s: apiVersion %q, kind %q, metadata.name %q: all three are required", where, apiVersion, kind, name)
			continue
		}
		where = fmt.Sprintf("%s (%s %s)", rel, kind, name)
		obj, _, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			if runtime.IsNotRegisteredError(err) {
				// A custom resource (ServiceMonitor…): the generic checks above are all we can do.
				continue
			}
			t.Errorf("%s: %v", where, err)
			continue
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		objs = append(objs, object{where: where, obj: obj, meta: m})
	}
}

// podTemplate returns the pod template of a workload, or nil.
func podTemplate(obj runtime.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	}
	return nil
}

// checkWorkloads checks what the API server would refuse or what would never work: a selector
// that does not select its own pods, containers without name or image, Services whose selector
// matches no pod or whose named target port no container has, a StatefulSet without its
// governing Service.
func checkWorkloads(t *testing.T, objs []object) {
	t.Helper()
	services := map[string]*corev1.Service{}
	var templates []*corev1.PodTemplateSpec
	for _, o := range objs {
		if s, ok := o.obj.(*corev1.Service); ok {
			services[s.Name] = s
		}
		tpl := podTemplate(o.obj)
		if tpl == nil {
			continue
		}
		templates = append(templates, tpl)
		var sel *metav1.LabelSelector
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			sel = w.Spec.Selector
		case *appsv1.StatefulSet:
			sel = w.Spec.Selector
		case *appsv1.DaemonSet:
			sel = w.Spec.Selector
		}
		if sel == nil {
			t.Errorf("%s: spec.selector is required", o.where)
		} else if s, err := metav1.LabelSelectorAsSelector(sel); err != nil || s.Empty() || !s.Matches(labels.Set(tpl.Labels)) {
			t.Errorf("%s: spec.selector %v does not select the template's labels %v (%v)", o.where, sel.MatchLabels, tpl.Labels, err)
		}
		if len(tpl.Spec.Containers) == 0 {
			t.Errorf("%s: no containers", o.where)
		}
		for _, c := range append(append([]corev1.Container{}, tpl.Spec.InitContainers...), tpl.Spec.Containers...) {
			if c.Name == "" || c.Image == "" {
				t.Errorf("%s: a container needs a name and an image (name %q, image %q)", o.where, c.Name, c.Image)
			}
		}
	}
	for _, o := range objs {
		if ss, ok := o.obj.(*appsv1.StatefulSet); ok {
			if s := services[ss.Spec.ServiceName]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: serviceName %q names no headless Service beside it", o.where, ss.Spec.ServiceName)
			}
		}
	}
	for _, o := range objs {
		s, ok := o.obj.(*corev1.Service)
		if !ok || len(s.Spec.Selector) == 0 {
			continue
		}
		var matched []*corev1.PodTemplateSpec
		for _, tpl := range templates {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(tpl.Labels)) {
				matched = append(matched, tpl)
			}
		}
		if len(matched) == 0 {
			t.Errorf("%s: selector %v matches no pod template", o.where, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal == "" {
				continue
			}
			found := false
			for _, tpl := range matched {
				for _, c := range tpl.Spec.Containers {
					for _, cp := range c.Ports {
						found = found || cp.Name == p.TargetPort.StrVal
					}
				}
			}
			if !found {
				t.Errorf("%s: targetPort %q is no container port of the pods it selects", o.where, p.TargetPort.StrVal)
			}
		}
	}
}

// TestK8sPlainManifests: the plain manifests decode strictly, live in the namespace cineflow, hold
// no Secret (the user creates cineflow-secrets, as the file's head explains) and no `helm test`
// pod, and their workloads are consistent.
func TestK8sPlainManifests(t *testing.T) {
	file := filepath.Join(repoRoot(t), "k8s", "cineflow.yaml")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("%v: run `make k8s`", err)
	}
	objs := decodeManifests(t, file)
	if len(objs) == 0 {
		t.Fatal("k8s/cineflow.yaml holds no object")
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kind := o.obj.GetObjectKind().GroupVersionKind().Kind
		kinds[kind]++
		if kind == "Secret" {
			t.Errorf("%s: the plain manifests must not carry secrets", o.where)
		}
		if kind == "Pod" {
			t.Errorf("%s: a bare Pod (the `helm test` hook?) in the plain manifests", o.where)
		}
		if ns := o.meta.GetNamespace(); ns != "cineflow" {
			t.Errorf("%s: namespace %q, want cineflow", o.where, ns)
		}
	}
	for _, k := range []string{"Deployment", "Service", "CronJob"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in k8s/cineflow.yaml (kinds: %v)", k, kinds)
		}
	}
	checkWorkloads(t, objs)
	b, _ := os.ReadFile(file)
	if !bytes.Contains(b, []byte("name: cineflow-secrets")) {
		t.Error("k8s/cineflow.yaml never refers to the Secret cineflow-secrets its head documents")
	}
}

// devSkaffold is the part of k8s/dev/skaffold.yaml that lists the dev manifests.
type devSkaffold struct {
	Manifests struct {
		RawYaml []string `json:"rawYaml"`
	} `json:"manifests"`
}

// TestK8sDevManifests: every manifest in k8s/dev (those k8s/dev/skaffold.yaml deploys, which must
// be every YAML file there but the values and skaffold's own) decodes strictly with the fields an
// API server requires, and the workloads are consistent; values-dev.yaml points the chart at these
// very Services.
func TestK8sDevManifests(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "k8s", "dev")
	b, err := os.ReadFile(filepath.Join(dir, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sk devSkaffold
	if err := yaml.Unmarshal(b, &sk); err != nil {
		t.Fatalf("k8s/dev/skaffold.yaml: %v", err)
	}
	listed := map[string]bool{}
	for _, m := range sk.Manifests.RawYaml {
		matches, _ := filepath.Glob(filepath.Join(dir, m))
		if len(matches) == 0 {
			t.Errorf("k8s/dev/skaffold.yaml: %s matches no file", m)
		}
		for _, f := range matches {
			listed[f] = true
		}
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	for _, f := range all {
		switch filepath.Base(f) {
		case "skaffold.yaml", "values-dev.yaml":
			continue
		}
		if !listed[f] {
			t.Errorf("k8s/dev/%s is not deployed: list it in k8s/dev/skaffold.yaml's manifests.rawYaml", filepath.Base(f))
		}
	}
	files := make([]string, 0, len(listed))
	for f := range listed {
		files = append(files, f)
	}
	sort.Strings(files)
	var objs []object
	for _, f := range files {
		objs = append(objs, decodeManifests(t, f)...)
	}
	kinds := map[string]bool{}
	services := map[string]*corev1.Service{}
	for _, o := range objs {
		kinds[o.obj.GetObjectKind().GroupVersionKind().Kind+"/"+o.meta.GetName()] = true
		if s, ok := o.obj.(*corev1.Service); ok {
			services[s.Name] = s
		}
		if ns := o.meta.GetNamespace(); ns != "" {
			t.Errorf("%s: namespace %q: the dev pieces go to skaffold's namespace, beside the chart", o.where, ns)
		}
	}
	for _, k := range []string{"StatefulSet/mongodb", "Service/mongodb", "Deployment/pushgateway", "Service/pushgateway"} {
		if !kinds[k] {
			t.Errorf("k8s/dev has no %s", k)
		}
	}
	checkWorkloads(t, objs)

	// The chart's dev values reach these Services.
	var dev struct {
		Database struct {
			CoreURL         string `json:"coreURL"`
			NotificationURL string `json:"notificationURL"`
		} `json:"database"`
		Sweeper struct {
			PushgatewayURL string `json:"pushgatewayURL"`
		} `json:"sweeper"`
	}
	vb, err := os.ReadFile(filepath.Join(dir, "values-dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(vb, &dev); err != nil {
		t.Fatalf("values-dev.yaml: %v", err)
	}
	for _, u := range []string{dev.Database.CoreURL, dev.Database.NotificationURL, dev.Sweeper.PushgatewayURL} {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			t.Errorf("values-dev.yaml: URL %q: %v", u, err)
			continue
		}
		// mongodb-0.mongodb (a StatefulSet pod through its headless Service) or pushgateway.
		host := pu.Hostname()
		svc := host[strings.LastIndex(host, ".")+1:]
		s := services[svc]
		if s == nil {
			t.Errorf("values-dev.yaml: %s names no Service of k8s/dev", u)
			continue
		}
		port := pu.Port()
		ok := false
		for _, p := range s.Spec.Ports {
			ok = ok || fmt.Sprint(p.Port) == port
		}
		if !ok {
			t.Errorf("values-dev.yaml: %s: Service %s has no port %s", u, svc, port)
		}
	}
}

// TestK8sValuesRender: the chart renders with each values file of k8s/ (the dev one with the image
// values skaffold sets), so skaffold's deploys pass the chart's schema and checks.
func TestK8sValuesRender(t *testing.T) {
	root := repoRoot(t)
	skaffoldImages := []string{}
	for _, c := range []string{"core", "notification", "sweeper"} {
		skaffoldImages = append(skaffoldImages, "--set", c+".image.registry=",
			"--set", c+".image.repository=cineflow-"+c, "--set", c+".image.tag=abc1234", "--set", c+".image.digest=")
	}
	for _, tc := range []struct {
		values string
		extra  []string
	}{
		{"k8s/dev/values-dev.yaml", skaffoldImages},
		{"k8s/values-production.yaml", nil},
		{"k8s/values-plain.yaml", nil},
	} {
		t.Run(filepath.Base(tc.values), func(t *testing.T) {
			args := append([]string{"template", "cineflow", chartDir(t), "-f", filepath.Join(root, tc.values)}, tc.extra...)
			// Monitoring objects need their CRDs' API versions to exist for the chart to render them.
			args = append(args, "--api-versions", "monitoring.coreos.com/v1")
			out, errOut, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
			}
			if tc.extra != nil && !strings.Contains(out, `image: "cineflow-core:abc1234"`) {
				t.Errorf("the image skaffold sets does not reach the core's Deployment")
			}
		})
	}
}

// TestK8sOnAPIServer creates every object of the plain manifests (in the namespace cineflow, as
// written) and of the dev pieces (in a namespace of their own, as skaffold would) on a real API
// server (see apiserver_test.go) with strict server-side field validation: the server accepts
// them as they are. Not in -short mode.
func TestK8sOnAPIServer(t *testing.T) {
	c := apiStartCluster(t)
	ctx := context.Background()
	root := repoRoot(t)
	create := func(t *testing.T, file, ns string) {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("namespace %s: %v", ns, err)
		}
		rel, _ := filepath.Rel(root, file)
		for _, obj := range apiDecodeObjects(t, data) {
			_, err := c.resource(t, obj, ns).Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"})
			if err != nil {
				t.Errorf("%s: create %s %s: %v", rel, obj.GetKind(), obj.GetName(), err)
				continue
			}
			if _, found := c.get(t, obj, ns); !found {
				t.Errorf("%s: %s %s is not on the server", rel, obj.GetKind(), obj.GetName())
			}
		}
	}
	create(t, filepath.Join(root, "k8s", "cineflow.yaml"), "cineflow")
	for _, f := range []string{"mongodb.yaml", "pushgateway.yaml"} {
		create(t, filepath.Join(root, "k8s", "dev", f), "cineflow-dev")
	}
}
