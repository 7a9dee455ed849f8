package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// toMessage builds an events.Message from a direct get's message: the
// sequence and time the server gives, the headers as stored.
func toMessage(d directMsg) events.Message { return storedMessage(d.seq, d.time, d.header, d.data) }

// storedMessage builds an events.Message from a stored message's sequence
// and time (as the server gives them: a consumer's reply subject, a
// STREAM.MSG.GET's JSON, a direct get's last header values) and its
// stored headers, which it keeps (no copy).
func storedMessage(seq uint64, t time.Time, hdr nats.Header, data []byte) events.Message {
	m := events.Message{Seq: seq, Time: t.UTC(), Data: data}
	if len(hdr) > 0 {
		m.Header = hdr
		if v := m.Header[events.HeaderMsgID]; len(v) > 0 {
			m.MsgID = v[0]
		}
		// The server checked this expectation when it stored the message
		// (and refuses a second value), so it is the instance's previous
		// sequence.
		if v := m.Header[natsjs.ExpectedLastSubjSeqHeader]; len(v) == 1 {
			if after, err := strconv.ParseUint(v[0], 10, 64); err == nil && after < seq {
				m.AfterSeq, m.AfterKnown = after, true
			}
		}
	}
	return m
}

// Read returns the messages of instance with a stream sequence greater
// than after, in sequence order. It implements [lifecycle.Log.Read].
//
// Messages are fetched with direct batch gets of [Config.ReadBatch]
// messages, page after page until the instance has no more; no consumer
// is created. The read sees the messages stored when each page is served.
// On a replicated stream a direct get may be answered by a replica that
// lags the leader by a few writes; a decision made on such a read fails
// the sequence check of [Log.Append] and is retried.
//
// Each message has Seq, Time (when the stream stored it, UTC), MsgID
// (its Nats-Msg-Id header), Data, and Header: the headers as stored, which
// besides the appended ones include the Nats-Msg-Id, Nats-Expected-Stream
// and Nats-Expected-Last-Subject-Sequence headers set by [Log.Append]
// (the last one records the sequence the decision was made on).
//
// The iterator yields an error at most once, as its last value; it stops
// as soon as yield returns false; it may be ranged over again, reading
// afresh. An instance with no messages yields nothing. Cancelling ctx
// ends it with ctx.Err(). An invalid instance id yields an error matching
// [workflow.ErrInvalidInstanceID]; other errors are wrapped as
// "jetstream: read <id>: ...".
func (s *Log) Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		if err := workflow.ValidateInstanceID(instance); err != nil {
			yield(events.Message{}, fmt.Errorf("jetstream: read: %w", err))
			return
		}
		err := s.batches(ctx, s.part(instance), s.SubjectFor(instance), after, func(d directMsg) bool {
			return yield(toMessage(d), nil)
		})
		if err != nil && err != errStopped {
			if ctx.Err() != nil {
				yield(events.Message{}, ctx.Err())
				return
			}
			yield(events.Message{}, fmt.Errorf("jetstream: read %q: %w", instance, err))
		}
	}
}

// errStopped reports that the consumer of an iterator stopped early.
var errStopped = errors.New("stopped")

// batches yields every message on filter with a sequence greater than
// after, using batched direct gets (see direct.go: runlog reads their
// replies itself, taking the sequence, time and counts from the server,
// never from the stored headers). It returns nil when the messages are
// exhausted, errStopped when fn returns false, ctx.Err() when ctx is
// done, or the error that ended the read.
//
// The end of the data is told from the Nats-Num-Pending header: the
// server puts on each message the number of matching messages left after
// it, 0 on the last one. A page that ends with messages still pending (a
// timeout, or the server's max bytes per batch) is followed by the next
// page; a page with no message and no error is a timeout.
func (s *Log) batches(ctx context.Context, p *partition, filter string, after uint64, fn func(directMsg) bool) error {
	next := after + 1
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, pending, last, err := s.page(ctx, p, filter, next, fn)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case n < 0: // no messages at all
			return nil
		case n == 0:
			return fmt.Errorf("batch get from sequence %d: no reply in time: %w", next, nats.ErrTimeout)
		case pending == 0:
			return nil
		}
		next = last + 1
	}
}

// readPageTimeout bounds one batched read request.
const readPageTimeout = 5 * time.Second

// page reads one batch from sequence next, calling fn for each message. It
// returns how many messages came (-1: the filter has none from next), the
// number still pending after the last one, and the last one's sequence.
//
// Each page has its own deadline, so that a request lost with a server
// that died fails in readPageTimeout, not at the caller's deadline. A page
// cut short by it while messages were flowing is harmless: paging goes on
// from the last message received.
func (s *Log) page(ctx context.Context, p *partition, filter string, next uint64, fn func(directMsg) bool) (n int, pending, last uint64, err error) {
	pctx, cancel := context.WithTimeout(ctx, readPageTimeout)
	defer cancel()
	n, pending, last, err = s.directBatch(pctx, p, filter, next, s.cfg.ReadBatch, fn)
	switch {
	case err == nil, err == errStopped:
		return n, pending, last, err
	case ctx.Err() == nil && pctx.Err() != nil:
		return n, pending, last, nil // the page's own deadline
	case errors.Is(err, nats.ErrNoResponders):
		// Say whether the stream is gone.
		if _, serr := s.js.Stream(ctx, p.name); errors.Is(serr, natsjs.ErrStreamNotFound) {
			return 0, 0, 0, fmt.Errorf("stream %s: %w", p.name, serr)
		}
	}
	return n, pending, last, err
}

// LastMessage returns the last message of instance, with ok false if it
// has none. It implements [lifecycle.Last]. It uses a direct get, so on a
// replicated stream it may lag the leader by a few writes (see
// [Log.Read]). The get has its own deadline of 5 s within ctx and is
// asked again once if it goes unanswered (a replica that died while
// answering), so a dead server costs seconds, not the caller's deadline.
// An invalid instance id gives an error matching
// [workflow.ErrInvalidInstanceID]; other errors are wrapped as
// "jetstream: last message <id>: ...".
func (s *Log) LastMessage(ctx context.Context, instance string) (events.Message, bool, error) {
	if err := workflow.ValidateInstanceID(instance); err != nil {
		return events.Message{}, false, fmt.Errorf("jetstream: last message: %w", err)
	}
	// Each attempt has its own deadline: a direct get answered by a
	// replica that dies is lost, and would otherwise hold the caller until
	// its own deadline. A lost attempt is asked again once (another
	// replica answers).
	var d directMsg
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, readPageTimeout)
		d, err = s.directLast(actx, s.part(instance), s.SubjectFor(instance))
		cancel()
		if attempt == 2 || ctx.Err() != nil || !transient(err) {
			break
		}
	}
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return events.Message{}, false, nil
	}
	if err != nil {
		return events.Message{}, false, fmt.Errorf("jetstream: last message %q: %w", instance, err)
	}
	return toMessage(d), true, nil
}

// MessageAt returns the message of instance with sequence seq, with ok
// false if the instance has none there. It implements [lifecycle.Last],
// with one direct get (its own deadline, as [Log.LastMessage]).
func (s *Log) MessageAt(ctx context.Context, instance string, seq uint64) (events.Message, bool, error) {
	if err := workflow.ValidateInstanceID(instance); err != nil {
		return events.Message{}, false, fmt.Errorf("jetstream: message at: %w", err)
	}
	if seq == 0 {
		return events.Message{}, false, nil
	}
	actx, cancel := context.WithTimeout(ctx, readPageTimeout)
	d, err := s.directNext(actx, s.part(instance), seq, s.SubjectFor(instance))
	cancel()
	if errors.Is(err, natsjs.ErrMsgNotFound) || err == nil && d.seq != seq {
		return events.Message{}, false, nil
	}
	if err != nil {
		return events.Message{}, false, fmt.Errorf("jetstream: message %d of %q: %w", seq, instance, err)
	}
	return toMessage(d), true, nil
}

// ScannedMessage is a message seen by [Log.Scan]: the message, its
// subject and the instance id decoded from it. InstanceErr is set, and
// Instance empty, when the subject is not an instance subject (a message
// published by another program); it matches [ErrInvalidSubject].
type ScannedMessage = events.Scanned

// defaultScanWait is how often Scan, while no message arrives, asks the
// server whether any are left.
const defaultScanWait = 5 * time.Second

// Scan returns the messages of the stream stored when it starts, with a
// sequence greater than after, in sequence order, whatever their
// instance. A partitioned store's partitions are read one after the
// other, each in its sequence order ([ScannedMessage.Partition] says
// which); after must then be 0 (a sequence names a message only within a
// partition: [Log.ScanPartition] reads one from a sequence): there is
// no order across the instances of different partitions. It follows the iterator contract of [Log.Read]. A subject
// that does not decode is reported in [ScannedMessage.InstanceErr], not as
// an iterator error. Errors are wrapped as "jetstream: scan: ...".
//
// It reads with one ordered consumer (an ephemeral consumer the server
// pushes to in flow-controlled batches, which nats.go recreates from the
// last sequence seen if it stalls or the server restarts) and deletes it
// at the end: several times faster over a whole stream than direct batch
// gets, and the right read for audits and exports. The caller needs the
// permissions that [Log.Follow] needs.
func (s *Log) Scan(ctx context.Context, after uint64) iter.Seq2[ScannedMessage, error] {
	return func(yield func(ScannedMessage, error) bool) {
		if after > 0 && len(s.parts) > 1 {
			yield(ScannedMessage{}, fmt.Errorf("jetstream: scan: after is %d, but the store has %d partitions with a sequence each: scan from 0, or one partition with ScanPartition", after, len(s.parts)))
			return
		}
		for _, p := range s.parts {
			if !s.scanPartition(ctx, p, after, yield) {
				return
			}
		}
	}
}

// ScanPartition is [Log.Scan] of one partition, 0 to
// [Log.Partitions]-1: its messages with a sequence greater than after.
func (s *Log) ScanPartition(ctx context.Context, partition int, after uint64) iter.Seq2[ScannedMessage, error] {
	return func(yield func(ScannedMessage, error) bool) {
		if partition < 0 || partition >= len(s.all) {
			yield(ScannedMessage{}, fmt.Errorf("jetstream: scan: partition %d does not exist: the store has %d (0 to %d)", partition, len(s.all), len(s.all)-1))
			return
		}
		s.scanPartition(ctx, s.all[partition], after, yield)
	}
}

// scanPartition yields partition p's messages after after; it returns
// false when the scan must end (yield returned false, or an error was
// yielded).
func (s *Log) scanPartition(ctx context.Context, p *partition, after uint64, yield func(ScannedMessage, error) bool) bool {
	fail := func(err error) bool {
		if ctx.Err() != nil {
			yield(ScannedMessage{}, ctx.Err())
			return false
		}
		if len(s.parts) > 1 {
			err = fmt.Errorf("stream %s: %w", p.name, err)
		}
		yield(ScannedMessage{}, fmt.Errorf("jetstream: scan: %w", err))
		return false
	}
	info, err := s.streamInfo(ctx, p)
	if err != nil {
		return fail(err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last <= after {
		return true
	}
	if last-after <= scanDirectMax {
		// A short tail (an index catching up after a few commits): batched
		// direct gets cost a request or two, an ordered consumer its
		// creation and deletion too.
		stopped := false
		err := s.batches(ctx, p, p.filter(), after, func(d directMsg) bool {
			if d.seq > last {
				return false
			}
			sm := ScannedMessage{Message: toMessage(d), Partition: p.index}
			sm.Instance, sm.InstanceErr = s.instanceFromPartition(p, d.subject)
			if !yield(sm, nil) {
				stopped = true
				return false
			}
			return d.seq < last
		})
		switch {
		case stopped:
			return false
		case err != nil && err != errStopped:
			return fail(err)
		}
		return true
	}
	cfg := natsjs.OrderedConsumerConfig{FilterSubjects: []string{p.filter()}}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = natsjs.DeliverByStartSequencePolicy, after+1
	}
	cons, err := s.js.OrderedConsumer(ctx, p.name, cfg)
	if err != nil {
		return fail(err)
	}
	// The consumer's callback hands messages over a bounded channel:
	// when the caller is slower than the server, the callback blocks
	// and the pull requests stop (at most scanPull messages in
	// flight). done ends the callback's waits once the scan ends.
	ch := make(chan natsjs.Msg, scanPull)
	done := make(chan struct{})
	cc, err := cons.Consume(func(m natsjs.Msg) {
		select {
		case ch <- m:
		case <-done:
		}
	}, natsjs.PullMaxMessages(scanPull))
	if err != nil {
		return fail(err)
	}
	defer func() {
		close(done)
		cc.Stop()
		s.deleteConsumer(ctx, p, cons)
	}()
	tick := time.NewTicker(s.scanWait)
	defer tick.Stop()
	idle := false
	seen := after // the sequence of the last message read
	for {
		var m natsjs.Msg
		select {
		case m = <-ch:
			idle = false
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-tick.C:
			if !idle {
				idle = true
				continue
			}
			// Nothing for a whole tick: are messages left at all (the
			// last ones may have been deleted since the scan began)?
			// A direct get of the next one says, with the reader's
			// permissions.
			gctx, cancel := context.WithTimeout(ctx, readPageTimeout)
			next, err := s.directNext(gctx, p, seen+1, p.filter())
			cancel()
			switch {
			case errors.Is(err, natsjs.ErrMsgNotFound), err == nil && next.seq > last:
				return true
			case err != nil && !transient(err):
				return fail(err)
			}
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			return fail(err)
		}
		seq := md.Sequence.Stream
		if seq > last {
			return true
		}
		seen = seq
		// The header map is this message's own: no copy.
		sm := ScannedMessage{Message: storedMessage(seq, md.Timestamp, m.Headers(), m.Data()), Partition: p.index}
		sm.Instance, sm.InstanceErr = s.instanceFromPartition(p, m.Subject())
		if !yield(sm, nil) {
			return false
		}
		if seq == last || md.NumPending == 0 {
			return true
		}
	}
}

// scanDirectMax is the longest tail Scan reads with direct gets rather
// than an ordered consumer.
const scanDirectMax = 256

// scanPull is the number of messages Scan asks for per pull request.
const scanPull = 1024

// streamInfo returns the stream's info, within the connection's default
// timeout if ctx has no deadline.
func (s *Log) streamInfo(ctx context.Context, p *partition) (*natsjs.StreamInfo, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
		defer cancel()
	}
	st, err := s.js.Stream(ctx, p.name)
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// deleteConsumer deletes the ephemeral consumer of a finished ordered
// read now, rather than leaving it to the server's inactivity threshold.
func (s *Log) deleteConsumer(ctx context.Context, p *partition, cons natsjs.Consumer) {
	if info := cons.CachedInfo(); info != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = s.js.DeleteConsumer(dctx, p.name, info.Name)
		cancel()
	}
}

// DefaultInstancesLimit is the page size [Log.Instances] uses when asked
// for limit <= 0.
const DefaultInstancesLimit = 1000

// Instances returns up to limit ids of the instances that have messages,
// greater than after, in increasing order of the ids (byte order of the
// strings), as [lifecycle.Lister] documents. Pass "" for the first page,
// then the last id of a page as the next cursor; a page shorter than limit
// (an empty one included) is the last. limit <= 0 means
// [DefaultInstancesLimit].
//
// It asks the server for the stream's subjects (stream info with a
// subject filter) page by page; the server answers with at most 100,000
// subjects per request. The order of encoded subjects is not the order of
// ids, so every call reads all pages and keeps the limit smallest ids
// after the cursor: memory per call is bounded by one server page plus
// twice limit ids, and time grows with the number of instances. An
// instance created while a call runs may be missed by that call.
// Subjects under the prefix that are not canonical instance subjects are
// skipped and logged at warn level. Errors are wrapped as
// "jetstream: instances: ...".
func (s *Log) Instances(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = DefaultInstancesLimit
	}
	var ids []string // the smallest ids > after seen so far, not sorted
	keep := func() {
		slices.Sort(ids)
		ids = slices.Clip(ids[:min(len(ids), limit)])
	}
	for _, p := range s.parts {
		for offset := 0; ; {
			subjects, total, err := s.subjectsPage(ctx, p, offset)
			if err != nil {
				return nil, fmt.Errorf("jetstream: instances: %w", err)
			}
			for _, subj := range subjects {
				id, err := s.instanceFromPartition(p, subj)
				if err != nil {
					s.log.Warn("jetstream: skipping a subject that is not an instance subject", slog.String("subject", subj), slog.Any(logKeyErr, err))
					continue
				}
				if id <= after {
					continue
				}
				ids = append(ids, id)
				if len(ids) >= 2*limit {
					keep()
				}
			}
			offset += len(subjects)
			if len(subjects) == 0 || offset >= total {
				break
			}
		}
	}
	keep()
	return ids, nil
}

// AllInstances yields the id of every instance that has messages, in the
// byte order of their subjects (partition after partition in a
// partitioned store), starting after the instance after ("" for the
// first). It reads each stream's subject list once, one server page of
// up to 100,000 subjects at a time: memory is one page, and listing every
// instance costs about as much as one call of [Log.Instances] (which
// reads the whole list to return one page in id order). Stop the loop to
// stop early. The order of the subjects is the order of the ids for ids
// made of [A-Za-z0-9_-] only (see [EncodeID]). An instance created while
// the list is read may be missed; none is yielded twice. Subjects under
// the prefix that are not canonical instance subjects are skipped. Errors
// are wrapped as "jetstream: all instances: ...".
func (s *Log) AllInstances(ctx context.Context, after string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		first := 0 // the partition to start with
		last := "" // the subject yielded last, or the cursor's
		if after != "" {
			if err := workflow.ValidateInstanceID(after); err != nil {
				yield("", fmt.Errorf("jetstream: all instances: cursor: %w", err))
				return
			}
			first, last = s.part(after).index, s.SubjectFor(after)
		}
		for _, p := range s.parts {
			if p.index < first {
				continue
			}
			if p.index != first {
				last = ""
			}
			for offset := 0; ; {
				page, total, err := s.subjectsPage(ctx, p, offset)
				if err != nil {
					yield("", fmt.Errorf("jetstream: all instances: %w", err))
					return
				}
				// The server sorts the whole list to page it; a page comes
				// as a JSON object, so it is sorted again here.
				slices.Sort(page)
				for _, subj := range page {
					if subj <= last {
						continue
					}
					last = subj
					id, err := s.instanceFromPartition(p, subj)
					if err != nil {
						s.log.Warn("jetstream: skipping a subject that is not an instance subject", slog.String("subject", subj), slog.Any(logKeyErr, err))
						continue
					}
					if !yield(id, nil) {
						return
					}
				}
				offset += len(page)
				if len(page) == 0 || offset >= total {
					break
				}
			}
		}
	}
}

// InstanceCounts returns the number of messages of every instance that
// has any, from the streams' subject counts (stream info with a subject
// filter, paged by the server at 100,000 subjects): memory is one entry
// per instance. Subjects under the prefix that are not canonical instance
// subjects are left out. Errors are wrapped as "jetstream: instance
// counts: ...".
func (s *Log) InstanceCounts(ctx context.Context) (map[string]uint64, error) {
	counts := make(map[string]uint64)
	for _, p := range s.parts {
		if err := s.partitionCounts(ctx, p, counts); err != nil {
			return nil, fmt.Errorf("jetstream: instance counts: %w", err)
		}
	}
	return counts, nil
}

// partitionCounts adds the message counts of partition p's instances to
// counts.
func (s *Log) partitionCounts(ctx context.Context, p *partition, counts map[string]uint64) error {
	for offset := 0; ; {
		page, total, err := s.subjectCounts(ctx, p, offset)
		if err != nil {
			return err
		}
		for subj, n := range page {
			if id, err := s.instanceFromPartition(p, subj); err == nil {
				counts[id] = n
			}
		}
		offset += len(page)
		if len(page) == 0 || offset >= total {
			return nil
		}
	}
}

// subjectsPage returns one page of partition p's instance subjects
// (prefix.*), starting at offset in the server's sorted list, and the
// total number of them.
func (s *Log) subjectsPage(ctx context.Context, p *partition, offset int) ([]string, int, error) {
	counts, total, err := s.subjectCounts(ctx, p, offset)
	if err != nil {
		return nil, 0, err
	}
	subjects := make([]string, 0, len(counts))
	for subj := range counts {
		subjects = append(subjects, subj)
	}
	return subjects, total, nil
}

// subjectCounts is subjectsPage with the number of messages of each
// subject.
func (s *Log) subjectCounts(ctx context.Context, p *partition, offset int) (map[string]uint64, int, error) {
	filter := p.prefix + ".*"
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
		defer cancel()
	}
	req, err := json.Marshal(struct {
		Filter string `json:"subjects_filter"`
		Offset int    `json:"offset,omitempty"`
	}{filter, offset})
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.nc.RequestWithContext(ctx, s.apiSubject("STREAM.INFO."+p.name), req)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Error *natsjs.APIError `json:"error"`
		Total int              `json:"total"`
		State struct {
			Subjects map[string]uint64 `json:"subjects"`
		} `json:"state"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, 0, fmt.Errorf("decode stream info response: %w", err)
	}
	if r.Error != nil {
		return nil, 0, r.Error
	}
	return r.State.Subjects, r.Total, nil
}

// Follow returns the messages of instance with a sequence greater than
// after, then waits for new ones and yields them as they are stored, until
// ctx is done; it then yields ctx.Err() and ends. It uses an ordered
// consumer filtered on the instance's subject, starting at sequence
// after+1, which is deleted when the iteration ends (also when yield
// returns false). An invalid instance id yields an error matching
// [workflow.ErrInvalidInstanceID]; other errors are wrapped as
// "jetstream: follow <id>: ...".
func (s *Log) Follow(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		if err := workflow.ValidateInstanceID(instance); err != nil {
			yield(events.Message{}, fmt.Errorf("jetstream: follow: %w", err))
			return
		}
		fail := func(err error) {
			if ctx.Err() != nil {
				yield(events.Message{}, ctx.Err())
				return
			}
			yield(events.Message{}, fmt.Errorf("jetstream: follow %q: %w", instance, err))
		}
		cfg := natsjs.OrderedConsumerConfig{
			FilterSubjects: []string{s.SubjectFor(instance)},
			DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
			OptStartSeq:    after + 1,
		}
		p := s.part(instance)
		cons, err := s.js.OrderedConsumer(ctx, p.name, cfg)
		if err != nil {
			fail(err)
			return
		}
		defer s.deleteConsumer(ctx, p, cons)
		msgs, err := cons.Messages()
		if err != nil {
			fail(err)
			return
		}
		defer msgs.Stop()
		for {
			m, err := msgs.Next(natsjs.NextContext(ctx))
			if err != nil {
				fail(err)
				return
			}
			md, err := m.Metadata()
			if err != nil {
				fail(err)
				return
			}
			if !yield(storedMessage(md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data()), nil) {
				return
			}
		}
	}
}
