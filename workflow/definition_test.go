package workflow

import (
	"errors"
	"strings"
	"testing"
)

func TestDefinitionValidate(t *testing.T) {
	ok := Definition{Name: "checkout", Version: "v2", Tasks: []string{"reserve-stock", "charge card", "ship"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if n, found := ok.TaskName(NewTaskID("charge card")); !found || n != "charge card" {
		t.Errorf("TaskName = %q %v", n, found)
	}
	if _, found := ok.TaskName(NewTaskID("refund")); found {
		t.Error("TaskName found a task the definition does not name")
	}
	var none *Definition
	if _, found := none.TaskName(NewTaskID("x")); found || none.Clone() != nil {
		t.Error("a nil definition names something")
	}
	if NewTaskHint("ship").ID != NewTaskID("ship") {
		t.Error("NewTaskHint does not hash the name")
	}
	for what, d := range map[string]Definition{
		"no name":       {Tasks: []string{"a"}},
		"empty task":    {Name: "w", Tasks: []string{"a", ""}},
		"repeated task": {Name: "w", Tasks: []string{"a", "b", "a"}},
		"bad UTF-8":     {Name: "w\xff"},
		"too many":      {Name: "w", Tasks: strings.Split(strings.Repeat("x,", MaxDefinitionNames+1), ",")},
	} {
		if err := d.Validate(); !errors.Is(err, ErrInvalidDefinition) {
			t.Errorf("%s: %v, want ErrInvalidDefinition", what, err)
		}
	}
	c := ok.Clone()
	c.Tasks[0] = "changed"
	if ok.Tasks[0] != "reserve-stock" {
		t.Error("Clone shares the task names")
	}
}
