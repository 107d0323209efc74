package config_test

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/cineflow/cineflow/pkg/config"
)

type cliConfig struct {
	config.Common
	Port    int           `env:"PORT" envDefault:"3000"`
	DBURL   string        `env:"DB_URL"`
	Timeout time.Duration `env:"DB_CONNECT_TIMEOUT" envDefault:"5s"`
	Empty   string        `env:"EMAIL_FROM" envDefault:""`
}

func program() config.Program {
	return config.Program{Name: "thing", Version: "1.2.3", Summary: "Thing does things.",
		Config: []any{&cliConfig{}}, Env: [][2]string{{"OTEL_*", "standard OpenTelemetry variables"}}}
}

func TestParseArgs(t *testing.T) {
	cases := []struct {
		args       []string
		done       bool
		code       int
		out, err   []string // substrings of stdout and stderr
		noOut, noE bool
	}{
		{args: nil, done: false, noOut: true, noE: true},
		{args: []string{"--version"}, done: true, out: []string{"thing 1.2.3\n"}, noE: true},
		{args: []string{"-version"}, done: true, out: []string{"thing 1.2.3"}, noE: true},
		{args: []string{"--help"}, done: true, out: []string{"Thing does things.", "--version", "PORT", "3000",
			"DB_URL", "(unset)", "DB_CONNECT_TIMEOUT", "5s", "EMAIL_FROM", `""`, "APP_ENV", "production", "LOG_LEVEL",
			"OTEL_*", "docs/configuration.md"}, noE: true},
		{args: []string{"-h"}, done: true, out: []string{"Usage: thing"}, noE: true},
		{args: []string{"--bogus"}, done: true, code: 2, err: []string{"flag provided but not defined: -bogus", "Usage: thing"}, noOut: true},
		{args: []string{"serve"}, done: true, code: 2, err: []string{`unexpected argument "serve"`}, noOut: true},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		done, code := config.ParseArgs(program(), nil, c.args, &out, &errb)
		if done != c.done || code != c.code {
			t.Errorf("%v: done %v code %d, want %v %d", c.args, done, code, c.done, c.code)
		}
		for _, s := range c.out {
			if !strings.Contains(out.String(), s) {
				t.Errorf("%v: stdout lacks %q:\n%s", c.args, s, out.String())
			}
		}
		for _, s := range c.err {
			if !strings.Contains(errb.String(), s) {
				t.Errorf("%v: stderr lacks %q:\n%s", c.args, s, errb.String())
			}
		}
		if c.noOut && out.Len() > 0 {
			t.Errorf("%v: unexpected stdout %q", c.args, out.String())
		}
		if c.noE && errb.Len() > 0 {
			t.Errorf("%v: unexpected stderr %q", c.args, errb.String())
		}
	}
}

func TestParseArgsOwnFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	dir := fs.String("db-dir", ".data", "data directory")
	var out, errb bytes.Buffer
	if done, _ := config.ParseArgs(program(), fs, []string{"--db-dir", "/tmp/x"}, &out, &errb); done || *dir != "/tmp/x" {
		t.Fatalf("own flag: done %v dir %q", done, *dir)
	}
	done, code := config.ParseArgs(program(), fs, []string{"--help"}, &out, &errb)
	if !done || code != 0 || !strings.Contains(out.String(), "--db-dir") || !strings.Contains(out.String(), "data directory") {
		t.Fatalf("help without the binary's own flags:\n%s", out.String())
	}
}
