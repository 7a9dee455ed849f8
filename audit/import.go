package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// ErrUnverified is matched by the error [Import] returns when the file
// does not verify; nothing was written. See [*UnverifiedError].
var ErrUnverified = errors.New("audit: import refused: the file does not verify")

// ErrConflict is matched by the error [Import] returns when the
// destination already holds, for an instance of the file, a history that
// is not a prefix of the file's; nothing was written. See
// [*ConflictError].
var ErrConflict = errors.New("audit: import refused: the destination holds another history")

// UnverifiedError lists the first problems found in an import file, with
// their line numbers. It matches [ErrUnverified].
type UnverifiedError struct {
	Problems []Problem // the first problems, in file order
	Total    int       // problems found in all
}

// Error lists the problems, one per line.
func (e *UnverifiedError) Error() string {
	return listError("audit: import refused, nothing written: the file does not verify", e.Problems, e.Total)
}

// Is reports whether target is [ErrUnverified].
func (e *UnverifiedError) Is(target error) bool { return target == ErrUnverified }

// ConflictError lists the instances whose history in the destination is
// not a prefix of the file's. It matches [ErrConflict].
type ConflictError struct {
	Problems []Problem // one per instance ([KindConflict]), the first ones in file order
	Total    int       // conflicting instances in all
}

// Error lists the conflicting instances, one per line.
func (e *ConflictError) Error() string {
	return listError("audit: import refused, nothing written: the destination already holds another history", e.Problems, e.Total)
}

// Is reports whether target is [ErrConflict].
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func listError(head string, ps []Problem, total int) string {
	var b strings.Builder
	b.WriteString(head)
	fmt.Fprintf(&b, " (%d problem", total)
	if total != 1 {
		b.WriteString("s")
	}
	b.WriteString(")")
	for _, p := range ps {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	if total > len(ps) {
		fmt.Fprintf(&b, "\n  ... and %d more", total-len(ps))
	}
	return b.String()
}

// ImportOptions configures [Import]. The zero value is valid.
type ImportOptions struct {
	// TempDir is where an input that cannot be read twice (a pipe, a
	// network stream) is copied during the first pass, for the second; ""
	// means os.TempDir(). The copy is removed when Import returns. A
	// seekable input (a regular *os.File, a *bytes.Reader) is read twice
	// instead.
	TempDir string
	// MaxProblems is the number of problems listed in the error; 0 means
	// 20. All are counted.
	MaxProblems int
	// MaxLineBytes bounds one line of the file; 0 means 96 MiB, enough
	// for the largest message JetStream holds (64 MiB) in base64.
	MaxLineBytes int
	// Progress, if set, is called every few thousand lines of each pass
	// (Phase "check", then "write") and, while writing, as each instance
	// is done, on Import's goroutine.
	Progress func(Progress)
}

// ImportStats counts what [Import] read and wrote.
type ImportStats struct {
	Lines     int `json:"lines"`     // lines read in the first pass
	Instances int `json:"instances"` // instances in the file
	Messages  int `json:"messages"`  // messages in the file
	Appended  int `json:"appended"`  // messages written to the destination
	Present   int `json:"present"`   // messages the destination already held, not written again
	Unchanged int `json:"unchanged"` // instances the destination already held in full
}

// importInstance is what Import keeps per instance of the file: the
// projection (for the fold checks), the chain head, counts, and what the
// destination already holds.
type importInstance struct {
	id        string
	fold      folder
	runs      map[ulid.ULID]uint64
	lines     map[uint64]int  // hashKey of a line's hash → the line (exact copies)
	head      workflow.Hash32 // hash of the last line read (first pass)
	count     int             // lines of the instance (first pass)
	firstLine int
	prevLine  int
	lost      bool // the last line could not be parsed: its hash is unknown

	dstCount int             // messages the destination holds
	dstHead  workflow.Hash32 // hash of its last one
	dstLast  uint64          // sequence of its last one
	dstBad   string          // why the destination's history cannot be matched
	fileAt   workflow.Hash32 // hash of the file's line number dstCount of the instance

	// Second pass.
	seen    int
	head2   workflow.Hash32
	expect  uint64
	pending *events.Message // read, waiting for the next line's prev to vouch for it
}

// Import reads an export (see the package documentation for the format)
// and appends its messages to dst, keeping their Msg-Ids, headers and
// payload bytes, hence event ids, order and hash chain; only the stream
// sequences and stored times are the destination's own.
//
// It reads the input twice. The first pass writes nothing: it checks
// every line (format, decoding, the hash chain of each instance, the
// projection's fold, run ids, header consistency, commit ids unique in
// the whole file) and reads the destination's history of every instance
// of the file. If any problem is found, Import returns an
// [*UnverifiedError] (matching [ErrUnverified]) that lists the first
// problems with their line numbers. If the destination holds, for an
// instance, messages that are not the first messages of the file's
// history of it, Import returns a [*ConflictError] (matching
// [ErrConflict]) naming the instances. In both cases nothing is written.
//
// The second pass appends, instance by instance, the messages the
// destination does not hold yet, each with the sequence check of
// [lifecycle.Log.Append] (the destination's last sequence for the
// instance): an instance the destination already holds in full is
// skipped, and one it holds in part is completed. So re-importing a file
// is a no-op, and an import that stopped half-way (a lost connection) is
// finished by running it again. A message is appended only after the next
// line of its instance (or, for the last, the head found by the first
// pass) vouches for its bytes, so an input changed between the passes
// stops the import before anything unverified is written.
//
// Memory grows with the number of instances in the file (the projected
// state and a few hundred bytes per instance) and with the number of
// commits (an id set, about 50 bytes per commit), not with payload sizes
// beyond one line.
//
// The chain proves that a history is intact, not who wrote it: a file
// rewritten with recomputed hashes verifies. Compare the heads with
// anchors kept elsewhere ([VerifyOptions.Anchors]) to authenticate it.
func Import(ctx context.Context, r io.Reader, dst lifecycle.Log, opts ImportOptions) (ImportStats, error) {
	var st ImportStats
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = 20
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = 96 << 20
	}

	// Arrange to read the input a second time.
	var (
		first  = r
		second func() (io.Reader, error)
	)
	if s, ok := r.(io.Seeker); ok {
		if start, err := s.Seek(0, io.SeekCurrent); err == nil {
			second = func() (io.Reader, error) {
				_, err := s.Seek(start, io.SeekStart)
				return r, err
			}
		}
	}
	if second == nil {
		spool, err := os.CreateTemp(opts.TempDir, "runlog-import-*.ndjson")
		if err != nil {
			return st, fmt.Errorf("audit: import: spool the input: %w", err)
		}
		defer func() {
			spool.Close()
			os.Remove(spool.Name())
		}()
		first = io.TeeReader(r, spool)
		second = func() (io.Reader, error) {
			_, err := spool.Seek(0, io.SeekStart)
			return spool, err
		}
	}

	insts, order, err := importCheck(ctx, first, dst, opts, &st)
	if err != nil {
		return st, err
	}
	in, err := second()
	if err != nil {
		return st, fmt.Errorf("audit: import: rewind the input: %w", err)
	}
	if err := importWrite(ctx, in, dst, opts, insts, order, &st); err != nil {
		return st, fmt.Errorf("audit: import stopped after appending %d messages (run it again to finish: what was written is kept and completed): %w", st.Appended, err)
	}
	return st, nil
}

// lineReader yields the lines of an export with their 1-based numbers,
// skipping blank lines.
type lineReader struct {
	sc   *bufio.Scanner
	line int
}

func newLineReader(r io.Reader, max int) *lineReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, max)), max)
	return &lineReader{sc: sc}
}

func (lr *lineReader) next() ([]byte, bool) {
	for lr.sc.Scan() {
		lr.line++
		b := lr.sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		return b, true
	}
	return nil, false
}

// parseHeader checks the first line.
func parseHeader(b []byte) error {
	var h fileHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("not a runlog export: the first line is not its header: %v", err)
	}
	switch {
	case h.Version == 0:
		return errors.New(`not a runlog export: the first line has no "runlog_export" version`)
	case h.Version > ExportVersion:
		return fmt.Errorf("export format version %d is newer than this reader's %d: upgrade runlog", h.Version, ExportVersion)
	}
	return nil
}

// parseLine decodes a message line and returns it with its payload.
func parseLine(b []byte) (fileLine, []byte, error) {
	var ln fileLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ln); err != nil {
		return ln, nil, fmt.Errorf("not an export line: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ln, nil, errors.New("not an export line: data after the JSON object")
	}
	if err := workflow.ValidateInstanceID(ln.Instance); err != nil {
		return ln, nil, err
	}
	switch {
	case ln.Data != nil && ln.DataB64 != nil:
		return ln, nil, errors.New(`the line has both "data" and "data_b64"`)
	case ln.Data != nil:
		return ln, []byte(ln.Data), nil
	case ln.DataB64 != nil:
		return ln, *ln.DataB64, nil
	}
	return ln, nil, errors.New(`the line has neither "data" nor "data_b64"`)
}

// importCheck is the first pass: it verifies the file and compares it
// with the destination, writing nothing.
func importCheck(ctx context.Context, r io.Reader, dst lifecycle.Log, opts ImportOptions, st *ImportStats) (map[string]*importInstance, []*importInstance, error) {
	checkBytes := 0
	lr := newLineReader(r, opts.MaxLineBytes)
	ps := problemList{limit: opts.MaxProblems}
	unverified := func() error {
		return &UnverifiedError{Problems: ps.ps, Total: ps.total()}
	}
	readErr := func(err error) error {
		if errors.Is(err, bufio.ErrTooLong) {
			ps.add(Problem{Line: lr.line + 1, Kind: KindFormat, Detail: fmt.Sprintf("line longer than %d bytes (ImportOptions.MaxLineBytes)", opts.MaxLineBytes)})
			return unverified()
		}
		return fmt.Errorf("audit: import: read line %d: %w", lr.line+1, err)
	}
	b, ok := lr.next()
	if !ok {
		if err := lr.sc.Err(); err != nil {
			return nil, nil, readErr(err)
		}
		ps.add(Problem{Line: 1, Kind: KindFormat, Detail: "not a runlog export: the input is empty"})
		return nil, nil, unverified()
	}
	if err := parseHeader(b); err != nil {
		ps.add(Problem{Line: lr.line, Kind: KindFormat, Detail: err.Error()})
		return nil, nil, unverified()
	}

	insts := make(map[string]*importInstance)
	var order []*importInstance
	commitIDs := make(map[ulid.ULID]int) // commit id → its line, across the file
	for {
		b, ok := lr.next()
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("audit: import: %w", err)
		}
		line := lr.line
		ln, data, perr := parseLine(b)
		var in *importInstance
		if workflow.ValidateInstanceID(ln.Instance) == nil {
			in = insts[ln.Instance]
			if in == nil {
				in = &importInstance{id: ln.Instance, fold: newFolder(ln.Instance), runs: make(map[ulid.ULID]uint64), lines: make(map[uint64]int), firstLine: line}
				if err := readDestination(ctx, dst, in); err != nil {
					return nil, nil, err
				}
				insts[ln.Instance] = in
				order = append(order, in)
			}
		}
		if perr != nil {
			ps.add(Problem{Instance: ln.Instance, Seq: ln.Seq, Through: ln.Seq, Line: line, Kind: KindFormat, Detail: perr.Error()})
			if in != nil {
				// The line counts for its instance, but its hash is
				// unknown: the next line's link is not judged.
				in.count++
				in.lost = true
				in.prevLine = line
			}
			continue
		}
		st.Messages++
		problem := func(kind ProblemKind, detail string) Problem {
			return Problem{Instance: ln.Instance, Seq: ln.Seq, Through: ln.Seq, Line: line, Kind: kind, Detail: detail}
		}
		// The line number stands for the sequence while checking: it
		// increases, whatever the source stream's sequences were.
		m := events.Message{Seq: uint64(line), Time: ln.Time, MsgID: ln.MsgID, Header: ln.Headers, Data: data}
		if d := reservedDetail(ln.Headers); d != "" {
			// Refused whatever else the line holds: the destination
			// would store the forged header.
			ps.add(problem(KindHeader, d))
		}
		h := workflow.Sha256(data)
		if at, dup := in.lines[hashKey(h)]; dup {
			// An exact copy: one problem, and the copy is neither folded
			// nor part of the chain.
			ps.add(problem(KindDuplicate, fmt.Sprintf("an exact copy of line %d", at)))
			continue
		}
		in.lines[hashKey(h)] = line
		step := in.fold.step(m, h)
		if step.kind != "" {
			ps.add(problem(step.kind, step.detail))
		} else {
			rec := step.rec
			c := &rec.Commit
			if c.Prev != in.head && !in.lost {
				ps.add(problem(KindChain, importLinkDetail(in, c.Prev)))
			}
			if at, dup := commitIDs[c.ID]; dup {
				ps.add(problem(KindDuplicate, fmt.Sprintf("commit id %s is also on line %d", c.ID, at)))
			} else {
				commitIDs[c.ID] = line
			}
			runReused := checkRuns(rec, in.runs)
			if runReused != "" {
				ps.add(problem(KindRun, runReused))
			}
			if d := checkHeaders(m, rec); d != "" {
				ps.add(problem(KindHeader, d))
			}
			in.fold.report(step.refused, &ps, ln.Seq, line, runReused != "")
		}
		in.head = h
		in.lost = false
		in.count++
		in.prevLine = line
		if in.count == in.dstCount {
			in.fileAt = h
		}
		checkBytes += len(data)
		if opts.Progress != nil && st.Messages%progressEvery == 0 {
			opts.Progress(Progress{Phase: "check", Instances: len(insts), Messages: st.Messages, Bytes: checkBytes, Problems: ps.total(), Instance: ln.Instance})
		}
	}
	st.Lines = lr.line
	if err := lr.sc.Err(); err != nil {
		return nil, nil, readErr(err)
	}
	st.Instances = len(insts)
	if ps.total() > 0 {
		return nil, nil, unverified()
	}

	conflicts := problemList{limit: opts.MaxProblems}
	for _, in := range order {
		if in.dstCount == 0 {
			continue
		}
		var why string
		switch {
		case in.dstBad != "":
			why = "its history there does not verify: " + in.dstBad
		case in.dstCount > in.count:
			why = fmt.Sprintf("the destination holds %d messages of it, the file only %d", in.dstCount, in.count)
		case in.fileAt != in.dstHead:
			why = fmt.Sprintf("the destination's message %d of it (seq %d, hash %s) is not the file's (hash %s)", in.dstCount, in.dstLast, short(in.dstHead), short(in.fileAt))
		default:
			continue
		}
		conflicts.add(Problem{Instance: in.id, Line: in.firstLine, Kind: KindConflict, Detail: why})
	}
	if conflicts.total() > 0 {
		return nil, nil, &ConflictError{Problems: conflicts.ps, Total: conflicts.total()}
	}
	if opts.Progress != nil {
		opts.Progress(Progress{Phase: "check", Instances: len(insts), Total: len(insts), Messages: st.Messages})
	}
	return insts, order, nil
}

func importLinkDetail(in *importInstance, prev workflow.Hash32) string {
	switch {
	case in.count == 0:
		return fmt.Sprintf("the instance's first line has prev %s: the file does not hold the start of its history", short(prev))
	case prev.IsZero():
		return fmt.Sprintf("prev is empty, as if a new history started here; the instance's previous line is line %d", in.prevLine)
	}
	return fmt.Sprintf("broken link: prev %s is not the hash of the instance's previous line (line %d, hash %s): a line was edited, removed or moved", short(prev), in.prevLine, short(in.head))
}

// readDestination reads what dst holds for the instance: how many
// messages, the last one's hash and sequence, and whether its chain holds.
func readDestination(ctx context.Context, dst lifecycle.Log, in *importInstance) error {
	var head workflow.Hash32
	for m, err := range dst.Read(ctx, in.id, 0) {
		if err != nil {
			return fmt.Errorf("audit: import: read the destination's history of %q: %w", in.id, err)
		}
		in.dstCount++
		in.dstLast = m.Seq
		if in.dstBad != "" {
			continue
		}
		rec, err := events.Decode(m, in.id)
		switch {
		case err != nil:
			in.dstBad = fmt.Sprintf("seq %d: %s", m.Seq, decodeDetail(err))
		case rec.Commit.Prev != head:
			in.dstBad = fmt.Sprintf("seq %d: broken hash chain", m.Seq)
		}
		head = workflow.Sha256(m.Data)
	}
	in.dstHead = head
	return nil
}

// errChanged reports an input that differs from what the first pass read.
var errChanged = errors.New("the input changed since it was verified")

// importWrite is the second pass: it appends what the destination lacks.
func importWrite(ctx context.Context, r io.Reader, dst lifecycle.Log, opts ImportOptions, insts map[string]*importInstance, order []*importInstance, st *ImportStats) error {
	for _, in := range order {
		in.expect = in.dstLast
		if in.dstCount == in.count {
			st.Unchanged++
		}
	}
	lr := newLineReader(r, opts.MaxLineBytes)
	if b, ok := lr.next(); !ok || parseHeader(b) != nil {
		return errChanged
	}
	done, finished, written := 0, 0, 0
	for {
		b, ok := lr.next()
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		line := lr.line
		ln, data, err := parseLine(b)
		in := insts[ln.Instance]
		written += len(data)
		if err != nil || in == nil {
			return fmt.Errorf("line %d: %w", line, errChanged)
		}
		m := events.Message{MsgID: ln.MsgID, Header: importHeaders(ln.Headers), Data: data}
		rec, err := events.Decode(m, in.id)
		if err != nil || rec.Commit.Prev != in.head2 || in.seen >= in.count {
			return fmt.Errorf("line %d: %w", line, errChanged)
		}
		h := workflow.Sha256(data)
		in.head2 = h
		in.seen++
		if in.seen <= in.dstCount {
			if in.seen == in.dstCount && h != in.dstHead {
				return fmt.Errorf("line %d: %w", line, errChanged)
			}
			st.Present++
			if in.seen == in.count {
				finished++ // wholly present already
			}
			continue
		}
		// This line's prev vouches for the pending message's bytes.
		if in.pending != nil {
			if err := importAppend(ctx, dst, in, st); err != nil {
				return err
			}
		}
		in.pending = &m
		if in.seen == in.count {
			if h != in.head {
				return fmt.Errorf("line %d: %w", line, errChanged)
			}
			if err := importAppend(ctx, dst, in, st); err != nil {
				return err
			}
			finished++
		}
		done++
		if opts.Progress != nil && (done%progressEvery == 0 || in.seen == in.count) {
			opts.Progress(Progress{Phase: "write", Instances: finished, Total: len(insts), Messages: st.Appended, Bytes: written, Instance: in.id})
		}
	}
	if err := lr.sc.Err(); err != nil {
		return fmt.Errorf("read line %d: %w", lr.line+1, err)
	}
	for _, in := range order {
		if in.seen != in.count || in.pending != nil {
			return fmt.Errorf("instance %q: %w (lines missing)", in.id, errChanged)
		}
	}
	if opts.Progress != nil {
		opts.Progress(Progress{Phase: "write", Instances: len(insts), Total: len(insts), Messages: st.Appended, Bytes: written})
	}
	return nil
}

// importAppend appends the instance's pending message.
func importAppend(ctx context.Context, dst lifecycle.Log, in *importInstance, st *ImportStats) error {
	seq, err := dst.Append(ctx, in.id, *in.pending, in.expect)
	if err != nil {
		return fmt.Errorf("append to %q: %w", in.id, err)
	}
	if seq <= in.expect {
		return fmt.Errorf("append to %q: the destination did not store message %s (it answered with sequence %d, its last being %d: a duplicate Msg-Id)", in.id, in.pending.MsgID, seq, in.expect)
	}
	in.expect = seq
	in.pending = nil
	st.Appended++
	return nil
}

// importHeaders returns the headers to append with, without the publish
// checks of the source stream (the destination sets its own).
func importHeaders(h map[string][]string) map[string][]string { return exportHeaders(h) }
