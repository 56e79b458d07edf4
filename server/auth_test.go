package server_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/server"
)

// startGuardedNode runs a node whose calls need a bearer token: static
// tokens from a file, or JWTs signed with an HMAC key (not both at once in
// a deployment of one key source; here the file holds the static ones and
// the JWT key the others).
func startGuardedNode(t *testing.T, tokensJSON string, hmacKey []byte, rate *auth.RateLimiter) *testNode {
	t.Helper()
	dir := t.TempDir()
	cfg := auth.Config{TokensFile: filepath.Join(dir, "tokens.json"), JWTHMACKeyFile: filepath.Join(dir, "hmac.key"), AnyIssuer: true, AnyAudience: true,
		// Every call comes from one address, and many fail on purpose.
		FailureBurst: 1000}
	if err := os.WriteFile(cfg.TokensFile, []byte(tokensJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.JWTHMACKeyFile, hmacKey, 0o600); err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(t.Context(), cfg, testsupport.Logger())
	if err != nil {
		t.Fatal(err)
	}
	opts := server.GRPCOptions{Auth: authn, PublicServices: auth.DefaultPublicServices}
	if rate != nil {
		opts.RateLimit = rate
	}
	return startNodesWith(t, 1, opts)[0]
}

func bearer(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

const guardTokens = `{"tokens": [
	{"identity": "admin", "token": "admin-token", "permissions": ["*"]},
	{"identity": "reader", "token": "reader-token", "permissions": ["read"]},
	{"identity": "writer", "token": "writer-token", "permissions": ["write"]},
	{"identity": "watcher", "token": "watcher-token", "permissions": ["watch"]},
	{"identity": "warehouse", "token": "warehouse-token", "permissions": ["consume:warehouse"]}
]}`

// Every RPC group refuses calls without a token, with a bad token, with an
// expired JWT and with a token that lacks the group's permission, and takes
// the right one, static or JWT: on unary and streaming RPCs alike.
func TestAuthenticationAndPermissionsPerGroup(t *testing.T) {
	t.Parallel()
	hmacKey := []byte("test-hmac-key-of-at-least-32-bytes!")
	n := startGuardedNode(t, guardTokens, hmacKey, nil)
	jwtFor := func(perms []string, exp time.Duration) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "jwt-user", "permissions": perms, "exp": time.Now().Add(exp).Unix(),
		}).SignedString(hmacKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	admin := bearer(testCtx(t), "admin-token")
	order, err := n.client.CreateOrder(admin, validCreate(""))
	if err != nil {
		t.Fatal(err)
	}
	id := order.GetOrder().GetOrderId()
	// An ack token for the warehouse consumer, held by the admin's stream.
	delivery, err := n.client.ConsumeOrders(admin, &ordersv1.ConsumeOrdersRequest{Consumer: "warehouse"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := delivery.Recv()
	if err != nil {
		t.Fatal(err)
	}
	ackToken := res.GetAckToken()

	// recvFirst opens a stream and reads its first message: where a
	// streaming call's status shows.
	recvFirst := func(open func() (interface{ Recv() (any, error) }, error)) error {
		s, err := open()
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	type call func(ctx context.Context) error
	groups := map[string]struct {
		permission string
		rightToken string
		calls      map[string]call
	}{
		"write": {"write", "writer-token", map[string]call{
			"CreateOrder (unary)": func(ctx context.Context) error { _, err := n.client.CreateOrder(ctx, validCreate("")); return err },
			"CreateOrders (stream)": func(ctx context.Context) error {
				s, err := n.client.CreateOrders(ctx)
				if err != nil {
					return err
				}
				// Send says io.EOF when the server already ended the stream;
				// the status then comes from Recv.
				if err := s.Send(&ordersv1.CreateOrdersRequest{Order: validCreate("")}); err != nil && err != io.EOF {
					return err
				}
				_, err = s.Recv()
				return err
			},
		}},
		"read": {"read", "reader-token", map[string]call{
			"GetOrder (unary)": func(ctx context.Context) error {
				_, err := n.client.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
				return err
			},
			"GetOrderHistory (stream)": func(ctx context.Context) error {
				return recvFirst(func() (interface{ Recv() (any, error) }, error) {
					s, err := n.client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id})
					return recvAny[*ordersv1.GetOrderHistoryResponse]{s}, err
				})
			},
		}},
		"watch": {"watch", "watcher-token", map[string]call{
			"WatchOrders (stream)": func(ctx context.Context) error {
				return recvFirst(func() (interface{ Recv() (any, error) }, error) {
					s, err := n.client.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{})
					return recvAny[*ordersv1.WatchOrdersResponse]{s}, err
				})
			},
		}},
		"consume": {"consume:warehouse", "warehouse-token", map[string]call{
			"ConsumeOrders (stream)": func(ctx context.Context) error {
				return recvFirst(func() (interface{ Recv() (any, error) }, error) {
					s, err := n.client.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{Consumer: "warehouse", HeartbeatInterval: dur(time.Second)})
					return recvAny[*ordersv1.ConsumeOrdersResponse]{s}, err
				})
			},
			"StreamOrders (bidi)": func(ctx context.Context) error {
				return recvFirst(func() (interface{ Recv() (any, error) }, error) {
					s, err := n.client.StreamOrders(ctx)
					if err == nil { // a refused stream's Send says io.EOF; its status comes with Recv
						_ = s.Send(&ordersv1.StreamOrdersRequest{Open: &ordersv1.ConsumeOrdersRequest{Consumer: "warehouse", HeartbeatInterval: dur(time.Second)}})
					}
					return recvAny[*ordersv1.StreamOrdersResponse]{s}, err
				})
			},
			"AckOrders (unary)": func(ctx context.Context) error {
				_, err := n.client.AckOrders(ctx, &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: ackToken, Action: ordersv1.AckAction_ACK_ACTION_IN_PROGRESS}}})
				return err
			},
		}},
	}
	wrongToken := map[string]string{"write": "reader-token", "read": "watcher-token", "watch": "warehouse-token", "consume": "writer-token"}
	for group, g := range groups {
		for name, c := range g.calls {
			t.Run(group+"/"+name, func(t *testing.T) {
				for cred, want := range map[string]codes.Code{
					"":                                  codes.Unauthenticated,
					"not-a-token":                       codes.Unauthenticated,
					jwtFor([]string{"*"}, -time.Minute): codes.Unauthenticated, // expired
					wrongToken[group]:                   codes.PermissionDenied,
					jwtFor([]string{"read"}, time.Hour): map[bool]codes.Code{true: codes.OK, false: codes.PermissionDenied}[group == "read"],
					g.rightToken:                        codes.OK,
					jwtFor([]string{g.permission}, time.Hour): codes.OK,
				} {
					ctx, cancel := context.WithTimeout(bearer(context.Background(), cred), 10*time.Second)
					err := c(ctx)
					cancel()
					if got := status.Code(err); got != want {
						t.Errorf("token %.20q: %v, want %v", cred, err, want)
					}
				}
			})
		}
	}
	// Per consumer: a warehouse token cannot use another consumer.
	s, err := n.client.ConsumeOrders(bearer(testCtx(t), "warehouse-token"), &ordersv1.ConsumeOrdersRequest{Consumer: "billing"})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("warehouse token on consumer billing: %v, want PERMISSION_DENIED", err)
	}
	// Health stays open.
	if _, err := n.health.Check(testCtx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without a token: %v", err)
	}
}

// A caller over its rate is refused at once with RESOURCE_EXHAUSTED;
// another caller is not affected.
func TestRateLimitPerIdentity(t *testing.T) {
	t.Parallel()
	n := startGuardedNode(t, guardTokens, []byte("test-hmac-key-of-at-least-32-bytes!"), auth.NewRateLimiter(1, 5))
	reader := bearer(testCtx(t), "reader-token")
	refused := 0
	for range 20 {
		_, err := n.client.GetOrder(reader, &ordersv1.GetOrderRequest{OrderId: "o"})
		switch status.Code(err) {
		case codes.ResourceExhausted:
			refused++
		case codes.NotFound:
		default:
			t.Fatalf("GetOrder: %v", err)
		}
	}
	if refused < 14 {
		t.Fatalf("%d of 20 calls refused; a burst of 5 at 1/s should refuse about 15", refused)
	}
	if _, err := n.client.GetOrder(bearer(testCtx(t), "admin-token"), &ordersv1.GetOrderRequest{OrderId: "o"}); status.Code(err) != codes.NotFound {
		t.Fatalf("another identity: %v", err)
	}
}

// recvAny adapts a typed stream to one Recv signature.
type recvAny[T any] struct {
	s interface{ Recv() (T, error) }
}

func (r recvAny[T]) Recv() (any, error) { return r.s.Recv() }
