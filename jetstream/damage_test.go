package jetstream

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/runlog/runlog/events"
)

// A block file cut in half: the server recovers the store without the
// lost messages and says so only in its log; OpenEmbedded warns, and
// Damage and StreamProblems name the missing messages.
func TestEmbeddedTruncatedBlock(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, err := OpenEmbedded(ctx, EmbeddedConfig{Dir: dir}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	for i := range 40 {
		id := fmt.Sprintf("inst-%d", i%10)
		last[id] = mustAppend(t, s, id, testMsg(fmt.Sprintf("m%d", i), strings.Repeat("x", 500)), last[id])
	}
	if d, err := s.Damage(ctx); err != nil || len(d) != 0 {
		t.Fatalf("Damage of a whole store = %q, %v", d, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	blk := dir + "/jetstream/$G/streams/RUNLOG/msgs/1.blk"
	fi, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blk, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err = OpenEmbedded(ctx, EmbeddedConfig{Dir: dir, Logger: logger}, Config{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	d, err := s.Damage(ctx)
	if err != nil || len(d) == 0 || !strings.Contains(strings.Join(d, " "), "missing") {
		t.Fatalf("Damage after a cut block = %q, %v, want the missing messages", d, err)
	}
	ps, err := s.StreamProblems(ctx)
	if err != nil || !slices.Equal(ps, d) {
		t.Fatalf("StreamProblems = %q, %v, want %q", ps, err, d)
	}
	if !strings.Contains(logs.String(), "recovered a damaged store") {
		t.Errorf("no warning logged on open:\n%s", logs.String())
	}
	t.Logf("damage: %q", d)
	if w := s.emb.RecoveryWarnings(); len(w) == 0 {
		t.Errorf("no recovery warnings kept")
	}
}

// Heads from the subject totals and last messages, and from one read of
// the stream, agree; each is chosen where it is cheaper.
func TestHeadsPathsAgree(t *testing.T) {
	s, _, _ := newStore(t, Config{ReadBatch: 3})
	last := map[string]uint64{}
	for i := range 120 {
		id := fmt.Sprintf("i%d", i%40)
		last[id] = mustAppend(t, s, id, testMsg(fmt.Sprintf("m%d", i), fmt.Sprint(i)), last[id])
	}
	info1, quick, err := s.Heads(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info2, scanned, err := s.headsByScan(t.Context(), s.parts[0])
	if err != nil {
		t.Fatal(err)
	}
	sortHeads := func(hs []events.InstanceHead) {
		slices.SortFunc(hs, func(a, b events.InstanceHead) int { return strings.Compare(a.Instance, b.Instance) })
	}
	sortHeads(quick)
	sortHeads(scanned)
	if info1 != info2 || !slices.Equal(quick, scanned) || len(quick) != 40 || quick[0].Messages != 3 {
		t.Fatalf("heads differ:\n%+v %v\n%+v %v", info1, quick, info2, scanned)
	}
	if !headsByScanIsCheaper(1_000_000, 1_000_000) || headsByScanIsCheaper(1_000_000, 100) || headsByScanIsCheaper(120, 40) {
		t.Error("headsByScanIsCheaper chooses the wrong read")
	}
}
