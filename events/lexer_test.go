package events

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// plainWord agrees with strPlain: every byte value at every position of
// a word of plain bytes, and random words.
func TestPlainWord(t *testing.T) {
	for c := range 256 {
		for i := range 8 {
			b := []byte("abcdefgh")
			b[i] = byte(c)
			if got, want := plainWord(binary.LittleEndian.Uint64(b)), strPlain[c]; got != want {
				t.Fatalf("byte %#x at %d: plainWord = %v, strPlain = %v", c, i, got, want)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		w := r.Uint64()
		if r.IntN(2) == 0 {
			w &= 0x7f7f7f7f7f7f7f7f // mostly ASCII: the interesting half
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], w)
		want := true
		for _, c := range b {
			want = want && strPlain[c]
		}
		if got := plainWord(w); got != want {
			t.Fatalf("word %q: plainWord = %v, want %v", b, got, want)
		}
	}
}
