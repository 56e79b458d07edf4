package consumers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// Errors of ResumePositions.Open and of a watch that resumes after a
// position.
var (
	// ErrBadPosition: not a resume position this deployment issued
	// (altered, truncated, of another deployment's key, or no position at
	// all).
	ErrBadPosition = errors.New("is not a resume position this deployment issued (altered, truncated or from another deployment): " +
		"pass back a resume_position exactly as WatchOrders gave it")
	// ErrStalePosition: issued by this deployment, but in another
	// incarnation of the stream ORDERS, whose sequences are gone.
	ErrStalePosition = errors.New("was issued for an earlier incarnation of the stream ORDERS (before `ordersd migrate` or a re-creation of the stream): " +
		"its positions no longer exist; watch again from the start (replay_all) or from a time (start_time)")
	// ErrForeignPosition: issued by this deployment, but for another layout
	// of its streams (one stream ORDERS, or another number of partitions),
	// whose sequences mean nothing in this one. It is wrapped with what
	// the position names and what the deployment has.
	ErrForeignPosition = errors.New("was issued for another layout of the orders' streams")
)

// The version leads every position, so that the format can change and an
// old one is told apart: version 1 is layout 2's (one stream ORDERS),
// version 2 layout 3's (one epoch and sequence per partition).
const (
	resumePositionVersion            = 1
	resumePositionVersionPartitioned = 2
)

// Sizes of a position: version, stream count, then per stream its epoch
// and the last sequence delivered, then the MAC (HMAC-SHA256, cut as a
// ListOrders page token's is).
const (
	positionStreamLen = eventstore.EpochLen + 8
	positionMACLen    = 16
	positionLen       = 1 + 1 + positionStreamLen + positionMACLen
)

// positionLenOf is the size of a position of n streams.
func positionLenOf(n int) int { return 1 + 1 + n*positionStreamLen + positionMACLen }

// Position is where a watch stands in the stream ORDERS: every event up to
// and including Sequence has been delivered (or was not asked for), in the
// incarnation Epoch of the stream. It is the one stream of today's layout;
// the format holds one such pair per stream, so that a partitioned layout
// gives one per partition.
type Position struct {
	Epoch    eventstore.Epoch
	Sequence uint64
}

// ResumePositions seal and open the resume positions of WatchOrders. A
// position is opaque to clients and tamper-evident: a version byte, the
// number of streams, each stream's epoch and last sequence delivered,
// under an HMAC with a key derived from the deployment's token key, in the
// strict URL-safe base64 of ack tokens (one string per position). So it
// works on every node of the deployment, an altered or foreign one is
// refused, and so is one of an earlier stream ORDERS.
type ResumePositions struct {
	key  []byte
	macs sync.Pool // of hash.Hash: HMAC-SHA256 with key, reused
}

// NewResumePositions returns sealer and opener of resume positions under a
// key derived from the deployment's token key (tokens), like the other
// tokens a node hands out.
func NewResumePositions(tokens *AckTokens) *ResumePositions {
	p := &ResumePositions{key: tokens.DeriveKey("ordersd WatchOrders resume positions v1")}
	p.macs.New = func() any { return hmac.New(sha256.New, p.key) }
	return p
}

// Seal returns the resume position of pos.
func (p *ResumePositions) Seal(pos Position) string {
	b := make([]byte, 0, positionLen)
	b = append(b, resumePositionVersion, 1)
	b = append(b, pos.Epoch[:]...)
	b = binary.BigEndian.AppendUint64(b, pos.Sequence)
	b = append(b, p.mac(b)...)
	return tokenEncoding.EncodeToString(b)
}

// Open returns the position a resume position stands for, or
// ErrBadPosition for anything Seal did not make with this key. The caller
// compares its epoch with the stream's (ErrStalePosition).
func (p *ResumePositions) Open(position string) (Position, error) {
	b, ok := decode(position)
	if !ok || len(b) != positionLen || b[0] != resumePositionVersion || b[1] != 1 {
		return Position{}, ErrBadPosition
	}
	body, mac := b[:len(b)-positionMACLen], b[len(b)-positionMACLen:]
	if !hmac.Equal(mac, p.mac(body)) {
		return Position{}, ErrBadPosition
	}
	stream := body[2:]
	return Position{Epoch: eventstore.Epoch(stream[:eventstore.EpochLen]), Sequence: binary.BigEndian.Uint64(stream[eventstore.EpochLen:])}, nil
}

// SealPartitions returns the resume position of layout 3 standing at
// pos, one per partition by number (version 2).
func (p *ResumePositions) SealPartitions(pos []Position) string {
	b := make([]byte, 0, positionLenOf(len(pos)))
	b = append(b, resumePositionVersionPartitioned, byte(len(pos)))
	for _, one := range pos {
		b = append(b, one.Epoch[:]...)
		b = binary.BigEndian.AppendUint64(b, one.Sequence)
	}
	b = append(b, p.mac(b)...)
	return tokenEncoding.EncodeToString(b)
}

// SealIn returns the resume position standing at pos in layout l: version
// 1 (pos[0]) in layout 2, version 2 in layout 3.
func (p *ResumePositions) SealIn(l eventstore.Layout, pos []Position) string {
	if !l.Partitioned() {
		return p.Seal(pos[0])
	}
	return p.SealPartitions(pos)
}

// OpenIn returns the positions, one per partition of layout l, that a
// resume position stands for: ErrBadPosition for anything this key did
// not seal, ErrForeignPosition (wrapped, saying why) for one sealed for
// another layout or another number of partitions. The caller compares
// the epochs with the streams' (ErrStalePosition).
func (p *ResumePositions) OpenIn(l eventstore.Layout, position string) ([]Position, error) {
	b, ok := decode(position)
	if !ok || len(b) < 2 || b[0] < resumePositionVersion || b[0] > resumePositionVersionPartitioned || b[1] == 0 ||
		len(b) != positionLenOf(int(b[1])) {
		return nil, ErrBadPosition
	}
	body, mac := b[:len(b)-positionMACLen], b[len(b)-positionMACLen:]
	if !hmac.Equal(mac, p.mac(body)) {
		return nil, ErrBadPosition
	}
	version, n := b[0], int(b[1])
	if version == resumePositionVersion && n != 1 {
		return nil, ErrBadPosition
	}
	names, has := "one stream ORDERS (layout 2)", "one stream ORDERS (layout 2)"
	if version == resumePositionVersionPartitioned {
		names = fmt.Sprintf("%d partitions (layout 3)", n)
	}
	if l.Partitioned() {
		has = fmt.Sprintf("%d partitions (layout 3)", l.Partitions)
	}
	if names != has {
		return nil, fmt.Errorf("%w: it names %s, this deployment has %s; watch again from the start (replay_all) or from a time (start_time)",
			ErrForeignPosition, names, has)
	}
	out := make([]Position, n)
	for i := range out {
		stream := body[2+i*positionStreamLen:]
		out[i] = Position{Epoch: eventstore.Epoch(stream[:eventstore.EpochLen]), Sequence: binary.BigEndian.Uint64(stream[eventstore.EpochLen:])}
	}
	return out, nil
}

func (p *ResumePositions) mac(body []byte) []byte {
	h := p.macs.Get().(hash.Hash)
	defer p.macs.Put(h)
	h.Reset()
	h.Write(body)
	return h.Sum(nil)[:positionMACLen]
}
