package workflow_test

import (
	"encoding/json"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/runlog/runlog/workflow"
)

func TestParseConflictPolicy(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want workflow.ConflictPolicy
	}{
		{"fail", workflow.Fail},
		{"use_existing", workflow.UseExisting},
		{"terminate_existing", workflow.TerminateExisting},
		{"useExisting", workflow.UseExisting},
		{"terminateExisting", workflow.TerminateExisting},
		{"", workflow.Fail},
	} {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := workflow.ParseConflictPolicy(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseConflictPolicy(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
			}
			var p workflow.ConflictPolicy = 7
			if err := p.UnmarshalText([]byte(tt.in)); err != nil || p != tt.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tt.in, p, err, tt.want)
			}
		})
	}
}

func TestParseConflictPolicyErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"bogus", "FAIL", "Fail", "use-existing", "UseExisting", " fail", "terminate"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			_, err := workflow.ParseConflictPolicy(in)
			if err == nil {
				t.Fatalf("ParseConflictPolicy(%q) = nil error", in)
			}
			if !errors.Is(err, workflow.ErrInvalidPolicy) {
				t.Errorf("errors.Is(%v, ErrInvalidPolicy) = false", err)
			}
			for _, name := range workflow.ConflictPolicyNames() {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not list the valid name %q", err, name)
				}
			}
			if !strings.Contains(err.Error(), `"`+in+`"`) {
				t.Errorf("error %q does not quote the input", err)
			}
			p := workflow.UseExisting
			if err := p.UnmarshalText([]byte(in)); err == nil || p != workflow.UseExisting {
				t.Errorf("failed UnmarshalText(%q) = %v and changed the value to %v", in, err, p)
			}
		})
	}
}

func TestConflictPolicyText(t *testing.T) {
	t.Parallel()
	var zero workflow.ConflictPolicy
	if zero != workflow.Fail {
		t.Fatalf("zero ConflictPolicy = %v, want Fail", zero)
	}
	if got, want := workflow.ConflictPolicyNames(), []string{"fail", "use_existing", "terminate_existing"}; !slices.Equal(got, want) {
		t.Fatalf("ConflictPolicyNames() = %q, want %q", got, want)
	}
	for i, p := range []workflow.ConflictPolicy{workflow.Fail, workflow.UseExisting, workflow.TerminateExisting} {
		name := workflow.ConflictPolicyNames()[i]
		if p.String() != name {
			t.Errorf("%d.String() = %q, want %q", p, p.String(), name)
		}
		text, err := p.MarshalText()
		if err != nil || string(text) != name {
			t.Errorf("MarshalText(%v) = %q, %v", p, text, err)
		}
		var back workflow.ConflictPolicy
		if err := back.UnmarshalText(text); err != nil || back != p {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, p)
		}
		b, err := json.Marshal(struct {
			P workflow.ConflictPolicy `json:"p"`
		}{p})
		if err != nil || string(b) != `{"p":"`+name+`"}` {
			t.Errorf("json.Marshal = %s, %v", b, err)
		}
	}
	bad := workflow.ConflictPolicy(9)
	if _, err := bad.MarshalText(); !errors.Is(err, workflow.ErrInvalidPolicy) {
		t.Errorf("MarshalText(ConflictPolicy(9)) = %v, want ErrInvalidPolicy", err)
	}
	if got := bad.String(); got != "ConflictPolicy(9)" {
		t.Errorf("String() = %q", got)
	}
	if _, err := json.Marshal(bad); err == nil {
		t.Error("json.Marshal(ConflictPolicy(9)) = nil error")
	}
}

func TestConflictPolicyFlag(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var p workflow.ConflictPolicy
	fs.TextVar(&p, "policy", workflow.Fail, "conflict policy")
	if err := fs.Parse([]string{"-policy", "terminateExisting"}); err != nil {
		t.Fatal(err)
	}
	if p != workflow.TerminateExisting {
		t.Fatalf("flag value = %v", p)
	}
}
