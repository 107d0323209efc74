// Package configtest checks a built binary's command line: --version and --help answer and exit
// 0, an unknown flag is an error with the usage (exit 2).
package configtest

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// CheckCommandLine runs bin (named name) with --version, --help and an unknown flag, in an
// empty environment (so nothing is read from the machine), and checks the answers; the help
// must mention every string of lists (e.g. the variables the binary reads).
func CheckCommandLine(t *testing.T, bin, name string, lists ...string) {
	t.Helper()
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Dir = []string{}, t.TempDir()
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return out.String(), errb.String(), code
	}
	if out, errs, code := run("--version"); code != 0 || !strings.HasPrefix(out, name+" ") || errs != "" {
		t.Errorf("%s --version: exit %d, stdout %q, stderr %q", name, code, out, errs)
	}
	out, errs, code := run("--help")
	if code != 0 || errs != "" {
		t.Errorf("%s --help: exit %d, stderr %q", name, code, errs)
	}
	for _, s := range append([]string{"Usage: " + name, "--version", "docs/configuration.md"}, lists...) {
		if !strings.Contains(out, s) {
			t.Errorf("%s --help does not mention %q:\n%s", name, s, out)
		}
	}
	if out, errs, code := run("--no-such-flag"); code != 2 || out != "" ||
		!strings.Contains(errs, "no-such-flag") || !strings.Contains(errs, "Usage: "+name) {
		t.Errorf("%s --no-such-flag: exit %d (want 2), stdout %q, stderr %q", name, code, out, errs)
	}
}
