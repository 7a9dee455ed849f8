package audit

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// Source is the history audit reads: the instance ids, page by page, and
// each instance's messages in order. *memlog.Log and *jetstream.Log
// satisfy it. Read follows the iterator contract of [lifecycle.Log.Read].
// Instances returns up to limit ids after the cursor after ("" for the
// first page); audit passes the last id of a page as the next cursor and
// stops at an empty page.
type Source interface {
	Instances(ctx context.Context, after string, limit int) ([]string, error)
	Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error]
}

// A Scanner is a [Source] that can also read its whole log at once:
//   - Scan: every message in log order, with the instance it belongs to,
//     as the log was when the scan began. [Verify] of every instance
//     uses it: one pass over the log instead of one read per instance (on
//     JetStream, one ordered consumer instead of a batched read per
//     instance, several times faster).
//   - InstanceCounts: how many messages each instance has. The one-pass
//     [Verify] asks once its scan has begun, and finishes each instance
//     as soon as its last message is read, so that its memory holds only
//     the instances whose messages are still coming (plus the counts: an
//     id and a number per instance), not the whole log.
//   - AllInstances: every instance after the cursor after, in one pass in
//     an order of its own, more cheaply than page by page in id order
//     (jetstream.Log: the order of the stream's subjects). [Export] and
//     [Verify] go through every instance with it.
//
// Both jetstream.Log and memlog.Log are Scanners.
type Scanner interface {
	Source
	Scan(ctx context.Context, after uint64) iter.Seq2[events.Scanned, error]
	InstanceCounts(ctx context.Context) (map[string]uint64, error)
	AllInstances(ctx context.Context, after string) iter.Seq2[string, error]
}

// A StreamChecker is a [Source] that can say which of its log's settings
// could lose, rewrite or add to its history behind runlog's back (on
// JetStream: a stream that allows deletes, purges, rollups, TTLs, or has
// limits that discard messages). [Verify] reports each as a
// [KindStream] problem: a log that verifies today but may silently lose
// history tomorrow is not one an auditor can rely on. jetstream.Log is
// one.
type StreamChecker interface {
	StreamProblems(ctx context.Context) ([]string, error)
}

// ProblemKind classifies a [Problem]. The values are stable strings, fit
// for JSON output and for filtering.
type ProblemKind string

// The kinds of problems Verify and Import report.
const (
	// KindDecode: a message that is not a runlog commit this version can
	// read: garbage bytes, a missing field, an unknown event type, a
	// payload that does not match its type, a Nats-Msg-Id that is not the
	// commit id.
	KindDecode ProblemKind = "decode"
	// KindSchema: a commit written with a newer schema version than this
	// reader's. Not evidence of tampering: upgrade runlog and verify
	// again.
	KindSchema ProblemKind = "schema"
	// KindForeign: a well-formed commit that names another instance: a
	// message of another history written on this instance.
	KindForeign ProblemKind = "foreign"
	// KindChain: a broken link of the hash chain whose cause cannot be
	// narrowed further: the commit before it was altered, or commits were
	// removed between them, or the history starts in the middle, or a
	// second history starts here.
	KindChain ProblemKind = "chain"
	// KindReordered: broken links whose prev names another message of the
	// same history: commits stored out of their chain order (moved,
	// swapped), or a second branch written from an old head.
	KindReordered ProblemKind = "reordered"
	// KindFold: commits that decode and chain but that the projection
	// refuses (an event not allowed in the state it finds, an event of
	// another run, a run that does not start with snapshot.created, ...).
	KindFold ProblemKind = "fold"
	// KindDuplicate: a commit or event id used twice in one instance, or
	// a message that is an exact copy of an earlier one. On import: a
	// commit id used twice anywhere in the file (a destination would
	// drop the second as a retry), or a line copied.
	KindDuplicate ProblemKind = "duplicate"
	// KindRun: a snapshot.created that reuses the id of an earlier run of
	// the instance (the projection only refuses the current run's id):
	// a writer fenced by the old run id could write into the new run.
	KindRun ProblemKind = "run"
	// KindHeader: message headers that contradict the payload
	// (Nats-Msg-Id, Runlog-Events, Runlog-Run, Runlog-Schema,
	// Runlog-Command; an absent header is not
	// checked), or a stored header that only the server sets on what it
	// delivers ([events.ServerHeaders]: a forged Nats-Sequence,
	// Nats-Time-Stamp, ...), on any message. Headers are not covered by the hash chain, but consumers
	// filter on them and JetStream de-duplicates on Nats-Msg-Id.
	KindHeader ProblemKind = "header"
	// KindAnchor: a head given in [VerifyOptions.Anchors] that the
	// instance's history does not contain: it was truncated or rewritten
	// after the head was recorded.
	KindAnchor ProblemKind = "anchor"
	// KindCheckpoint: a projection checkpoint
	// ([VerifyOptions.Checkpoints]) that is not the fold of the
	// instance's history up to its sequence: altered, of a message that is
	// not there, or undecodable. Derived data, not the history: delete it.
	KindCheckpoint ProblemKind = "checkpoint"
	// KindDigest: the log no longer holds what a digest given in
	// [VerifyOptions.Digests] committed to: an instance's last commits
	// removed, its history rewritten (even into a chain that is
	// consistent on its own), the instance gone, an instance the digest
	// does not know, fewer messages, or a digest of another log.
	KindDigest ProblemKind = "digest"
	// KindStream: a setting of the log itself under which history can
	// be lost or rewritten (see [StreamChecker]); Instance is empty.
	KindStream ProblemKind = "stream"
	// KindEmpty: an instance asked for by id that has no history.
	KindEmpty ProblemKind = "empty"
	// KindFormat: an export line that is not in the export format (import
	// only).
	KindFormat ProblemKind = "format"
	// KindConflict: the destination of an import already holds a history
	// for the instance that is not a prefix of the file's (import only).
	KindConflict ProblemKind = "conflict"
)

// Problem is one finding about one instance. Seq is the stream sequence
// of the message it is about (0 when it is about the whole instance, or a
// file line without one); when it covers a span of messages (a run of
// consecutive commits that do not fold, a group of broken links) Through
// is the last sequence of the span, else Through equals Seq. Import sets
// Line, the 1-based line of the export file (the line of Seq), and takes
// Seq from the file; Verify leaves Line 0.
type Problem struct {
	Instance string      `json:"instance"`
	Seq      uint64      `json:"seq"`
	Through  uint64      `json:"through"`
	Line     int         `json:"line,omitempty"`
	Kind     ProblemKind `json:"kind"`
	Detail   string      `json:"detail"`
}

// String returns a one-line description, such as
//
//	instance "order-42" seq 7..9: chain: broken link at seq 9: ...
//	line 12: instance "order-42" seq 9: chain: broken link: ...
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Instance != "" {
		fmt.Fprintf(&b, "instance %q", p.Instance)
		switch {
		case p.Seq == 0:
		case p.Through > p.Seq:
			fmt.Fprintf(&b, " seq %d..%d", p.Seq, p.Through)
		default:
			fmt.Fprintf(&b, " seq %d", p.Seq)
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s: %s", p.Kind, p.Detail)
	return b.String()
}

// Head is the last message of an instance's history: the hash that
// vouches for everything before it (see [VerifyOptions.Anchors]). Seq,
// Messages (the number of messages up to it) and Time are for people;
// anchors are matched by Instance and Hash.
type Head struct {
	Instance string          `json:"instance"`
	Seq      uint64          `json:"seq"`
	Hash     workflow.Hash32 `json:"hash"`
	Messages int             `json:"messages"`
	Time     time.Time       `json:"time"` // when the log stored the last message
}

// Progress is reported periodically by Verify, Export and Import.
type Progress struct {
	Phase     string // "verify", "export", "check" (import's first pass) or "write" (its second)
	Instances int    // instances done
	Total     int    // instances to do, 0 when unknown
	Messages  int    // messages done
	Bytes     int    // payload bytes done
	Problems  int    // problems found so far
	Instance  string // the instance being worked on
}

// progressEvery is how many messages of one instance pass between two
// Progress calls inside it (a call also follows every instance).
const progressEvery = 4096

// defaultPageSize is the number of instance ids asked per Instances call.
const defaultPageSize = 1000

// instanceIDs calls fn with every instance id: ids (de-duplicated, in
// order) when given, else every instance of src, in one pass if src is a
// [Scanner], else paged. It stops at the first error fn returns.
func instanceIDs(ctx context.Context, src Source, ids []string, pageSize int, fn func(id string) error) error {
	if len(ids) > 0 {
		seen := make(map[string]struct{}, len(ids))
		for _, id := range ids {
			if _, dup := seen[id]; dup {
				continue
			}
			seen[id] = struct{}{}
			if err := fn(id); err != nil {
				return err
			}
		}
		return nil
	}
	if all, ok := src.(Scanner); ok {
		for id, err := range all.AllInstances(ctx, "") {
			if err != nil {
				return fmt.Errorf("list instances: %w", err)
			}
			if err := fn(id); err != nil {
				return err
			}
		}
		return nil
	}
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := src.Instances(ctx, after, pageSize)
		if err != nil {
			return fmt.Errorf("list instances after %q: %w", after, err)
		}
		if len(page) == 0 {
			return nil
		}
		if page[len(page)-1] == after {
			return fmt.Errorf("list instances after %q: the source returned the cursor again", after)
		}
		for _, id := range page {
			if err := fn(id); err != nil {
				return err
			}
		}
		after = page[len(page)-1]
	}
}

// validateIDs checks every id before anything is read.
func validateIDs(ids []string) error {
	for _, id := range ids {
		if err := workflow.ValidateInstanceID(id); err != nil {
			return err
		}
	}
	return nil
}

// distinct returns the number of distinct ids.
func distinct(ids []string) int {
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		seen[id] = struct{}{}
	}
	return len(seen)
}
