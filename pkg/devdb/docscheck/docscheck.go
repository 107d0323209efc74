// Package docscheck keeps the documentation true. Its tests, which `make test` runs, fail when a
// relative link or `#anchor` of README.md, CONTRIBUTING.md, SECURITY.md or docs/*.md does not
// resolve, when a docs page's table of contents misses one of its `##` sections, when
// docs/configuration.md and the environment variables the binaries read disagree, or when a
// variable read only by tests and tools is missing from docs/development.md.
//
// Markdown is read as GitHub renders it, as far as these checks need: fenced code blocks and
// code spans hold no links, and an anchor is a heading's slug by GitHub's rules (see Slug).
// Standard library only; no network, no database.
package docscheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Heading is an ATX heading (`## Text`) outside code blocks.
type Heading struct {
	Level int
	Text  string // as written, without the #s
	Slug  string // its anchor, unique within the file
	Line  int
}

// Link is a link or image target written in the file (inline or a reference definition).
type Link struct {
	Target string
	Line   int
}

// Doc is what the checks need of one Markdown file.
type Doc struct {
	Headings []Heading
	Links    []Link
	// Anchors holds every anchor of the file: the headings' slugs and HTML id/name attributes.
	Anchors map[string]bool
	// Rows are the cells of every table row outside code blocks, with their line numbers.
	Rows []Row
}

// Row is one table row.
type Row struct {
	Cells []string
	Line  int
}

var (
	atxHeading  = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*$`)
	closingHash = regexp.MustCompile(`[ \t]+#+$`)
	fenceOpen   = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
	inlineLink  = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	refDef      = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	htmlAnchor  = regexp.MustCompile(`<[a-zA-Z][^>]*\s(?:id|name)="([^"]+)"`)
	htmlTag     = regexp.MustCompile(`<[^>]+>`)
	scheme      = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	envName     = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	varCell     = regexp.MustCompile("^`[A-Z][A-Z0-9_]*`(?:\\s*[,/]\\s*`[A-Z][A-Z0-9_]*`)*$")
	backticked  = regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
)

// Parse reads a Markdown file.
func Parse(src []byte) *Doc {
	d := &Doc{Anchors: map[string]bool{}}
	seen := map[string]int{}
	var fence string // the open fence's marker, "" outside code blocks
	for i, line := range strings.Split(string(src), "\n") {
		n := i + 1
		line = strings.TrimRight(line, "\r")
		if m := fenceOpen.FindStringSubmatch(line); m != nil {
			switch {
			case fence == "":
				fence = m[1]
				continue
			case m[1][0] == fence[0] && len(m[1]) >= len(fence) && strings.TrimSpace(line[strings.Index(line, m[1])+len(m[1]):]) == "":
				fence = ""
				continue
			}
		}
		if fence != "" {
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(stripCode(line), -1) {
			d.Anchors[m[1]] = true
		}
		if m := atxHeading.FindStringSubmatch(line); m != nil {
			text := closingHash.ReplaceAllString(m[2], "")
			if strings.Trim(text, "#") == "" {
				text = ""
			}
			slug := Slug(headingText(text))
			if k, dup := seen[slug]; dup {
				// GitHub numbers repeated slugs: x, x-1, x-2 …
				for {
					k++
					if cand := fmt.Sprintf("%s-%d", slug, k); !d.Anchors[cand] {
						seen[slug] = k
						slug = cand
						break
					}
				}
			} else {
				seen[slug] = 0
			}
			d.Anchors[slug] = true
			d.Headings = append(d.Headings, Heading{Level: len(m[1]), Text: text, Slug: slug, Line: n})
		}
		plain := stripCode(line)
		if m := refDef.FindStringSubmatch(plain); m != nil {
			d.Links = append(d.Links, Link{Target: strings.Trim(m[1], "<>"), Line: n})
		}
		for _, m := range inlineLink.FindAllStringSubmatch(plain, -1) {
			d.Links = append(d.Links, Link{Target: strings.Trim(m[1], "<>"), Line: n})
		}
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "|") {
			d.Rows = append(d.Rows, Row{Cells: splitRow(t), Line: n})
		}
	}
	return d
}

// stripCode removes code spans (`x`, “x“): they hold no links.
func stripCode(s string) string { return codeSpans(s, false) }

// codeSpans removes code spans, keeping their content when keep is set (a heading's text).
func codeSpans(s string, keep bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '`' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '`' {
			j++
		}
		run := s[i:j]
		end := -1
		for k := j; k < len(s); {
			if s[k] != '`' {
				k++
				continue
			}
			l := k
			for l < len(s) && s[l] == '`' {
				l++
			}
			if l-k == len(run) {
				end = k
				break
			}
			k = l
		}
		if end < 0 { // no closing run: literal backticks
			b.WriteString(run)
			i = j
			continue
		}
		if keep {
			b.WriteString(strings.TrimSpace(s[j:end]))
		}
		i = end + len(run)
	}
	return b.String()
}

// headingText is a heading as GitHub renders it to text: code spans keep their content, links
// and images their text, HTML tags and emphasis stars go.
func headingText(s string) string {
	s = codeSpans(s, true)
	s = inlineLink.ReplaceAllStringFunc(s, func(m string) string {
		m = strings.TrimPrefix(m, "!")
		return m[1:strings.LastIndex(m, "](")]
	})
	s = htmlTag.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "*", "")
}

// Slug is GitHub's anchor of a heading's text: lower case; letters, digits, marks, '_' and
// '-' kept; each space a '-'; everything else (punctuation, symbols) dropped.
func Slug(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case unicode.IsLetter(r), unicode.IsNumber(r), unicode.IsMark(r), r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// splitRow splits a table row into trimmed cells (`\|` does not split).
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, `\|`) {
		line = line[:len(line)-1]
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// CheckLinks checks every relative link of files (paths relative to root): the file or
// directory it names exists inside root, and its #anchor, if any, is an anchor of that
// Markdown file. It returns one problem per broken link, as "file:line: …".
func CheckLinks(root string, files []string) ([]string, error) {
	docs := map[string]*Doc{} // by path relative to root
	load := func(rel string) (*Doc, error) {
		if d, ok := docs[rel]; ok {
			return d, nil
		}
		src, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return nil, err
		}
		d := Parse(src)
		docs[rel] = d
		return d, nil
	}
	var problems []string
	for _, file := range files {
		d, err := load(file)
		if err != nil {
			return nil, err
		}
		for _, l := range d.Links {
			if l.Target == "" || scheme.MatchString(l.Target) || strings.HasPrefix(l.Target, "//") {
				continue // external (http, https, mailto …)
			}
			pathPart, anchor, _ := strings.Cut(l.Target, "#")
			if q := strings.IndexByte(pathPart, '?'); q >= 0 {
				pathPart = pathPart[:q]
			}
			where := fmt.Sprintf("%s:%d: link %s", file, l.Line, l.Target)
			target := file
			if pathPart != "" {
				p, err := url.PathUnescape(pathPart)
				if err != nil {
					problems = append(problems, where+": malformed path")
					continue
				}
				if strings.HasPrefix(p, "/") {
					target = filepath.Clean(strings.TrimPrefix(p, "/"))
				} else {
					target = filepath.Clean(filepath.Join(filepath.Dir(file), p))
				}
				if target == ".." || strings.HasPrefix(target, ".."+string(filepath.Separator)) {
					problems = append(problems, where+": points outside the repository")
					continue
				}
				if _, err := os.Stat(filepath.Join(root, target)); err != nil {
					problems = append(problems, fmt.Sprintf("%s: %s does not exist", where, filepath.ToSlash(target)))
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.EqualFold(filepath.Ext(target), ".md") {
				problems = append(problems, fmt.Sprintf("%s: an anchor into %s, which is not Markdown", where, filepath.ToSlash(target)))
				continue
			}
			td, err := load(target)
			if err != nil {
				return nil, err
			}
			if a, err := url.PathUnescape(anchor); err != nil || !td.Anchors[a] {
				problems = append(problems, fmt.Sprintf("%s: no heading of %s has the anchor #%s", where, filepath.ToSlash(target), anchor))
			}
		}
	}
	return problems, nil
}

// CheckTOC checks that the part of a page before its first `##` heading links to every `##`
// heading of the page (its table of contents).
func CheckTOC(file string, d *Doc) []string {
	first := 0
	for _, h := range d.Headings {
		if h.Level == 2 {
			first = h.Line
			break
		}
	}
	listed := map[string]bool{}
	for _, l := range d.Links {
		if first == 0 || l.Line < first {
			if a, ok := strings.CutPrefix(l.Target, "#"); ok {
				listed[a] = true
			}
		}
	}
	var problems []string
	for _, h := range d.Headings {
		if h.Level == 2 && !listed[h.Slug] {
			problems = append(problems, fmt.Sprintf("%s:%d: section %q is not in the table of contents (#%s)", file, h.Line, h.Text, h.Slug))
		}
	}
	return problems
}

// TableVars returns the environment variables a page lists: the names in the first cell of
// its table rows, when that cell holds nothing but backticked names (`A`, `B` or `A` / `B`).
func TableVars(d *Doc) map[string]int {
	vars := map[string]int{}
	for _, r := range d.Rows {
		if len(r.Cells) == 0 || !varCell.MatchString(r.Cells[0]) {
			continue
		}
		for _, m := range backticked.FindAllStringSubmatch(r.Cells[0], -1) {
			if _, ok := vars[m[1]]; !ok {
				vars[m[1]] = r.Line
			}
		}
	}
	return vars
}

// Mentioned returns the names written in backticks anywhere in a page (`NAME`).
func Mentioned(src []byte) map[string]bool {
	out := map[string]bool{}
	for _, m := range backticked.FindAllSubmatch(src, -1) {
		out[string(m[1])] = true
	}
	return out
}

// EnvReads returns the environment variables the Go files under dirs (relative to root,
// recursively) read, each with the first place that reads it. A read is an `env:"NAME"` struct
// tag (caarlos0/env), or a call with the name as a string literal first argument to
// os.Getenv, os.LookupEnv or a function whose name begins with env, getenv or lookup (the
// helpers that wrap them, such as devstack's lookup). Test files count only with tests set;
// testdata directories never do.
func EnvReads(root string, dirs []string, tests bool) (map[string]string, error) {
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				switch e.Name() {
				case "testdata", ".git", "node_modules", "bin", "dist", ".data", ".outbox":
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || (!tests && strings.HasSuffix(path, "_test.go")) {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			add := func(name string, pos token.Pos) {
				if !envName.MatchString(name) {
					return
				}
				if _, ok := out[name]; !ok {
					out[name] = fmt.Sprintf("%s:%d", filepath.ToSlash(rel), fset.Position(pos).Line)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.Field:
					if n.Tag == nil {
						return true
					}
					tag, err := strconv.Unquote(n.Tag.Value)
					if err != nil {
						return true
					}
					if v, ok := reflect.StructTag(tag).Lookup("env"); ok {
						name, _, _ := strings.Cut(v, ",")
						add(name, n.Tag.Pos())
					}
				case *ast.CallExpr:
					if len(n.Args) == 0 || !readsEnv(n.Fun) {
						return true
					}
					if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if name, err := strconv.Unquote(lit.Value); err == nil {
							add(name, lit.Pos())
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readsEnv reports whether a called function reads the environment (see EnvReads).
func readsEnv(fun ast.Expr) bool {
	switch f := fun.(type) {
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok && x.Name == "os" {
			return f.Sel.Name == "Getenv" || f.Sel.Name == "LookupEnv"
		}
	case *ast.Ident:
		name := strings.ToLower(f.Name)
		return strings.HasPrefix(name, "env") || strings.HasPrefix(name, "getenv") || strings.HasPrefix(name, "lookup")
	}
	return false
}

// Diff returns what is in a but not in b, sorted.
func Diff[V any, W any](a map[string]V, b map[string]W) []string {
	var out []string
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// RepoRoot is the directory holding go.work, found from dir upwards.
func RepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s", dir)
		}
	}
}
