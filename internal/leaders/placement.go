package leaders

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamReader is what Read needs of a JetStream context: one stream info
// per stream.
type StreamReader interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Read returns the placement of each named stream that exists, from
// JetStream's stream info, in the order of names. A stream that does not
// exist is left out (the dead-letter streams may be off); any other
// failure to read one fails Read.
func Read(ctx context.Context, js StreamReader, groups [][]string) ([]Stream, error) {
	var out []Stream
	for g, names := range groups {
		for _, name := range names {
			stream, err := js.Stream(ctx, name)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("stream info of %s: %w", name, err)
			}
			s := placementOf(stream.CachedInfo())
			s.Group = g
			out = append(out, s)
		}
	}
	return out, nil
}

// placementOf turns a stream info into a Stream.
func placementOf(info *jetstream.StreamInfo) Stream {
	s := Stream{Name: info.Config.Name, Replicas: info.Config.Replicas}
	if info.Cluster == nil {
		return s
	}
	s.Leader = info.Cluster.Leader
	for _, p := range info.Cluster.Replicas {
		if p == nil || p.Name == s.Leader {
			continue
		}
		s.Followers = append(s.Followers, Follower{Name: p.Name, Current: p.Current && !p.Offline && !p.Pending})
	}
	return s
}

// Balanced reports whether Plan has nothing to move: no stream's leader
// leads two streams more than a current follower of that stream does.
func Balanced(streams []Stream) bool { return len(Plan(streams)) == 0 }
