package jetstream

import (
	"context"
	"fmt"

	"github.com/runlog/runlog/lifecycle"
)

// CatalogStream returns the name of the stream of the store's definition
// catalog: STREAM_DEFINITIONS.
func (s *Log) CatalogStream() string { return s.cfg.Stream + "_DEFINITIONS" }

// CatalogSubject returns the subject prefix of the definition catalog:
// the store's with "-def" appended ("runlog.wf-def"), so that its
// subjects never overlap the instances'.
func (s *Log) CatalogSubject() string { return s.cfg.Subject + "-def" }

// Catalog returns the store's definition catalog (lifecycle.Config.Catalog),
// opening it on first use: a log of its own, on the stream
// [Log.CatalogStream] (one partition, whatever the store's; the
// store's storage, replicas, de-duplication window and compression, and
// the same protections: no deletes, no purges), with one history per
// definition hash. It is an audit log like the store's: verified,
// exported and digested like any. Like [Open], it creates the stream
// unless the store is ReadOnly or NoCreate, where a missing catalog is
// an error matching [natsjs.ErrStreamNotFound] (a store no one
// registered a definition in). The catalog shares the store's
// connection; closing the store makes it unusable.
func (s *Log) Catalog(ctx context.Context) (lifecycle.Log, error) {
	c, err := s.CatalogLog(ctx)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CatalogLog is [Log.Catalog] as a *Log, for the reads across
// instances (Scan, listings, verification) that readers of the catalog
// need.
func (s *Log) CatalogLog(ctx context.Context) (*Log, error) {
	s.catalogMu.Lock()
	defer s.catalogMu.Unlock()
	if s.catalog != nil {
		return s.catalog, nil
	}
	cfg := s.cfg
	cfg.Stream, cfg.Subject, cfg.Partitions, cfg.GroupCommit = s.CatalogStream(), s.CatalogSubject(), 1, 0
	c, err := Open(ctx, s.nc, cfg)
	if err != nil {
		return nil, fmt.Errorf("jetstream: definition catalog: %w", err)
	}
	c.request = s.request
	s.catalog = c
	return c, nil
}
