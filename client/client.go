package client

import (
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Client calls ordersd. Its embedded OrderServiceClient makes every RPC
// of the API, through the balancing, health checking and retries Dial set
// up; writes without a request_id get one. It is safe for concurrent use;
// make one per process and share it.
type Client struct {
	ordersv1.OrderServiceClient
	conn *grpc.ClientConn
	log  *slog.Logger
}

// Dial returns a Client for target (see the package documentation for
// targets). It does not wait for a connection: calls wait for a healthy
// node, within their deadline.
func Dial(target string, opts ...Option) (*Client, error) {
	o := options{balancer: RoundRobin, keepalive: defaultKeepalive}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	creds, err := o.transportCredentials()
	if err != nil {
		return nil, err
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	t, err := resolveTarget(target, os.Getenv, schemeRegistered)
	if err != nil {
		return nil, err
	}
	sc, err := ServiceConfig(o.balancer)
	if err != nil {
		return nil, err
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithKeepaliveParams(o.keepalive),
		grpc.WithChainUnaryInterceptor(requestIDUnary),
		grpc.WithChainStreamInterceptor(requestIDStream),
	}
	if o.token != nil {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerToken{source: o.token}))
	}
	if t.static != nil {
		dialOpts = append(dialOpts, grpc.WithResolvers(t.static))
	}
	conn, err := grpc.NewClient(t.target, append(dialOpts, o.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return &Client{OrderServiceClient: ordersv1.NewOrderServiceClient(conn), conn: conn, log: o.log}, nil
}

// Conn is the client's connection, for other services on the same nodes.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in progress fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }
