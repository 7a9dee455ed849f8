package jetstream_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/workflow"
)

func ExampleOpenEmbedded() {
	dir, err := os.MkdirTemp("", "runlog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	eventLog, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer eventLog.Close()

	commit := events.Commit{
		ID:       ulid.MustParse("01JDQ4C6Z0A1B2C3D4E5F6G7H8"),
		Instance: "order.42",
		Time:     time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC),
		Command:  "prepare_run",
		Events: []events.Event{{
			ID:   ulid.MustParse("01JDQ4C6Z0A1B2C3D4E5F6G7H9"),
			Type: events.SnapshotCreated,
			Run:  ulid.MustParse("01JDQ4C6Z0A1B2C3D4E5F6G7HA"),
			Data: &events.SnapshotCreatedData{
				DefinitionHash: workflow.DefinitionHashOf("order-flow"),
				FirstTask:      workflow.TaskHint{ID: workflow.Sha256([]byte("charge"))},
			},
		}},
	}
	msg, err := commit.Encode()
	if err != nil {
		log.Fatal(err)
	}
	// expect 0: the instance has no messages yet.
	seq, err := eventLog.Append(ctx, commit.Instance, msg, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("appended at", seq, "on", eventLog.SubjectFor(commit.Instance))

	for m, err := range eventLog.Read(ctx, commit.Instance, 0) {
		if err != nil {
			log.Fatal(err)
		}
		rec, err := events.Decode(m, commit.Instance)
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range rec.Commit.Events {
			fmt.Println(m.Seq, m.MsgID, rec.Commit.Command, e.Type, e.Run)
		}
	}
	// Output:
	// appended at 1 on runlog.wf.order=2E42
	// 1 01JDQ4C6Z0A1B2C3D4E5F6G7H8 prepare_run snapshot.created 01JDQ4C6Z0A1B2C3D4E5F6G7HA
}
