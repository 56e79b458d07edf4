package client

import (
	"encoding/json"
	"fmt"

	// weighted_round_robin is not registered by grpc-go by default.
	_ "google.golang.org/grpc/balancer/weightedroundrobin"
	// Client-side health checking (healthCheckConfig) needs its producer.
	_ "google.golang.org/grpc/health"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
)

// Balancer is how calls spread across the nodes of a target.
type Balancer string

const (
	// RoundRobin sends calls to each healthy node in turn (the default).
	RoundRobin Balancer = "round_robin"
	// WeightedRoundRobin sends each node a share of calls that shrinks as
	// its reported load grows: ordersd reports its utilization out of band
	// (ORCA), so a busy node gets fewer calls. Until a node has reported
	// (and for nodes that do not), it gets an even share.
	WeightedRoundRobin Balancer = "weighted_round_robin"
)

// balancerConfigs are the loadBalancingConfig entries of each Balancer.
var balancerConfigs = map[Balancer]map[string]any{
	RoundRobin: {},
	// Out-of-band reports every second; weights are ignored for 10 s after
	// a node's first report (blackout) so a node that just started is not
	// flooded on the strength of one idle report.
	WeightedRoundRobin: {"enableOobLoadReport": true, "oobReportingPeriod": "1s", "blackoutPeriod": "10s"},
}

// Retry policy of every OrderService call. UNAVAILABLE means the node could
// not be reached, is shutting down, or could not reach JetStream: the call
// goes to another node after a pause. Every OrderService call is safe to
// repeat: reads and acks by nature, writes by their request_id (which the
// client fills in when the caller left it empty). gRPC retries a stream only
// until its first response, and allows 5 attempts at most.
const (
	retryMaxAttempts  = 5
	retryInitialDelay = "0.1s"
	retryMaxDelay     = "2s"
	retryMultiplier   = 2
)

// ServiceConfig returns the gRPC service config that Dial sets as the
// default for a target (a DNS record or an xDS control plane may send
// another): balancing with b, client-side health checking against
// ordersd's health service (a node is used only while it reports SERVING),
// and the retry policy on UNAVAILABLE for every OrderService call. It is
// JSON, for grpc.WithDefaultServiceConfig or a service mesh's
// configuration.
func ServiceConfig(b Balancer) (string, error) {
	lb, ok := balancerConfigs[b]
	if !ok {
		return "", fmt.Errorf("%w: unknown balancer %q", ErrInvalidOption, b)
	}
	cfg := map[string]any{
		"loadBalancingConfig": []any{map[string]any{string(b): lb}},
		"healthCheckConfig":   map[string]any{"serviceName": ordersv1.OrderService_ServiceDesc.ServiceName},
		"methodConfig": []any{map[string]any{
			"name": []any{map[string]any{"service": ordersv1.OrderService_ServiceDesc.ServiceName}},
			"retryPolicy": map[string]any{
				"maxAttempts":          retryMaxAttempts,
				"initialBackoff":       retryInitialDelay,
				"maxBackoff":           retryMaxDelay,
				"backoffMultiplier":    retryMultiplier,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}},
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	return string(out), err
}
