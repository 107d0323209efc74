package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/caarlos0/env/v11"
)

// Program describes a binary for its --help and --version.
type Program struct {
	Name    string // the command's name, e.g. "core"
	Version string // stamped at build time (main.version)
	// Summary says what the binary is and does, in a few sentences.
	Summary string
	// Config holds pointers to the structs (with `env` tags) the binary reads its environment
	// into; their variables and defaults are listed.
	Config []any
	// Env lists variables read otherwise (name and what it does), e.g. the standard OTEL_*.
	Env [][2]string
}

// DocsURL is where every variable is described.
const DocsURL = "docs/configuration.md (https://github.com/cineflow/cineflow/blob/main/docs/configuration.md)"

// ParseArgs reads the command line of a binary configured by its environment: --help (-h)
// prints the usage to stdout, --version the version, and both end the program (exit 0); an
// unknown flag or an argument prints the error and the usage to stderr (exit 2). fs may hold
// the binary's own flags (nil: none). done reports that the program should exit with code.
func ParseArgs(p Program, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (done bool, code int) {
	if fs == nil {
		fs = flag.NewFlagSet(p.Name, flag.ContinueOnError)
	}
	fs.Init(p.Name, flag.ContinueOnError)
	if fs.Lookup("version") == nil {
		fs.Bool("version", false, "print the version and exit")
	}
	fs.SetOutput(io.Discard) // errors and usage are written below, each to its stream
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_ = Usage(stdout, p, fs)
		return true, 0
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n\n", p.Name, err)
		_ = Usage(stderr, p, fs)
		return true, 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q (the configuration comes from the environment)\n\n", p.Name, fs.Arg(0))
		_ = Usage(stderr, p, fs)
		return true, 2
	case fs.Lookup("version").Value.String() == "true":
		fmt.Fprintf(stdout, "%s %s\n", p.Name, p.Version)
		return true, 0
	}
	return false, 0
}

// Usage writes what the binary is, its flags, and the environment variables it reads with
// their defaults.
func Usage(w io.Writer, p Program, fs *flag.FlagSet) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n\n%s\n\nUsage: %s [flags]\n\nFlags:\n", p.Name, p.Version, strings.TrimSpace(p.Summary), p.Name)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  -h, --help\tprint this help and exit\n")
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) {
			kind, usage := flag.UnquoteUsage(f)
			name := f.Name
			if kind != "" {
				name += " " + kind
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(tw, "  --%s\t%s%s\n", name, usage, def)
		})
	}
	tw.Flush()
	vars, err := Variables(p.Config...)
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "\nEnvironment (a .env file in the working directory is read too; set variables win):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, v := range vars {
		def := v.Default
		switch {
		case v.Default == "" && !v.HasDefault:
			def = "(unset)"
		case v.Default == "":
			def = `""`
		}
		fmt.Fprintf(tw, "  %s\t%s\n", v.Name, def)
	}
	for _, e := range p.Env {
		fmt.Fprintf(tw, "  %s\t%s\n", e[0], e[1])
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nEvery variable is described in %s.\n", DocsURL)
	_, err = io.WriteString(w, b.String())
	return err
}

// Variable is one environment variable a config struct reads.
type Variable struct {
	Name       string
	Default    string
	HasDefault bool
}

// Variables lists the environment variables of the config structs (pointers), each once, in
// the order the structs declare them.
func Variables(configs ...any) ([]Variable, error) {
	var out []Variable
	for _, c := range configs {
		params, err := env.GetFieldParams(c)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		for _, fp := range params {
			if slices.ContainsFunc(out, func(v Variable) bool { return v.Name == fp.Key }) {
				continue
			}
			out = append(out, Variable{Name: fp.Key, Default: fp.DefaultValue, HasDefault: fp.HasDefaultValue})
		}
	}
	return out, nil
}
