package audit

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// decodeKind classifies the error of a message that does not decode:
// KindSchema when it announces a newer schema version, KindForeign when
// it names another instance, else KindDecode.
func decodeKind(err error) ProblemKind {
	switch {
	case errors.Is(err, events.ErrNewerSchema):
		return KindSchema
	case errors.Is(err, events.ErrForeignCommit):
		return KindForeign
	}
	return KindDecode
}

func decodeDetail(err error) string {
	de, ok := errors.AsType[*events.DecodeError](err)
	if !ok {
		return err.Error()
	}
	if de.Event >= 0 {
		if de.Type != "" {
			return fmt.Sprintf("event %d (%s): %v", de.Event, de.Type, de.Err)
		}
		return fmt.Sprintf("event %d: %v", de.Event, de.Err)
	}
	return de.Err.Error()
}

func historyDetail(err error) string {
	he, ok := errors.AsType[*projection.HistoryError](err)
	if !ok {
		return err.Error()
	}
	if he.Event >= 0 {
		return fmt.Sprintf("event %d (%s): %s", he.Event, he.Type, he.Reason)
	}
	return he.Reason
}

// problemList collects problems, keeping at most limit of them (0: no
// limit) and counting the others.
type problemList struct {
	ps      []Problem
	limit   int
	dropped int
}

// add appends p and returns its index, or -1 when the list is full.
func (l *problemList) add(p Problem) int {
	if l.limit > 0 && len(l.ps) >= l.limit {
		l.dropped++
		return -1
	}
	l.ps = append(l.ps, p)
	return len(l.ps) - 1
}

// total returns the number of problems added, kept or not.
func (l *problemList) total() int { return len(l.ps) + l.dropped }

// streak merges a run of consecutive problems of one kind into one
// problem that names the span, the count and the first one's detail: once
// a commit is refused, the commits that build on it usually are too, and a
// flood of garbage is one finding, not thousands.
type streak struct {
	open  bool
	kind  ProblemKind
	idx   int // index of the open problem in the list; -1 if it was not kept
	count int
	first string
}

// add records p, extending the open problem when it has p's kind. tail
// ends the detail of a merged problem.
func (s *streak) add(l *problemList, p Problem, tail string) {
	if s.open && s.kind == p.Kind {
		s.count++
		if s.idx >= 0 {
			q := &l.ps[s.idx]
			q.Through = p.Seq
			q.Detail = fmt.Sprintf("%s (and the %d messages after it through seq %d %s)", s.first, s.count-1, p.Seq, tail)
		}
		return
	}
	*s = streak{open: true, kind: p.Kind, idx: l.add(p), count: 1, first: p.Detail}
}

// close ends the open problem.
func (s *streak) close() { *s = streak{} }

// folder folds an instance's commits for the projection's checks, with
// the hash chain left to the caller: a broken link is reported once, as a
// chain problem, and the fold goes on from the commit that broke it.
type folder struct {
	st     projection.State
	refuse streak
}

func newFolder(instance string) folder { return folder{st: projection.New(instance)} }

// folded is one message through a folder's step.
type folded struct {
	rec events.Record
	// kind and detail are the problem of a message that does not decode
	// (kind "" when it decoded); the detail does not repeat the sequence.
	kind   ProblemKind
	detail string
	// refused is the projection's refusal of a decoded commit, nil when
	// it was folded; see folder.report.
	refused error
}

// step decodes m, whose hash is h, and folds it through the projection's
// one decode-then-fold step, the chain left to the caller.
func (f *folder) step(m events.Message, h workflow.Hash32) folded {
	st := f.st.Step(m, projection.StepOptions{Hash: h, Unlinked: true})
	if _, bad := errors.AsType[*events.DecodeError](st.Err); bad {
		return folded{kind: decodeKind(st.Err), detail: decodeDetail(st.Err)}
	}
	return folded{rec: st.Record, refused: st.Err}
}

// report adds a fold problem to ps for a commit the projection refused
// (refused not nil), naming seq and line (the export line on import, else
// 0); explained says the commit's problem was already reported (a reused
// run id, which the projection refuses too), so a refusal is not reported
// twice. A folded commit ends a streak of refusals.
func (f *folder) report(refused error, ps *problemList, seq uint64, line int, explained bool) {
	if refused == nil || explained {
		f.refuse.close()
		return
	}
	f.refuse.add(ps, Problem{Instance: f.st.Instance, Seq: seq, Through: seq, Line: line, Kind: KindFold, Detail: historyDetail(refused)}, "do not fold either")
}

// checkRuns reports snapshot.created events that reuse an earlier run's id.
// runs maps each run id to the sequence of the commit that created it.
func checkRuns(rec events.Record, runs map[ulid.ULID]uint64) string {
	var msgs []string
	for i, e := range rec.Commit.Events {
		if e.Type != events.SnapshotCreated || e.Run.IsZero() {
			continue
		}
		if at, ok := runs[e.Run]; ok && at != rec.Seq {
			msgs = append(msgs, fmt.Sprintf("event %d (snapshot.created) starts run %s, the id of the run created at seq %d", i, e.Run, at))
			continue
		}
		runs[e.Run] = rec.Seq
	}
	return strings.Join(msgs, "; ")
}

// checkHeaders compares the headers runlog sets with the payload; a header
// that is absent is not checked.
func checkHeaders(m events.Message, rec events.Record) string {
	c := &rec.Commit
	var bad []string
	// want is compared without being made a string: every message of a
	// verification passes here, and nearly all of them match.
	check := func(name string, want []byte) {
		vs, ok := m.Header[name]
		if !ok {
			return
		}
		if len(vs) != 1 || vs[0] != string(want) {
			bad = append(bad, fmt.Sprintf("%s is %q, the payload says %q", name, strings.Join(vs, ","), string(want)))
		}
	}
	var buf [128]byte
	check(events.HeaderMsgID, appendULID(buf[:0], c.ID))
	types := buf[:0]
	for i, e := range c.Events {
		if i > 0 {
			types = append(types, ',')
		}
		types = append(types, e.Type...)
	}
	check(events.HeaderEvents, types)
	run := buf[:0]
	if r := c.Run(); !r.IsZero() {
		run = appendULID(run, r)
	}
	check(events.HeaderRun, run)
	check(events.HeaderCommand, append(buf[:0], c.Command...))
	if len(c.Events) > 0 {
		check(events.HeaderSchema, strconv.AppendInt(buf[:0], int64(c.Events[0].Schema), 10))
	}
	return strings.Join(bad, "; ")
}

// appendULID appends id's text form to b.
func appendULID(b []byte, id ulid.ULID) []byte {
	var t [ulid.EncodedSize]byte
	_ = id.MarshalTextTo(t[:]) // fails only on a short buffer
	return append(b, t[:]...)
}

// reservedDetail describes the headers of h that only the server may set
// ([events.ServerHeaders]), "" when there are none. Such a header was
// stored by whoever published the message, to pass off a sequence, time
// or subject of its own.
func reservedDetail(h map[string][]string) string {
	names := events.ReservedHeaders(h)
	if len(names) == 0 {
		return ""
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s: %q", n, strings.Join(h[n], ","))
	}
	noun := "header"
	if len(names) > 1 {
		noun = "headers"
	}
	return fmt.Sprintf("stored with the %s %s, which only the server sets on what it delivers: the publisher tried to pass off a sequence, time or subject of its own (runlog reads those from the server and never writes such a header)", noun, strings.Join(parts, ", "))
}

// idSet records the commit and event ids of one instance (their idKey),
// with the sequence of the message that holds each.
type idSet struct {
	commits map[uint64]uint64
	events  map[uint64]uint64
}

// newIDSet returns a set sized for the ids of n messages of one event
// each.
func newIDSet(n int) idSet {
	return idSet{commits: make(map[uint64]uint64, n), events: make(map[uint64]uint64, n)}
}

// idKey is the key of an id in an idSet: the last 64 of the ULID's 80
// random bits. Two different ids of one instance share a key with a
// probability of about n²/2^65 for n ids, and the set costs 16 bytes per
// id instead of 24. A shared key would report a duplicate id that is not
// one; ids copied from another commit (what this check is for) always
// share it.
func idKey(id ulid.ULID) uint64 { return binary.BigEndian.Uint64(id[8:]) }

// add records rec's ids and describes those already seen.
func (s idSet) add(rec events.Record) string {
	var msgs []string
	c := &rec.Commit
	if at, ok := s.commits[idKey(c.ID)]; ok {
		msgs = append(msgs, fmt.Sprintf("commit id %s is also the id of the commit at seq %d", c.ID, at))
	} else {
		s.commits[idKey(c.ID)] = rec.Seq
	}
	for i, e := range c.Events {
		if at, ok := s.events[idKey(e.ID)]; ok {
			where := fmt.Sprintf("seq %d", at)
			if at == rec.Seq {
				where = "this commit"
			}
			msgs = append(msgs, fmt.Sprintf("event %d has id %s, already used by an event of %s", i, e.ID, where))
			continue
		}
		s.events[idKey(e.ID)] = rec.Seq
	}
	return strings.Join(msgs, "; ")
}

// short returns the first 12 hex characters of h.
func short(h workflow.Hash32) string { return render.Short(h) }

// sortProblems orders an instance's problems by sequence, then by the end
// of their span.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if c := cmp.Compare(a.Seq, b.Seq); c != 0 {
			return c
		}
		return cmp.Compare(a.Through, b.Through)
	})
}
