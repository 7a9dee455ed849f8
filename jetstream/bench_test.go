package jetstream

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkAppend measures one append with its sequence check on an
// embedded server, in process, R1 file storage.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []struct {
		name     string
		interval time.Duration
	}{
		{"fsync-each", 0},
		{"fsync-1s", time.Second},
	} {
		b.Run(sync.name, func(b *testing.B) {
			s, err := OpenEmbedded(b.Context(), EmbeddedConfig{Dir: b.TempDir(), SyncInterval: sync.interval},
				Config{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 512)
			var last uint64
			i := 0
			for b.Loop() {
				i++
				last, err = s.Append(b.Context(), "bench", testMsg(fmt.Sprintf("m%d", i), string(data)), last)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRead measures reading a 1000-message instance.
func BenchmarkRead(b *testing.B) {
	s, err := OpenEmbedded(b.Context(), EmbeddedConfig{Dir: b.TempDir(), SyncInterval: time.Minute},
		Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var last uint64
	for i := range 1000 {
		if last, err = s.Append(b.Context(), "bench", testMsg(fmt.Sprintf("m%d", i), "0123456789abcdef0123456789abcdef"), last); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		n := 0
		for _, err := range s.Read(b.Context(), "bench", 0) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 1000 {
			b.Fatalf("read %d", n)
		}
	}
}

// BenchmarkReadShort compares the two ways to read an instance of a few
// messages (n): following the messages back from the last one, one
// direct get each (Walk, as the store's catch-up does for up to 8 new
// commits), and one batched read (Read).
func BenchmarkReadShort(b *testing.B) {
	s, err := OpenEmbedded(b.Context(), EmbeddedConfig{Dir: b.TempDir(), SyncInterval: time.Minute},
		Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const instances = 100
	for _, n := range []int{1, 2, 4, 8} {
		id := func(i int) string { return fmt.Sprintf("n%d-%d", n, i%instances) }
		for i := range instances {
			var last uint64
			for j := range n {
				if last, err = s.Append(b.Context(), id(i), testMsg(fmt.Sprintf("%s-%d", id(i), j), "0123456789abcdef0123456789abcdef"), last); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(fmt.Sprintf("n=%d/Walk", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				m, ok, err := s.LastMessage(b.Context(), id(i))
				i++
				got := 1
				for ; err == nil && ok && m.AfterSeq > 0; got++ {
					m, ok, err = s.MessageAt(b.Context(), id(i-1), m.AfterSeq)
				}
				if err != nil || !ok || got != n {
					b.Fatal(got, ok, err)
				}
			}
		})
		b.Run(fmt.Sprintf("n=%d/Read", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				got := 0
				for _, err := range s.Read(b.Context(), id(i), 0) {
					if err != nil {
						b.Fatal(err)
					}
					got++
				}
				i++
				if got != n {
					b.Fatal(got)
				}
			}
		})
	}
}
