package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// leafState is an instance's history up to one digest's last sequence, as
// the verification reads it.
type leafState struct {
	commits, seq uint64
	head         workflow.Hash32
}

// digestChecker compares the log, message by message as Verify reads it,
// with the digests of VerifyOptions.Digests.
type digestChecker struct {
	ds    []*Digest
	state map[string][]leafState // per instance, one entry per digest
	msgs  []uint64               // per digest: messages read up to its last sequence
}

func newDigestChecker(ds []*Digest) *digestChecker {
	if len(ds) == 0 {
		return nil
	}
	return &digestChecker{ds: ds, state: make(map[string][]leafState), msgs: make([]uint64, len(ds))}
}

// observe records a message: instance is "" for one that belongs to no
// instance.
func (c *digestChecker) observe(instance string, seq uint64, h workflow.Hash32) {
	if c == nil {
		return
	}
	var st []leafState
	for k, d := range c.ds {
		if seq > d.LastSeq {
			continue
		}
		c.msgs[k]++
		if instance == "" {
			continue
		}
		if st == nil {
			if st = c.state[instance]; st == nil {
				st = make([]leafState, len(c.ds))
				c.state[instance] = st
			}
		}
		s := &st[k]
		s.commits++
		s.seq, s.head = seq, h
	}
}

// reset forgets what was observed (Verify starts again).
func (c *digestChecker) reset() {
	if c == nil {
		return
	}
	clear(c.state)
	clear(c.msgs)
}

// problems compares what was read with each digest. With ids, only their
// leaves are compared; otherwise every instance was read, and instances
// the digests do not list, the message counts and the roots are checked
// too. The counts are of the messages read: a verification instance by
// instance (of a source that cannot scan) does not read messages that
// belong to no instance. info is the log's description, nil if the
// source cannot give it.
func (c *digestChecker) problems(ids []string, info *events.LogInfo) []Problem {
	if c == nil {
		return nil
	}
	var ps []Problem
	for k, d := range c.ds {
		name := fmt.Sprintf("digest of stream %s at seq %d (%s)", d.Stream, d.LastSeq, d.Time.UTC().Format(time.RFC3339))
		add := func(instance string, seq uint64, format string, args ...any) {
			ps = append(ps, Problem{Instance: instance, Seq: seq, Through: seq, Kind: KindDigest, Detail: name + ": " + fmt.Sprintf(format, args...)})
		}
		if info != nil {
			if info.Name != d.Stream || !info.Created.Equal(d.StreamCreated) {
				add("", 0, "it is of another log: this log is stream %s created %s, the digest's was created %s; nothing was compared",
					info.Name, info.Created.UTC().Format(time.RFC3339Nano), d.StreamCreated.UTC().Format(time.RFC3339Nano))
				continue
			}
			if info.LastSeq < d.LastSeq {
				add("", 0, "the log ends at seq %d, before the digest's last seq %d: messages were removed from its end", info.LastSeq, d.LastSeq)
			}
		}
		if d.IsCompact() {
			if len(ids) > 0 {
				add("", 0, "a compact digest (no leaves) is checked against the whole log only, not instance by instance: nothing was compared")
				continue
			}
			var hs []workflow.Hash32
			for _, id := range sortedKeys(c.state) {
				if s := c.state[id][k]; s.commits > 0 {
					hs = append(hs, LeafHash(Leaf{Instance: id, Commits: s.commits, Seq: s.seq, Head: s.head}))
				}
			}
			if c.msgs[k] != d.Messages {
				add("", 0, "the log holds %d messages up to seq %d, the digest counted %d", c.msgs[k], d.LastSeq, d.Messages)
			}
			if len(hs) != d.Instances || treeHash(hs) != d.Root {
				add("", 0, "the log no longer holds what the digest committed to: its %d instances up to seq %d hash to root %s, the digest's %d to %s; a compact digest cannot say which instance changed: verify against the full digest file",
					len(hs), d.LastSeq, short(treeHash(hs)), d.Instances, short(d.Root))
			}
			continue
		}
		listed := make(map[string]bool, len(d.Leaves))
		leafProblems := 0
		for _, l := range d.Leaves {
			listed[l.Instance] = true
			if len(ids) > 0 && !slices.Contains(ids, l.Instance) {
				continue
			}
			var s leafState
			if st := c.state[l.Instance]; st != nil {
				s = st[k]
			}
			saw := fmt.Sprintf("the digest saw %s through seq %d (head %s)", plural(int(l.Commits), "commit"), l.Seq, short(l.Head))
			switch {
			case s.commits == 0:
				add(l.Instance, 0, "%s; the log holds none up to seq %d: the instance's history is gone", saw, d.LastSeq)
			case s.commits < l.Commits:
				add(l.Instance, s.seq, "%s; the log holds %d up to seq %d, the last at seq %d: %d commit%s removed", saw, s.commits, d.LastSeq, s.seq, l.Commits-s.commits, pluralWere(l.Commits-s.commits))
			case s.commits > l.Commits:
				add(l.Instance, s.seq, "%s; the log holds %d up to seq %d: commits were added before the digest's end", saw, s.commits, d.LastSeq)
			case s.seq == l.Seq && s.head == l.Head:
				continue
			case s.head == l.Head:
				add(l.Instance, s.seq, "%s; the log holds the same head, but at seq %d: messages before it were removed from the log", saw, s.seq)
			default:
				add(l.Instance, s.seq, "%s; the log's commit %d is at seq %d with hash %s: the history was rewritten", saw, s.commits, s.seq, short(s.head))
			}
			leafProblems++
		}
		if len(ids) > 0 {
			for _, id := range ids {
				if st := c.state[id]; st != nil && st[k].commits > 0 && !listed[id] {
					add(id, st[k].seq, "the log holds %d commits of it up to seq %d; the digest, which lists every instance, does not know it", st[k].commits, d.LastSeq)
				}
			}
			continue
		}
		for _, id := range sortedKeys(c.state) {
			if st := c.state[id]; st[k].commits > 0 && !listed[id] {
				add(id, st[k].seq, "the log holds %d commits of it up to seq %d; the digest, which lists every instance, does not know it", st[k].commits, d.LastSeq)
				leafProblems++
			}
		}
		if c.msgs[k] != d.Messages {
			add("", 0, "the log holds %d messages up to seq %d, the digest counted %d", c.msgs[k], d.LastSeq, d.Messages)
		}
		if leafProblems == 0 {
			// What was read must hash to the signed root.
			var hs []workflow.Hash32
			for _, l := range d.Leaves {
				s := c.state[l.Instance][k]
				hs = append(hs, LeafHash(Leaf{Instance: l.Instance, Commits: s.commits, Seq: s.seq, Head: s.head}))
			}
			if root := treeHash(hs); root != d.Root {
				add("", 0, "the log's heads hash to root %s, not the digest's %s", short(root), short(d.Root))
			}
		}
	}
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func pluralWere(n uint64) string {
	if n == 1 {
		return " was"
	}
	return "s were"
}

// finishDigests adds the digest problems to rep, counting the instances
// they newly damage.
func finishDigests(ctx context.Context, src Source, c *digestChecker, ids []string, rep *Report) error {
	if c == nil {
		return nil
	}
	var info *events.LogInfo
	if in, ok := src.(HeadSource); ok {
		li, err := in.LogInfo(ctx)
		if err != nil {
			return fmt.Errorf("describe the log: %w", err)
		}
		info = &li
	}
	ps := c.problems(ids, info)
	if len(ps) == 0 {
		return nil
	}
	damaged := make(map[string]bool)
	for _, p := range rep.Problems {
		damaged[p.Instance] = true
	}
	for _, p := range ps {
		if p.Instance != "" && !damaged[p.Instance] {
			damaged[p.Instance] = true
			rep.Damaged++
		}
	}
	rep.Problems = append(rep.Problems, ps...)
	return nil
}

// VerifyDigest verifies every instance of src, as [Verify] does, and that
// src still holds everything each of digests committed to
// ([VerifyOptions.Digests]): the one call an auditor needs with digests
// in hand. Each digest must pass [Digest.Check] with key (a public nkey;
// "" accepts each digest's own key), else an error matching [ErrDigest]
// is returned and nothing is verified.
func VerifyDigest(ctx context.Context, src Source, key string, digests ...*Digest) (*Report, error) {
	for i, d := range digests {
		if err := d.Check(key); err != nil {
			return &Report{Problems: []Problem{}}, fmt.Errorf("audit: verify: digest %d: %w", i+1, err)
		}
	}
	return Verify(ctx, src, VerifyOptions{Digests: digests})
}
