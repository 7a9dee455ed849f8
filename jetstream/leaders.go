package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Leaders returns the name of the server leading each partition's
// stream, partition by partition ("" for a stream with no leader, or not
// clustered).
func (s *Log) Leaders(ctx context.Context) ([]string, error) {
	leaders := make([]string, len(s.all))
	for i, p := range s.all {
		info, err := s.streamInfo(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("jetstream: leaders: %w", err)
		}
		if info.Cluster != nil {
			leaders[i] = info.Cluster.Leader
		}
	}
	return leaders, nil
}

// SpreadLeaders moves the leaderships of a replicated partitioned store's
// streams so that they are spread over the servers that hold them: the
// servers holding any partition are sorted by name, partition p is given
// to the (p mod n)-th of those that hold a replica of it, and each stream
// led elsewhere is asked to step down in favour of that server
// ($JS.API.STREAM.LEADER.STEPDOWN with a preferred placement; the caller
// needs that permission). A stream's leader is where its writes are
// stored first and answered from, so K partitions on K servers use every
// server's write path; the server's own placement of new streams does not
// promise that (BENCHMARKS.md §5.11: three partitions created on three
// nodes got two distinct leaders). It waits, within ctx, until every moved
// stream has a leader again, and returns the leaders as [Log.Leaders].
// On a store of one partition, or not replicated, it changes nothing.
// Leaderships move again when servers restart; call it again after.
func (s *Log) SpreadLeaders(ctx context.Context) ([]string, error) {
	infos := make([]*natsjs.StreamInfo, len(s.all))
	var servers []string
	for i, p := range s.all {
		info, err := s.streamInfo(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("jetstream: spread leaders: %w", err)
		}
		infos[i] = info
		for _, name := range peers(info) {
			if !slices.Contains(servers, name) {
				servers = append(servers, name)
			}
		}
	}
	if len(s.all) == 1 || len(servers) < 2 {
		return s.Leaders(ctx)
	}
	slices.Sort(servers)
	moved := false
	for i, p := range s.all {
		holders := peers(infos[i])
		want := servers[i%len(servers)]
		if !slices.Contains(holders, want) {
			continue // the partition has no replica there
		}
		if infos[i].Cluster.Leader == want {
			continue
		}
		body, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": want}})
		if err != nil {
			return nil, err
		}
		resp, err := s.nc.RequestWithContext(ctx, s.apiSubject("STREAM.LEADER.STEPDOWN."+p.name), body)
		if err != nil {
			return nil, fmt.Errorf("jetstream: spread leaders: stream %s to %s: %w", p.name, want, err)
		}
		var r struct {
			Error   *natsjs.APIError `json:"error"`
			Success bool             `json:"success"`
		}
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return nil, fmt.Errorf("jetstream: spread leaders: stream %s: %w: %q", p.name, natsjs.ErrInvalidJSAck, resp.Data)
		}
		if r.Error != nil {
			return nil, fmt.Errorf("jetstream: spread leaders: stream %s to %s: %w", p.name, want, r.Error)
		}
		moved = true
	}
	if !moved {
		return s.Leaders(ctx)
	}
	// Wait for the new leaders to be elected.
	for {
		leaders, err := s.Leaders(ctx)
		if err == nil && !slices.Contains(leaders, "") {
			return leaders, nil
		}
		select {
		case <-ctx.Done():
			return leaders, fmt.Errorf("jetstream: spread leaders: waiting for the new leaders: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// peers returns the names of the servers holding a replica of a stream:
// its leader and its other replicas.
func peers(info *natsjs.StreamInfo) []string {
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil
	}
	names := []string{info.Cluster.Leader}
	for _, r := range info.Cluster.Replicas {
		names = append(names, r.Name)
	}
	return names
}
