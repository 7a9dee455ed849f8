package jetstream

import (
	"github.com/nats-io/nats.go"

	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// MaxPartitions is the largest number of partitions a store may have.
const MaxPartitions = 256

// Partitioner is the name of the function that places an instance in a
// partition, as a partitioned store records it ([MetaPartitioner]): the
// 32-bit FNV-1a hash of the instance's subject token ([EncodeID]) modulo
// the number of partitions, the function of nats-server's
// {{partition(K,1)}} subject mapping applied to the token. See
// [PartitionOf].
const Partitioner = "fnv1a32-token"

// The stream metadata keys a partitioned store records on each of its
// streams, so that every client agrees on the layout (see [Open]).
const (
	// MetaPartitions holds the number of partitions, in decimal.
	MetaPartitions = "runlog.partitions"
	// MetaPartition holds the stream's own partition number, in decimal.
	MetaPartition = "runlog.partition"
	// MetaPartitioner holds the name of the placement function,
	// [Partitioner].
	MetaPartitioner = "runlog.partitioner"
)

// ErrPartitionMismatch is matched by the error [Open] returns when the
// store's recorded layout is not the configured one: another number of
// partitions ([Config.Partitions]), another placement function, or
// partition streams that disagree with each other. Nothing was changed.
var ErrPartitionMismatch = errors.New("jetstream: partition layout mismatch")

// PartitionOf returns the partition, 0 to k-1, that holds instance id in
// a store of k partitions: FNV-1a (32 bits) of [EncodeID](id), modulo k.
// It is 0 when k <= 1. The function is part of the stored layout (docs/EVENTS.md):
// it never changes for a given k.
func PartitionOf(id string, k int) int {
	if k <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(EncodeID(id)))
	return int(h.Sum32() % uint32(k))
}

// PartitionStream returns the name of partition p's stream in a store of
// k partitions on stream name base: base itself when k is 1 (today's
// one-stream layout), else base + "_P" + p ("RUNLOG_P0" … "RUNLOG_P3").
func PartitionStream(base string, p, k int) string {
	if k <= 1 {
		return base
	}
	return base + "_P" + strconv.Itoa(p)
}

// partitionPrefix returns the subject prefix of partition p's instance
// subjects: the configured prefix when k is 1, else prefix + "." + p
// ("runlog.wf.3"), so that the partitions' streams have disjoint subjects.
func partitionPrefix(prefix string, p, k int) string {
	if k <= 1 {
		return prefix
	}
	return prefix + "." + strconv.Itoa(p)
}

// partition is one stream of a store.
type partition struct {
	index  int
	name   string // the stream's name
	prefix string // the subject prefix of its instances: an instance is on prefix + "." + EncodeID(id)
	stream natsjs.Stream
	// created says the store's Open created the stream (DropIfNew).
	created bool
	// commit gathers appends into atomic batches (Config.GroupCommit),
	// or is nil.
	commit *committer
}

// filter is the subject filter of every message of the partition's
// instances.
func (p *partition) filter() string { return p.prefix + ".>" }

// part returns the partition that holds instance id.
func (s *Log) part(id string) *partition {
	if len(s.all) == 1 {
		return s.all[0]
	}
	return s.all[PartitionOf(id, len(s.all))]
}

// SubjectFilters returns the subject filters of the store's commits, one
// per partition: a core NATS subscription on them hears of each commit as
// it is published (with no ordering against its storing: read the stream
// to act on it), as replay serve does to keep its index caught up.
func (s *Log) SubjectFilters() []string {
	out := make([]string, len(s.all))
	for i, p := range s.all {
		out[i] = p.filter()
	}
	return out
}

// NotifyCommits returns a channel that receives (without blocking the
// publisher: hints coalesce) when a commit is published on any of the
// store's partitions, heard with a core NATS subscription on
// [Log.SubjectFilters], until stop is called. A hint may arrive before
// the stream has stored the commit. It needs permission to subscribe to
// the commit subjects.
func (s *Log) NotifyCommits() (hints <-chan struct{}, stop func(), err error) {
	ch := make(chan struct{}, 1)
	var subs []*nats.Subscription
	stop = func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
	for _, f := range s.SubjectFilters() {
		sub, err := s.nc.Subscribe(f, func(*nats.Msg) {
			select {
			case ch <- struct{}{}:
			default:
			}
		})
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("jetstream: notify commits on %s: %w", f, err)
		}
		subs = append(subs, sub)
	}
	return ch, stop, nil
}

// Partitions returns the number of partitions of the store (1: the
// one-stream layout).
func (s *Log) Partitions() int { return len(s.all) }

// Streams returns the names of the store's streams, partition by
// partition: the one stream [Log.Stream] names when it has one
// partition.
func (s *Log) Streams() []string {
	names := make([]string, len(s.all))
	for i, p := range s.all {
		names[i] = p.name
	}
	return names
}

// Partition returns a view of partition p (0 to [Log.Partitions]-1) of
// s: operations on an instance still go to the instance's partition, but
// the reads across instances ([Log.Scan], [Log.Instances],
// [Log.AllInstances], [Log.InstanceCounts], [Log.LogInfo],
// [Log.Heads], [Log.StreamProblems], [Log.Damage]) cover only
// partition p, whose stream is then the log they describe. A digest of a
// partitioned store is made, and verified, partition by partition through
// such views (audit.MakeDigest of each; replay digest writes one file per
// partition). The view shares s's connection: closing it closes nothing.
// On a one-partition store, Partition(0) covers what s covers.
func (s *Log) Partition(p int) (*Log, error) {
	if p < 0 || p >= len(s.all) {
		return nil, fmt.Errorf("jetstream: partition %d does not exist: the store has %d (0 to %d)", p, len(s.all), len(s.all)-1)
	}
	v := &Log{cfg: s.cfg, log: s.log.With(slog.String("partition_stream", s.all[p].name)), nc: s.nc, js: s.js,
		all: s.all, parts: []*partition{s.all[p]}, request: s.request, replies: s.replies, scanWait: s.scanWait,
		leases: s.leases, background: s.background, view: true}
	return v, nil
}

// partitionMeta returns the metadata that partition p of k records.
func partitionMeta(p, k int) map[string]string {
	if k <= 1 {
		return nil
	}
	return map[string]string{MetaPartitions: strconv.Itoa(k), MetaPartition: strconv.Itoa(p), MetaPartitioner: Partitioner}
}

// recordedLayout reads the layout a partition stream records: its number
// of partitions and its own partition, checking the placement function.
func recordedLayout(name string, meta map[string]string) (k, p int, err error) {
	if fn := meta[MetaPartitioner]; fn != Partitioner {
		return 0, 0, fmt.Errorf("%w: stream %s places instances with %q; this runlog knows only %q: use the runlog version that created the store",
			ErrPartitionMismatch, name, fn, Partitioner)
	}
	k, err1 := strconv.Atoi(meta[MetaPartitions])
	p, err2 := strconv.Atoi(meta[MetaPartition])
	if err1 != nil || err2 != nil || k < 2 || k > MaxPartitions || p < 0 || p >= k {
		return 0, 0, fmt.Errorf("%w: stream %s records partitions %q and partition %q, not a valid layout", ErrPartitionMismatch, name, meta[MetaPartitions], meta[MetaPartition])
	}
	return k, p, nil
}

// layout finds the store's number of partitions: 1 if the one-stream
// layout's stream exists, else the number partition 0 records if it
// exists, else cfg.Partitions (1 if unset: a new store). A store whose
// number is not a set cfg.Partitions is refused. The one-stream layout is
// looked up first, so that a client of a one-stream store needs no
// permission beyond its stream.
func layout(ctx context.Context, js natsjs.JetStream, cfg Config) (k int, err error) {
	one, err := lookupStream(ctx, js, cfg.Stream)
	if err != nil {
		return 0, err
	}
	switch {
	case one != nil:
		k = 1
	default:
		p0name := PartitionStream(cfg.Stream, 0, 2)
		p0, err := lookupStream(ctx, js, p0name)
		if err != nil {
			return 0, err
		}
		if p0 == nil {
			k = max(cfg.Partitions, 1) // a new store
			break
		}
		rk, rp, err := recordedLayout(p0name, p0.Config.Metadata)
		if err != nil {
			return 0, err
		}
		if rp != 0 {
			return 0, fmt.Errorf("%w: stream %s records partition %d, want 0", ErrPartitionMismatch, p0name, rp)
		}
		k = rk
	}
	if cfg.Partitions > 0 && cfg.Partitions != k {
		return 0, fmt.Errorf("%w: the store on stream %s has %d partition%s, Config.Partitions is %d: leave Partitions 0 to use the store's, "+
			"or re-partition it by export and import into a new store (docs/ARCHITECTURE.md)", ErrPartitionMismatch, cfg.Stream, k, plural(k), cfg.Partitions)
	}
	return k, nil
}

// lookupStream returns a stream's info, or nil if it does not exist.
func lookupStream(ctx context.Context, js natsjs.JetStream, name string) (*natsjs.StreamInfo, error) {
	st, err := js.Stream(ctx, name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: look up stream %s: %w", name, err)
	}
	return st.CachedInfo(), nil
}

// checkPartition verifies that partition p's stream records the layout
// of a store of k partitions.
func checkPartition(name string, meta map[string]string, p, k int) error {
	if k <= 1 {
		if meta[MetaPartitions] != "" {
			return fmt.Errorf("%w: stream %s records %s partitions, but it is the stream of a one-stream store", ErrPartitionMismatch, name, meta[MetaPartitions])
		}
		return nil
	}
	rk, rp, err := recordedLayout(name, meta)
	if err != nil {
		return err
	}
	if rk != k || rp != p {
		return fmt.Errorf("%w: stream %s records partition %d of %d, want partition %d of %d", ErrPartitionMismatch, name, rp, rk, p, k)
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// subjectPartition returns the partition whose prefix subj is under, and
// the rest of subj after the prefix and its dot.
func (s *Log) subjectPartition(subj string) (*partition, string, bool) {
	if len(s.all) == 1 {
		tok, ok := strings.CutPrefix(subj, s.all[0].prefix+".")
		return s.all[0], tok, ok
	}
	rest, ok := strings.CutPrefix(subj, s.cfg.Subject+".")
	if !ok {
		return nil, "", false
	}
	num, tok, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, "", false
	}
	p, err := strconv.Atoi(num)
	if err != nil || p < 0 || p >= len(s.all) || strconv.Itoa(p) != num {
		return nil, "", false
	}
	return s.all[p], tok, true
}
