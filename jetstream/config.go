package jetstream

import (
	"fmt"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Defaults applied by [Open] to zero [Config] fields.
const (
	DefaultStream     = "RUNLOG"
	DefaultSubject    = "runlog.wf"
	DefaultReplicas   = 1
	DefaultDuplicates = 2 * time.Minute
	DefaultReadBatch  = 256
)

// Config says which stream holds the event log and how it is created. The
// zero value is valid: every zero field takes its default.
type Config struct {
	// Stream is the JetStream stream name. Default [DefaultStream].
	Stream string
	// Subject is the subject prefix: instance id is stored on
	// Subject + "." + EncodeID(id), and the stream's only subject is
	// Subject + ".>". Default [DefaultSubject].
	Subject string
	// Partitions is the number of streams the store's instances are
	// spread over, 1 to [MaxPartitions], fixed when the store is created
	// and recorded in its streams' metadata. 0 (the default) opens an
	// existing store with the number it records and creates a new one
	// with 1: one stream named Stream, today's layout. With K > 1 the
	// streams are Stream_P0 … Stream_P<K-1>, partition p's instances on
	// Subject + "." + p + "." + EncodeID(id), and an instance lives in
	// partition [PartitionOf](id, K). A set value that is not the
	// store's is refused with [ErrPartitionMismatch]. docs/ARCHITECTURE.md
	// says how to choose K.
	Partitions int
	// GroupCommit turns on the group commit when it is above 0: while
	// that many appends of one partition are being published, further
	// appends of the partition are gathered and sent together as one
	// atomic batch (stored with one fsync where the server syncs every
	// write), each keeping its own Msg-Id and sequence check and getting
	// its own verdict; a batch the server refuses (one failing check
	// fails all) is published again one append at a time. 0, the
	// default, publishes every append on its own. It pays only with many
	// concurrent writers per partition (BENCHMARKS.md §5.11 measures
	// where). It needs atomic batch publishes on the streams (server
	// 2.12+): Open creates new streams with them allowed when GroupCommit
	// is set; on an existing stream without them the group commit stays
	// off, logged at warn level.
	GroupCommit int
	// Replicas is the number of stream replicas, 1 to 5. Default 1.
	// More than 1 needs a clustered server.
	Replicas int
	// Storage is the stream's storage type. The zero value is
	// [natsjs.FileStorage].
	Storage natsjs.StorageType
	// Compression is the compression of a stream Open creates (file
	// storage only): [natsjs.NoCompression], the zero value, or
	// [natsjs.S2Compression] (the server compresses each block of the
	// file store when it is full; BENCHMARKS.md §5.9 measures it on
	// runlog's histories). An existing stream is accepted with either.
	Compression natsjs.StoreCompression
	// Duplicates is the stream's de-duplication window for Nats-Msg-Id.
	// Default [DefaultDuplicates].
	Duplicates time.Duration
	// Logger receives debug records (recovered duplicate appends,
	// retries). nil means [slog.Default].
	Logger *slog.Logger
	// TracerProvider, if set, gives the tracer of subscription
	// deliveries: a span per commit delivered, a child of the trace
	// context the commit carries (docs/INTEGRATION.md). nil: no spans;
	// the global provider is never used.
	TracerProvider trace.TracerProvider
	// MeterProvider, if set, gives the meter of the subscriptions'
	// metrics (runlog.subscription.lag, runlog.subscription.deliveries).
	// nil: no metrics; the global provider is never used.
	MeterProvider metric.MeterProvider
	// ReadBatch is the number of messages asked for per direct batch get
	// by [Log.Read] and [Log.Scan]. Default [DefaultReadBatch].
	ReadBatch int
	// NoCreate makes [Open] refuse a missing stream instead of creating
	// it, for read-only tools: the error then matches
	// [natsjs.ErrStreamNotFound].
	NoCreate bool
	// ReadOnly opens the store for reading, as audits and the replay
	// command's read commands do: a missing stream is not created (as
	// with NoCreate), an existing one is opened even if its settings
	// could lose history (they are reported by [Log.StreamProblems],
	// so that an auditor learns of them instead of being shut out) or
	// its storage and replicas are not Storage and Replicas, and
	// [Log.Append] refuses every message with [ErrReadOnly].
	ReadOnly bool
}

// withDefaults returns c with defaults filled in, or an error matching
// ErrInvalidConfig.
func (c Config) withDefaults() (Config, error) {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.ReadBatch == 0 {
		c.ReadBatch = DefaultReadBatch
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := validStreamName(c.Stream); err != nil {
		return c, fmt.Errorf("%w: Stream %q: %s", ErrInvalidConfig, c.Stream, err)
	}
	if err := validSubjectPrefix(c.Subject); err != nil {
		return c, fmt.Errorf("%w: Subject %q: %s", ErrInvalidConfig, c.Subject, err)
	}
	if c.Partitions < 0 || c.Partitions > MaxPartitions {
		return c, fmt.Errorf("%w: Partitions is %d, want 0 (the store's own) or 1 to %d", ErrInvalidConfig, c.Partitions, MaxPartitions)
	}
	if c.GroupCommit < 0 {
		return c, fmt.Errorf("%w: GroupCommit is %d, want 0 (off) or the appends in flight from which to batch", ErrInvalidConfig, c.GroupCommit)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return c, fmt.Errorf("%w: Replicas is %d, want 1 to 5", ErrInvalidConfig, c.Replicas)
	}
	if c.Storage != natsjs.FileStorage && c.Storage != natsjs.MemoryStorage {
		return c, fmt.Errorf("%w: Storage is %d, want FileStorage or MemoryStorage", ErrInvalidConfig, c.Storage)
	}
	if c.Duplicates < 0 {
		return c, fmt.Errorf("%w: Duplicates is %v, want > 0", ErrInvalidConfig, c.Duplicates)
	}
	if c.ReadBatch < 0 {
		return c, fmt.Errorf("%w: ReadBatch is %d, want > 0", ErrInvalidConfig, c.ReadBatch)
	}
	return c, nil
}

// validStreamName applies the server's rules for stream names.
func validStreamName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("longer than 255 bytes")
	}
	for _, r := range name {
		switch {
		case r == '.' || r == '*' || r == '>' || r == '/' || r == '\\':
			return fmt.Errorf("contains %q, not allowed in a stream name", r)
		case r <= ' ' || r == 0x7f:
			return fmt.Errorf("contains whitespace or a control character")
		}
	}
	return nil
}

// validSubjectPrefix accepts a literal subject: non-empty tokens separated
// by dots, no wildcards, no whitespace.
func validSubjectPrefix(subj string) error {
	for tok := range strings.SplitSeq(subj, ".") {
		if tok == "" {
			return fmt.Errorf("has an empty token")
		}
		if strings.ContainsAny(tok, "*>") {
			return fmt.Errorf("contains a wildcard ('*' or '>'); want a literal prefix")
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f {
				return fmt.Errorf("contains whitespace or a control character")
			}
		}
	}
	return nil
}
