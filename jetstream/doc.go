// Package jetstream is runlog's event log on NATS JetStream: it implements
// [lifecycle.Log], [lifecycle.Last] and [lifecycle.Lister] on one stream,
// and adds the reads the replay tool needs ([Log.Scan], [Log.Follow]).
// A [Log] stores and reads commits; it decides nothing. The deciders
// (PrepareRun and every other write) are [lifecycle.Store]'s, over any
// lifecycle.Log: lifecycle.New(log, cfg) over a jetstream.Log, as over a
// memlog.Log.
//
// # Concepts
//
// A [Log] works on one stream ([Config.Stream], default "RUNLOG").
// Every instance's history is the ordered list of messages on its own
// subject; each message is one commit (see package events). Sequences are
// stream sequences: they increase across the whole stream, so they are
// not contiguous per instance. [Log.Append] publishes with the expected
// last sequence of the instance's subject, so a decision made on stale
// state is refused ([lifecycle.ErrWrongSequence]) and nothing is stored.
// [Open] creates the stream, or verifies an existing one and refuses one
// whose configuration could lose history ([ErrStreamMismatch]); it never
// changes an existing stream. Get a store with [Open] (your connection),
// [Connect] (a URL) or [OpenEmbedded] (a server inside this process, in a
// directory; see [StartEmbedded]).
//
// # Subjects
//
// Instance id is stored on exactly one literal subject,
// Config.Subject + "." + [EncodeID](id): instance "order-42" is on
// "runlog.wf.order-42", instance "a.b" on "runlog.wf.a=2Eb" and instance
// "日本" on "runlog.wf.=E6=97=A5=E6=9C=AC". The stream's subjects are
// Config.Subject + ".>". [EncodeID] keeps the bytes A-Z, a-z, 0-9, '_' and
// '-' and writes every other byte, '=' included, as '=' and two upper-case
// hex digits. The encoding is injective, reversible ([DecodeID],
// [Log.InstanceFromSubject]) and always yields one subject token, so ids
// may hold '.', '*', '>', spaces and any Unicode, and two ids never share
// a subject. A single literal subject per instance keeps the sequence
// check exact on replicated streams and the server's per-subject memory
// small.
//
// # Durability
//
// A server started by [StartEmbedded] fsyncs before acknowledging each
// write by default (SyncInterval 0): an acknowledged append survives power
// loss and OS crashes. NATS's own default fsyncs only every two minutes;
// Jepsen's analysis of NATS 2.12.1 (2025) lost acknowledged writes on power
// failure with that default. Setting [EmbeddedConfig.SyncInterval] makes
// appends several times faster at the price of losing, on power loss or an
// OS crash, what was acknowledged in the last interval. For a server you
// connect to, durability is that server's configuration (sync_interval:
// always) and the stream's replicas.
//
// Appends are idempotent by Nats-Msg-Id (the commit id): a retried append
// whose first attempt landed returns the first attempt's sequence and
// stores nothing, within the stream's duplicate window and, beyond it,
// whenever the message is still the instance's last.
//
// # Concurrency
//
// A [Log] and an [Embedded] are safe for concurrent use. Each range over
// an iterator returned by [Log.Read], [Log.Scan] or [Log.Follow] is
// independent: an iterator may be ranged over again, also from several
// goroutines at once. Concurrent appends to one instance are serialised by
// the server's sequence check: of several appends made with the same
// expected sequence, one succeeds and the others fail with
// [lifecycle.ErrWrongSequence].
//
// # Errors
//
// Errors carry the package prefix and the instance id, and wrap their
// cause so that [errors.Is] and [errors.As] reach NATS errors such as
// [nats.ErrConnectionClosed], [nats.ErrTimeout] and [*natsjs.APIError].
// The conditions a caller acts on have sentinels:
//
//   - [lifecycle.ErrWrongSequence]: the sequence check failed (server
//     codes 10071 and 10164); nothing was stored; re-read and decide again.
//   - [ErrTooLarge]: the message exceeds the server's max payload; nothing
//     was sent.
//   - [ErrStreamMismatch]: the existing stream is configured in a way that
//     could lose history; details in [*StreamMismatchError].
//   - [ErrInvalidConfig]: a configuration field is invalid.
//   - [ErrInvalidSubject]: a subject or token is not an instance subject.
//   - [workflow.ErrInvalidInstanceID]: an empty, over-long or non-UTF-8
//     instance id.
package jetstream
