package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// ErrDefinitionConflict: the definition hash is registered in the catalog
// with other names. A definition hash is the fingerprint of one
// definition: give a changed definition its own hash.
var ErrDefinitionConflict = newRefusal("lifecycle: definition registered with other names")

// CatalogKey returns the key of a definition's history in the definition
// catalog ([Config.Catalog]): the hash in hex.
func CatalogKey(hash workflow.DefinitionHash) string { return hash.String() }

// RegisterDefinition records the names of the definition with hash (the
// workflow's name, a version label, its task names) in the store's
// definition catalog ([Config.Catalog]), so that every instance of that
// definition reads by name — those whose histories were written without
// names, before or after, included ([Store.Definition],
// projection.State.Catalog). It is Sayiir's definition registry made
// part of the log: a definition is registered once, as the one event
// (definition.registered) of a history of its own in the catalog, named
// by the hash, appended with the same sequence check as every commit (so
// two registrations racing leave one) and verified like any history.
//
// Registering the same names again does nothing and returns nil; other
// names for a registered hash are refused with an error matching
// [ErrDefinitionConflict] that names the registered ones. [Store.PrepareRun]
// registers PrepareRunRequest.Workflow the first time a store sees its
// hash, as well as recording it in the instance's history. Errors: no
// catalog configured ([ErrInvalidConfig]), a zero hash or an invalid
// definition ([ErrInvalidRequest]; nothing is written), or the
// catalog's error.
func (s *Store) RegisterDefinition(ctx context.Context, hash workflow.DefinitionHash, def *workflow.Definition) error {
	if s.catalog == nil {
		return fmt.Errorf("%w: RegisterDefinition needs a definition catalog: set Config.Catalog (jetstream.Log.Catalog, or a memlog.Log of its own)", ErrInvalidConfig)
	}
	if hash.IsZero() {
		return fmt.Errorf("%w: RegisterDefinition of a zero definition hash", ErrInvalidRequest)
	}
	if def == nil {
		return fmt.Errorf("%w: RegisterDefinition of %s without a definition", ErrInvalidRequest, hash.String()[:12])
	}
	if err := def.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if known, ok := s.registered.Load(hash); ok {
		return sameDefinition(hash, known.(*workflow.Definition), def)
	}
	ctx, o := s.tel.startOp(ctx, "RegisterDefinition", CatalogKey(hash), "")
	attempts, err := s.register(ctx, hash, def)
	o.end(ctx, err, attempts, max(attempts-1, 0))
	return err
}

func (s *Store) register(ctx context.Context, hash workflow.DefinitionHash, def *workflow.Definition) (attempts int, err error) {
	key := CatalogKey(hash)
	for attempt := 0; attempt < s.maxAttempts; attempt++ {
		attempts++
		if err := backoff(ctx, attempt, false); err != nil {
			return attempts, err
		}
		st, err := projection.Fold(key, s.catalog.Read(ctx, key, 0))
		if err != nil {
			return attempts, fmt.Errorf("lifecycle: definition catalog, history of %s: %w", key[:12], err)
		}
		if known, ok := st.Definitions[hash]; ok {
			s.registered.Store(hash, known)
			return attempts, sameDefinition(hash, known, def)
		}
		c, err := s.commitOf(&st, "RegisterDefinition", ActorFrom(ctx), ulid.ULID{},
			&events.DefinitionRegisteredData{DefinitionHash: hash, Workflow: def.Clone()})
		if err != nil {
			return attempts, err
		}
		msg, err := c.Encode()
		if errors.Is(err, events.ErrInvalidText) {
			return attempts, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
		if err != nil {
			return attempts, err
		}
		_, err = s.catalog.Append(ctx, key, msg, st.LastSeq)
		switch {
		case errors.Is(err, ErrWrongSequence):
			continue // registered meanwhile: read it and compare
		case err != nil:
			return attempts, fmt.Errorf("lifecycle: definition catalog: %w", err)
		}
		s.registered.Store(hash, def.Clone())
		return attempts, nil
	}
	return attempts, fmt.Errorf("%w: RegisterDefinition of %s after %d attempts", ErrConcurrentModification, key[:12], s.maxAttempts)
}

func sameDefinition(hash workflow.DefinitionHash, known, def *workflow.Definition) error {
	if known.Name == def.Name && known.Version == def.Version && slices.Equal(known.Tasks, def.Tasks) {
		return nil
	}
	return fmt.Errorf("%w: definition %s is registered as %s, not %s: a definition hash names one definition, give a changed one its own hash",
		ErrDefinitionConflict, hash.String()[:12], definitionLabel(known), definitionLabel(def))
}

func definitionLabel(d *workflow.Definition) string {
	s := fmt.Sprintf("%q", d.Name)
	if d.Version != "" {
		s += fmt.Sprintf(" version %q", d.Version)
	}
	return s + fmt.Sprintf(" (%d task names)", len(d.Tasks))
}

// Definition returns the names the definition catalog holds for hash
// ([Store.RegisterDefinition]); ok is false when it holds none or the
// store has no catalog. A registered definition never changes, so the
// store keeps what it found.
func (s *Store) Definition(ctx context.Context, hash workflow.DefinitionHash) (*workflow.Definition, bool, error) {
	if s.catalog == nil {
		return nil, false, nil
	}
	if known, ok := s.registered.Load(hash); ok {
		return known.(*workflow.Definition), true, nil
	}
	d, ok, err := ReadDefinition(ctx, s.catalog, hash)
	if ok {
		s.registered.Store(hash, d)
	}
	return d, ok, err
}

// ReadDefinition reads the names a definition catalog (a Log such as
// [Config.Catalog]) holds for hash: the first commit of its history of
// hash, the registration, folded and checked as any first commit is. A
// definition is registered once, so nothing after it can change it:
// what follows is not read (verification reports a history that holds
// more). ok is false when it holds none, or when the first commit is
// not a registration of hash.
func ReadDefinition(ctx context.Context, catalog Log, hash workflow.DefinitionHash) (*workflow.Definition, bool, error) {
	key := CatalogKey(hash)
	for m, err := range catalog.Read(ctx, key, 0) {
		if err != nil {
			return nil, false, fmt.Errorf("lifecycle: definition catalog, history of %s: %w", key[:12], err)
		}
		st := projection.New(key)
		if _, err := st.ApplyMessage(m); err != nil {
			return nil, false, nil
		}
		d, ok := st.Definitions[hash]
		return d, ok, nil
	}
	return nil, false, nil
}

// Names returns the store's definition catalog as a projection.Catalog
// for readers (projection.State.Catalog): a definition it cannot read is
// reported as unknown.
func (s *Store) Names(ctx context.Context) projection.Catalog {
	return func(h workflow.DefinitionHash) (*workflow.Definition, bool) {
		d, ok, err := s.Definition(ctx, h)
		return d, ok && err == nil
	}
}

// CatalogNames returns a definition catalog, read through
// [ReadDefinition], as a projection.Catalog for readers without a
// [Store] (replay's show, state, diff and list): what it found is kept;
// a definition it cannot read is reported as unknown, and looked for
// again next time.
func CatalogNames(ctx context.Context, catalog Log) projection.Catalog {
	var found sync.Map
	return func(h workflow.DefinitionHash) (*workflow.Definition, bool) {
		if d, ok := found.Load(h); ok {
			return d.(*workflow.Definition), true
		}
		d, ok, err := ReadDefinition(ctx, catalog, h)
		if !ok || err != nil {
			return nil, false
		}
		found.Store(h, d)
		return d, true
	}
}
