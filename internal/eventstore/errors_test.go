package eventstore

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// Every sentinel error of the package is declared in errors.go, so that a
// caller mapping them (the gRPC layer's status codes) finds them in one
// place.
func TestSentinelErrorsLiveInErrorsGo(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					if !id.IsExported() || !strings.HasPrefix(id.Name, "Err") {
						continue
					}
					found++
					if name != "errors.go" {
						t.Errorf("%s is declared in %s, not errors.go", id.Name, name)
					}
				}
			}
		}
	}
	if found < 10 {
		t.Fatalf("found %d sentinel errors; the walk missed the package", found)
	}
}
