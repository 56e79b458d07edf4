package eventstore

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Layout says over which streams a deployment lays out its orders.
//
// Layout 2, the zero Layout, is one stream ORDERS holding every event on
// ORDERS.<event>.<customer_id>.<order_id>, beside the stream ORDER_IDS
// holding the order-id claims (index.go). Every write goes through the
// one leader of ORDERS.
//
// Layout 3 (Partitions > 0) is N partitions, each a stream of its own with
// its own leader: partition k is the stream ORDERS_<k>, holding the events
// of its orders on ORDERS.<k>.<event>.<customer_id>.<order_id> and the
// claims of their ids on ORDER_IDS.<k>.<order_id>, so a create writes to
// one stream. An order's partition is PartitionOf(order_id, N): it never
// moves, so its events stay in order. The subjects of both layouts never
// overlap, so both can exist while `ordersd migrate` rewrites one into
// the other, and a core NATS subscription on ORDERS.> sees every event
// of either (a JetStream consumer reads one stream: one partition).
type Layout struct {
	// Partitions is N, 1 to MaxPartitions; 0 is layout 2.
	Partitions int
}

// MaxPartitions bounds N: every partition is a stream with a leader of its
// own and its own consumers, so a work queue or a watch costs one consumer
// per partition.
const MaxPartitions = 64

// Layout versions, as recorded in each stream's metadata (MetadataLayout).
const (
	// UnpartitionedLayout is layout 2: ORDERS.<event>.<customer_id>.<order_id>
	// in one stream, whose customer token lets JetStream itself select one
	// customer's events at a cost that grows with that customer's events.
	UnpartitionedLayout = "2"
	// PartitionedLayout is layout 3: the same subjects under ORDERS.<k>.
	PartitionedLayout = "3"
)

// MetadataPartitions is the stream metadata key holding a partitioned
// deployment's N, on every partition; MetadataPartition holds the
// partition's own number.
const (
	MetadataPartitions = "ordersd_partitions"
	MetadataPartition  = "ordersd_partition"
)

// Check fails with ErrInvalidOption when N is out of range.
func (l Layout) Check() error {
	if l.Partitions < 0 || l.Partitions > MaxPartitions {
		return fmt.Errorf("%w: partitions must be 1 to %d, got %d", ErrInvalidOption, MaxPartitions, l.Partitions)
	}
	return nil
}

// Version is the layout's number as the stream metadata records it.
func (l Layout) Version() string {
	if l.Partitions == 0 {
		return UnpartitionedLayout
	}
	return PartitionedLayout
}

// Partitioned reports whether l is layout 3.
func (l Layout) Partitioned() bool { return l.Partitions > 0 }

// All are the layout's partitions in order: one for layout 2.
func (l Layout) All() []Partition {
	if l.Partitions == 0 {
		return []Partition{{}}
	}
	out := make([]Partition, l.Partitions)
	for k := range out {
		out[k] = Partition{Number: k, Of: l.Partitions}
	}
	return out
}

// Of is the partition holding the order orderID.
func (l Layout) Of(orderID string) Partition {
	if l.Partitions == 0 {
		return Partition{}
	}
	return Partition{Number: PartitionOf(orderID, l.Partitions), Of: l.Partitions}
}

// PartitionOf is the partition of order id orderID among n: FNV-1a (32
// bits) of the id's bytes, modulo n. It is part of the contract with other
// programs (the README names it), so that any of them can find an order's
// stream.
func PartitionOf(orderID string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(orderID))
	return int(h.Sum32() % uint32(n))
}

// Partition is one stream of orders: in layout 2 the stream ORDERS (the
// zero Partition, whose claims are in ORDER_IDS), in layout 3 partition
// Number of Of.
type Partition struct {
	Number int
	Of     int // N; 0 in layout 2
}

// Stream is the partition's stream: ORDERS or ORDERS_<k>.
func (p Partition) Stream() string {
	if p.Of == 0 {
		return StreamName
	}
	return StreamName + "_" + strconv.Itoa(p.Number)
}

// ClaimStream is the stream holding the partition's order-id claims:
// ORDER_IDS in layout 2, the partition's own stream in layout 3.
func (p Partition) ClaimStream() string {
	if p.Of == 0 {
		return IndexStreamName
	}
	return p.Stream()
}

// eventPrefix is what the partition's event subjects begin with: ORDERS
// or ORDERS.<k>.
func (p Partition) eventPrefix() string {
	if p.Of == 0 {
		return StreamName
	}
	return StreamName + "." + strconv.Itoa(p.Number)
}

// claimPrefix is what the partition's claim subjects begin with:
// ORDER_IDS or ORDER_IDS.<k>.
func (p Partition) claimPrefix() string {
	if p.Of == 0 {
		return IndexStreamName
	}
	return IndexStreamName + "." + strconv.Itoa(p.Number)
}

// Subjects is the filter of every event of the partition: ORDERS.> in
// layout 2 (the stream captures only its event subjects), ORDERS.<k>.> in
// layout 3 (which leaves the claims out).
func (p Partition) Subjects() string { return p.eventPrefix() + ".>" }

// CapturedSubjects are the subjects the partition's stream captures: its
// event subjects (prefix.<event>.*.* for each event type), and in layout 3
// its claims (ORDER_IDS.<k>.*).
func (p Partition) CapturedSubjects() []string {
	subjects := layoutSubjects(p.eventPrefix())
	if p.Of > 0 {
		subjects = append(subjects, p.claimPrefix()+".*")
	}
	return subjects
}

// ClaimSubject is the subject of the claim of order id orderID.
func (p Partition) ClaimSubject(orderID string) string {
	return p.claimPrefix() + "." + orderID
}

// String names the partition in logs and errors.
func (p Partition) String() string { return p.Stream() }

// PartitionOfStream is the partition whose stream is name, in layout l;
// false when no partition of l has that stream.
func (l Layout) PartitionOfStream(name string) (Partition, bool) {
	if l.Partitions == 0 {
		return Partition{}, name == StreamName
	}
	k, ok := strings.CutPrefix(name, StreamName+"_")
	if !ok {
		return Partition{}, false
	}
	n, err := strconv.Atoi(k)
	if err != nil || n < 0 || n >= l.Partitions || strconv.Itoa(n) != k {
		return Partition{}, false
	}
	return Partition{Number: n, Of: l.Partitions}, true
}
