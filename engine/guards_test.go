package engine_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Allocation and memory guards skip under the race detector (it allocates),
// so make test runs them a second time without it, selected by name: the
// Makefile's guards target runs the tests whose names match its -run
// pattern. A guard whose name does not match would run only under -race,
// skip there, and never fail. The rule, enforced here rather than kept in a
// list someone must remember to update: a test that measures allocations or
// the heap is a guard, and its name ends in Allocs (ZeroAllocs when the
// figure is zero) or IdleMemory, which the guards pattern matches.
//
// A test measures when it calls one of measuring, directly or through
// functions and methods of its own package (a method is matched by name).
// The main module's test files are scanned; bench/ is its own module, whose
// tests make test runs without -race and without a -run filter.
var measuring = []string{
	"testing.AllocsPerRun",
	"wstest.Allocs",
	"runtime.ReadMemStats",
	"metrics.Read",
}

// unnamedGuards are guards whose names the pattern does not match yet, each
// with what must change. An entry that is no longer needed fails the test,
// so that it is removed.
var unnamedGuards = map[string]string{}

func TestGuardsRunInCI(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pattern := guardsPattern(t, filepath.Join(root, "Makefile"))
	guards := measuringTests(t, root)
	// The scan must see the guards it is known to see, or it checks nothing.
	for _, known := range []string{"engine.TestEngineEchoZeroAllocs", "engine.TestEngineIdleMemory", "broadcast.TestHubFanoutAllocs"} {
		if _, ok := guards[known]; !ok {
			t.Errorf("the scan did not find %s among the tests that measure allocations", known)
		}
	}
	for name := range unnamedGuards {
		if _, ok := guards[name]; !ok {
			t.Errorf("%s, in unnamedGuards, is not a guard any more: remove it from unnamedGuards", name)
		}
	}
	names := make([]string, 0, len(guards))
	for name := range guards {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		test := name[strings.LastIndexByte(name, '.')+1:]
		if todo, ok := unnamedGuards[name]; ok {
			if pattern.MatchString(test) {
				t.Errorf("%s is run by make guards now: remove it from unnamedGuards", name)
			} else {
				t.Logf("%s is not run by make guards yet: %s", name, todo)
			}
			continue
		}
		if !pattern.MatchString(test) {
			t.Errorf("%s (%s) measures allocations or memory, but make guards (-run '%s') does not run it, and under -race it skips: name it ...Allocs or ...IdleMemory",
				test, guards[name], pattern)
		}
	}
	t.Logf("%d guards: %s", len(names), strings.Join(names, ", "))
}

// guardsPattern returns the -run pattern of the Makefile's guards target.
func guardsPattern(t *testing.T, makefile string) *regexp.Regexp {
	b, err := os.ReadFile(makefile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^guards:.*\n(?:\t.*\n)*?\t.*-run '([^']+)'`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no guards target with a -run '...' pattern", makefile)
	}
	return regexp.MustCompile(strings.ReplaceAll(string(m[1]), "$$", "$"))
}

// measuringTests returns the Test functions under root that measure
// allocations, as "dir.TestName" (dir relative to root), each with the file
// it is in.
func measuringTests(t *testing.T, root string) map[string]string {
	// The functions of each directory's test files (package and external
	// test package together), by name, with the names they call.
	type fn struct {
		file  string
		calls []string
	}
	dirs := map[string]map[string]fn{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "node_modules" || name == "testdata" || strings.HasPrefix(name, ".") ||
				fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir // another module, or not Go
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.ToSlash(filepath.Dir(rel))
		if dirs[dir] == nil {
			dirs[dir] = map[string]fn{}
		}
		for _, decl := range f.Decls {
			if d, ok := decl.(*ast.FuncDecl); ok && d.Body != nil {
				dirs[dir][d.Name.Name] = fn{file: filepath.ToSlash(rel), calls: calledNames(d.Body)}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{}
	for dir, funcs := range dirs {
		measures := map[string]bool{}
		for changed := true; changed; { // until no function is added
			changed = false
			for name, f := range funcs {
				if measures[name] {
					continue
				}
				if slices.ContainsFunc(f.calls, func(c string) bool {
					return slices.Contains(measuring, c) || measures[c[strings.LastIndexByte(c, '.')+1:]]
				}) {
					measures[name], changed = true, true
				}
			}
		}
		for name := range measures {
			if strings.HasPrefix(name, "Test") {
				tests[dir+"."+name] = funcs[name].file
			}
		}
	}
	return tests
}

// calledNames returns what body calls: "f" for f(), "x.f" for x.f().
func calledNames(body *ast.BlockStmt) []string {
	var names []string
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		switch f := call.Fun.(type) {
		case *ast.Ident:
			names = append(names, f.Name)
		case *ast.SelectorExpr:
			if x, ok := f.X.(*ast.Ident); ok {
				names = append(names, x.Name+"."+f.Sel.Name)
			} else {
				names = append(names, "."+f.Sel.Name)
			}
		}
		return true
	})
	return names
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
