package memlog

import (
	"context"
	"sync"
	"time"

	"github.com/runlog/runlog/lifecycle"
)

// Leases returns the log's lease store for task claims
// (lifecycle.Config.Leases): in memory, expiring by the log's clock (the
// now given to [New]). Every call returns the same store.
func (l *Log) Leases() lifecycle.Leases {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leases == nil {
		l.leases = &leases{now: l.now, m: make(map[lifecycle.LeaseKey]lease)}
	}
	return l.leases
}

type lease struct {
	holder  string
	expires time.Time // zero: never
}

type leases struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[lifecycle.LeaseKey]lease
}

// live returns the live lease of k.
func (s *leases) live(k lifecycle.LeaseKey) (lease, bool) {
	le, ok := s.m[k]
	if ok && !le.expires.IsZero() && !s.now().Before(le.expires) {
		delete(s.m, k)
		return lease{}, false
	}
	return le, ok
}

func (s *leases) expiry(ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	return s.now().Add(ttl)
}

func (s *leases) AcquireLease(ctx context.Context, k lifecycle.LeaseKey, holder string, ttl time.Duration) (bool, string, error) {
	if err := ctx.Err(); err != nil {
		return false, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if le, ok := s.live(k); ok {
		return false, le.holder, nil
	}
	s.m[k] = lease{holder: holder, expires: s.expiry(ttl)}
	return true, "", nil
}

func (s *leases) RenewLease(ctx context.Context, k lifecycle.LeaseKey, holder string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	le, ok := s.live(k)
	if !ok || le.holder != holder {
		return false, nil
	}
	s.m[k] = lease{holder: holder, expires: s.expiry(ttl)}
	return true, nil
}

func (s *leases) LeaseHolder(ctx context.Context, k lifecycle.LeaseKey) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	le, ok := s.live(k)
	return le.holder, ok, nil
}

func (s *leases) ReleaseLease(ctx context.Context, k lifecycle.LeaseKey, holder string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if le, ok := s.live(k); ok && le.holder == holder {
		delete(s.m, k)
	}
	return nil
}
