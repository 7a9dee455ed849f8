package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/internal/atomicfile"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/jetstream"
)

// digestKeyEnv names the file of the signing key when --key is not given.
const digestKeyEnv = "RUNLOG_DIGEST_KEY"

// ---- replay key new FILE ----

func runKey(ctx context.Context, e *env, args []string) error {
	if len(args) != 2 || args[0] != "new" {
		return usagef("want 'key new FILE'")
	}
	file := args[1]
	kp, err := nkeys.CreateOperator()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	// O_EXCL: a key is never overwritten (digests signed with it could
	// no longer be told from forgeries made with the new one).
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: a key is never overwritten; choose another file", file)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		os.Remove(file)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return err
	}
	fmt.Fprintln(e.stdout, pub)
	fmt.Fprintf(e.stderr, "wrote a new signing key to %s (keep it secret, mode 0600); its public key, printed above, is what 'replay verify --digest D --key PUB' checks\n", file)
	return nil
}

// readSeed reads a signing key file written by 'replay key new'.
func readSeed(file string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the signing key: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%s is not a signing key (an nkey seed, as 'replay key new' writes): %v", file, err)
	}
	return kp, nil
}

// publicKey takes --key: a public nkey, or a file holding one (or a seed,
// whose public key is used).
func publicKey(s string) (string, error) {
	if s == "" || nkeys.IsValidPublicKey(s) {
		return s, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return "", usagef("--key %q is neither a public key nor a readable file: %v", s, err)
	}
	t := string(bytes.TrimSpace(b))
	if nkeys.IsValidPublicKey(t) {
		return t, nil
	}
	if kp, err := nkeys.FromSeed([]byte(t)); err == nil {
		return kp.PublicKey()
	}
	return "", usagef("--key %s holds neither a public key nor a signing key", s)
}

// ---- replay digest ----

func defineDigest(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.key, "key", "", "signing key `file` (default $"+digestKeyEnv+"); see 'replay key new'")
	fs.StringVar(&o.file, "out", "", "write the digest to `file` instead of stdout")
	fs.StringVar(&o.file, "o", "", "write the digest to `file` (short for --out)")
	fs.BoolVar(&o.unsigned, "unsigned", false, "write an unsigned digest (it proves nothing about who made it)")
	fs.BoolVar(&o.publish, "publish", false, "also publish the compact digest (signed header, no leaves) to the digest stream (STREAM_DIGESTS)")
}

func runDigest(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("digest takes no arguments")
	}
	keyFile := e.o.key
	if keyFile == "" {
		keyFile = e.getenv(digestKeyEnv)
	}
	var kp nkeys.KeyPair
	switch {
	case keyFile != "" && e.o.unsigned:
		return usagef("--unsigned and a signing key (--key or $%s) are exclusive", digestKeyEnv)
	case keyFile != "":
		var err error
		if kp, err = readSeed(keyFile); err != nil {
			return usagef("%v", err)
		}
	case !e.o.unsigned:
		return usagef("a signing key is needed: --key FILE or $%s (make one with 'replay key new FILE'), or --unsigned", digestKeyEnv)
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()
	if k := st.Partitions(); k > 1 {
		return digestPartitions(ctx, e, st.Log, kp)
	}
	d, err := audit.MakeDigest(ctx, st.Log, audit.DigestOptions{Key: kp, Now: e.now})
	if err != nil {
		return err
	}
	if e.o.file == "" || e.o.file == "-" {
		if _, err := d.WriteTo(e.stdout); err != nil {
			return err
		}
	} else if err := atomicfile.Write(e.o.file, 0o644, func(w io.Writer) error { _, err := d.WriteTo(w); return err }); err != nil {
		return err
	}
	if e.o.publish {
		if err := audit.PublishCompact(st.Log)(ctx, d); err != nil {
			return fmt.Errorf("the digest was written but not published: %w", err)
		}
		fmt.Fprintf(e.stderr, "published the compact digest to stream %s (subject %s.digest)\n", st.Log.DigestStream(), st.Log.DigestSubject())
	}
	signed := "unsigned"
	if d.Key != "" {
		signed = "signed by " + d.Key
	}
	fmt.Fprintf(e.stderr, "digest of stream %s through seq %d: %d instance%s, %d messages, root %s, %s\n",
		d.Stream, d.LastSeq, d.Instances, render.S(d.Instances), d.Messages, d.Root, signed)
	return nil
}

// digestPartitions writes a digest of each partition of a partitioned
// store (a digest is of one stream's sequence): FILE-p0.json … for -o
// FILE.json; it refuses stdout, where several digests would not parse.
func digestPartitions(ctx context.Context, e *env, st *jetstream.Log, kp nkeys.KeyPair) error {
	k := st.Partitions()
	if e.o.file == "" || e.o.file == "-" {
		return usagef("the store has %d partitions and a digest is of one partition's stream: pass -o FILE, and digest writes %s … %s",
			k, partitionFile("FILE.json", 0), partitionFile("FILE.json", k-1))
	}
	for p := range k {
		view, err := st.Partition(p)
		if err != nil {
			return err
		}
		d, err := audit.MakeDigest(ctx, view, audit.DigestOptions{Key: kp, Now: e.now})
		if err != nil {
			return err
		}
		file := partitionFile(e.o.file, p)
		if err := atomicfile.Write(file, 0o644, func(w io.Writer) error { _, err := d.WriteTo(w); return err }); err != nil {
			return err
		}
		if e.o.publish {
			if err := audit.PublishCompact(view)(ctx, d); err != nil {
				return fmt.Errorf("the digest %s was written but not published: %w", file, err)
			}
		}
		signed := "unsigned"
		if d.Key != "" {
			signed = "signed by " + d.Key
		}
		fmt.Fprintf(e.stderr, "digest of stream %s through seq %d: %d instance%s, %d messages, root %s, %s: %s\n",
			d.Stream, d.LastSeq, d.Instances, render.S(d.Instances), d.Messages, d.Root, signed, file)
	}
	if e.o.publish {
		fmt.Fprintf(e.stderr, "published the compact digests to stream %s (subject %s.digest)\n", st.DigestStream(), st.DigestSubject())
	}
	return nil
}

// partitionFile names partition p's digest file after file: "-p<p>"
// before its extension ("d.json" → "d-p2.json", "d" → "d-p2").
func partitionFile(file string, p int) string {
	ext := filepath.Ext(file)
	return fmt.Sprintf("%s-p%d%s", strings.TrimSuffix(file, ext), p, ext)
}

// readDigests reads and checks the --digest files of verify.
func readDigests(e *env) ([]*audit.Digest, error) {
	pub, err := publicKey(e.o.key)
	if err != nil {
		return nil, err
	}
	var ds []*audit.Digest
	for _, file := range e.o.digests {
		f, err := os.Open(file)
		if err != nil {
			return nil, usagef("--digest: %v", err)
		}
		d, err := audit.ParseDigest(f, pub)
		f.Close()
		if err != nil {
			return nil, &problemsError{msg: fmt.Sprintf("digest %s refused: %v", file, err)}
		}
		ds = append(ds, d)
	}
	if len(ds) > 0 && pub == "" {
		for _, d := range ds {
			if d.Key != "" {
				fmt.Fprintf(e.stderr, "replay verify: the signature of each digest was checked against the key it names (%s); pass --key PUB to check who signed it\n", d.Key)
				break
			}
		}
	}
	return ds, nil
}

// ---- replay prove ID --digest FILE ----

func defineProve(fs *flag.FlagSet, o *opts) {
	fs.Var((*stringList)(&o.digests), "digest", "the digest `file` to prove against")
	fs.StringVar(&o.key, "key", "", "the public `key` (or a file holding it) that must have signed the digest")
}

func runProve(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return usagef("prove takes one instance id")
	}
	if err := validIDs(args); err != nil {
		return err
	}
	if len(e.o.digests) != 1 {
		return usagef("prove needs one --digest FILE")
	}
	ds, err := readDigests(e)
	if err != nil {
		return err
	}
	p, err := audit.Prove(ds[0], args[0])
	if err != nil {
		return &problemsError{msg: err.Error()}
	}
	return writeJSON(e.stdout, p)
}

// ---- replay verify-proof FILE ----

func defineVerifyProof(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.key, "key", "", "the public `key` (or a file holding it) that must have signed the digest")
}

func runVerifyProof(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return usagef("verify-proof takes one proof file (- for stdin)")
	}
	pub, err := publicKey(e.o.key)
	if err != nil {
		return err
	}
	var data []byte
	if args[0] == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(args[0])
	}
	if err != nil {
		return usagef("read the proof: %v", err)
	}
	p, err := audit.ParseProof(bytes.NewReader(data), pub)
	if err != nil {
		return &problemsError{msg: fmt.Sprintf("the proof does not verify: %v", err)}
	}
	who := "unsigned digest: proves nothing about who made it"
	if p.Digest.Key != "" {
		who = "signed by " + p.Digest.Key
		if pub == "" {
			who += " (not checked against a trusted key: pass --key PUB)"
		}
	}
	if e.output != outText {
		return writeJSON(e.stdout, map[string]any{"ok": true, "leaf": p.Leaf, "digest": p.Digest, "key_checked": pub != ""})
	}
	fmt.Fprintf(e.stdout, "proof OK: instance %q had %d commit%s through seq %d (head %s) in the digest of stream %s through seq %d made %s, %s\n",
		p.Leaf.Instance, p.Leaf.Commits, render.S(int(p.Leaf.Commits)), p.Leaf.Seq, p.Leaf.Head, p.Digest.Stream, p.Digest.LastSeq,
		p.Digest.Time.UTC().Format(time.RFC3339), who)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}
