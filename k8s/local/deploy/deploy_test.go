package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string // kind/name of each object
	}{
		{"empty input", "", nil},
		{"only separators and comments", "---\n# nothing\n---\n\n---\n", nil},
		{
			"multi-document with empty documents",
			`# leading comment
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
data:
  k: v
---
---
# a document of comments only
---
apiVersion: v1
kind: Service
metadata:
  name: two
---
`,
			[]string{"ConfigMap/one", "Service/two"},
		},
		{
			"JSON",
			`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "three"}}`,
			[]string{"Secret/three"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode([]byte(tc.data))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetKind()+"/"+o.GetName())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("fields", func(t *testing.T) {
		objs, err := Decode([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  labels: {a: b}\nspec:\n  replicas: 2\n"))
		if err != nil || len(objs) != 1 {
			t.Fatalf("Decode = %v, %v", objs, err)
		}
		o := objs[0]
		if o.GetAPIVersion() != "apps/v1" || o.GroupVersionKind().Group != "apps" || o.GetLabels()["a"] != "b" {
			t.Errorf("decoded %v", o.Object)
		}
		// Numbers decode as JSON numbers (float64, not unstructured's usual int64); what Apply
		// sends, the object's JSON, has the integer.
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"replicas":2}`) {
			t.Errorf("JSON of the decoded object %s lacks \"replicas\":2", b)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		if objs, err := Decode([]byte("apiVersion: v1\nkind: [unclosed\n")); err == nil {
			t.Errorf("Decode of malformed YAML = %v, nil; want an error", objs)
		}
	})
}

// workload returns a decoded object of kind whose pod spec (at podSpec) has the given
// containers' and init containers' images.
func workload(t *testing.T, kind string, images, initImages []string) *unstructured.Unstructured {
	t.Helper()
	containers := func(prefix string, imgs []string) []any {
		var out []any
		for i, img := range imgs {
			out = append(out, map[string]any{"name": prefix + string(rune('a'+i)), "image": img})
		}
		return out
	}
	spec := map[string]any{"containers": containers("c", images)}
	if initImages != nil {
		spec["initContainers"] = containers("i", initImages)
	}
	obj := map[string]any{"apiVersion": "apps/v1", "kind": kind, "metadata": map[string]any{"name": "w"}}
	switch kind {
	case "Pod":
		obj["apiVersion"] = "v1"
		obj["spec"] = spec
	case "Job":
		obj["apiVersion"] = "batch/v1"
		obj["spec"] = map[string]any{"template": map[string]any{"spec": spec}}
	default:
		obj["spec"] = map[string]any{"template": map[string]any{"spec": spec}}
	}
	return &unstructured.Unstructured{Object: obj}
}

// imagesOf returns the images of obj's containers (field "containers" or "initContainers").
func imagesOf(t *testing.T, obj *unstructured.Unstructured, field string) []string {
	t.Helper()
	path := []string{"spec", "template", "spec", field}
	if obj.GetKind() == "Pod" {
		path = []string{"spec", field}
	}
	cs, _, err := unstructured.NestedSlice(obj.Object, path...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		img, _ := c.(map[string]any)["image"].(string)
		out = append(out, img)
	}
	return out
}

func TestReplaceImages(t *testing.T) {
	const (
		devdb = "127.0.0.1:5001/cineflow/devdb@sha256:1111"
		pg    = "127.0.0.1:5001/cineflow/pushgateway@sha256:2222"
		app   = "127.0.0.1:5001/cineflow/app@sha256:3333"
		exact = "127.0.0.1:5001/cineflow/exact@sha256:4444"
		local = "127.0.0.1:5001/cineflow/local@sha256:5555"
	)
	replace := map[string]string{
		"devdb":                 devdb,
		"pushgateway":           pg,
		"app":                   app,
		"cineflow/exact":        exact,
		"exact":                 "wrong: the exact key comes first",
		"localhost:5000/tool":   local,
		"registry.example/mine": "unused",
	}
	for _, tc := range []struct {
		name       string
		kind       string
		images     []string
		initImages []string
		want       []string
		wantInit   []string
	}{
		{"Deployment by last path element", "Deployment", []string{"cineflow/devdb"}, nil, []string{devdb}, nil},
		{"tag dropped, last path element", "Deployment", []string{"prom/pushgateway:v1.11.0"}, nil, []string{pg}, nil},
		{"exact repository key", "Deployment", []string{"cineflow/exact:latest"}, nil, []string{exact}, nil},
		{"registry with a port, no tag", "Deployment", []string{"localhost:5000/tool"}, nil, []string{local}, nil},
		{"registry with a port and a tag", "Deployment", []string{"localhost:5000/tool:v2"}, nil, []string{local}, nil},
		{"bare name", "Deployment", []string{"app"}, nil, []string{app}, nil},
		{"digest reference", "Deployment", []string{"docker.io/library/app@sha256:0123"}, nil, []string{app}, nil},
		{"tag and digest", "ReplicaSet", []string{"app:1@sha256:0123"}, nil, []string{app}, nil},
		{"several containers and init containers", "StatefulSet", []string{"app:1", "prom/pushgateway:v1.11.0"}, []string{"cineflow/devdb:x"},
			[]string{app, pg}, []string{devdb}},
		{"DaemonSet", "DaemonSet", []string{"app"}, nil, []string{app}, nil},
		{"Job", "Job", []string{"app"}, nil, []string{app}, nil},
		{"Pod", "Pod", []string{"docker.io/library/app:3"}, []string{"app"}, []string{app}, []string{app}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := workload(t, tc.kind, tc.images, tc.initImages)
			if err := ReplaceImages(obj, replace); err != nil {
				t.Fatalf("ReplaceImages: %v", err)
			}
			if got := imagesOf(t, obj, "containers"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("containers' images = %q, want %q", got, tc.want)
			}
			if got := imagesOf(t, obj, "initContainers"); !reflect.DeepEqual(got, tc.wantInit) {
				t.Errorf("init containers' images = %q, want %q", got, tc.wantInit)
			}
		})
	}

	for _, tc := range []struct {
		name               string
		images, initImages []string
	}{
		{"unknown image", []string{"nginx:1.27"}, nil},
		{"unknown image after a known one", []string{"app", "bitnami/redis:7"}, nil},
		{"unknown init container image", []string{"app"}, []string{"busybox"}},
		{"key only as a middle path element", []string{"app/other:1"}, nil},
		{"container without an image", []string{""}, nil},
	} {
		t.Run("error: "+tc.name, func(t *testing.T) {
			obj := workload(t, "Deployment", tc.images, tc.initImages)
			err := ReplaceImages(obj, replace)
			if err == nil {
				t.Fatalf("ReplaceImages(%q, %q) = nil; want an error (it would be pulled from outside)", tc.images, tc.initImages)
			}
			if !strings.Contains(err.Error(), "no local image") || !strings.Contains(err.Error(), "Deployment w") {
				t.Errorf("error %q does not name the object and the missing image", err)
			}
		})
	}

	t.Run("CronJob", func(t *testing.T) {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "CronJob",
			"metadata": map[string]any{"name": "c"}, "spec": map[string]any{"jobTemplate": map[string]any{"spec": map[string]any{
				"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "x", "image": "prom/pushgateway:v1"}}}}}}}}}
		if err := ReplaceImages(obj, replace); err != nil {
			t.Fatal(err)
		}
		cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "jobTemplate", "spec", "template", "spec", "containers")
		if got := cs[0].(map[string]any)["image"]; got != pg {
			t.Errorf("CronJob image = %v, want %s", got, pg)
		}
		cs[0].(map[string]any)["image"] = "nginx"
		if err := unstructured.SetNestedSlice(obj.Object, cs, "spec", "jobTemplate", "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		if err := ReplaceImages(obj, replace); err == nil {
			t.Error("a CronJob with an outside image: no error")
		}
	})

	t.Run("nil map", func(t *testing.T) {
		if err := ReplaceImages(workload(t, "Deployment", []string{"app"}, nil), nil); err == nil {
			t.Error("ReplaceImages with no images = nil; want an error")
		}
	})

	t.Run("non-workload kinds ignored", func(t *testing.T) {
		for _, kind := range []string{"Service", "ConfigMap", "CustomResourceDefinition", "ServiceMonitor"} {
			// Even with a pod-spec-like field holding an unknown image.
			obj := workload(t, kind, []string{"nginx:1.27"}, nil)
			before := obj.DeepCopy()
			if err := ReplaceImages(obj, replace); err != nil {
				t.Errorf("%s: %v", kind, err)
			}
			if !reflect.DeepEqual(obj.Object, before.Object) {
				t.Errorf("%s changed: %v", kind, obj.Object)
			}
		}
	})

	t.Run("other fields kept", func(t *testing.T) {
		obj := workload(t, "Deployment", []string{"app"}, nil)
		cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		cs[0].(map[string]any)["args"] = []any{"-x"}
		if err := unstructured.SetNestedSlice(obj.Object, cs, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		if err := ReplaceImages(obj, replace); err != nil {
			t.Fatal(err)
		}
		cs, _, _ = unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		c := cs[0].(map[string]any)
		if c["name"] != "ca" || !reflect.DeepEqual(c["args"], []any{"-x"}) || c["image"] != app {
			t.Errorf("container after ReplaceImages: %v", c)
		}
	})
}

// TestManifestsUseLocalImages decodes every manifest the local cluster applies and checks that
// ReplaceImages finds a local image for each container, with the keys Env.Images has.
func TestManifestsUseLocalImages(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "manifests", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "..", "dev", "pushgateway.yaml"))
	if len(files) < 3 {
		t.Fatalf("manifests found: %v; want devdb.yaml, resendfake.yaml and pushgateway.yaml", files)
	}
	replace := map[string]string{
		"devdb":       "127.0.0.1:5001/cineflow/devdb@sha256:aaaa",
		"resendfake":  "127.0.0.1:5001/cineflow/resendfake@sha256:bbbb",
		"pushgateway": "127.0.0.1:5001/cineflow/pushgateway@sha256:cccc",
	}
	deployments := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
			for _, o := range objs {
				if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
					t.Errorf("object without kind, apiVersion or name: %v", o.Object)
				}
				if err := ReplaceImages(o, replace); err != nil {
					t.Errorf("ReplaceImages: %v", err)
					continue
				}
				if o.GetKind() != "Deployment" {
					continue
				}
				var d appsv1.Deployment
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &d, true); err != nil {
					t.Errorf("Deployment %s does not convert: %v", o.GetName(), err)
					continue
				}
				deployments[d.Name] = true
				for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
					if want := replace[d.Name]; c.Image != want {
						t.Errorf("Deployment %s container %s: image %q, want the local %q", d.Name, c.Name, c.Image, want)
					}
				}
			}
			// Without the local images, applying would pull from outside: ReplaceImages refuses.
			objs, _ = Decode(data)
			var failed bool
			for _, o := range objs {
				failed = failed || ReplaceImages(o, map[string]string{}) != nil
			}
			if !failed {
				t.Error("ReplaceImages with no local images succeeded: the manifest has no workload image?")
			}
		})
	}
	for n := range replace {
		if !deployments[n] {
			t.Errorf("no Deployment %s in %v", n, files)
		}
	}
}

func TestRolledOut(t *testing.T) {
	two := int32(2)
	zero := int32(0)
	dep := func(gen int64, replicas *int32, st appsv1.DeploymentStatus) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "d", Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: replicas},
			Status:     st,
		}
	}
	all := func(gen int64, n int32) appsv1.DeploymentStatus {
		return appsv1.DeploymentStatus{ObservedGeneration: gen, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	}
	for _, tc := range []struct {
		name string
		d    *appsv1.Deployment
		want bool
	}{
		{"ready, replicas unset (1)", dep(3, nil, all(3, 1)), true},
		{"ready, 2 replicas", dep(3, &two, all(3, 2)), true},
		{"scaled to zero", dep(2, &zero, all(2, 0)), true},
		{"observed a newer generation", dep(3, &two, all(4, 2)), true},
		{"stale observedGeneration", dep(4, &two, all(3, 2)), false},
		{"never observed", dep(1, &two, appsv1.DeploymentStatus{}), false},
		{"one of two ready", dep(3, &two, appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1}), false},
		{"ready but not yet available", dep(3, &two, appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 1}), false},
		{"not all updated", dep(3, &two, appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 1, ReadyReplicas: 2, AvailableReplicas: 2}), false},
		{"an old replica left", dep(3, &two, appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 3, UpdatedReplicas: 2, ReadyReplicas: 3, AvailableReplicas: 3}), false},
		{"replicas unset, status for 2", dep(3, nil, all(3, 2)), false},
		{"scaled to zero, one still running", dep(2, &zero, all(2, 1)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RolledOut(tc.d); got != tc.want {
				replicas := "unset"
				if r := tc.d.Spec.Replicas; r != nil {
					replicas = fmt.Sprint(*r)
				}
				t.Errorf("RolledOut(generation %d, replicas %s, status %+v) = %v, want %v",
					tc.d.Generation, replicas, tc.d.Status, got, tc.want)
			}
		})
	}
}

func TestImageSets(t *testing.T) {
	e := &Env{Images: map[string]string{
		"core":         "127.0.0.1:5001/cineflow/core@sha256:abc",
		"notification": "127.0.0.1:5001/cineflow/notification@sha256:def",
		"sweeper":      "127.0.0.1:5001/cineflow/sweeper@sha256:0123",
		"devdb":        "127.0.0.1:5001/cineflow/devdb@sha256:999", // not a chart image
	}}
	want := []string{
		"--set", "core.image.registry=127.0.0.1:5001,core.image.repository=cineflow/core,core.image.digest=sha256:abc",
		"--set", "notification.image.registry=127.0.0.1:5001,notification.image.repository=cineflow/notification,notification.image.digest=sha256:def",
		"--set", "sweeper.image.registry=127.0.0.1:5001,sweeper.image.repository=cineflow/sweeper,sweeper.image.digest=sha256:0123",
	}
	if got, err := e.ImageSets(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ImageSets =\n  %q, %v\nwant\n  %q", got, err, want)
	}

	// A repository with more path elements keeps them all; the registry is the first.
	e.Images["core"] = "registry.local:443/team/cineflow/core@sha256:abc"
	if got, _ := e.ImageSets(); len(got) < 2 || got[1] != "core.image.registry=registry.local:443,core.image.repository=team/cineflow/core,core.image.digest=sha256:abc" {
		t.Errorf("ImageSets for a nested repository: %q", got)
	}

	// The tag it was built with goes along.
	e.Tags = map[string]string{"core": "e2e-2"}
	if got, _ := e.ImageSets(); len(got) < 2 || !strings.HasSuffix(got[1], ",core.image.tag=e2e-2") {
		t.Errorf("ImageSets with a tag: %q", got)
	}

	// An application image not built yet is an error, not a panic.
	delete(e.Images, "sweeper")
	if got, err := e.ImageSets(); err == nil {
		t.Errorf("ImageSets without a sweeper image = %q, nil; want an error", got)
	}
}
