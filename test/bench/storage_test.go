package bench

import (
	"context"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
)

// BenchmarkStorage measures the file store's S2 compression on runlog's
// histories. For each compression it writes 10 instances of 5,000
// checkpoints (the commits of the verify benchmarks: a position and a
// 128-byte output each, ~1.1 KB with headers) and reports the bytes of
// the stream's block files per checkpoint once the server has flushed
// them (disk-B/checkpoint; the last block, still being written, is not
// compressed) and the bytes the stream accounts (stream-B/checkpoint);
// the timed loop reads the whole stream with jetstream.Log.Scan (the read cost,
// msgs/s). BENCHMARKS.md §5.9.
func BenchmarkStorage(b *testing.B) {
	for _, c := range []struct {
		name string
		comp natsjs.StoreCompression
	}{{"none", natsjs.NoCompression}, {"s2", natsjs.S2Compression}} {
		b.Run("compression="+c.name, func(b *testing.B) {
			e := newEnvConfig(b, syncDefault, jetstream.Config{Logger: discard, Compression: c.comp})
			gen := events.NewIDSource(nil, nil)
			const instances, commits = 10, 5000
			for i := range instances {
				id := "s" + strconv.Itoa(i)
				e.publishBulk(b, id, genHistory(b, gen, id, commits))
			}
			e.flush(b)
			ctx := context.Background()
			var n int
			for b.Loop() {
				n = 0
				for _, err := range e.log.Scan(ctx, 0) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			if n != instances*commits {
				b.Fatalf("scanned %d messages", n)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(blockBytes(b, e.dir))/float64(n), "disk-B/checkpoint")
			b.ReportMetric(float64(e.streamBytes(b))/float64(n), "stream-B/checkpoint")
		})
	}
}

// blockBytes sums the sizes of the message block files under dir.
func blockBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".blk") {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return total
}
