package lifecycle

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"testing"
)

// Every sentinel of the package is a refusal (made with newRefusal, or the
// instance id's), except the two that are not decisions: a bad Config and
// the log's conflict. A sentinel added with errors.New fails here instead
// of being returned, unconfirmed, on stale cached state by the write loop.
func TestSentinelsAreRefusals(t *testing.T) {
	values := map[string]error{
		"ErrInvalidInstanceID": ErrInvalidInstanceID, "ErrInvalidRequest": ErrInvalidRequest, "ErrAlreadyExists": ErrAlreadyExists,
		"ErrDefinitionMismatch": ErrDefinitionMismatch, "ErrConcurrentModification": ErrConcurrentModification, "ErrInvalidConfig": ErrInvalidConfig,
		"ErrNotFound": ErrNotFound, "ErrTerminal": ErrTerminal, "ErrStale": ErrStale, "ErrCannotCancel": ErrCannotCancel,
		"ErrCannotPause": ErrCannotPause, "ErrNotPaused": ErrNotPaused, "ErrWrongSequence": ErrWrongSequence,
		"ErrClaimLost": ErrClaimLost, "ErrAlreadyClaimed": ErrAlreadyClaimed, "ErrDefinitionConflict": ErrDefinitionConflict,
	}
	notRefusals := map[string]bool{"ErrInvalidConfig": true, "ErrWrongSequence": true}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	refusers := map[string]bool{}
	var errorTypes []string
	for _, f := range pkgs["lifecycle"].Files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil && fd.Name.Name == "refusal" {
				if st, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
					refusers[st.X.(*ast.Ident).Name] = true
				}
			}
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, spec := range g.Specs {
					if n := spec.(*ast.TypeSpec).Name.Name; len(n) > 5 && n[len(n)-5:] == "Error" {
						errorTypes = append(errorTypes, n)
					}
				}
			}
		}
	}
	// Every error type of the package is a refusal: it has the method.
	for _, n := range errorTypes {
		if !refusers[n] {
			t.Errorf("error type %s has no refusal method: the write loop would not confirm it on fresh state", n)
		}
	}
	for _, f := range pkgs["lifecycle"].Files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if len(n.Name) < 4 || n.Name[:3] != "Err" {
						continue
					}
					found++
					v, ok := values[n.Name]
					if !ok {
						t.Errorf("%s is a new sentinel: add it to this test, made with newRefusal if operations refuse with it", n.Name)
						continue
					}
					if got := isDomain(v); got == notRefusals[n.Name] {
						t.Errorf("%s: isDomain = %v", n.Name, got)
					}
					if !isDomain(fmt.Errorf("wrapped: %w", v)) && !notRefusals[n.Name] {
						t.Errorf("%s wrapped is not a refusal", n.Name)
					}
				}
			}
		}
	}
	if found != len(values) {
		t.Errorf("found %d sentinels, the test knows %d", found, len(values))
	}
	if isDomain(errors.New("lifecycle: something failed")) {
		t.Error("a plain error is a refusal")
	}
	for _, err := range []error{&NotFoundError{ID: "x"}, &StaleError{}, &TerminalError{}, &SignalRefusedError{}, &NotPausedError{},
		&AlreadyExistsError{}, &DefinitionMismatchError{}, &ConcurrentModificationError{}, &ClaimedError{}, fmt.Errorf("x: %w", &StaleError{})} {
		if !isDomain(err) {
			t.Errorf("%T is not a refusal", err)
		}
	}
}
