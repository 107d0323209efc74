package charttest

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// ntNotes renders the install notes (NOTES.txt) as `helm install` prints them: a client-only
// dry-run install through Helm's own action package, with ctRequired and the --set values.
func ntNotes(t *testing.T, sets ...string) string {
	t.Helper()
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(ctRequired), &vals); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatal(err)
		}
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.ClientOnly, inst.DryRun = true, true
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
