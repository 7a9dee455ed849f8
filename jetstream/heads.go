package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// ErrPartitionedDigest is matched by the error of [Log.LogInfo] and
// [Log.Heads] on a partitioned store: a digest describes one stream's
// sequence, and a partitioned store has one per partition. Make and
// verify a digest of each partition through [Log.Partition].
var ErrPartitionedDigest = errors.New("jetstream: a partitioned store has a digest per partition (use Log.Partition)")

// onePartition returns the store's one partition, or an error matching
// ErrPartitionedDigest.
func (s *Log) onePartition(op string) (*partition, error) {
	if len(s.parts) > 1 {
		return nil, fmt.Errorf("jetstream: %s: %w (the store has %d partitions)", op, ErrPartitionedDigest, len(s.parts))
	}
	return s.parts[0], nil
}

// LogInfo describes the stream as a whole: its name, when it was created,
// its first and last sequences and its message count. A partitioned store
// gives an error matching [ErrPartitionedDigest].
func (s *Log) LogInfo(ctx context.Context) (events.LogInfo, error) {
	p, err := s.onePartition("log info")
	if err != nil {
		return events.LogInfo{}, err
	}
	info, err := s.streamInfo(ctx, p)
	if err != nil {
		return events.LogInfo{}, fmt.Errorf("jetstream: log info: %w", err)
	}
	return logInfo(p.name, info.Created, info.State.FirstSeq, info.State.LastSeq, info.State.Msgs), nil
}

// PartitionInfo is [Log.LogInfo] of partition p (0 to
// [Log.Partitions]-1) of a store of any number of partitions.
func (s *Log) PartitionInfo(ctx context.Context, partition int) (events.LogInfo, error) {
	if partition < 0 || partition >= len(s.all) {
		return events.LogInfo{}, fmt.Errorf("jetstream: log info: partition %d does not exist: the store has %d (0 to %d)", partition, len(s.all), len(s.all)-1)
	}
	p := s.all[partition]
	info, err := s.streamInfo(ctx, p)
	if err != nil {
		return events.LogInfo{}, fmt.Errorf("jetstream: log info of %s: %w", p.name, err)
	}
	return logInfo(p.name, info.Created, info.State.FirstSeq, info.State.LastSeq, info.State.Msgs), nil
}

func logInfo(name string, created time.Time, first, last, msgs uint64) events.LogInfo {
	return events.LogInfo{Name: name, Created: created.UTC(), FirstSeq: first, LastSeq: last, Messages: msgs}
}

// headsAttempts bounds the tries of Heads' quick path on a stream being
// written to.
const headsAttempts = 5

// Heads returns the stream's description and the head of every instance
// (its message count, last sequence, time and hash) as of one sequence,
// the stream's last when Heads began (LogInfo.LastSeq), in no particular
// order. Subjects under the prefix that are not instance subjects are not
// instances; their messages count in LogInfo.Messages.
//
// Where instances have histories of some length it reads no history: the
// counts come from the stream's subject totals, the last messages from
// batched direct gets of the last message of up to 1024 subjects each,
// bounded by the sequence (multi_last with up_to_seq). The counts are
// taken between two readings of the stream's state; if a message was
// stored meanwhile they may count it, so Heads tries again, up to a few
// times, and on a stream written to without pause it reads the whole
// stream once with [Log.Scan] instead (consistent by construction).
// On a replicated stream, whose direct gets may be answered by a replica
// that lags the leader, it always reads the whole stream (an ordered
// consumer, served by the leader). Where instances have few messages each
// it reads the whole stream from the start too: the server walks every subject for every page of 100,000
// subject totals, which costs more than the read (see
// headsByScanIsCheaper). Memory grows with the number of instances.
// Errors are wrapped as "jetstream: heads: ..."; a partitioned store
// gives an error matching [ErrPartitionedDigest].
func (s *Log) Heads(ctx context.Context) (events.LogInfo, []events.InstanceHead, error) {
	p, err := s.onePartition("heads")
	if err != nil {
		return events.LogInfo{}, nil, err
	}
	info, err := s.streamInfo(ctx, p)
	if err != nil {
		return events.LogInfo{}, nil, fmt.Errorf("jetstream: heads: %w", err)
	}
	if info.Config.Replicas > 1 || headsByScanIsCheaper(info.State.Msgs, uint64(info.State.NumSubjects)) {
		// A replicated stream's direct gets may be answered by a replica
		// that lags the leader: its last messages would not be those the
		// leader's totals count. The scan is served by the leader.
		return s.headsByScan(ctx, p)
	}
	// Each reading of the state after the counts is the reading before
	// the next try's.
	before := info
	for range headsAttempts {
		counts, err := s.InstanceCounts(ctx)
		if err != nil {
			return events.LogInfo{}, nil, fmt.Errorf("jetstream: heads: %w", err)
		}
		after, err := s.streamInfo(ctx, p)
		if err != nil {
			return events.LogInfo{}, nil, fmt.Errorf("jetstream: heads: %w", err)
		}
		if after.State.LastSeq != before.State.LastSeq || after.State.Msgs != before.State.Msgs {
			before = after
			continue // written to meanwhile: the counts may not be as of one sequence
		}
		st := before.State
		info := logInfo(p.name, before.Created, st.FirstSeq, st.LastSeq, st.Msgs)
		heads, err := s.lastOf(ctx, p, counts, st.LastSeq)
		if err != nil {
			return events.LogInfo{}, nil, fmt.Errorf("jetstream: heads: %w", err)
		}
		return info, heads, nil
	}
	return s.headsByScan(ctx, p)
}

// subjectsPerPage is how many subjects the server puts in one stream info
// answer (and each answer walks every subject of the stream).
const subjectsPerPage = 100_000

// headsByScanIsCheaper says whether reading the whole stream costs less
// than the subject totals and the last messages: the totals cost a walk
// of every subject per page of 100,000 (measured here: about 1.9 µs per
// subject and page, the last messages as much again), the scan about 4 µs
// per message. With few messages per instance (a million instances of one
// commit: 21 s by totals, 4.5 s by scan) the scan wins; with long
// histories (100 instances of 10,000 commits: 0.1 s by totals, 3 s by
// scan) the totals do.
func headsByScanIsCheaper(msgs, subjects uint64) bool {
	pages := (subjects + subjectsPerPage - 1) / subjectsPerPage
	return msgs*2 < subjects*(pages+1)
}

// lastOf reads the last message of each instance of counts with a sequence
// of at most upTo.
func (s *Log) lastOf(ctx context.Context, p *partition, counts map[string]uint64, upTo uint64) ([]events.InstanceHead, error) {
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	heads := make([]events.InstanceHead, 0, len(ids))
	const maxSubjects, maxBytes = 1024, 256 << 10
	for len(ids) > 0 {
		var subjects []string
		byInstance := make(map[string]string, min(len(ids), maxSubjects))
		size := 0
		for len(ids) > 0 && len(subjects) < maxSubjects && size < maxBytes {
			subj := s.SubjectFor(ids[0])
			subjects = append(subjects, subj)
			byInstance[subj] = ids[0]
			size += len(subj) + 3
			ids = ids[1:]
		}
		got := 0
		err := s.directMultiLast(ctx, p, subjects, upTo, func(d directMsg) bool {
			id, ok := byInstance[d.subject]
			if !ok {
				return true
			}
			got++
			heads = append(heads, events.InstanceHead{Instance: id, Messages: counts[id], Seq: d.seq, Time: d.time.UTC(), Hash: workflow.Sha256(d.data)})
			return true
		})
		if err != nil {
			return nil, err
		}
		if got != len(subjects) {
			return nil, fmt.Errorf("the last messages of %d instances were asked, %d came", len(subjects), got)
		}
	}
	return heads, nil
}

// headsByScan is Heads from one read of the whole stream.
func (s *Log) headsByScan(ctx context.Context, p *partition) (events.LogInfo, []events.InstanceHead, error) {
	info, err := s.streamInfo(ctx, p)
	if err != nil {
		return events.LogInfo{}, nil, fmt.Errorf("jetstream: heads: %w", err)
	}
	st := info.State
	li := logInfo(p.name, info.Created, st.FirstSeq, st.LastSeq, st.Msgs)
	byID := make(map[string]*events.InstanceHead)
	var msgs uint64
	for m, err := range s.Scan(ctx, 0) {
		if err != nil {
			return events.LogInfo{}, nil, fmt.Errorf("jetstream: heads: %w", err)
		}
		if m.Seq > st.LastSeq {
			break
		}
		msgs++
		if m.InstanceErr != nil {
			continue
		}
		h := byID[m.Instance]
		if h == nil {
			h = &events.InstanceHead{Instance: m.Instance}
			byID[m.Instance] = h
		}
		h.Messages++
		h.Seq, h.Time, h.Hash = m.Seq, m.Time, workflow.Sha256(m.Data)
	}
	li.Messages = msgs
	heads := make([]events.InstanceHead, 0, len(byID))
	for _, h := range byID {
		heads = append(heads, *h)
	}
	return li, heads, nil
}

// multiLastRequest asks for the last message of each subject, up to a
// sequence.
type multiLastRequest struct {
	MultiLast []string `json:"multi_last"`
	UpToSeq   uint64   `json:"up_to_seq,omitempty"`
	Batch     int      `json:"batch,omitempty"`
}

// directMultiLast sends one batched direct get of the last message of
// each of subjects (at most 1024) with a sequence of at most upTo, and
// calls fn with each message. Subjects with no such message are left out.
func (s *Log) directMultiLast(ctx context.Context, p *partition, subjects []string, upTo uint64, fn func(directMsg) bool) error {
	body, err := json.Marshal(multiLastRequest{MultiLast: subjects, UpToSeq: upTo, Batch: len(subjects)})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, readPageTimeout)
	defer cancel()
	sub, err := s.nc.SubscribeSync(s.nc.NewInbox())
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest(s.apiSubject("DIRECT.GET."+p.name), sub.Subject, body); err != nil {
		return err
	}
	for {
		m, err := sub.NextMsgWithContext(pctx)
		if err != nil {
			return fmt.Errorf("last messages: %w", err)
		}
		d, err := parseDirect(m, true)
		if st, ok := errors.AsType[*directStatus](err); ok {
			switch st.code {
			case "204":
				return nil
			case "404":
				return nil // none of the subjects has a message up to upTo
			}
			return fmt.Errorf("last messages: %w", directStatusErr(st))
		}
		if err != nil {
			return err
		}
		if !fn(d) {
			return nil
		}
	}
}
