package lifecycle

import (
	"context"
	"errors"
	"iter"

	"github.com/runlog/runlog/events"
)

// ErrWrongSequence is returned by [Log.Append] when the instance's last
// sequence is not the expected one: something was appended since the
// decision was made. The store re-reads and decides again.
var ErrWrongSequence = errors.New("lifecycle: wrong last sequence")

// Log is the event log the store needs: an ordered, append-only history per
// instance with an optimistic sequence check. Implementations must be safe
// for concurrent use. The conformance suite in lifecycle/logtest is the
// executable form of this contract.
type Log interface {
	// Read returns the messages stored for instance with a sequence greater
	// than after, in increasing sequence order. Sequences are positions in
	// the log: they increase but are not contiguous per instance. A log
	// may be partitioned (jetstream.Config.Partitions), each partition
	// numbering its messages on its own: an instance lives in one
	// partition, so its sequences increase, but two instances' messages
	// may have the same sequence, and no order across instances is
	// promised. The iterator yields an error at most once, as its last
	// value; it stops as soon as yield returns false and releases what it
	// holds; it may be ranged over again, reading afresh. An instance with
	// no messages yields nothing. Cancelling ctx ends it with ctx.Err().
	// Each message has Seq, Time, MsgID, Header and Data as stored and, if
	// the log recorded it, the expect of its append ([events.Message]'s
	// AfterSeq and AfterKnown): the store's catch-up then follows a few
	// new commits back from the last message with [Last] instead of a
	// batched read.
	Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error]

	// Append stores msg as the instance's next message if the sequence of
	// the instance's last message is expect (0: the instance has no
	// messages yet), and returns the new message's sequence. If it is not,
	// nothing is stored and the error matches [ErrWrongSequence]. A
	// message with a header that only the server may set
	// ([events.ServerHeaders]) is refused with [events.ErrReservedHeader].
	//
	// msg.MsgID identifies the message for de-duplication: appending a
	// message whose MsgID is already the instance's last message stores
	// nothing and returns that message's sequence with a nil error, so an
	// append whose outcome was unknown (a timeout) may be retried.
	// Other failures are returned wrapped, never as ErrWrongSequence.
	Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error)
}

// Last is an optional capability of a [Log]: one message of an instance in
// one cheap read (the store catches a projection up with it when few
// commits are new, following each message's AfterSeq back). LastMessage
// returns the instance's last message, MessageAt the instance's message
// with sequence seq; ok is false when there is none.
type Last interface {
	LastMessage(ctx context.Context, instance string) (msg events.Message, ok bool, err error)
	MessageAt(ctx context.Context, instance string, seq uint64) (msg events.Message, ok bool, err error)
}

// Checkpoints stores projection checkpoints by instance
// ([projection.State.MarshalCheckpoint]): the folded state of an instance
// as of a sequence, with the head hash it covers. They are derived data,
// kept outside the audit chain: losing one costs a fold, never data, and
// [Store] checks each against the history before using it
// ([Config.Checkpoints]). LoadCheckpoint returns ok false when the
// instance has none. Implementations must be safe for concurrent use;
// several stores may write one instance's checkpoint (the last write
// wins, and any of them is valid). jetstream.Log.Checkpoints (a KV
// bucket) and memlog.Log.Checkpoints implement it.
type Checkpoints interface {
	LoadCheckpoint(ctx context.Context, instance string) (data []byte, ok bool, err error)
	SaveCheckpoint(ctx context.Context, instance string, data []byte) error
}
