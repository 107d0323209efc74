package charttest

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// ntNotes renders the install notes (NOTES.txt) as `helm install` prints them: a client-only
// dry-run install through Helm's own action package, with ctRequired and the --set values.
func ntNotes(t *testing.T, sets ...string) string {
	t.Helper()
	return ntNotesFrom(t, ctRequired, sets...)
}

// ntNotesFrom renders the install notes with the values base (YAML) and the --set values.
func ntNotesFrom(t *testing.T, base string, sets ...string) string {
	t.Helper()
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(base), &vals); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatal(err)
		}
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.ClientOnly, inst.DryRun = true, true
	// Without a cluster Helm assumes Kubernetes 1.20 (see helmLDFlags), below the chart's kubeVersion.
	kv, err := chartutil.ParseKubeVersion("v1." + kubeMinor() + ".0")
	if err != nil {
		t.Fatal(err)
	}
	inst.KubeVersion = kv
	inst.ReleaseName, inst.Namespace = ctRelease, ctNamespace
	rel, err := inst.Run(ch, vals)
	if err != nil {
		t.Fatalf("dry-run install: %v", err)
	}
	return rel.Info.Notes
}

// TestChartNotesTrustedProxies: the install notes warn when core.config.trustedProxies is
// empty (the default: behind an ingress every client would share the per-address sign-in
// limits), and not when it is set.
func TestChartNotesTrustedProxies(t *testing.T) {
	const warning = "WARNING: core.config.trustedProxies is empty"
	notes := ntNotes(t)
	if !strings.Contains(notes, warning) || !strings.Contains(notes, "ingress controller's pod CIDR") {
		t.Errorf("default notes lack the trustedProxies warning:\n%s", notes)
	}
	if notes := ntNotes(t, "core.config.trustedProxies=10.244.0.0/16"); strings.Contains(notes, warning) {
		t.Errorf("notes warn although trustedProxies is set:\n%s", notes)
	}
}

// TestChartNotesDevDatabase: with devDatabase.enabled the notes say, in capitals, that the
// in-cluster database is not for production and why, that the sweeper only logs e-mails, and how
// to switch to MongoDB; without it they say none of that.
func TestChartNotesDevDatabase(t *testing.T) {
	notes := ntNotesFrom(t, "", "devDatabase.enabled=true")
	for _, want := range []string{"IS NOT FOR PRODUCTION", "NO AUTHENTICATION", "NO REPLICATION", "NO BACKUPS",
		"IS LOST WHEN ITS POD IS DELETED", "development mode", "e-mails are logged, not sent", "switch to MongoDB",
		"--set devDatabase.enabled=false", "--set database.existingSecret=", "cf-cineflow-devdb.cineflow.svc:27017",
		"First admin", "kubectl -n cineflow get secret cf-cineflow-admin"} {
		if !strings.Contains(notes, want) {
			t.Errorf("development database notes do not say %q:\n%s", want, notes)
		}
	}
	if notes := ntNotesFrom(t, "", "devDatabase.enabled=true", "devDatabase.persistence.enabled=true"); strings.Contains(notes, "IS LOST") {
		t.Errorf("notes say the data is lost although it is on a volume:\n%s", notes)
	}
	if notes := ntNotes(t); strings.Contains(notes, "NOT FOR PRODUCTION") || strings.Contains(notes, "development database") {
		t.Errorf("default notes speak of the development database:\n%s", notes)
	}
}

// TestChartNotesAdminSeed: the notes say that admin.password only seeds the first admin, and how
// to change a password.
func TestChartNotesAdminSeed(t *testing.T) {
	notes := ntNotes(t, "admin.email=admin@example.com")
	for _, want := range []string{"only SEEDS the first admin", "changes nothing", "PATCH /mba/api/v1/auth/reset"} {
		if !strings.Contains(notes, want) {
			t.Errorf("admin notes do not say %q:\n%s", want, notes)
		}
	}
}

// TestChartNotesIngress: with an Ingress the notes give the API's URL through it.
func TestChartNotesIngress(t *testing.T) {
	notes := ntNotes(t, "ingress.enabled=true", "ingress.hostname=tickets.example.com", "ingress.tls=true")
	if !strings.Contains(notes, "https://tickets.example.com/mba/api/v1/movies") {
		t.Errorf("ingress notes lack the API's URL:\n%s", notes)
	}
}
