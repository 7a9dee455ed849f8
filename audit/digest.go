package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// DigestVersion is the version of the digest format [Digest] writes (its
// "runlog_digest" field) and of the proofs [Prove] writes.
const DigestVersion = 1

// A HeadSource is a log that can describe itself as a whole
// ([events.LogInfo]) and give every instance's head as of one sequence
// without reading the histories: what a digest needs, and what [Verify]
// with digests checks each digest against (it must be of this log).
// jetstream.Log and memlog.Log are HeadSources.
type HeadSource interface {
	LogInfo(ctx context.Context) (events.LogInfo, error)
	Heads(ctx context.Context) (events.LogInfo, []events.InstanceHead, error)
}

// A Digest is a signed commitment to the whole log at one sequence: for
// every instance that has a history (deleted instances included, their
// history stays), a [Leaf] naming its number of commits, its last
// sequence and its head hash; a Merkle tree over the leaves (RFC 6962's,
// see docs/AUDIT.md); the stream's identity, first and last sequence and
// message count; the time; and an ed25519 signature (an nkeys key) over
// all of that. A later log that only grew still contains what a digest
// committed to; [VerifyOptions.Digests] checks it. The JSON form is
// documented in docs/AUDIT.md.
type Digest struct {
	Version int `json:"runlog_digest"`
	// Stream and StreamCreated identify the log: its name, and when it was
	// created (a stream deleted and created again under the same name is
	// another log).
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"stream_created"`
	// FirstSeq, LastSeq and Messages describe the log as of the digest:
	// the digest covers every message up to LastSeq.
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Messages  uint64 `json:"messages"`
	Instances int    `json:"instances"`
	// Time is when the digest was made.
	Time time.Time `json:"time"`
	// Root is the Merkle tree hash of the leaves.
	Root workflow.Hash32 `json:"root"`
	// Key is the signer's public nkey and Signature the ed25519
	// signature, base64, of [Digest.SignedBytes]; both empty when the
	// digest is not signed.
	Key       string `json:"key,omitempty"`
	Signature string `json:"signature,omitempty"`
	// Leaves are the instances' heads, in increasing byte order of the
	// instance ids. A compact digest ([Digest.Compact]) has none: it can
	// prove that the log changed, not name the instance.
	Leaves []Leaf `json:"leaves,omitempty"`
}

// IsCompact reports whether d has no leaves though it covers instances: a
// digest's signed header alone, as [Digest.Compact] returns it.
func (d *Digest) IsCompact() bool { return len(d.Leaves) == 0 && d.Instances > 0 }

// Compact returns d without its leaves: a few hundred bytes whatever the
// number of instances, still signed (the signature does not cover the
// leaves but the root), fit to publish to a stream or a transparency log.
// Verified against a log it tells whether the log still holds everything
// it committed to (the root must be recomputed from the log), but not
// which instance changed: keep the full digest for that, and for proofs.
func (d *Digest) Compact() *Digest {
	c := *d
	c.Leaves = nil
	return &c
}

// Leaf is one instance as a digest saw it.
type Leaf struct {
	Instance string          `json:"instance"`
	Commits  uint64          `json:"commits"` // messages of its history up to the digest
	Seq      uint64          `json:"seq"`     // the sequence of the last of them
	Head     workflow.Hash32 `json:"head"`    // the SHA-256 of its payload
}

// DigestOptions configures [MakeDigest].
type DigestOptions struct {
	// Key signs the digest; nil leaves it unsigned. It must be able to
	// sign (a seed, not only a public key).
	Key nkeys.KeyPair
	// Now stamps Digest.Time; nil means time.Now.
	Now func() time.Time
}

// ErrDigest is matched by the errors of [ParseDigest], [Digest.Check],
// [ParseProof] and [Proof.Check]: a digest or proof that is malformed, was
// altered, or is not signed by the expected key.
var ErrDigest = errors.New("audit: invalid digest")

// MakeDigest makes a digest of src as of the last sequence src reports
// when it begins (commits after it are not covered: make digests often,
// see docs/AUDIT.md). It reads no history (jetstream.Log: the subject
// totals and the last message of each instance), so it costs a small
// part of a [Verify].
func MakeDigest(ctx context.Context, src HeadSource, opts DigestOptions) (*Digest, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	info, heads, err := src.Heads(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: digest: %w", err)
	}
	d := &Digest{Version: DigestVersion, Stream: info.Name, StreamCreated: info.Created.UTC(), FirstSeq: info.FirstSeq,
		LastSeq: info.LastSeq, Messages: info.Messages, Instances: len(heads), Time: now().UTC(), Leaves: make([]Leaf, len(heads))}
	for i, h := range heads {
		d.Leaves[i] = Leaf{Instance: h.Instance, Commits: h.Messages, Seq: h.Seq, Head: h.Hash}
	}
	slices.SortFunc(d.Leaves, func(a, b Leaf) int { return strings.Compare(a.Instance, b.Instance) })
	if err := checkLeaves(d); err != nil {
		return nil, fmt.Errorf("audit: digest: the log gave inconsistent heads: %w", err)
	}
	d.Root = treeHash(leafHashes(d.Leaves))
	if opts.Key != nil {
		if err := d.Sign(opts.Key); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// SignedBytes returns what the signature covers: a text of one field per
// line, in this order (docs/AUDIT.md):
//
//	runlog-digest 1
//	stream RUNLOG
//	stream_created 2026-11-26T06:20:00.123456789Z
//	first_seq 1
//	last_seq 47
//	messages 47
//	instances 10
//	time 2026-12-01T10:00:00Z
//	root <64 hex>
//
// The leaves are covered through the root.
func (d *Digest) SignedBytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "runlog-digest %d\n", d.Version)
	fmt.Fprintf(&b, "stream %s\n", d.Stream)
	fmt.Fprintf(&b, "stream_created %s\n", d.StreamCreated.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "first_seq %d\nlast_seq %d\nmessages %d\ninstances %d\n", d.FirstSeq, d.LastSeq, d.Messages, d.Instances)
	fmt.Fprintf(&b, "time %s\n", d.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "root %s\n", d.Root)
	return b.Bytes()
}

// Sign signs d with key, setting Key and Signature.
func (d *Digest) Sign(key nkeys.KeyPair) error {
	pub, err := key.PublicKey()
	if err != nil {
		return fmt.Errorf("audit: sign digest: %w", err)
	}
	sig, err := key.Sign(d.SignedBytes())
	if err != nil {
		return fmt.Errorf("audit: sign digest: %w (the key must be a seed, not only a public key)", err)
	}
	d.Key, d.Signature = pub, base64.StdEncoding.EncodeToString(sig)
	return nil
}

// Check verifies the digest on its own, without the log: its version,
// that its leaves are valid and in strictly increasing order of instance
// (no duplicates), that they match the counts and the root, and its
// signature. With a non-empty key (a public nkey), the digest must be
// signed by that key; with key "", an unsigned digest passes and a
// signed one must verify against its own Key, which proves only that it
// was not changed since it was signed, not by whom. Errors match
// [ErrDigest] and say what is wrong.
func (d *Digest) Check(key string) error {
	if d.Version != DigestVersion {
		return fmt.Errorf("%w: version %d, this runlog reads version %d", ErrDigest, d.Version, DigestVersion)
	}
	if d.Instances < 0 {
		return fmt.Errorf("%w: %d instances", ErrDigest, d.Instances)
	}
	if d.IsCompact() {
		if d.Instances > int(d.Messages) {
			return fmt.Errorf("%w: %d instances cannot fit in %d messages", ErrDigest, d.Instances, d.Messages)
		}
		return checkSignature(d, key)
	}
	if d.Instances != len(d.Leaves) {
		return fmt.Errorf("%w: it counts %d instances and lists %d leaves", ErrDigest, d.Instances, len(d.Leaves))
	}
	if err := checkLeaves(d); err != nil {
		return fmt.Errorf("%w: %w", ErrDigest, err)
	}
	if root := treeHash(leafHashes(d.Leaves)); root != d.Root {
		return fmt.Errorf("%w: its leaves hash to root %s, not to its root %s: the leaves were changed", ErrDigest, root, d.Root)
	}
	return checkSignature(d, key)
}

// checkLeaves checks the leaves' order and values against the header.
func checkLeaves(d *Digest) error {
	var commits uint64
	for i, l := range d.Leaves {
		if err := workflow.ValidateInstanceID(l.Instance); err != nil {
			return fmt.Errorf("leaf %d: %w", i, err)
		}
		if i > 0 && l.Instance <= d.Leaves[i-1].Instance {
			if l.Instance == d.Leaves[i-1].Instance {
				return fmt.Errorf("leaf %d: instance %q is listed twice", i, l.Instance)
			}
			return fmt.Errorf("leaf %d: instance %q comes after %q: leaves must be in increasing order of instance id", i, l.Instance, d.Leaves[i-1].Instance)
		}
		if l.Commits == 0 {
			return fmt.Errorf("leaf %d (%q): no commits", i, l.Instance)
		}
		if l.Seq < d.FirstSeq || l.Seq > d.LastSeq {
			return fmt.Errorf("leaf %d (%q): seq %d is outside the digest's %d..%d", i, l.Instance, l.Seq, d.FirstSeq, d.LastSeq)
		}
		if l.Commits > l.Seq-d.FirstSeq+1 {
			return fmt.Errorf("leaf %d (%q): %d commits cannot end at seq %d of a log starting at %d", i, l.Instance, l.Commits, l.Seq, d.FirstSeq)
		}
		commits += l.Commits
	}
	if commits > d.Messages {
		return fmt.Errorf("the leaves count %d commits, more than the %d messages of the log", commits, d.Messages)
	}
	if d.Messages > 0 && d.LastSeq-d.FirstSeq+1 < d.Messages {
		return fmt.Errorf("%d messages cannot fit between seq %d and %d", d.Messages, d.FirstSeq, d.LastSeq)
	}
	return nil
}

// checkSignature verifies d's signature as [Digest.Check] says.
func checkSignature(d *Digest, key string) error {
	if d.Signature == "" {
		if key != "" {
			return fmt.Errorf("%w: the digest is not signed, and key %s was expected to have signed it", ErrDigest, key)
		}
		return nil
	}
	if key != "" && d.Key != key {
		return fmt.Errorf("%w: signed by key %s, not by the expected key %s", ErrDigest, d.Key, key)
	}
	pk, err := nkeys.FromPublicKey(d.Key)
	if err != nil {
		return fmt.Errorf("%w: key %q: %v", ErrDigest, d.Key, err)
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature)
	if err != nil {
		return fmt.Errorf("%w: the signature is not base64: %v", ErrDigest, err)
	}
	if err := pk.Verify(d.SignedBytes(), sig); err != nil {
		return fmt.Errorf("%w: the signature does not verify with key %s: the digest was changed after it was signed", ErrDigest, d.Key)
	}
	return nil
}

// WriteTo writes d as indented JSON with a final newline, one leaf per
// line. It streams the leaves: memory does not grow with them beyond d
// itself.
func (d *Digest) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 64<<10)}
	hdr := *d
	hdr.Leaves = nil
	b, err := json.MarshalIndent(hdr, "", "  ")
	if err != nil {
		return 0, err
	}
	if len(d.Leaves) == 0 {
		cw.write(b)
		cw.write([]byte("\n"))
	} else {
		cw.write(b[:len(b)-2]) // without "\n}"
		cw.write([]byte(",\n  \"leaves\": [\n"))
		for i, l := range d.Leaves {
			lb, err := json.Marshal(l)
			if err != nil {
				return cw.n, err
			}
			cw.write([]byte("    "))
			cw.write(lb)
			if i < len(d.Leaves)-1 {
				cw.write([]byte(","))
			}
			cw.write([]byte("\n"))
		}
		cw.write([]byte("  ]\n}\n"))
	}
	if cw.err == nil {
		cw.err = cw.w.Flush()
	}
	return cw.n, cw.err
}

// countWriter counts what it writes; the first error sticks.
type countWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (c *countWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

// ParseDigest reads a digest written by [Digest.WriteTo] and checks it
// with [Digest.Check](key). Unknown fields are refused.
func ParseDigest(r io.Reader, key string) (*Digest, error) {
	var d Digest
	if err := decodeStrict(r, &d, "digest"); err != nil {
		return nil, err
	}
	if err := d.Check(key); err != nil {
		return nil, err
	}
	return &d, nil
}

// decodeStrict decodes one JSON document of r into v, refusing unknown
// fields and trailing data, with errors matching ErrDigest.
func decodeStrict(r io.Reader, v any, what string) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: not a runlog %s: %v", ErrDigest, what, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the %s", ErrDigest, what)
	}
	return nil
}

// ---- Merkle tree (RFC 6962 §2.1, RFC 9162 §2.1) -----------------------

// leafBytes is the leaf's canonical encoding: uvarint(len(instance)),
// instance, commits and seq as 8 bytes big endian, head.
func leafBytes(l Leaf) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(l.Instance)+16+32)
	b = binary.AppendUvarint(b, uint64(len(l.Instance)))
	b = append(b, l.Instance...)
	b = binary.BigEndian.AppendUint64(b, l.Commits)
	b = binary.BigEndian.AppendUint64(b, l.Seq)
	return append(b, l.Head[:]...)
}

// LeafHash is the Merkle tree hash of one leaf: SHA-256(0x00 ||
// leafBytes).
func LeafHash(l Leaf) workflow.Hash32 {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leafBytes(l))
	var out workflow.Hash32
	h.Sum(out[:0])
	return out
}

func nodeHash(left, right workflow.Hash32) workflow.Hash32 {
	var b [65]byte
	b[0] = 1
	copy(b[1:], left[:])
	copy(b[33:], right[:])
	return sha256.Sum256(b[:])
}

func leafHashes(ls []Leaf) []workflow.Hash32 {
	hs := make([]workflow.Hash32, len(ls))
	for i, l := range ls {
		hs[i] = LeafHash(l)
	}
	return hs
}

// treeHash is MTH(D[n]): SHA-256 of nothing for no leaves, the leaf hash
// for one, else the node hash of the left subtree of the largest power of
// two smaller than n leaves and of the right subtree of the rest.
func treeHash(hs []workflow.Hash32) workflow.Hash32 {
	switch len(hs) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return hs[0]
	}
	k := splitPoint(len(hs))
	return nodeHash(treeHash(hs[:k]), treeHash(hs[k:]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// auditPath is PATH(m, D[n]): the sibling hashes from leaf m up to the
// root.
func auditPath(m int, hs []workflow.Hash32) []workflow.Hash32 {
	if len(hs) <= 1 {
		return nil
	}
	k := splitPoint(len(hs))
	if m < k {
		return append(auditPath(m, hs[:k]), treeHash(hs[k:]))
	}
	return append(auditPath(m-k, hs[k:]), treeHash(hs[:k]))
}

// rootFromPath recomputes the root from a leaf hash, its index, the tree
// size and the audit path (RFC 9162 §2.1.3.2). ok is false when the path
// does not fit the index and size (too short, too long, index out of
// range).
func rootFromPath(leaf workflow.Hash32, index, size uint64, path []workflow.Hash32) (workflow.Hash32, bool) {
	if index >= size {
		return workflow.Hash32{}, false
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range path {
		if sn == 0 {
			return workflow.Hash32{}, false
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return workflow.Hash32{}, false
	}
	return r, true
}

// ---- Inclusion proofs --------------------------------------------------

// Proof proves that one instance's leaf is in a signed digest, without
// the other leaves: the digest's header (every field but the leaves,
// signature included), the leaf, its index among the leaves and the
// audit path. Anyone holding the signer's public key can check it
// offline ([Proof.Check]).
type Proof struct {
	Version int               `json:"runlog_proof"`
	Digest  Digest            `json:"digest"` // Leaves empty
	Leaf    Leaf              `json:"leaf"`
	Index   uint64            `json:"index"`
	Path    []workflow.Hash32 `json:"path"`
}

// Prove returns the inclusion proof of instance in d, which must pass
// [Digest.Check]. An instance the digest does not list, or a compact
// digest, gives an error matching [ErrDigest].
func Prove(d *Digest, instance string) (*Proof, error) {
	if d.IsCompact() {
		return nil, fmt.Errorf("%w: a compact digest has no leaves to prove from: use the full digest file", ErrDigest)
	}
	i, found := slices.BinarySearchFunc(d.Leaves, instance, func(l Leaf, id string) int { return strings.Compare(l.Instance, id) })
	if !found {
		return nil, fmt.Errorf("%w: instance %q is not in the digest of stream %s at seq %d (%d instances)", ErrDigest, instance, d.Stream, d.LastSeq, len(d.Leaves))
	}
	hdr := *d
	hdr.Leaves = nil
	return &Proof{Version: DigestVersion, Digest: hdr, Leaf: d.Leaves[i], Index: uint64(i), Path: auditPath(i, leafHashes(d.Leaves))}, nil
}

// Check verifies the proof offline: the digest header's signature (as
// [Digest.Check] with key), and that the leaf with the path leads to the
// digest's root at the leaf's index in a tree of Digest.Instances leaves.
// Errors match [ErrDigest].
func (p *Proof) Check(key string) error {
	if p.Version != DigestVersion || p.Digest.Version != DigestVersion {
		return fmt.Errorf("%w: proof version %d (digest version %d), this runlog reads version %d", ErrDigest, p.Version, p.Digest.Version, DigestVersion)
	}
	if len(p.Digest.Leaves) != 0 {
		return fmt.Errorf("%w: a proof carries the digest's header only", ErrDigest)
	}
	if err := workflow.ValidateInstanceID(p.Leaf.Instance); err != nil {
		return fmt.Errorf("%w: leaf: %w", ErrDigest, err)
	}
	if p.Leaf.Commits == 0 || p.Leaf.Seq < p.Digest.FirstSeq || p.Leaf.Seq > p.Digest.LastSeq {
		return fmt.Errorf("%w: leaf of %q (%d commits through seq %d) is not possible in the digest's log (seq %d..%d)", ErrDigest, p.Leaf.Instance, p.Leaf.Commits, p.Leaf.Seq, p.Digest.FirstSeq, p.Digest.LastSeq)
	}
	if p.Digest.Instances <= 0 {
		return fmt.Errorf("%w: the digest has no instances", ErrDigest)
	}
	root, ok := rootFromPath(LeafHash(p.Leaf), p.Index, uint64(p.Digest.Instances), p.Path)
	if !ok {
		return fmt.Errorf("%w: a path of %d hashes does not fit leaf %d of %d", ErrDigest, len(p.Path), p.Index, p.Digest.Instances)
	}
	if root != p.Digest.Root {
		return fmt.Errorf("%w: the leaf and path lead to root %s, not to the digest's root %s: the proof is forged or for another digest", ErrDigest, root, p.Digest.Root)
	}
	return checkSignature(&p.Digest, key)
}

// ParseProof reads a proof (JSON) and checks it with [Proof.Check](key).
func ParseProof(r io.Reader, key string) (*Proof, error) {
	var p Proof
	if err := decodeStrict(r, &p, "proof"); err != nil {
		return nil, err
	}
	if err := p.Check(key); err != nil {
		return nil, err
	}
	return &p, nil
}
