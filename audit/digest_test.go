package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// otherStore is a store on log with ids of its own (newStore's are
// deterministic, the same as buildHistories').
func otherStore(t *testing.T, log lifecycle.Log) *lifecycle.Store {
	t.Helper()
	s, err := lifecycle.New(log, lifecycle.Config{})
	must(t, err)
	return s
}

func newKey(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	must(t, err)
	return kp
}

func pubOf(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	must(t, err)
	return pub
}

func digestOf(t *testing.T, src HeadSource, kp nkeys.KeyPair) *Digest {
	t.Helper()
	d, err := MakeDigest(t.Context(), src, DigestOptions{Key: kp})
	must(t, err)
	return d
}

// digestProblems verifies src against ds and returns the digest problems,
// failing on any other kind.
func digestProblems(t *testing.T, src Source, ds ...*Digest) []Problem {
	t.Helper()
	rep := verify(t, src, VerifyOptions{Digests: ds})
	var ps []Problem
	for _, p := range rep.Problems {
		if p.Kind != KindDigest {
			t.Fatalf("a problem that is not a digest's: %s", p)
		}
		ps = append(ps, p)
	}
	return ps
}

// rebuild copies src into a fresh memlog message by message in sequence
// order (the sequences stay the same until a message is dropped), through
// edit, which may change or drop (nil) a message; the digest is then made to name the new log,
// as if it were the same one (a memlog's identity is its creation).
func rebuild(t *testing.T, src *memlog.Log, kp nkeys.KeyPair, d *Digest, edit func(id string, i int, m events.Message) *events.Message) (*memlog.Log, *Digest) {
	t.Helper()
	dst := memlog.New(clock())
	last := map[string]uint64{}
	index := map[string]int{}
	for m, err := range src.Scan(t.Context(), 0) {
		must(t, err)
		i := index[m.Instance]
		index[m.Instance]++
		out := edit(m.Instance, i, m.Message)
		if out == nil {
			continue // later messages move down one sequence
		}
		got, err := dst.Append(t.Context(), m.Instance, events.Message{MsgID: out.MsgID, Header: out.Header, Data: out.Data}, last[m.Instance])
		must(t, err)
		last[m.Instance] = got
	}
	info, err := dst.LogInfo(t.Context())
	must(t, err)
	same := *d
	same.StreamCreated = info.Created
	must(t, same.Sign(kp))
	return dst, &same
}

func TestDigestRoundTripAndGrowth(t *testing.T) {
	log := cleanLog(t)
	kp := newKey(t)
	d := digestOf(t, log, kp)
	if d.Instances != 3 || len(d.Leaves) != 3 || d.Messages == 0 || d.Stream != "memlog" {
		t.Fatalf("digest %+v", d)
	}
	var buf bytes.Buffer
	_, err := d.WriteTo(&buf)
	must(t, err)
	back, err := ParseDigest(bytes.NewReader(buf.Bytes()), pubOf(t, kp))
	must(t, err)
	if back.Root != d.Root || len(back.Leaves) != 3 {
		t.Fatalf("parsed %+v", back)
	}
	if ps := digestProblems(t, log, back); len(ps) != 0 {
		t.Fatalf("the log it was made of: %v", ps)
	}
	if rep, err := VerifyDigest(t.Context(), log, pubOf(t, kp), back); err != nil || !rep.OK() {
		t.Fatalf("VerifyDigest = %v, %v", rep, err)
	}
	if _, err := VerifyDigest(t.Context(), log, pubOf(t, newKey(t)), back); !errors.Is(err, ErrDigest) {
		t.Fatalf("VerifyDigest with another key = %v", err)
	}
	// The log grows: both the old and a new digest pass, in one read.
	s := otherStore(t, log)
	_, err = s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "d", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	must(t, s.SendEvent(t.Context(), "d", "late", nil))
	if ps := digestProblems(t, log, d, digestOf(t, log, kp)); len(ps) != 0 {
		t.Fatalf("a log that only grew: %v", ps)
	}
}

func TestDigestDetectsTampering(t *testing.T) {
	kp := newKey(t)
	for _, tc := range []struct {
		name  string
		edit  func(t *testing.T, msgs map[string][]events.Message) func(id string, i int, m events.Message) *events.Message
		want  string // in the detail of the problem about instance inst
		inst  string
		chain bool // verify alone finds it too
	}{
		{"last commit removed", func(t *testing.T, msgs map[string][]events.Message) func(string, int, events.Message) *events.Message {
			n := len(msgs["a"])
			return func(id string, i int, m events.Message) *events.Message {
				if id == "a" && i == n-1 {
					return nil
				}
				return &m
			}
		}, "1 commit was removed", "a", false},
		{"instance gone", func(t *testing.T, msgs map[string][]events.Message) func(string, int, events.Message) *events.Message {
			return func(id string, i int, m events.Message) *events.Message {
				if id == "b" {
					return nil
				}
				return &m
			}
		}, "history is gone", "b", false},
		{"consistent forged chain", func(t *testing.T, msgs map[string][]events.Message) func(string, int, events.Message) *events.Message {
			// Every commit of c re-chained after changing the actor of
			// the first: a history that verifies on its own.
			forged := make([]events.Message, len(msgs["c"]))
			var prev workflow.Hash32
			for i, m := range msgs["c"] {
				c := decode(t, m).Commit
				if i == 0 {
					c.Actor = "someone-else"
				}
				c.Prev = prev
				forged[i] = encode(t, c)
				prev = workflow.Sha256(forged[i].Data)
			}
			return func(id string, i int, m events.Message) *events.Message {
				if id == "c" {
					return &forged[i]
				}
				return &m
			}
		}, "rewritten", "c", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := cleanLog(t)
			d := digestOf(t, log, kp)
			bad, same := rebuild(t, log, kp, d, tc.edit(t, all(t, log)))
			alone := verify(t, bad, VerifyOptions{})
			if alone.OK() == tc.chain {
				t.Fatalf("verify alone: ok %v, want %v", alone.OK(), !tc.chain)
			}
			rep := verify(t, bad, VerifyOptions{Digests: []*Digest{same}})
			found := false
			for _, p := range rep.Problems {
				if p.Kind == KindDigest && p.Instance == tc.inst && strings.Contains(p.Detail, tc.want) {
					found = true
				}
			}
			if rep.OK() || !found {
				t.Fatalf("with the digest: %v, want a digest problem of %q saying %q", rep.Problems, tc.inst, tc.want)
			}
			// The compact digest (no leaves) sees it too, without naming
			// the instance.
			must(t, same.Compact().Check(pubOf(t, kp)))
			ps := digestProblems(t, bad, same.Compact())
			if len(ps) == 0 || !strings.Contains(ps[len(ps)-1].Detail, "no longer holds what the digest committed to") {
				t.Fatalf("with the compact digest: %v", ps)
			}
		})
	}
}

func TestDigestOfAnotherLog(t *testing.T) {
	kp := newKey(t)
	d := digestOf(t, cleanLog(t), kp)
	ps := digestProblems(t, cleanLog(t), d)
	if len(ps) != 1 || !strings.Contains(ps[0].Detail, "another log") {
		t.Fatalf("a digest of another log: %v", ps)
	}
}

func TestDigestUnknownInstance(t *testing.T) {
	kp := newKey(t)
	log := cleanLog(t)
	d := digestOf(t, log, kp)
	// A digest that omits an instance, re-signed by its key: the root
	// and count must be made consistent too, or Check refuses it.
	short := *d
	short.Leaves = d.Leaves[1:]
	short.Instances = len(short.Leaves)
	short.Root = treeHash(leafHashes(short.Leaves))
	must(t, short.Sign(kp))
	ps := digestProblems(t, log, &short)
	found := false
	for _, p := range ps {
		found = found || p.Instance == d.Leaves[0].Instance && strings.Contains(p.Detail, "does not know it")
	}
	if !found {
		t.Fatalf("problems %v, want %q unknown to the digest", ps, d.Leaves[0].Instance)
	}
}

// The digest verifier refuses what an attacker could hand it.
func TestDigestCheckAdversarial(t *testing.T) {
	kp, other := newKey(t), newKey(t)
	log := cleanLog(t)
	// A fourth instance, so that the tree is not a perfect one.
	s := otherStore(t, log)
	_, err := s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "d", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	_, err = s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "e", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	d := digestOf(t, log, kp)
	must(t, d.Check(pubOf(t, kp)))
	clone := func() *Digest {
		c := *d
		c.Leaves = append([]Leaf(nil), d.Leaves...)
		return &c
	}
	resign := func(c *Digest) *Digest {
		c.Root = treeHash(leafHashes(c.Leaves))
		must(t, c.Sign(kp))
		return c
	}
	cases := []struct {
		name string
		d    *Digest
		key  string
		want string
	}{
		{"another key", d, pubOf(t, other), "not by the expected key"},
		{"signed by another key", func() *Digest { c := clone(); must(t, c.Sign(other)); return c }(), pubOf(t, kp), "not by the expected key"},
		{"header changed after signing", func() *Digest { c := clone(); c.LastSeq++; return c }(), pubOf(t, kp), "does not verify"},
		{"stream changed after signing", func() *Digest { c := clone(); c.Stream = "OTHER"; return c }(), "", "does not verify"},
		{"key swapped", func() *Digest { c := clone(); c.Key = pubOf(t, other); return c }(), "", "does not verify"},
		{"leaf changed", func() *Digest { c := clone(); c.Leaves[1].Head[0] ^= 1; return c }(), pubOf(t, kp), "leaves were changed"},
		{"leaves out of order", func() *Digest {
			c := clone()
			c.Leaves[0], c.Leaves[1] = c.Leaves[1], c.Leaves[0]
			return resign(c)
		}(), pubOf(t, kp), "increasing order"},
		{"duplicated leaf", func() *Digest {
			c := clone()
			c.Leaves = append(c.Leaves[:2], c.Leaves[1:]...)
			c.Instances++
			return resign(c)
		}(), pubOf(t, kp), "listed twice"},
		{"leaf dropped, count kept", func() *Digest { c := clone(); c.Leaves = c.Leaves[1:]; return resign(c) }(), pubOf(t, kp), "lists"},
		{"unsigned", func() *Digest { c := clone(); c.Key, c.Signature = "", ""; return c }(), pubOf(t, kp), "not signed"},
		{"garbage signature", func() *Digest { c := clone(); c.Signature = base64.StdEncoding.EncodeToString([]byte("x")); return c }(), "", "does not verify"},
		{"seq outside the log", func() *Digest { c := clone(); c.Leaves[0].Seq = c.LastSeq + 1; return resign(c) }(), pubOf(t, kp), "outside"},
		{"version", func() *Digest { c := clone(); c.Version = 2; return c }(), "", "version"},
	}
	for _, tc := range cases {
		err := tc.d.Check(tc.key)
		if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want ErrDigest saying %q", tc.name, err, tc.want)
		}
	}
	// Verify refuses a digest that does not check, as an error.
	if _, err := Verify(t.Context(), log, VerifyOptions{Digests: []*Digest{cases[3].d}}); !errors.Is(err, ErrDigest) {
		t.Errorf("Verify with an altered digest: %v", err)
	}
	// Unknown fields and trailing data are refused by ParseDigest.
	var buf bytes.Buffer
	_, _ = d.WriteTo(&buf)
	extra := strings.Replace(buf.String(), `"stream":`, `"extra": 1, "stream":`, 1)
	if _, err := ParseDigest(strings.NewReader(extra), ""); !errors.Is(err, ErrDigest) {
		t.Errorf("ParseDigest with an unknown field: %v", err)
	}
	if _, err := ParseDigest(strings.NewReader(buf.String()+"{}"), ""); !errors.Is(err, ErrDigest) {
		t.Errorf("ParseDigest with trailing data: %v", err)
	}
}

func TestProofs(t *testing.T) {
	kp, other := newKey(t), newKey(t)
	pub := pubOf(t, kp)
	// Trees of every size up to 9 leaves: every leaf's proof checks.
	for n := 1; n <= 9; n++ {
		log := memlog.New(nil)
		for i := range n {
			m := encode(t, events.Commit{ID: mustULID(t, fmt.Sprintf("01JDZ8Q5N3C7K2W4X6Y8Z0A%03d", i)), Instance: fmt.Sprintf("i%02d", i), Time: time.Now(),
				Events: []events.Event{{ID: mustULID(t, fmt.Sprintf("01JDZ8Q5N3C7K2W4X6Y8Z0B%03d", i)), Type: events.SnapshotDeleted, Data: &events.SnapshotDeletedData{}}}})
			_, err := log.Append(context.Background(), fmt.Sprintf("i%02d", i), m, 0)
			must(t, err)
		}
		d := digestOf(t, log, kp)
		for _, l := range d.Leaves {
			p, err := Prove(d, l.Instance)
			must(t, err)
			b, err := json.Marshal(p)
			must(t, err)
			if _, err := ParseProof(bytes.NewReader(b), pub); err != nil {
				t.Fatalf("n=%d %s: %v", n, l.Instance, err)
			}
			if strings.Contains(string(b), `"leaves":[{`) {
				t.Fatalf("the proof carries the other leaves")
			}
		}
	}

	log := cleanLog(t)
	d := digestOf(t, log, kp)
	good, err := Prove(d, "b")
	must(t, err)
	if _, err := Prove(d, "zz"); !errors.Is(err, ErrDigest) {
		t.Errorf("Prove of an unknown instance: %v", err)
	}
	forge := func(edit func(p *Proof)) *Proof {
		p := *good
		p.Path = append([]workflow.Hash32(nil), good.Path...)
		edit(&p)
		return &p
	}
	for _, tc := range []struct {
		name string
		p    *Proof
		key  string
		want string
	}{
		{"leaf head changed", forge(func(p *Proof) { p.Leaf.Head[0] ^= 1 }), pub, "forged"},
		{"leaf commits changed", forge(func(p *Proof) { p.Leaf.Commits++ }), pub, "forged"},
		{"leaf renamed", forge(func(p *Proof) { p.Leaf.Instance = "a" }), pub, "forged"},
		{"path element changed", forge(func(p *Proof) { p.Path[0][5] ^= 1 }), pub, "forged"},
		{"path extended", forge(func(p *Proof) { p.Path = append(p.Path, p.Path[0]) }), pub, "does not fit"},
		{"path shortened", forge(func(p *Proof) { p.Path = p.Path[:len(p.Path)-1] }), pub, "does not fit"},
		{"index moved", forge(func(p *Proof) { p.Index = (p.Index + 1) % uint64(p.Digest.Instances) }), pub, ""},
		{"index out of range", forge(func(p *Proof) { p.Index = uint64(p.Digest.Instances) }), pub, "does not fit"},
		{"tree size changed", forge(func(p *Proof) { p.Digest.Instances++ }), pub, ""},
		{"root swapped and re-signed by another key", forge(func(p *Proof) { must(t, p.Digest.Sign(other)) }), pub, "not by the expected key"},
		{"header altered", forge(func(p *Proof) { p.Digest.LastSeq += 10 }), pub, "does not verify"},
		{"leaves smuggled in", forge(func(p *Proof) { p.Digest.Leaves = d.Leaves }), pub, "header only"},
	} {
		err := tc.p.Check(tc.key)
		if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want ErrDigest saying %q", tc.name, err, tc.want)
		}
	}
	must(t, good.Check(pub))
}

func TestCompactDigest(t *testing.T) {
	kp := newKey(t)
	log := cleanLog(t)
	d := digestOf(t, log, kp)
	c := d.Compact()
	var buf bytes.Buffer
	_, err := c.WriteTo(&buf)
	must(t, err)
	if strings.Contains(buf.String(), "leaves") || buf.Len() > 1024 {
		t.Fatalf("compact digest:\n%s", buf.String())
	}
	back, err := ParseDigest(&buf, pubOf(t, kp))
	must(t, err)
	if ps := digestProblems(t, log, back); len(ps) != 0 {
		t.Fatalf("%v", ps)
	}
	s := otherStore(t, log)
	_, err = s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "d", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	if ps := digestProblems(t, log, back); len(ps) != 0 {
		t.Fatalf("after growth: %v", ps)
	}
	if _, err := Prove(c, "a"); !errors.Is(err, ErrDigest) {
		t.Errorf("Prove from a compact digest: %v", err)
	}
	// A compact digest's header is still signed.
	c.Messages++
	if err := c.Check(""); !errors.Is(err, ErrDigest) {
		t.Errorf("altered compact digest: %v", err)
	}
}

func TestDigester(t *testing.T) {
	log := cleanLog(t)
	kp := newKey(t)
	if err := (&Digester{Source: log, Interval: time.Second, Publish: func(context.Context, *Digest) error { return nil }}).Run(t.Context()); !errors.Is(err, ErrInvalidDigester) {
		t.Fatalf("Run without a key: %v", err)
	}
	got := make(chan *Digest, 10)
	ctx, cancel := context.WithCancel(t.Context())
	g := &Digester{Source: log, Key: kp, Interval: time.Second, Publish: func(_ context.Context, d *Digest) error { got <- d; return nil }}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	first := <-got
	s := otherStore(t, log)
	_, err := s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "d", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	second := <-got
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if second.LastSeq <= first.LastSeq || second.Instances != first.Instances+1 {
		t.Fatalf("digests %d/%d then %d/%d", first.LastSeq, first.Instances, second.LastSeq, second.Instances)
	}
	if len(got) != 0 {
		t.Fatalf("%d digests of a log that did not grow", len(got))
	}
	if ps := digestProblems(t, log, first, second); len(ps) != 0 {
		t.Fatalf("%v", ps)
	}
}

// Verify with the projection checkpoints: those the store wrote are the
// fold of the history; an altered one (its head kept), one of a message
// that is not there and garbage are reported.
func TestVerifyCheckpoints(t *testing.T) {
	log := memlog.New(clock())
	cps := log.Checkpoints()
	s, err := lifecycle.New(log, lifecycle.Config{Checkpoints: cps, CheckpointEvery: 2})
	must(t, err)
	p, err := s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "a", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	snap, rev := p.Snapshot, p.Revision
	for i := range 5 {
		snap.MarkTaskCompleted(workflow.NewTaskID(fmt.Sprint("t", i)), []byte("o"), snap.UpdatedAt)
		rev, err = s.SaveSnapshot(t.Context(), snap, rev)
		must(t, err)
	}
	_, err = s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "b", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	must(t, s.SendEvent(t.Context(), "b", "e", nil))
	must(t, s.SendEvent(t.Context(), "b", "e", nil))
	if _, ok, _ := cps.LoadCheckpoint(t.Context(), "a"); !ok {
		t.Fatal("the store wrote no checkpoint")
	}
	if rep := verify(t, log, VerifyOptions{Checkpoints: cps}); !rep.OK() {
		t.Fatalf("the store's own checkpoints: %v", rep.Problems)
	}
	good, _, _ := cps.LoadCheckpoint(t.Context(), "a")
	cp, err := projection.UnmarshalCheckpoint("a", good)
	must(t, err)
	for name, tc := range map[string]struct {
		edit func(st *projection.State)
		raw  []byte
		want string
	}{
		"altered, head kept": {edit: func(st *projection.State) { st.RevisionSeq++ }, want: "not the fold of the history"},
		"wrong head":         {edit: func(st *projection.State) { st.Head[3] ^= 1 }, want: "names head"},
		"no message there":   {edit: func(st *projection.State) { st.LastSeq += 100 }, want: "has no message of the instance"},
		"garbage":            {raw: []byte("{"), want: "does not decode"},
	} {
		data := tc.raw
		if tc.edit != nil {
			st := cp.Clone()
			tc.edit(&st)
			data, err = st.MarshalCheckpoint()
			must(t, err)
		}
		must(t, cps.SaveCheckpoint(t.Context(), "a", data))
		rep := verify(t, log, VerifyOptions{Checkpoints: cps})
		ps := problemsOf(rep, "a")
		if len(ps) != 1 || ps[0].Kind != KindCheckpoint || !strings.Contains(ps[0].Detail, tc.want) {
			t.Errorf("%s: %v, want one checkpoint problem saying %q", name, ps, tc.want)
		}
		if len(problemsOf(rep, "b")) != 0 {
			t.Errorf("%s: problems of b: %v", name, problemsOf(rep, "b"))
		}
	}
	// A checkpoint of another format version (written by another runlog)
	// is not a problem: stores ignore it and write their own.
	other := bytes.Replace(good, fmt.Appendf(nil, `{"v":%d,`, projection.CheckpointVersion), fmt.Appendf(nil, `{"v":%d,`, projection.CheckpointVersion-1), 1)
	if bytes.Equal(other, good) {
		t.Fatalf("the checkpoint does not start with its version: %.40s", good)
	}
	if _, err := projection.UnmarshalCheckpoint("a", other); !errors.Is(err, projection.ErrCheckpointVersion) || !errors.Is(err, projection.ErrBadCheckpoint) {
		t.Fatalf("a checkpoint of another version: %v, want ErrCheckpointVersion and ErrBadCheckpoint", err)
	}
	must(t, cps.SaveCheckpoint(t.Context(), "a", other))
	if rep := verify(t, log, VerifyOptions{Checkpoints: cps}); !rep.OK() {
		t.Errorf("a checkpoint of another version: %v, want no problem", rep.Problems)
	}
}

// A digest of an empty log round-trips and still holds once the log grew.
func TestDigestOfEmptyLog(t *testing.T) {
	kp := newKey(t)
	log := memlog.New(nil)
	d := digestOf(t, log, kp)
	var buf bytes.Buffer
	_, err := d.WriteTo(&buf)
	must(t, err)
	back, err := ParseDigest(&buf, pubOf(t, kp))
	must(t, err)
	if back.Instances != 0 || back.IsCompact() {
		t.Fatalf("empty digest %+v", back)
	}
	buildHistories(t, log)
	if ps := digestProblems(t, log, back); len(ps) != 0 {
		t.Fatalf("%v", ps)
	}
	if _, err := Prove(back, "a"); !errors.Is(err, ErrDigest) {
		t.Fatalf("Prove in an empty digest: %v", err)
	}
}
