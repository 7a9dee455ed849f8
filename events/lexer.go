package events

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// lexer is a small strict JSON reader for the wire format. Decoding a
// commit is on the hot path of every read (a cold load folds thousands),
// and encoding/json's reflection and double scan cost several times the
// parse itself. The lexer accepts exactly the JSON that encoding/json
// writes and reads: objects, arrays, strings (escapes included), numbers,
// true, false, null. Field names are matched exactly (encoding/json also
// accepts other letter cases; runlog never writes them). Its results are
// checked against encoding/json's by a differential fuzz test.
type lexer struct {
	data []byte
	pos  int
}

var errEOF = errors.New("unexpected end of JSON input")

func (l *lexer) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{l.pos}, args...)...)
}

func (l *lexer) ws() {
	for l.pos < len(l.data) {
		switch l.data[l.pos] {
		case ' ', '\t', '\n', '\r':
			l.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (l *lexer) peek() byte {
	l.ws()
	if l.pos >= len(l.data) {
		return 0
	}
	return l.data[l.pos]
}

func (l *lexer) expect(c byte) error {
	if got := l.peek(); got != c {
		if got == 0 {
			return errEOF
		}
		return l.errorf("expected %q, found %q", c, got)
	}
	l.pos++
	return nil
}

// null consumes a null literal if one is next.
func (l *lexer) null() bool {
	if l.peek() == 'n' && len(l.data)-l.pos >= 4 && string(l.data[l.pos:l.pos+4]) == "null" {
		l.pos += 4
		return true
	}
	return false
}

// end checks that nothing but white space follows.
func (l *lexer) end() error {
	if l.peek() != 0 {
		return l.errorf("trailing data after the JSON value")
	}
	return nil
}

// rawString returns the bytes between the quotes of the next string and
// whether they hold escapes or bytes that need checking (non-ASCII).
func (l *lexer) rawString() (raw []byte, plain bool, err error) {
	if err := l.expect('"'); err != nil {
		return nil, false, err
	}
	start := l.pos
	plain = true
	// Eight bytes at a time while none is a quote, a backslash, a control
	// character or non-ASCII (base64 payloads are long runs of such).
	for l.pos+8 <= len(l.data) && plainWord(binary.LittleEndian.Uint64(l.data[l.pos:])) {
		l.pos += 8
	}
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		if strPlain[c] {
			l.pos++
			continue
		}
		switch {
		case c == '"':
			raw = l.data[start:l.pos]
			l.pos++
			return raw, plain, nil
		case c == '\\':
			plain = false
			l.pos += 2
			continue
		case c < 0x20:
			return nil, false, l.errorf("control character in string")
		}
		plain = false // non-ASCII: checked by the caller
		l.pos++
	}
	return nil, false, errEOF
}

// plainWord reports whether none of the eight bytes of w is '"', '\\', a
// control character (< 0x20) or non-ASCII (>= 0x80): the bytes strPlain
// marks, eight at a time. A byte b is zero in w^(b*ones) exactly when it
// equals b; hasZero finds a zero byte without carries between bytes that
// could report one falsely, since every byte is below 0x80 when it runs.
func plainWord(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if w&highs != 0 {
		return false // non-ASCII
	}
	hasZero := func(x uint64) bool { return (x-ones)&^x&highs != 0 }
	// Bytes < 0x20: adding 0x60 sets the high bit exactly for bytes >= 0x20.
	if ^(w+0x6060606060606060)&highs != 0 {
		return false
	}
	return !hasZero(w^('"'*ones)) && !hasZero(w^('\\'*ones))
}

// str returns the next string, unescaped; null gives "".
func (l *lexer) str() (string, error) {
	b, err := l.strBytes()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// strBytes is str without the copy into a string, for a value parsed
// right away (a hash): the bytes between the quotes, not copied, when they
// need no unescaping; null gives nil.
func (l *lexer) strBytes() ([]byte, error) {
	if l.null() {
		return nil, nil
	}
	l.ws()
	start := l.pos
	raw, plain, err := l.rawString()
	if err != nil {
		return nil, err
	}
	if plain || !hasBackslash(raw) && utf8.Valid(raw) {
		return raw, nil
	}
	// Escapes or invalid UTF-8: encoding/json's rules, exactly.
	var s string
	if err := json.Unmarshal(l.data[start:l.pos], &s); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

func hasBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// key reads an object key; the returned bytes are valid until the next
// call (they alias the input when the key has no escapes).
func (l *lexer) key() ([]byte, error) {
	raw, plain, err := l.rawString()
	if err != nil {
		return nil, err
	}
	if !plain {
		if raw, err = unquote(raw); err != nil {
			return nil, err
		}
	}
	if err := l.expect(':'); err != nil {
		return nil, err
	}
	return raw, nil
}

// object calls field for each key of the next object, positioned at its
// value. A null object is accepted and yields no field.
func (l *lexer) object(field func(key []byte) error) error {
	return l.elements('{', '}', "object", func() error {
		k, err := l.key()
		if err != nil {
			return err
		}
		return field(k)
	})
}

// array calls elem for each element of the next array. A null array is
// accepted and yields no element.
func (l *lexer) array(elem func() error) error {
	return l.elements('[', ']', "array", elem)
}

// elements reads the elements of an object or array between open and
// close, separated by commas, calling elem for each.
func (l *lexer) elements(open, close byte, what string, elem func() error) error {
	if l.null() {
		return nil
	}
	if err := l.expect(open); err != nil {
		return err
	}
	if l.peek() == close {
		l.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch l.peek() {
		case ',':
			l.pos++
		case close:
			l.pos++
			return nil
		case 0:
			return errEOF
		default:
			return l.errorf("expected ',' or '%c' in %s", close, what)
		}
	}
}

// number returns the bytes of the next number.
func (l *lexer) number() ([]byte, error) {
	if l.null() {
		return []byte("0"), nil
	}
	l.ws()
	start := l.pos
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			l.pos++
			continue
		}
		break
	}
	if start == l.pos {
		if l.pos >= len(l.data) {
			return nil, errEOF
		}
		return nil, l.errorf("expected a number, found %q", l.data[l.pos])
	}
	b := l.data[start:l.pos]
	if !json.Valid(b) {
		return nil, l.errorf("invalid number %q", b)
	}
	return b, nil
}

func (l *lexer) int64() (int64, error) {
	b, err := l.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, l.errorf("number %s: %v", b, err)
	}
	return n, nil
}

func (l *lexer) uint64(max uint64) (uint64, error) {
	b, err := l.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil || n > max {
		return 0, l.errorf("number %s out of range", b)
	}
	return n, nil
}

func (l *lexer) float64() (float64, error) {
	b, err := l.number()
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, l.errorf("number %s: out of range", b)
	}
	return f, nil
}

func (l *lexer) boolean() (bool, error) {
	if l.null() {
		return false, nil
	}
	l.ws()
	switch {
	case len(l.data)-l.pos >= 4 && string(l.data[l.pos:l.pos+4]) == "true":
		l.pos += 4
		return true, nil
	case len(l.data)-l.pos >= 5 && string(l.data[l.pos:l.pos+5]) == "false":
		l.pos += 5
		return false, nil
	}
	return false, l.errorf("expected true or false")
}

// bytes decodes a base64 string (encoding/json's form of []byte). null
// gives nil.
func (l *lexer) bytes() ([]byte, error) {
	if l.null() {
		return nil, nil
	}
	raw, plain, err := l.rawString()
	if err != nil {
		return nil, err
	}
	if !plain {
		if raw, err = unquote(raw); err != nil {
			return nil, err
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
	n, err := base64.StdEncoding.Decode(out, raw)
	if err != nil {
		return nil, l.errorf("base64: %v", err)
	}
	return out[:n], nil
}

// text decodes a string into a TextUnmarshaler (times, ids, hashes,
// kinds). null leaves v unchanged, as encoding/json does.
func (l *lexer) text(v interface{ UnmarshalText([]byte) error }) error {
	if l.null() {
		return nil
	}
	raw, plain, err := l.rawString()
	if err != nil {
		return err
	}
	if !plain {
		if raw, err = unquote(raw); err != nil {
			return err
		}
	}
	return v.UnmarshalText(raw)
}

// skip consumes the next value, whatever it is.
func (l *lexer) skip() error {
	switch l.peek() {
	case '{':
		return l.object(func([]byte) error { return l.skip() })
	case '[':
		return l.array(l.skip)
	case '"':
		_, _, err := l.rawString()
		return err
	case 't', 'f':
		_, err := l.boolean()
		return err
	case 'n':
		if l.null() {
			return nil
		}
		return l.errorf("invalid literal")
	case 0:
		return errEOF
	default:
		_, err := l.number()
		return err
	}
}

func unknownField(k []byte) error { return fmt.Errorf("json: unknown field %q", k) }

// strPlain marks the bytes a string scan passes over without a second
// look: printable ASCII but the quote and the backslash.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// unquote decodes the body of a string that holds escapes or non-ASCII
// bytes, by encoding/json's rules exactly.
func unquote(raw []byte) ([]byte, error) {
	var s string
	if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s); err != nil {
		return nil, err
	}
	return []byte(s), nil
}
