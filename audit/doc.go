// Package audit is the engine of `replay verify`, `replay export`,
// `replay import`, and of the readable output of `replay show` and
// `replay diff`, independent of the command line: [Verify] checks that
// stored histories are intact, [Export] and [Import] move histories
// between logs as NDJSON without changing a byte that the hash chain
// covers, [Diff] lists what differs between two projected states, and
// [Summarize] says in one line what an event changed.
//
// It reads through [Source] (Instances and Read: *memlog.Log and
// *jetstream.Log have both) and writes through [lifecycle.Log].
//
// # What Verify checks
//
// Every message of every chosen instance is read once, in order, and:
//
//   - it must decode as a commit of this schema version ([KindDecode];
//     [KindSchema] for a newer version: upgrade, it is not tampering);
//   - it must name the instance it is stored under ([KindForeign]);
//   - its prev must be the hash of the instance's previous commit: a
//     broken link is [KindReordered] when prev names another message of
//     the history, else [KindChain]; consecutive broken links are one
//     problem, so a swap of two commits is one finding;
//   - the projection must fold it ([KindFold]): runs start with
//     snapshot.created, events belong to the current run, each event is
//     allowed in the state it finds, terminal states are absorbing;
//     consecutive refused commits are one problem;
//   - commit ids and event ids are unique within the instance, and no
//     message is an exact copy of an earlier one ([KindDuplicate]);
//   - a new run never reuses an earlier run's id ([KindRun]);
//   - the Runlog-* and Nats-Msg-Id headers, when present, agree with the
//     payload ([KindHeader]);
//   - the heads given in [VerifyOptions.Anchors] are still in the
//     history ([KindAnchor]).
//
// After a problem the instance is checked to its end: the chain goes on
// from the hash of the commit that broke it, and messages that are not
// commits of the instance (garbage, another instance's commit) are
// skipped by the chain, so one damaged message yields one or two
// problems, not one per later message. Every problem found is listed; a
// run of problems of one kind is merged into one that names its span and
// count. [VerifyOptions.MaxProblems] stops the scan and marks the report
// Incomplete.
//
// Detected, with the sequence named:
//
//	garbage or a message of another program on the instance  decode
//	a commit of another instance written on this one          foreign
//	a commit altered in place (not the last)                  chain, at the link after it
//	a commit removed (not the last), or the first ones        chain
//	commits swapped, moved, or written from an old head       reordered
//	a message copied, a commit or event id reused             duplicate
//	events that break the projection's rules                  fold
//	a run id reused                                           run
//	headers that contradict the payload                       header
//	truncation or rewriting after a head was anchored         anchor
//
// Not detected by the chain alone:
//
//   - The removal of an instance's last commits, or of a whole instance:
//     nothing chains to what is gone. Record the heads
//     ([VerifyOptions.Heads], [Report.Heads]) somewhere the log's writers
//     cannot change, and pass them back as [VerifyOptions.Anchors].
//   - An altered last commit that still decodes and folds: no later link
//     covers it. Anchors detect it too.
//   - A history rewritten with recomputed hashes from the altered commit
//     onward. The chain proves integrity, not authorship: anyone who can
//     write to the log can append commits runlog would have written.
//     Only anchors (or signatures, which runlog does not have) detect it.
//   - Changes to what the hash does not cover: stream sequences, stored
//     times, and headers that are absent or consistent with the payload.
//
// A commit whose link is broken because the one before it was altered
// looks exactly like one whose predecessor was removed: the problem
// spans both messages and says so.
//
// # Export format (version 1)
//
// NDJSON: one JSON object per line, written by one [encoding/json]
// encoder with HTML escaping off. The first line is the header:
//
//	{"runlog_export":1,"created":"2026-11-26T06:20:00.123456789Z","schema":1}
//
// runlog_export is the format version (a reader refuses a newer one),
// created the export time, schema the newest commit schema the writer
// knows. Then one line per message, instance after instance (in the order
// of Source.Instances, or of [ExportOptions.IDs]), each instance's
// messages in sequence order:
//
//	{"instance":"order-42","seq":17,"time":"2026-11-26T06:20:00.2Z","msg_id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B2",
//	 "headers":{"Runlog-Events":["snapshot.created"],...},"data":{"v":1,"id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B2",...}}
//
// (one line in the file). instance is the instance id, seq the source
// stream's sequence and time its stored time (RFC 3339, UTC, nanoseconds;
// both informational: the destination assigns its own), msg_id the
// Nats-Msg-Id, headers the stored headers without the Nats-Expected-*
// publish checks (omitted when none). The payload is in exactly one of:
//
//   - "data": the payload itself, embedded as raw JSON, when it is a
//     valid UTF-8 JSON object that compacting leaves unchanged (runlog's
//     commits are) so that reading it back gives the same bytes;
//   - "data_b64": the payload in standard padded base64, otherwise.
//
// The payload bytes must survive byte for byte: the hash chain covers
// them. [Import] checks the chain, so a payload that was re-encoded,
// re-indented or edited is refused. Header values are expected to be
// valid UTF-8 (runlog's are ASCII).
//
// # Memory
//
// Verify of named instances, and of every instance of a source that is
// not a [Scanner], reads one instance at a time, paging the ids through
// Source.Instances: memory is about 90 bytes per message of the instance
// being checked plus its projected state. Verify of every instance of a
// Scanner reads the whole log once, in log order, and checks each
// message as it arrives: memory is about 90 bytes per message of each
// instance whose messages are still coming, plus its projected state.
// An instance is finished as soon as its last message is read (the
// Scanner's InstanceCounts), so that this is the instances being written
// concurrently, plus the counts (an id and a number per instance).
// Export holds one message. Import keeps, until its second pass ends, the
// projected state of every instance of the file and about 50 bytes per
// commit (to find commit ids used twice).
//
// # Concurrency
//
// The functions keep no global state and may be called concurrently.
// They read a live log as it is when each instance is read (a one-pass
// Verify: as it is when its scan begins).
package audit
