package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"

	"github.com/nats-io/nats.go/jetstream"
)

// Epoch identifies one incarnation of the stream ORDERS in one subject
// layout: the tokens ordersd hands out (ack tokens, ListOrders page
// tokens) carry the epoch they were issued in, and are refused in any
// other. Their positions (stream sequences, ack subjects) mean something
// only in the stream that gave them: `ordersd migrate` deletes ORDERS and
// creates it again with every sequence renumbered, and an operator may
// delete and recreate it, so a token of the old stream must not act on
// whatever the new one holds at its position, whatever the key.
//
// The epoch is derived from what JetStream itself records of the stream,
// its name, its creation time (the same on every replica, kept across
// restarts, new on every re-creation) and the layout it holds, so nothing
// has to be written for it, no node can disagree about it, and no
// re-creation can forget to renew it. A partitioned layout extends it as
// it is: each partition stream has an epoch of its own, and a token names
// the partition it was issued for.
type Epoch [EpochLen]byte

// EpochLen is the size of an Epoch in a token.
const EpochLen = 8

// epochOf is the epoch of the stream info describes.
func epochOf(info *jetstream.StreamInfo) Epoch {
	h := sha256.New()
	h.Write([]byte(info.Config.Name))
	h.Write([]byte{0})
	h.Write([]byte(info.Config.Metadata[MetadataLayout]))
	h.Write([]byte{0})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(info.Created.UTC().UnixNano())))
	var e Epoch
	copy(e[:], h.Sum(nil))
	return e
}

// Epoch returns the epoch of the first partition's stream (ORDERS in
// layout 2), looking the streams up, or provisioning them, when they are
// not known yet.
func (s *Store) Epoch(ctx context.Context) (Epoch, error) {
	epochs, err := s.Epochs(ctx)
	if err != nil {
		return Epoch{}, err
	}
	return epochs[0], nil
}

// Epochs returns the epoch of every partition's stream, by partition
// number.
func (s *Store) Epochs(ctx context.Context) ([]Epoch, error) {
	ctx, cancel, st, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	epochs := make([]Epoch, len(st.parts))
	for i, part := range st.parts {
		epochs[i] = epochOf(part.events.CachedInfo())
	}
	return epochs, nil
}
