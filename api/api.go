// Package api holds the OrderService API as a protobuf descriptor set that
// keeps the comments written in proto/ (generated code drops them), so that
// gRPC reflection serves them: `grpcurl describe` shows the documentation.
//
// Regenerate gen/ and the descriptor set after changing proto/ with
//
//	go generate ./api
package api

import (
	_ "embed"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

//go:generate sh -c "cd .. && go tool -modfile=tools/go.mod buf generate && go tool -modfile=tools/go.mod buf build -o api/orders.binpb"

//go:embed orders.binpb
var descriptorSet []byte

// Resolver finds descriptors in the documented API first and in the
// descriptors linked into the binary (health, reflection) after that.
type Resolver struct {
	documented *protoregistry.Files
}

// NewResolver parses the embedded descriptor set.
func NewResolver() (*Resolver, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptorSet, &set); err != nil {
		return nil, fmt.Errorf("api descriptor set: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("api descriptor set: %w", err)
	}
	return &Resolver{documented: files}, nil
}

// FindFileByPath implements protodesc.Resolver.
func (r *Resolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.documented.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

// FindDescriptorByName implements protodesc.Resolver.
func (r *Resolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.documented.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
