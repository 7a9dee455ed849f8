package events_test

import (
	"bytes"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// BenchmarkDecodeCheckpoint decodes the commit of a checkpoint that
// records one 256-byte task output (base64 in the payload) and a new
// position: the message readers decode most.
func BenchmarkDecodeCheckpoint(b *testing.B) {
	pos := workflow.AtTaskPosition(taskB)
	c := events.Commit{ID: uid(1), Instance: "order-42", Time: fixedTime, Command: "save_snapshot", Prev: prevHash,
		Events: []events.Event{{ID: uid(2), Type: events.CheckpointSaved, Run: run1, Time: fixedTime, Instance: "order-42", Schema: events.SchemaVersion,
			Data: &events.CheckpointSavedData{Position: &pos, Completed: events.TaskOutputs{{Task: taskA, Output: bytes.Repeat([]byte("o"), 256)}}}}}}
	m, err := c.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(m.Data)))
	for b.Loop() {
		if _, err := events.Decode(m, "order-42"); err != nil {
			b.Fatal(err)
		}
	}
}
