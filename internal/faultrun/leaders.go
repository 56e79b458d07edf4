package faultrun

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaderLog records when one consumer's leader changed: the
// LEADER_ELECTED advisories JetStream publishes (stamped with the server's
// time of the election), and the leader and leader_since its consumer
// info reports, polled. An R3 consumer may deliver again an event whose
// ack was confirmed when a new consumer leader was elected after the
// confirmation (docs/guarantees.md); this log is what tells those from a
// lost ack.
type leaderLog struct {
	stream, consumer string
	mu               sync.Mutex
	elections        []election
}

// election is one consumer leader taking office.
type election struct {
	at     time.Time
	leader string
	via    string // viaAdvisory or viaPoll
}

const (
	viaAdvisory = "advisory"
	viaPoll     = "consumer info"
)

func newLeaderLog(stream, consumer string) *leaderLog {
	return &leaderLog{stream: stream, consumer: consumer}
}

// advisorySubject is where JetStream announces a new leader of the
// consumer.
func (l *leaderLog) advisorySubject() string {
	return natsserver.JSAdvisoryConsumerLeaderElectedPre + "." + l.stream + "." + l.consumer
}

// observe subscribes conn to the consumer's leader advisories.
func (l *leaderLog) observe(conn *nats.Conn) error {
	_, err := conn.Subscribe(l.advisorySubject(), func(m *nats.Msg) {
		var adv natsserver.JSConsumerLeaderElectedAdvisory
		if json.Unmarshal(m.Data, &adv) != nil {
			return
		}
		l.record(election{at: cmpTime(adv.Time, time.Now()), leader: adv.Leader, via: viaAdvisory})
	})
	return err
}

// poll asks for the consumer's leader every interval until ctx ends, and
// records each new one with its leader_since (or when it was first seen,
// where the server does not say).
func (l *leaderLog) poll(ctx context.Context, js jetstream.JetStream, interval time.Duration) {
	var last election
	for sleep(ctx, interval) {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cons, err := js.Consumer(callCtx, l.stream, l.consumer)
		cancel()
		if err != nil {
			continue // not created yet, or no leader for now
		}
		ci := cons.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" {
			continue
		}
		e := election{at: time.Now(), leader: ci.Leader, via: viaPoll}
		if ci.LeaderSince != nil {
			e.at = *ci.LeaderSince
		}
		if e.leader != last.leader || !e.at.Equal(last.at) && ci.LeaderSince != nil {
			l.record(e)
			last = e
		}
	}
}

func (l *leaderLog) record(e election) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.elections = append(l.elections, e)
}

// electedBetween reports whether a consumer leader was elected after from
// and no later than to.
func (l *leaderLog) electedBetween(from, to time.Time) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.elections {
		if e.at.After(from) && !e.at.After(to) {
			return true
		}
	}
	return false
}

// count is the number of distinct elections recorded (the advisory and a
// poll of the same one count once).
func (l *leaderLog) count() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range l.elections {
		seen[e.leader+"@"+e.at.Truncate(time.Second).String()] = true
	}
	return len(seen)
}

// cmpTime is a if it is set, else b.
func cmpTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}
