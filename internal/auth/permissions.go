package auth

import (
	"context"
	"strings"
)

// Permissions of the RPC groups. A permission "consume:<name>" allows
// ConsumeOrders, AckOrders and StreamOrders on one durable consumer; "consume" (or
// "consume:*") on every consumer but the reserved ones (order-review),
// which need "admin" too; "*" allows everything.
const (
	Read    = "read"    // GetOrder, GetOrderHistory, ListOrders
	Write   = "write"   // CreateOrder, CreateOrders, the transitions
	Watch   = "watch"   // WatchOrders
	Consume = "consume" // ConsumeOrders, AckOrders, StreamOrders
	Admin   = "admin"   // the QueueService; consuming from reserved consumers
	All     = "*"
)

// groups maps each OrderService method to the permission it needs. A
// method that is not listed is refused to everyone: a new RPC must be put
// in a group before anyone can call it.
var groups = map[string]string{
	"/orders.v1.OrderService/CreateOrder":     Write,
	"/orders.v1.OrderService/CreateOrders":    Write,
	"/orders.v1.OrderService/ApproveOrder":    Write,
	"/orders.v1.OrderService/RejectOrder":     Write,
	"/orders.v1.OrderService/PayOrder":        Write,
	"/orders.v1.OrderService/ShipOrder":       Write,
	"/orders.v1.OrderService/CancelOrder":     Write,
	"/orders.v1.OrderService/GetOrder":        Read,
	"/orders.v1.OrderService/GetOrderHistory": Read,
	"/orders.v1.OrderService/ListOrders":      Read,
	"/orders.v1.OrderService/WatchOrders":     Watch,
	"/orders.v1.OrderService/ConsumeOrders":   Consume,
	"/orders.v1.OrderService/AckOrders":       Consume,
	"/orders.v1.OrderService/StreamOrders":    Consume,

	"/orders.v1.QueueService/ListConsumers":      Admin,
	"/orders.v1.QueueService/GetConsumer":        Admin,
	"/orders.v1.QueueService/UpdateConsumer":     Admin,
	"/orders.v1.QueueService/DeleteConsumer":     Admin,
	"/orders.v1.QueueService/ListDeadLetters":    Admin,
	"/orders.v1.QueueService/RedriveDeadLetters": Admin,
	"/orders.v1.QueueService/PurgeDeadLetters":   Admin,
	"/orders.v1.QueueService/RepairOrder":        Admin,
}

// Identity is an authenticated caller.
type Identity struct {
	Name        string
	Permissions []string
}

// may reports whether the identity holds permission p. "consume" is held
// when any consume permission is: the consumer name is checked by the
// handler with MayConsume.
func (id *Identity) may(p string) bool {
	for _, have := range id.Permissions {
		if have == All || have == p || (p == Consume && strings.HasPrefix(have, Consume+":")) {
			return true
		}
	}
	return false
}

// MayConsume reports whether the identity may consume from (and ack on)
// the durable consumer name.
func (id *Identity) MayConsume(name string) bool {
	for _, have := range id.Permissions {
		if have == All || have == Consume || have == Consume+":*" || have == Consume+":"+name {
			return true
		}
	}
	return false
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller's identity, or nil when authentication is
// off.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// MayConsume reports whether the caller of ctx may use the consumer name:
// always when authentication is off.
func MayConsume(ctx context.Context, name string) bool {
	id := FromContext(ctx)
	return id == nil || id.MayConsume(name)
}

// IsAdmin reports whether the caller of ctx holds "admin" (or "*"):
// always when authentication is off.
func IsAdmin(ctx context.Context) bool {
	id := FromContext(ctx)
	return id == nil || id.may(Admin)
}
