package server

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// encodedMessage is a response already in the protobuf wire format, sent
// as is by the server's codec: the watch fan-out encodes each event's
// response once and sends the same bytes on every watcher's stream. A
// grpc.PreparedMsg cannot be shared that way: it is prepared for one
// stream, compressed with that stream's compressor, while a codec's bytes
// are compressed, if at all, by each stream on its own.
type encodedMessage []byte

// codec is gRPC's protobuf codec, except that it sends an encodedMessage's
// bytes without encoding them again. It is forced on the server (see
// NewGRPCServer) so that every stream uses it, whatever content-subtype a
// client asks for; the server has no other codec anyway.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec {
	return codec{proto: encoding.GetCodecV2(protocodec.Name)}
}

// codecOption makes the server use codec.
func codecOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(newCodec())
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(encodedMessage); ok {
		// A SliceBuffer's Free does nothing: the shared bytes stay intact
		// after gRPC is done with them on this stream.
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

func (c codec) Name() string {
	return protocodec.Name
}
