package workflow

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Hash32 is a 32-byte fingerprint (SHA-256). Its text form is 64 lowercase
// hexadecimal characters; parsing accepts either case.
type Hash32 [32]byte

// ErrInvalidHash is matched (with [errors.Is]) by every error returned when a
// 64-character hexadecimal hash cannot be parsed.
var ErrInvalidHash = errors.New("workflow: invalid hash")

// HashError says why a hash could not be parsed.
type HashError struct {
	Input  string // the text given
	Reason string // what is wrong with it
}

func (e *HashError) Error() string {
	return fmt.Sprintf("workflow: invalid hash %q: %s (want 64 hexadecimal characters)", truncate(e.Input, 80), e.Reason)
}

// Is reports whether target is [ErrInvalidHash].
func (e *HashError) Is(target error) bool { return target == ErrInvalidHash }

// Sha256 hashes data.
func Sha256(data []byte) Hash32 { return Hash32(sha256.Sum256(data)) }

// ParseHash32 parses 64 hexadecimal characters in either case.
func ParseHash32(s string) (Hash32, error) { return parseHash32(s) }

// hexValue maps an ASCII hexadecimal digit, in either case, to its
// value, and every other byte to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
		t[c-'a'+'A'] = c - 'a' + 10
	}
	return t
}()

// parseHash32 is ParseHash32 of a string or of bytes, in one pass and
// without allocating unless it fails (the decoders call it for every
// hash they read).
func parseHash32[T string | []byte](s T) (Hash32, error) {
	var h Hash32
	if len(s) != 64 {
		return h, &HashError{Input: string(s), Reason: fmt.Sprintf("wrong length %d", len(s))}
	}
	for i := range h {
		hi, lo := hexValue[s[2*i]], hexValue[s[2*i+1]]
		if hi > 15 || lo > 15 {
			at := 2 * i
			if hi <= 15 {
				at++
			}
			return Hash32{}, &HashError{Input: string(s), Reason: fmt.Sprintf("invalid character %q at offset %d", rune(s[at]), at)}
		}
		h[i] = hi<<4 | lo
	}
	return h, nil
}

// String returns the 64-character lowercase hexadecimal form.
func (h Hash32) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeros.
func (h Hash32) IsZero() bool { return h == Hash32{} }

// MarshalText implements [encoding.TextMarshaler].
func (h Hash32) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (h *Hash32) UnmarshalText(b []byte) error {
	v, err := parseHash32(b)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// DefinitionHash fingerprints a workflow definition's structure. Two runs of
// one instance id must use the same definition hash.
type DefinitionHash = Hash32

// ParseDefinitionHash parses the 64-character hexadecimal form of a
// definition hash, in either case. Errors match [ErrInvalidHash].
func ParseDefinitionHash(s string) (DefinitionHash, error) { return ParseHash32(s) }

// DefinitionHashOf hashes an arbitrary string (Sayiir's From<&str>): handy
// in tests and for callers whose definitions are named by a string.
func DefinitionHashOf(s string) DefinitionHash { return Sha256([]byte(s)) }

// TaskID identifies a task node: the SHA-256 of the task's name.
type TaskID = Hash32

// NewTaskID returns the id of the task with the given name.
func NewTaskID(name string) TaskID { return Sha256([]byte(name)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
