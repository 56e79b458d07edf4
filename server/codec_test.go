package server_test

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// rawRecorder is a client codec that keeps the wire bytes of every
// message it decodes, so a test sees exactly what the server sent.
type rawRecorder struct {
	proto encoding.CodecV2
	raw   chan []byte
}

func (c rawRecorder) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (c rawRecorder) Name() string                           { return c.proto.Name() }
func (c rawRecorder) Unmarshal(data mem.BufferSlice, v any) error {
	c.raw <- data.Materialize()
	return c.proto.Unmarshal(data, v)
}

// Live events reach every watcher as the same bytes the server encoded
// once (see consumers.TestLiveEventIsEncodedOnceForEveryWatcher): each
// watcher, one of them asking for gzip, gets exactly proto.Marshal of the
// response a replay sends for the same event, and decodes it.
func TestLiveEventsReachEveryWatcherAsTheirProtobufEncoding(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	const watchers, events = 5, 3
	var (
		streams []grpc.ServerStreamingClient[ordersv1.WatchOrdersResponse]
		raws    []chan []byte
	)
	for i := range watchers {
		rec := rawRecorder{proto: encoding.GetCodecV2("proto"), raw: make(chan []byte, 2*events)}
		opts := []grpc.CallOption{grpc.ForceCodecV2(rec)}
		if i == 0 {
			opts = append(opts, grpc.UseCompressor(gzip.Name))
		}
		ctx, cancel := context.WithCancel(streamCtx(t))
		t.Cleanup(cancel)
		stream, err := n.client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := stream.Recv(); err != nil || !res.GetCaughtUp() {
			t.Fatalf("watcher %d: first message %v, %v: want caught_up", i, res, err)
		}
		<-rec.raw
		streams, raws = append(streams, stream), append(raws, rec.raw)
	}
	for range events {
		n.create(t)
	}

	// What a replay sends, encoded per message by gRPC's own codec.
	replay, _ := n.watch(t, &ordersv1.WatchOrdersRequest{Start: &ordersv1.WatchOrdersRequest_ReplayAll{ReplayAll: true}})
	var want [][]byte
	for range events {
		res, err := replay.Recv()
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}

	for i, stream := range streams {
		for e := range events {
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("watcher %d: %v", i, err)
			}
			if got := <-raws[i]; !bytes.Equal(got, want[e]) {
				t.Fatalf("watcher %d, event %d: got bytes %x, want %x", i, e, got, want[e])
			}
			if res.GetEvent().GetSequence() != uint64(e+1) || res.GetEvent().GetOrder().GetCustomerId() != "customer-1" {
				t.Fatalf("watcher %d decoded %v, want the event of sequence %d", i, res, e+1)
			}
		}
	}
}
