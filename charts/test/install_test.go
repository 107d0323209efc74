package charttest

// The chart installed on a real Kubernetes API server (see apiserver_test.go): helm install with
// monitoring on, every object of the release on the server, the CronJob controller creating a
// sweeper Job on a one-minute schedule, helm upgrade keeping the generated secrets, helm
// uninstall removing everything; then the trial (devDatabase.enabled) with every optional object
// the chart has (Ingress, volume claim, network policies, a LoadBalancer Service) accepted by the
// server as rendered. Not in -short mode.

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	installRelease   = "cf"
	installNamespace = "cineflow"
)

// installValues are the values of the install test: the required ones, monitoring on, and a
// one-minute sweeper schedule (with the deadlines it then needs: activeDeadlineSeconds below the
// period, sendTimeout at most half of SWEEP_DEADLINE = 50 - 20 s).
const installValues = `
database:
  coreURL: mongodb://mongo-0.mongo:27017/mba?replicaSet=rs0
  notificationURL: mongodb://mongo-0.mongo:27017/noti?replicaSet=rs0
resend:
  apiKey: re_install_test
admin:
  email: admin@cineflow.test
metrics:
  serviceMonitor:
    enabled: true
  prometheusRule:
    enabled: true
  dashboards:
    enabled: true
sweeper:
  activeDeadlineSeconds: 50
  startingDeadlineSeconds: 30
  config:
    sendTimeout: 10s
`

func TestInstall(t *testing.T) {
	c := apiStartCluster(t)
	ctx := context.Background()
	crds, err := filepath.Glob(filepath.Join(repoRoot(t), "charts", "test", "testdata", "crds", "*.yaml"))
	if err != nil || len(crds) != 2 {
		t.Fatalf("CRD files %v (%v): want the ServiceMonitor and PrometheusRule CRDs", crds, err)
	}
	c.installCRDs(t, crds...)
	// The server reports its real version (stamped in at build), which the chart's kubeVersion
	// constraint is checked against.
	if v, err := c.Clientset.Discovery().ServerVersion(); err != nil || !strings.HasPrefix(v.GitVersion, "v1.") {
		t.Fatalf("server version %v (%v): want v1.x (the chart's kubeVersion refuses anything else)", v, err)
	} else {
		t.Logf("server version %s", v.GitVersion)
	}

	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	apiWriteFile(t, valuesFile, installValues)
	kh := func(args ...string) string {
		t.Helper()
		args = append(args, "--kubeconfig", c.Kubeconfig, "--namespace", installNamespace)
		began := time.Now()
		out, errOut, err := helm(t, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, errOut, out)
		}
		t.Logf("helm %s: %s", args[0], time.Since(began).Round(10*time.Millisecond))
		return out
	}

	// Install, with --set as a user would type it.
	kh("install", installRelease, chartDir(t), "--create-namespace", "-f", valuesFile,
		"--set", "sweeper.schedule=* * * * *", "--timeout", "2m")
	installed := time.Now()
	manifest := apiDecodeObjects(t, []byte(kh("get", "manifest", installRelease)))
	kinds := map[string]int{}
	for _, obj := range manifest {
		kinds[obj.GetKind()]++
	}
	t.Logf("release objects: %v", kinds)
	for kind, min := range map[string]int{"Deployment": 2, "Service": 2, "CronJob": 1, "Secret": 1,
		"ConfigMap": 1, "ServiceMonitor": 2, "PrometheusRule": 1} {
		if kinds[kind] < min {
			t.Errorf("the release has %d %s objects, want at least %d", kinds[kind], kind, min)
		}
	}

	t.Run("every object exists", func(t *testing.T) {
		for _, obj := range manifest {
			live, found := c.get(t, obj, installNamespace)
			if !found {
				t.Errorf("%s %s of the manifest is not on the server", obj.GetKind(), obj.GetName())
				continue
			}
			if got := live.GetAnnotations()["meta.helm.sh/release-name"]; got != installRelease {
				t.Errorf("%s %s: release-name annotation %q", obj.GetKind(), obj.GetName(), got)
			}
		}
		dashboards := 0
		for _, obj := range manifest {
			if obj.GetKind() == "ConfigMap" && obj.GetLabels()["grafana_dashboard"] == "1" {
				dashboards++
			}
		}
		if dashboards == 0 {
			t.Error(`no ConfigMap labelled grafana_dashboard: "1"`)
		}
	})

	t.Run("the CronJob controller creates a sweeper Job", func(t *testing.T) {
		var cronJobs []string
		for _, obj := range manifest {
			if obj.GetKind() == "CronJob" {
				cronJobs = append(cronJobs, obj.GetName())
			}
		}
		if len(cronJobs) != 1 {
			t.Fatalf("CronJobs %v, want one (the sweeper)", cronJobs)
		}
		cj, err := c.Clientset.BatchV1().CronJobs(installNamespace).Get(ctx, cronJobs[0], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cj.Spec.Schedule != "* * * * *" {
			t.Fatalf("CronJob schedule %q", cj.Spec.Schedule)
		}
		// The first run is due at the next full minute after the install: at most 60 s, plus the
		// controller's lag.
		var job *batchv1.Job
		apiWaitFor(t, 90*time.Second-time.Since(installed), "a Job of CronJob "+cj.Name, func() bool {
			job = installOwnedJob(t, c, cj.Name)
			return job != nil
		})
		t.Logf("Job %s created %s after the install", job.Name, time.Since(installed).Round(time.Second))
		if job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds != 50 {
			t.Errorf("Job activeDeadlineSeconds %v, want 50", job.Spec.ActiveDeadlineSeconds)
		}
		// The Job controller makes its pod (it never runs: there is no kubelet), so the pod
		// template also passed the API server's validation and admission.
		apiWaitFor(t, 30*time.Second, "a pod of Job "+job.Name, func() bool {
			pods, err := c.Clientset.CoreV1().Pods(installNamespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
			return err == nil && len(pods.Items) > 0
		})
	})

	// Upgrade with a changed value: the generated secrets stay as they were.
	secretsBefore := installSecretData(t, c, manifest)
	kh("upgrade", installRelease, chartDir(t), "-f", valuesFile,
		"--set", "sweeper.schedule=* * * * *", "--set", "core.replicaCount=3", "--timeout", "2m")
	t.Run("upgrade keeps the generated secrets", func(t *testing.T) {
		upgraded := apiDecodeObjects(t, []byte(kh("get", "manifest", installRelease)))
		for _, obj := range upgraded {
			if _, found := c.get(t, obj, installNamespace); !found {
				t.Errorf("%s %s of the upgraded manifest is not on the server", obj.GetKind(), obj.GetName())
			}
		}
		after := installSecretData(t, c, upgraded)
		t.Logf("Secrets compared across the upgrade: %v", installKeys(secretsBefore))
		if len(after) != len(secretsBefore) {
			t.Errorf("Secrets before the upgrade %v, after %v", installKeys(secretsBefore), installKeys(after))
		}
		for name, data := range secretsBefore {
			if !reflect.DeepEqual(data, after[name]) {
				t.Errorf("Secret %s changed on upgrade (keys before %v, after %v)", name, installKeys(data), installKeys(after[name]))
			}
		}
		replicas3 := 0
		for _, obj := range upgraded {
			if obj.GetKind() != "Deployment" {
				continue
			}
			d, err := c.Clientset.AppsV1().Deployments(installNamespace).Get(ctx, obj.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Spec.Replicas != nil && *d.Spec.Replicas == 3 {
				replicas3++
			}
		}
		if replicas3 != 1 {
			t.Errorf("%d Deployments have 3 replicas after the upgrade that set core.replicaCount=3, want 1", replicas3)
		}
	})

	// Uninstall: no object of the release remains, and the garbage collector removes the Jobs
	// (and their pods) that the CronJob made.
	upgraded := apiDecodeObjects(t, []byte(kh("get", "manifest", installRelease)))
	kh("uninstall", installRelease, "--wait", "--timeout", "2m")
	t.Run("uninstall removes everything", func(t *testing.T) {
		for _, obj := range append(manifest, upgraded...) {
			apiWaitFor(t, 60*time.Second, fmt.Sprintf("%s %s to be deleted", obj.GetKind(), obj.GetName()), func() bool {
				_, found := c.get(t, obj, installNamespace)
				return !found
			})
		}
		apiWaitFor(t, 90*time.Second, "the garbage collector to delete the sweeper's Jobs and pods", func() bool {
			jobs, err := c.Clientset.BatchV1().Jobs(installNamespace).List(ctx, metav1.ListOptions{})
			if err != nil || len(jobs.Items) > 0 {
				return false
			}
			pods, err := c.Clientset.CoreV1().Pods(installNamespace).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0
		})
		secrets, err := c.Clientset.CoreV1().Secrets(installNamespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
		if err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) > 0 {
			t.Errorf("%d Helm release records remain after uninstall", len(secrets.Items))
		}
	})

	// The trial, with every optional object, in a namespace of its own.
	const trialNS = "cineflow-trial"
	th := func(args ...string) string {
		t.Helper()
		args = append(args, "--kubeconfig", c.Kubeconfig, "--namespace", trialNS)
		out, errOut, err := helm(t, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, errOut, out)
		}
		return out
	}
	th("install", installRelease, chartDir(t), "--create-namespace", "--timeout", "2m",
		"--set", "devDatabase.enabled=true", "--set", "devDatabase.persistence.enabled=true",
		"--set", "ingress.enabled=true", "--set", "ingress.tls=true", "--set", "ingress.extraHosts[0].name=api.example.com",
		"--set", "networkPolicy.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "core.service.type=LoadBalancer", "--set", "core.service.externalTrafficPolicy=Local",
		"--set", "core.service.nodePorts.http=30080", "--set", "core.service.loadBalancerSourceRanges[0]=198.51.100.0/24")
	t.Run("trial objects exist", func(t *testing.T) {
		objs := apiDecodeObjects(t, []byte(th("get", "manifest", installRelease)))
		kinds := map[string]int{}
		for _, obj := range objs {
			kinds[obj.GetKind()]++
			if _, found := c.get(t, obj, trialNS); !found {
				t.Errorf("%s %s of the trial's manifest is not on the server", obj.GetKind(), obj.GetName())
			}
		}
		t.Logf("trial objects: %v", kinds)
		for kind, want := range map[string]int{"Deployment": 3, "Service": 5, "Ingress": 1, "PersistentVolumeClaim": 1,
			"NetworkPolicy": 4, "ServiceMonitor": 2, "PodDisruptionBudget": 2} {
			if kinds[kind] != want {
				t.Errorf("the trial has %d %s, want %d", kinds[kind], kind, want)
			}
		}
		svc, err := c.Clientset.CoreV1().Services(trialNS).Get(ctx, installRelease+"-cineflow-core", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.Ports[0].NodePort != 30080 || string(svc.Spec.ExternalTrafficPolicy) != "Local" || svc.Spec.HealthCheckNodePort == 0 {
			t.Errorf("core Service %+v: want node port 30080, externalTrafficPolicy Local (with its health check port)", svc.Spec)
		}
	})
	th("uninstall", installRelease, "--wait", "--timeout", "2m")
}

// installOwnedJob returns a Job owned by the CronJob named cronJob, or nil.
func installOwnedJob(t *testing.T, c *apiCluster, cronJob string) *batchv1.Job {
	jobs, err := c.Clientset.BatchV1().Jobs(installNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil
	}
	for i, j := range jobs.Items {
		for _, ref := range j.OwnerReferences {
			if ref.Kind == "CronJob" && ref.Name == cronJob && ref.Controller != nil && *ref.Controller {
				return &jobs.Items[i]
			}
		}
	}
	return nil
}

// installSecretData reads the data of every Secret of objs from the server, by name.
func installSecretData(t *testing.T, c *apiCluster, objs []*unstructured.Unstructured) map[string]map[string][]byte {
	t.Helper()
	out := map[string]map[string][]byte{}
	for _, obj := range objs {
		if obj.GetKind() != "Secret" {
			continue
		}
		s, err := c.Clientset.CoreV1().Secrets(installNamespace).Get(context.Background(), obj.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Secret %s: %v", obj.GetName(), err)
		}
		for k, v := range s.Data {
			if len(v) == 0 {
				t.Errorf("Secret %s: key %s is empty", s.Name, k)
			}
		}
		out[s.Name] = s.Data
	}
	return out
}

func installKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
