package events

import (
	"time"

	"github.com/runlog/runlog/workflow"
)

// LogInfo describes a whole log at one moment: what a digest commits to
// besides the instances' heads.
type LogInfo struct {
	// Name is the log's name: the JetStream stream's, "memlog" for the
	// in-memory log.
	Name string
	// Created is when the log was created: it tells a log from another of
	// the same name (a stream deleted and created again).
	Created time.Time
	// FirstSeq and LastSeq are the sequences of its first and last
	// message (0 when it is empty); Messages is how many it holds, every
	// subject included.
	FirstSeq, LastSeq, Messages uint64
}

// InstanceHead is one instance's history as of a log sequence: how many
// messages it had then, and its last one's sequence, store time and hash
// (the SHA-256 of its payload, what the next commit's prev names).
type InstanceHead struct {
	Instance string
	Messages uint64
	Seq      uint64
	Time     time.Time
	Hash     workflow.Hash32
}
