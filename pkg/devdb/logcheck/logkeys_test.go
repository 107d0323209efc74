package logcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// logMethods are the slog.Logger methods whose arguments after the message are key/value
// pairs or slog.Attr values; With's are all pairs.
var logMethods = map[string]int{ // method -> index of the first attribute argument
	"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
	"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
	"With": 0,
}

// attrFuncs are the slog constructors whose first argument is a key.
var attrFuncs = map[string]bool{"String": true, "Int": true, "Int64": true, "Uint64": true, "Float64": true,
	"Bool": true, "Time": true, "Duration": true, "Any": true, "Group": true}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test's directory")
		}
		dir = parent
	}
}

// TestLogKeysAreSnakeCase: every literal key given to a logger in the repository's Go code
// (tests aside) is snake_case.
func TestLogKeysAreSnakeCase(t *testing.T) {
	root := repoRoot(t)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "node_modules" || name == "testdata" || strings.HasPrefix(name, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return nil // not ours to judge
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			var keys []*ast.BasicLit
			if first, ok := logMethods[sel.Sel.Name]; ok && len(call.Args) > first {
				for i := first; i < len(call.Args); {
					switch a := call.Args[i].(type) {
					case *ast.BasicLit:
						if a.Kind == token.STRING {
							keys = append(keys, a)
						}
						i += 2
					case *ast.CallExpr:
						i++ // an slog.Attr, checked below
					default:
						i += 2
					}
				}
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "slog" && attrFuncs[sel.Sel.Name] && len(call.Args) > 0 {
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					keys = append(keys, lit)
				}
			}
			for _, k := range keys {
				v, _ := strconv.Unquote(k.Value)
				checked++
				if !snake.MatchString(v) {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s:%d: log key %q is not snake_case", rel, fset.Position(k.Pos()).Line, v)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d log keys found: the scan is broken", checked)
	}
	t.Logf("%d log keys checked", checked)
}
