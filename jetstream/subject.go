package jetstream

import (
	"fmt"
	"strings"
)

const upperHex = "0123456789ABCDEF"

// kept reports whether b is copied unchanged by [EncodeID].
func kept(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}

// EncodeID returns the subject token that stands for instance id. Bytes in
// [A-Za-z0-9_-] are kept; every other byte, '=' included, becomes '='
// followed by two upper-case hex digits ("a.b" → "a=2Eb", "é" → "=C3=A9").
// The encoding is injective and reversible by [DecodeID], and the result
// never contains '.', '*', '>' or whitespace, so it is always one literal
// subject token. It is at most three times as long as id. EncodeID("") is
// "", which is not a valid token: instance ids are never empty.
func EncodeID(id string) string {
	n := 0
	for i := 0; i < len(id); i++ {
		if !kept(id[i]) {
			n++
		}
	}
	if n == 0 {
		return id
	}
	var b strings.Builder
	b.Grow(len(id) + 2*n)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if kept(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0f])
	}
	return b.String()
}

// unhex decodes an upper-case hex digit.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DecodeID returns the instance id that token encodes: the inverse of
// [EncodeID]. It accepts only canonical encodings, so that each id has
// exactly one token: an empty token, a byte outside [A-Za-z0-9_=-], an '='
// not followed by two upper-case hex digits, or an escape of a byte that
// [EncodeID] keeps is refused with an error matching [ErrInvalidSubject].
func DecodeID(token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: empty token", ErrInvalidSubject)
	}
	if !strings.Contains(token, "=") {
		for i := 0; i < len(token); i++ {
			if !kept(token[i]) {
				return "", fmt.Errorf("%w: token %q: byte %#02x at %d is not allowed", ErrInvalidSubject, token, token[i], i)
			}
		}
		return token, nil
	}
	b := make([]byte, 0, len(token))
	for i := 0; i < len(token); i++ {
		c := token[i]
		if kept(c) {
			b = append(b, c)
			continue
		}
		if c != '=' {
			return "", fmt.Errorf("%w: token %q: byte %#02x at %d is not allowed", ErrInvalidSubject, token, c, i)
		}
		if i+2 >= len(token) {
			return "", fmt.Errorf("%w: token %q: truncated escape at %d", ErrInvalidSubject, token, i)
		}
		hi, ok1 := unhex(token[i+1])
		lo, ok2 := unhex(token[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: token %q: escape at %d is not '=' and two upper-case hex digits", ErrInvalidSubject, token, i)
		}
		d := hi<<4 | lo
		if kept(d) {
			return "", fmt.Errorf("%w: token %q: escape at %d encodes %q, which is never escaped", ErrInvalidSubject, token, i, d)
		}
		b = append(b, d)
		i += 2
	}
	return string(b), nil
}

// SubjectFor returns the subject that holds instance id's messages:
// the subject prefix of its partition (the configured prefix, followed by
// "." and the partition number in a partitioned store), a dot, and
// [EncodeID](id).
func (s *Log) SubjectFor(id string) string {
	return s.part(id).prefix + "." + EncodeID(id)
}

// InstanceFromSubject returns the instance id stored on subj, the inverse
// of [Log.SubjectFor]. A subject outside the store's partitions, with
// more than one token after the partition's prefix, whose token is not a
// canonical encoding, or that stands in a partition other than its
// instance's gives an error matching [ErrInvalidSubject].
func (s *Log) InstanceFromSubject(subj string) (string, error) {
	p, tok, ok := s.subjectPartition(subj)
	if !ok {
		return "", fmt.Errorf("%w: subject %q is not under %q", ErrInvalidSubject, subj, s.partsPrefix())
	}
	return s.instanceOn(p, subj, tok)
}

// partsPrefix describes the prefix of the store's instance subjects.
func (s *Log) partsPrefix() string {
	if len(s.all) == 1 {
		return s.all[0].prefix + "."
	}
	return fmt.Sprintf("%s.<0-%d>.", s.cfg.Subject, len(s.all)-1)
}

// instanceOn decodes tok, the rest of subj after partition p's prefix.
func (s *Log) instanceOn(p *partition, subj, tok string) (string, error) {
	if strings.Contains(tok, ".") {
		return "", fmt.Errorf("%w: subject %q has more than one token after %q", ErrInvalidSubject, subj, p.prefix+".")
	}
	id, err := DecodeID(tok)
	if err != nil {
		return "", fmt.Errorf("subject %q: %w", subj, err)
	}
	if k := len(s.all); k > 1 {
		if want := PartitionOf(id, k); want != p.index {
			return "", fmt.Errorf("%w: subject %q is in partition %d, but instance %q belongs to partition %d: a message written by another program", ErrInvalidSubject, subj, p.index, id, want)
		}
	}
	return id, nil
}

// instanceFromPartition is InstanceFromSubject for a subject read from
// partition p's stream.
func (s *Log) instanceFromPartition(p *partition, subj string) (string, error) {
	tok, ok := strings.CutPrefix(subj, p.prefix+".")
	if !ok {
		return "", fmt.Errorf("%w: subject %q is not under %q", ErrInvalidSubject, subj, p.prefix+".")
	}
	return s.instanceOn(p, subj, tok)
}
