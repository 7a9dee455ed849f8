package visibility_test

// The measurement behind the choice of SQLite (BENCHMARKS.md §5.16): the
// same instances kept in bbolt, the key-value store a visibility index
// would otherwise use, with by hand the secondary keys SQLite's indexes
// keep, and the same query answered from them.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/memlog"
)

// boltIndex writes the instances of lg into a bbolt file at path: a
// bucket of summaries by id, and one bucket per secondary index SQLite's
// schema has (status+updated, status+id, status+label, updated,
// workflow+updated, label+updated, actor+id, type+id), keys only.
func boltIndex(b *testing.B, lg *memlog.Log, path string) *bolt.DB {
	b.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: false})
	if err != nil {
		b.Fatal(err)
	}
	ids, err := lg.Instances(b.Context(), "", math.MaxInt32)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 20_000 // as visibility.DefaultBatch: one transaction per batch
	for start := 0; start < len(ids); start += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := func(name string) *bolt.Bucket {
				x, err := tx.CreateBucketIfNotExists([]byte(name))
				if err != nil {
					b.Fatal(err)
				}
				return x
			}
			inst, byStatus, byStatusID, byGroup, byUpdated, byWF, byLabel, byActor, byType :=
				bk("instances"), bk("status_updated"), bk("status_id"), bk("status_label"), bk("updated"), bk("wf_updated"), bk("label_updated"), bk("actor_id"), bk("type_id")
			for _, id := range ids[start:min(start+batch, len(ids))] {
				in, err := audit.Describe(b.Context(), lg, id)
				if err != nil {
					return err
				}
				summary, err := json.Marshal(&in)
				if err != nil {
					return err
				}
				if err := inst.Put([]byte(id), summary); err != nil {
					return err
				}
				up := make([]byte, 8)
				binary.BigEndian.PutUint64(up, math.MaxUint64-uint64(in.Updated.UnixNano())) // newest first
				key := func(parts ...[]byte) []byte { return bytes.Join(parts, []byte{0}) }
				name := ""
				if in.Workflow != nil {
					name = in.Workflow.Name
				}
				for _, kv := range []struct {
					b *bolt.Bucket
					k []byte
				}{
					{byStatus, key([]byte(in.Status), up, []byte(id))},
					{byStatusID, key([]byte(in.Status), []byte(id))},
					{byGroup, key([]byte(in.Status), []byte(in.WorkflowLabel()), []byte(id))},
					{byUpdated, key(up, []byte(id))},
					{byWF, key([]byte(name), up, []byte(id))},
					{byLabel, key([]byte(in.WorkflowLabel()), up, []byte(id))},
				} {
					if err := kv.b.Put(kv.k, nil); err != nil {
						return err
					}
				}
				for _, a := range in.Actors {
					if err := byActor.Put(key([]byte(a), []byte(id)), nil); err != nil {
						return err
					}
				}
				for _, t := range in.Types {
					if err := byType.Put(key([]byte(t), []byte(id)), nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// BenchmarkIndexBuildBbolt is BenchmarkIndexBuild with bbolt.
func BenchmarkIndexBuildBbolt(b *testing.B) {
	lg, msgs := benchLog(b, 20_000)
	var size int64
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "index.bolt")
		b.StartTimer()
		db := boltIndex(b, lg, path)
		b.StopTimer()
		db.Close()
		size = fileSizes(path)
		b.StartTimer()
	}
	b.ReportMetric(float64(msgs)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(size)/20_000, "B/instance")
}

// BenchmarkIndexQueryBbolt is BenchmarkIndexQuery with bbolt: the newest
// 50 failed instances from the status+updated keys, their summaries
// read and decoded.
func BenchmarkIndexQueryBbolt(b *testing.B) {
	lg, _ := benchLog(b, 20_000)
	db := boltIndex(b, lg, filepath.Join(b.TempDir(), "index.bolt"))
	defer db.Close()
	prefix := []byte("failed\x00")
	for b.Loop() {
		var got []audit.Instance
		err := db.View(func(tx *bolt.Tx) error {
			inst := tx.Bucket([]byte("instances"))
			c := tx.Bucket([]byte("status_updated")).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(got) < 50; k, _ = c.Next() {
				id := k[len(prefix)+8+1:]
				var in audit.Instance
				if err := json.Unmarshal(inst.Get(id), &in); err != nil {
					return err
				}
				got = append(got, in)
			}
			return nil
		})
		if err != nil || len(got) != 50 {
			b.Fatal(err, len(got))
		}
	}
}
