package bench

import (
	"context"
	"crypto/sha256"
	"os"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ---- The Postgres peer (BENCHMARKS.md §5.11) ---------------------------
//
// The same durable work on Postgres, the store Sayiir and DBOS use, on the
// same machine: scripts/postgres-peer.sh installs and starts it
// (synchronous_commit on, fsync on) and sets RUNLOG_PG_URL; without it
// these benchmarks are skipped. The schema is Sayiir's Postgres backend cut
// to what a create and a checkpoint touch: a snapshot row per instance
// (status, definition hash, history version) and an append-only history
// row per write holding the payload (Sayiir keeps a full snapshot copy per
// write there; here the payload is runlog's own commit, so both sides
// write the same bytes). A create is one statement: the row inserted ON
// CONFLICT DO NOTHING and, if it was, its first history row (the Fail
// policy). A checkpoint is one statement: the row's version bumped if it
// is still the expected one and the run not terminal (the fencing runlog's
// sequence check gives), and the next history row.

const (
	pgSchema = `
drop table if exists snapshot_history;
drop table if exists snapshots;
create table snapshots (
	instance_id text primary key,
	status text not null,
	definition_hash bytea not null,
	history_version int not null default 1,
	updated_at timestamptz not null default now()
) with (fillfactor = 80);
create table snapshot_history (
	instance_id text not null,
	version int not null,
	data bytea not null,
	data_hash bytea not null,
	created_at timestamptz not null default now(),
	unique (instance_id, version)
);`
	pgCreate = `
with ins as (
	insert into snapshots (instance_id, status, definition_hash) values ($1, 'in_progress', $2)
	on conflict do nothing returning history_version
)
insert into snapshot_history (instance_id, version, data, data_hash)
select $1, history_version, $3, $4 from ins`
	pgCheckpoint = `
with up as (
	update snapshots set history_version = history_version + 1, updated_at = now()
	where instance_id = $1 and history_version = $2 and status not in ('completed', 'failed', 'cancelled')
	returning history_version
)
insert into snapshot_history (instance_id, version, data, data_hash)
select $1, history_version, $3, $4 from up`
)

// pgEnv is a fresh schema on the server RUNLOG_PG_URL names, and the
// payloads runlog writes for a create and a checkpoint.
type pgEnv struct {
	pool       *pgxpool.Pool
	create     []byte // a create's commit payload, as runlog writes it
	checkpoint []byte // a checkpoint's commit payload
}

func newPGEnv(b *testing.B, conns int) *pgEnv {
	b.Helper()
	url := os.Getenv("RUNLOG_PG_URL")
	if url == "" {
		b.Skip("set RUNLOG_PG_URL (test/bench/scripts/postgres-peer.sh does) to run the Postgres peer")
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, pgSchema); err != nil {
		b.Fatalf("schema: %v", err)
	}
	// The payloads: what runlog writes for the same operations.
	e := newEnv(b, syncDefault)
	st := e.store(b, 0)
	r := runners(b, st, "pgpayload-", 1)[0]
	if err := r.checkpoint(ctx, st, make([]byte, outputSize)); err != nil {
		b.Fatal(err)
	}
	var msgs [][]byte
	for m, err := range e.log.Read(ctx, "pgpayload-0", 0) {
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m.Data)
	}
	if len(msgs) < 2 {
		b.Fatalf("payload instance has %d messages", len(msgs))
	}
	return &pgEnv{pool: pool, create: msgs[0], checkpoint: msgs[len(msgs)-1]}
}

// createRun creates instance id: true if created, false if it existed.
func (p *pgEnv) createRun(ctx context.Context, id string) (bool, error) {
	h := sha256.Sum256(p.create)
	tag, err := p.pool.Exec(ctx, pgCreate, id, defHash[:], p.create, h[:])
	return tag.RowsAffected() == 1, err
}

// checkpointRun writes the next history row of id if its version is
// version; false if it was not.
func (p *pgEnv) checkpointRun(ctx context.Context, id string, version int) (bool, error) {
	h := sha256.Sum256(p.checkpoint)
	tag, err := p.pool.Exec(ctx, pgCheckpoint, id, version, p.checkpoint, h[:])
	return tag.RowsAffected() == 1, err
}

// BenchmarkPostgresCreate is one durable create at a time: the peer of
// BenchmarkPrepareRunFreshSyncAlways.
func BenchmarkPostgresCreate(b *testing.B) {
	p := newPGEnv(b, 1)
	ctx := context.Background()
	n := 0
	cpu := startCPU()
	for b.Loop() {
		n++
		if ok, err := p.createRun(ctx, "c-"+strconv.Itoa(n)); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	cpu.report(b)
}

// BenchmarkPostgresCreateExisting is a create refused because the
// instance exists (the Fail policy's conflict): nothing is written.
func BenchmarkPostgresCreateExisting(b *testing.B) {
	p := newPGEnv(b, 1)
	ctx := context.Background()
	if ok, err := p.createRun(ctx, "existing"); err != nil || !ok {
		b.Fatal(ok, err)
	}
	for b.Loop() {
		if ok, err := p.createRun(ctx, "existing"); err != nil || ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkPostgresCheckpoint is one durable checkpoint at a time, fenced
// by the expected version: the peer of BenchmarkCheckpointSyncAlways.
func BenchmarkPostgresCheckpoint(b *testing.B) {
	p := newPGEnv(b, 1)
	ctx := context.Background()
	const id = "checkpointed"
	if ok, err := p.createRun(ctx, id); err != nil || !ok {
		b.Fatal(ok, err)
	}
	version := 1
	cpu := startCPU()
	for b.Loop() {
		ok, err := p.checkpointRun(ctx, id, version)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		version++
	}
	cpu.report(b)
	// A stale version is refused: the fencing is real.
	if ok, err := p.checkpointRun(ctx, id, version-1); err != nil || ok {
		b.Fatalf("a checkpoint on a stale version: %v %v", ok, err)
	}
}

// BenchmarkPostgresCreateParallelDurable is BenchmarkPostgresCreate from
// 16 goroutines with a connection each: the peer of
// BenchmarkPrepareRunFreshParallelDurable.
func BenchmarkPostgresCreateParallelDurable(b *testing.B) {
	p := newPGEnv(b, durableWriters)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(writersParallelism(durableWriters))
	b.ResetTimer()
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := p.createRun(ctx, "p-"+strconv.FormatInt(n.Add(1), 10)); err != nil || !ok {
				b.Error(ok, err)
				return
			}
		}
	})
	cpu.report(b)
}

// BenchmarkCheckpointSyncAlways is BenchmarkCheckpoint on a server that
// fsyncs before every acknowledgement.
func BenchmarkCheckpointSyncAlways(b *testing.B) {
	benchCheckpointOn(b, outputSize, newEnv(b, syncAlways))
}
