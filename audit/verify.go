package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// VerifyOptions configures [Verify]. The zero value verifies every
// instance.
type VerifyOptions struct {
	// IDs are the instances to verify; empty means every instance of the
	// source, listed page by page.
	IDs []string
	// PageSize is the number of ids asked per Source.Instances call; 0
	// means 1000.
	PageSize int
	// Progress, if set, is called after every instance and every few
	// thousand messages of a long one, on Verify's goroutine. It must
	// return quickly.
	Progress func(Progress)
	// MaxProblems stops the verification once that many problems were
	// found (the report is then marked Incomplete); 0 means no limit.
	MaxProblems int
	// Heads asks for the head of every instance verified in
	// [Report.Heads]. It costs memory proportional to the number of
	// instances.
	Heads bool
	// Digests are signed digests made earlier ([MakeDigest]), each
	// checked with [Digest.Check] first (a digest that fails it is an
	// error, not a problem). The log must still contain everything each
	// committed to: every instance it lists, with the same number of
	// commits up to the digest's last sequence, ending with the same head;
	// no instance it does not list; the same number of messages up to
	// that sequence. Each difference is a [KindDigest] problem naming the
	// instance. A log that only grew since passes. Several digests are
	// checked in the same read. With IDs set, only those instances'
	// leaves are compared. Memory grows with the number of instances (a
	// few dozen bytes per instance and digest).
	Digests []*Digest
	// Checkpoints, if set, are the projection checkpoints of the
	// instances (lifecycle.Config.Checkpoints): each instance's
	// checkpoint, if it has one, must be the fold of its history up to the
	// checkpoint's sequence, with that message's head hash; one that
	// disagrees is a [KindCheckpoint] problem (the store would have
	// ignored a checkpoint whose head does not match, but not a state
	// that was altered with the head kept). It costs one read of the
	// checkpoint store per instance. Checkpoints are derived data: no
	// other check depends on them.
	Checkpoints lifecycle.Checkpoints
	// Anchors are heads recorded earlier (for example a previous run's
	// Report.Heads, kept somewhere the log's writers cannot change). The
	// history of each anchored instance must still contain the anchored
	// hash; otherwise a [KindAnchor] problem is reported. Anchors are
	// matched by hash, so they survive an export and import into another
	// stream. This is what detects the removal of an instance's last
	// commits, which the chain alone cannot.
	Anchors []Head
}

// Report is the outcome of [Verify].
type Report struct {
	Instances int `json:"instances"` // instances verified
	Messages  int `json:"messages"`  // messages read
	Events    int `json:"events"`    // events in the commits that decoded
	Bytes     int `json:"bytes"`     // payload bytes read
	// Skipped counts the messages that belong to no instance (on
	// JetStream: on a subject under the stream's prefix that is not an
	// instance subject, published by another program). They are not part
	// of any history; a whole-log verification reads and skips them.
	Skipped int `json:"skipped,omitempty"`
	Damaged int `json:"damaged"` // instances with at least one problem
	// Problems lists every problem found, by instance (in the order the
	// instances were verified) and by sequence.
	Problems []Problem `json:"problems"`
	// Heads holds each verified instance's head when
	// VerifyOptions.Heads is set.
	Heads []Head `json:"heads,omitempty"`
	// Incomplete is set when verification stopped because
	// VerifyOptions.MaxProblems problems were found: the rest of the
	// instance where it stopped, and the instances after it, if any,
	// were not verified; or, when every instance was verified in one pass
	// over the log, the messages after ReadThrough.
	Incomplete bool `json:"incomplete,omitempty"`
	// ReadThrough is, for an incomplete verification in one pass over
	// the log, the sequence of the last message read.
	ReadThrough uint64 `json:"read_through,omitempty"`
}

// OK reports whether the verification was complete and found nothing.
func (r *Report) OK() bool { return len(r.Problems) == 0 && !r.Incomplete }

// Verify reads every message of the chosen instances and checks that the
// history is intact; see the package documentation for what it detects.
// Problems found go in the report; an error is returned only when the
// source cannot be read (or ctx ends), together with the report of what
// was verified until then. Ids in opts.IDs are validated first
// ([workflow.ErrInvalidInstanceID]).
//
// Every instance of a [Scanner] is verified in one pass over the log
// (each instance finished when its last message is read); named instances, and every instance of other sources, one read
// per instance. Both give the same report, except
// [Report.ReadThrough]. Memory: see the package documentation; problems
// found and heads asked for are kept too.
func Verify(ctx context.Context, src Source, opts VerifyOptions) (*Report, error) {
	if err := validateIDs(opts.IDs); err != nil {
		return &Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	anchors := make(map[string][]Head)
	for _, a := range opts.Anchors {
		anchors[a.Instance] = append(anchors[a.Instance], a)
	}
	anchorSeen := make(map[string]bool, len(anchors))
	rep := &Report{Problems: []Problem{}}
	total := distinct(opts.IDs)
	progress := func(current string) {
		if opts.Progress != nil {
			opts.Progress(Progress{Phase: "verify", Instances: rep.Instances, Total: total, Messages: rep.Messages, Bytes: rep.Bytes, Problems: len(rep.Problems), Instance: current})
		}
	}
	for i, d := range opts.Digests {
		if err := d.Check(""); err != nil {
			return rep, fmt.Errorf("audit: verify: digest %d: %w", i+1, err)
		}
	}
	dc := newDigestChecker(opts.Digests)
	errFull := errors.New("audit: problem limit reached")
	var err error
	if sc, ok := src.(Scanner); ok && len(opts.IDs) == 0 {
		err = verifyScan(ctx, sc, opts, anchors, anchorSeen, rep, errFull, dc)
		if err == errRescan {
			*rep = Report{Problems: []Problem{}}
			clear(anchorSeen)
			dc.reset()
			err = verifyInstances(ctx, src, opts, anchors, anchorSeen, rep, progress, errFull, dc)
		}
	} else {
		err = verifyInstances(ctx, src, opts, anchors, anchorSeen, rep, progress, errFull, dc)
	}
	if err == nil {
		if derr := finishDigests(ctx, src, dc, opts.IDs, rep); derr != nil {
			return rep, fmt.Errorf("audit: verify: %w", derr)
		}
	}
	if err == nil || err == errFull {
		// The log's own settings, read once its messages are.
		if serr := streamProblems(ctx, src, rep); serr != nil {
			return rep, fmt.Errorf("audit: verify: %w", serr)
		}
	}
	if err == errFull {
		rep.Incomplete = true
		if len(rep.Problems) > opts.MaxProblems {
			rep.Problems = rep.Problems[:opts.MaxProblems]
		}
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	if len(opts.IDs) == 0 {
		// Anchored instances the source did not list have lost their
		// whole history.
		for _, a := range opts.Anchors {
			if !anchorSeen[a.Instance] {
				rep.Damaged++
				rep.Problems = append(rep.Problems, anchorMissing(a, 0, "the instance has no history"))
				anchorSeen[a.Instance] = true
			}
		}
	}
	return rep, nil
}

// streamProblems puts the problems of src's own settings, if it is a
// [StreamChecker], before the instances' problems.
func streamProblems(ctx context.Context, src Source, rep *Report) error {
	sc, ok := src.(StreamChecker)
	if !ok {
		return nil
	}
	ds, err := sc.StreamProblems(ctx)
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		return nil
	}
	ps := make([]Problem, 0, len(ds)+len(rep.Problems))
	for _, d := range ds {
		ps = append(ps, Problem{Kind: KindStream, Detail: d + ": history can be lost or rewritten behind runlog's back; fix the stream's configuration (runlog never changes an existing stream)"})
	}
	rep.Problems = append(ps, rep.Problems...)
	return nil
}

// verifyInstances verifies the instances of opts.IDs, or every instance
// of src, one after the other, each with one read.
func verifyInstances(ctx context.Context, src Source, opts VerifyOptions, anchors map[string][]Head, anchorSeen map[string]bool, rep *Report, progress func(string), errFull error, dc *digestChecker) error {
	return instanceIDs(ctx, src, opts.IDs, opts.PageSize, func(id string) error {
		if _, ok := anchors[id]; ok {
			anchorSeen[id] = true
		}
		v := newInstVerifier(id, anchors[id], 0)
		if err := v.loadCheckpoint(ctx, opts.Checkpoints); err != nil {
			return err
		}
		room := -1
		if opts.MaxProblems > 0 {
			room = opts.MaxProblems - len(rep.Problems)
		}
		stopped := false
		for m, err := range src.Read(ctx, id, 0) {
			if err != nil {
				return fmt.Errorf("read %q: %w", id, err)
			}
			v.add(m)
			dc.observe(id, m.Seq, v.lastHash)
			if v.messages%progressEvery == 0 {
				progress(id)
			}
			if room >= 0 && len(v.ps.ps) >= room {
				stopped = true
				break
			}
		}
		rep.addInstance(v, opts.Heads)
		progress(id)
		if stopped || opts.MaxProblems > 0 && len(rep.Problems) >= opts.MaxProblems {
			return errFull
		}
		return nil
	})
}

// addInstance finishes v and adds its figures and problems to r, and its
// head if heads is set.
func (r *Report) addInstance(v *instVerifier, heads bool) {
	v.finish()
	r.Instances++
	r.Messages += v.messages
	r.Events += v.events
	r.Bytes += v.bytes
	if len(v.ps.ps) > 0 {
		r.Damaged++
		r.Problems = append(r.Problems, v.ps.ps...)
	}
	if heads && v.messages > 0 {
		r.Heads = append(r.Heads, Head{Instance: v.id, Seq: v.lastSeq, Hash: v.lastHash, Messages: v.messages, Time: v.lastTime})
	}
}

// errRescan asks Verify to start again instance by instance: a one-pass
// verification found an instance with more messages than it was told.
var errRescan = errors.New("audit: verify again instance by instance")

// finishedCount marks, in verifyScan's counts, an instance already
// finished.
const finishedCount = ^uint64(0)

// verifyScan verifies every instance of sc in one pass over the log: each
// message goes to its instance's verifier as it arrives. The messages
// each instance has are asked for once the scan has begun, and an
// instance is finished as soon as its last message is read: memory then
// holds only the instances whose histories are still being read. An
// instance the counts do not name (created after them) is finished at the
// end. Problems
// and heads are put in the order of the instance ids, as the instance by
// instance path lists them. Messages that belong to no instance are
// counted in Report.Skipped.
func verifyScan(ctx context.Context, sc Scanner, opts VerifyOptions, anchors map[string][]Head, anchorSeen map[string]bool, rep *Report, errFull error, dc *digestChecker) error {
	var counts map[string]uint64 // nil until asked
	vs := make(map[string]*instVerifier)
	var messages, bytes, problems int
	progress := func(current string) {
		if opts.Progress != nil {
			opts.Progress(Progress{Phase: "verify", Instances: rep.Instances, Total: len(counts), Messages: messages, Bytes: bytes, Problems: problems, Instance: current})
		}
	}
	finish := func(v *instVerifier) {
		if _, ok := anchors[v.id]; ok {
			anchorSeen[v.id] = true
		}
		before := len(v.ps.ps)
		rep.addInstance(v, opts.Heads)
		problems += len(v.ps.ps) - before
		delete(vs, v.id)
		progress(v.id)
	}
	full := false
	for m, err := range sc.Scan(ctx, 0) {
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if counts == nil {
			// Asked once the scan has begun, the counts include every
			// message the scan will read (and perhaps later ones).
			if counts, err = sc.InstanceCounts(ctx); err != nil {
				return fmt.Errorf("count the messages of each instance: %w", err)
			}
		}
		if m.InstanceErr != nil {
			rep.Skipped++
			dc.observe("", m.Seq, workflow.Hash32{})
			continue
		}
		v := vs[m.Instance]
		if v == nil {
			if counts != nil && counts[m.Instance] == finishedCount {
				// More messages than counted (some were deleted while
				// counting): the finished report may be wrong.
				return errRescan
			}
			v = newInstVerifier(m.Instance, anchors[m.Instance], counts[m.Instance])
			if err := v.loadCheckpoint(ctx, opts.Checkpoints); err != nil {
				return err
			}
			vs[m.Instance] = v
		}
		before := len(v.ps.ps)
		v.add(m.Message)
		dc.observe(m.Instance, m.Seq, v.lastHash)
		problems += len(v.ps.ps) - before
		messages++
		bytes += len(m.Data)
		if counts != nil && uint64(v.messages) == counts[m.Instance] {
			counts[m.Instance] = finishedCount
			finish(v)
		}
		if messages%progressEvery == 0 {
			progress(m.Instance)
		}
		if opts.MaxProblems > 0 && problems >= opts.MaxProblems {
			full = true
			rep.ReadThrough = m.Seq
			break
		}
	}
	for _, id := range slices.Sorted(maps.Keys(vs)) {
		finish(vs[id])
	}
	// Instances finished early came in the order of their last messages.
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return strings.Compare(a.Instance, b.Instance) })
	slices.SortFunc(rep.Heads, func(a, b Head) int { return strings.Compare(a.Instance, b.Instance) })
	if full || opts.MaxProblems > 0 && len(rep.Problems) >= opts.MaxProblems {
		return errFull
	}
	return nil
}

// anchorMissing reports an anchored head the history lacks, at seq, the
// sequence of the instance's last message (0 if it has none): what the
// anchor vouched for is missing after it.
func anchorMissing(a Head, seq uint64, why string) Problem {
	at := ""
	if !a.Time.IsZero() {
		at = ", stored " + timeText(a.Time)
	}
	return Problem{Instance: a.Instance, Seq: seq, Through: seq, Kind: KindAnchor,
		Detail: fmt.Sprintf("the anchored head %s (seq %d, message %d%s) is not in the history: %s; it was truncated or rewritten after the head was recorded", short(a.Hash), a.Seq, a.Messages, at, why)}
}

// windowCap bounds the hashes a commit's prev may match after a run of
// messages that are not commits of the instance.
const windowCap = 64

// instVerifier checks one instance's messages as they are read, and the
// links of its hash chain once all are read.
type instVerifier struct {
	id   string
	ps   problemList
	fold folder
	ids  idSet
	runs map[ulid.ULID]uint64

	// hashes maps the hash of every message read (its hashKey) to the
	// sequence of its first occurrence: it tells where a broken link's
	// prev points, and which messages are exact copies.
	hashes map[uint64]uint64
	// anchors are the instance's anchored heads, and anchored which of
	// them were found (compared on the whole hash).
	anchors  []Head
	anchored []bool
	// window holds the hashes the next commit's prev may equal: that of
	// the last commit of the instance (zero before the first) and those
	// of the messages read since that are not commits of the instance
	// (inserted garbage, or a newer schema's commit that later commits
	// chain to).
	window  []workflow.Hash32
	members int       // commits of the instance read
	bad     []badLink // links that are not in the window
	garbage streak    // consecutive messages that are not commits of the instance

	// cp is the instance's projection checkpoint (VerifyOptions.Checkpoints),
	// cpChecked whether its sequence was reached.
	cp        *projection.State
	cpChecked bool

	messages, events, bytes int
	lastSeq                 uint64
	lastHash                workflow.Hash32
	lastTime                time.Time
}

// badLink is a commit whose prev matched no hash of the window.
type badLink struct {
	member int             // index of the commit among the instance's commits
	seq    uint64          // its sequence
	prev   workflow.Hash32 // its prev
	before uint64          // sequence of the message read just before it; 0 for none
}

// newInstVerifier returns the verifier of instance id; messages, when
// known, is how many the instance has (its sets are sized for them once,
// instead of growing as they are read).
func newInstVerifier(id string, anchors []Head, messages uint64) *instVerifier {
	n := int(min(messages, maxPresized))
	return &instVerifier{id: id, fold: newFolder(id), ids: newIDSet(n), runs: make(map[ulid.ULID]uint64),
		hashes: make(map[uint64]uint64, n), window: []workflow.Hash32{{}}, anchors: anchors, anchored: make([]bool, len(anchors))}
}

// maxPresized bounds the messages an instance's sets are sized for up
// front (a count is only a hint: messages deleted since are not read).
const maxPresized = 1 << 20

// hashKey is the key of a message hash in instVerifier.hashes: its first
// 64 bits. Two different messages of one instance share a key with a
// probability of about n²/2^65 for n messages (1 in 37 million at a
// million messages): the map costs 16 bytes per message instead of 40.
// What a shared key can do is only to describe a problem found anyway
// differently (a copy, a reordering); anchors are compared on the whole
// hash.
func hashKey(h workflow.Hash32) uint64 { return binary.BigEndian.Uint64(h[:8]) }

func (v *instVerifier) problem(seq uint64, kind ProblemKind, detail string) Problem {
	return Problem{Instance: v.id, Seq: seq, Through: seq, Kind: kind, Detail: detail}
}

func (v *instVerifier) add(m events.Message) {
	before := v.lastSeq
	h := workflow.Sha256(m.Data)
	v.messages++
	v.bytes += len(m.Data)
	v.lastSeq, v.lastHash, v.lastTime = m.Seq, h, m.Time

	if d := reservedDetail(m.Header); d != "" {
		v.ps.add(v.problem(m.Seq, KindHeader, d))
	}
	for i := range v.anchors {
		if v.anchors[i].Hash == h {
			v.anchored[i] = true
		}
	}
	if at, dup := v.hashes[hashKey(h)]; dup {
		v.garbage.add(&v.ps, v.problem(m.Seq, KindDuplicate, fmt.Sprintf("an exact copy of the message at seq %d", at)), "are copies of earlier messages too")
		v.pushWindow(h)
		return
	}
	v.hashes[hashKey(h)] = m.Seq
	step := v.fold.step(m, h)
	if step.kind != "" {
		v.garbage.add(&v.ps, v.problem(m.Seq, step.kind, step.detail), "have the same kind of problem")
		v.pushWindow(h)
		return
	}
	v.garbage.close()

	rec := step.rec
	c := &rec.Commit
	v.events += len(c.Events)
	if !v.inWindow(c.Prev) {
		v.bad = append(v.bad, badLink{member: v.members, seq: m.Seq, prev: c.Prev, before: before})
	}
	v.members++
	v.window = append(v.window[:0], h)

	if d := v.ids.add(rec); d != "" {
		v.ps.add(v.problem(m.Seq, KindDuplicate, d))
	}
	runReused := checkRuns(rec, v.runs)
	if runReused != "" {
		v.ps.add(v.problem(m.Seq, KindRun, runReused))
	}
	if d := checkHeaders(m, rec); d != "" {
		v.ps.add(v.problem(m.Seq, KindHeader, d))
	}
	v.fold.report(step.refused, &v.ps, m.Seq, 0, runReused != "")
	if v.cp != nil && m.Seq == v.cp.LastSeq {
		v.checkCheckpoint(h)
	}
}

// loadCheckpoint reads the instance's projection checkpoint, if cps is
// set and it has one. A checkpoint that does not decode is a problem; a
// store that cannot be read is an error.
func (v *instVerifier) loadCheckpoint(ctx context.Context, cps lifecycle.Checkpoints) error {
	if cps == nil {
		return nil
	}
	data, ok, err := cps.LoadCheckpoint(ctx, v.id)
	if err != nil {
		return fmt.Errorf("read the projection checkpoint of %q: %w", v.id, err)
	}
	if !ok {
		return nil
	}
	cp, err := projection.UnmarshalCheckpoint(v.id, data)
	if errors.Is(err, projection.ErrCheckpointVersion) {
		return nil // written by another runlog: stores ignore it and write their own
	}
	if err != nil {
		v.ps.add(v.problem(0, KindCheckpoint, fmt.Sprintf("the projection checkpoint does not decode: %v (stores ignore it and fold the history)", err)))
		return nil
	}
	v.cp = &cp
	return nil
}

// checkCheckpoint compares the checkpoint with the fold as of its
// sequence, the message there having hash h.
func (v *instVerifier) checkCheckpoint(h workflow.Hash32) {
	v.cpChecked = true
	if h != v.cp.Head {
		v.ps.add(v.problem(v.cp.LastSeq, KindCheckpoint, fmt.Sprintf("the projection checkpoint names head %s, the message at seq %d has hash %s (stores ignore it and fold the history)", short(v.cp.Head), v.cp.LastSeq, short(h))))
		return
	}
	want, err1 := v.fold.st.MarshalCheckpoint()
	got, err2 := v.cp.MarshalCheckpoint()
	if err1 != nil || err2 != nil || !bytes.Equal(want, got) {
		v.ps.add(v.problem(v.cp.LastSeq, KindCheckpoint, fmt.Sprintf("the projection checkpoint at seq %d is not the fold of the history up to there, though its head matches: it was altered, and stores starting from it would act on a false state (delete it: it is derived data)", v.cp.LastSeq)))
	}
}

func (v *instVerifier) inWindow(h workflow.Hash32) bool {
	for _, w := range v.window {
		if w == h {
			return true
		}
	}
	return false
}

func (v *instVerifier) pushWindow(h workflow.Hash32) {
	if len(v.window) >= windowCap {
		v.window = append(v.window[:1], v.window[2:]...)
	}
	v.window = append(v.window, h)
}

// finish analyses the broken links, checks the anchors and sorts the
// problems.
func (v *instVerifier) finish() {
	if v.messages == 0 {
		if len(v.anchors) == 0 {
			v.ps.add(v.problem(0, KindEmpty, "the instance has no history"))
		}
		for _, a := range v.anchors {
			v.ps.add(anchorMissing(a, 0, "the instance has no history"))
		}
		return
	}
	// Consecutive broken links (consecutive commits) are one problem: a
	// swap of two commits breaks three links, a moved one two or three.
	for i := 0; i < len(v.bad); {
		j := i + 1
		for j < len(v.bad) && v.bad[j].member == v.bad[j-1].member+1 {
			j++
		}
		v.ps.add(v.linkProblem(v.bad[i:j]))
		i = j
	}
	if v.cp != nil && !v.cpChecked {
		v.ps.add(v.problem(v.cp.LastSeq, KindCheckpoint, fmt.Sprintf("the projection checkpoint is of seq %d, where the history has no message of the instance (stores ignore it and fold the history)", v.cp.LastSeq)))
	}
	for i, a := range v.anchors {
		if !v.anchored[i] {
			v.ps.add(anchorMissing(a, v.lastSeq, fmt.Sprintf("the history has %d messages, the last at seq %d", v.messages, v.lastSeq)))
		}
	}
	sortProblems(v.ps.ps)
}

// maxListed bounds the links a chain problem describes one by one.
const maxListed = 8

// linkProblem describes a group of consecutive broken links.
func (v *instVerifier) linkProblem(group []badLink) Problem {
	kind := KindChain
	descs := make([]string, 0, min(len(group), maxListed))
	for i, b := range group {
		at, found := v.hashes[hashKey(b.prev)]
		if found {
			kind = KindReordered
		}
		if i >= maxListed {
			continue
		}
		var d string
		switch {
		case found && at < b.seq:
			d = fmt.Sprintf("seq %d: prev names the earlier commit at seq %d, not the message just before it (seq %d)", b.seq, at, b.before)
		case found:
			d = fmt.Sprintf("seq %d: prev names the later commit at seq %d", b.seq, at)
		case b.prev.IsZero():
			d = fmt.Sprintf("seq %d: prev is empty, as if a new history started there (written behind runlog's back, or two histories joined)", b.seq)
		case b.member == 0:
			d = fmt.Sprintf("seq %d: the instance's first commit has prev %s, a commit that is not in the history: its start was removed, or only part of a history was copied here", b.seq, short(b.prev))
		default:
			d = fmt.Sprintf("seq %d: prev %s is the hash of no message of the instance: the message before it (seq %d) was altered, or messages between seq %d and seq %d were removed", b.seq, short(b.prev), b.before, b.before, b.seq)
		}
		descs = append(descs, d)
	}
	first, last := group[0], group[len(group)-1]
	p := v.problem(first.seq, kind, "")
	p.Through = last.seq
	if _, found := v.hashes[hashKey(first.prev)]; !found && kind == KindChain && first.member > 0 && !first.prev.IsZero() && first.before > 0 {
		// The damage lies between the message before and this one.
		p.Seq = first.before
	}
	var b strings.Builder
	if len(group) == 1 {
		b.WriteString("broken link at ")
	} else {
		fmt.Fprintf(&b, "%d consecutive broken links: ", len(group))
	}
	b.WriteString(strings.Join(descs, "; "))
	if len(group) > maxListed {
		fmt.Fprintf(&b, "; and %d more through seq %d", len(group)-maxListed, last.seq)
	}
	if kind == KindReordered {
		b.WriteString(" (commits stored out of their chain order, or a second branch written from an old head)")
	}
	p.Detail = b.String()
	return p
}
