package client

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A stream the node ended because the watcher fell too far behind is
// reopened (Watch resumes after the last event it handed over), as one
// that broke is; a request every node would refuse is not.
func TestWhichStreamEndsArePermanent(t *testing.T) {
	tooSlow, err := status.New(codes.ResourceExhausted, "watcher fell more than 8192 events behind the live events; resume with start_sequence = 42").
		WithDetails(&errdetails.ErrorInfo{Reason: "WATCHER_TOO_SLOW", Domain: "ordersd", Metadata: map[string]string{"start_sequence": "42"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		err  error
		want bool
	}{
		"watcher too slow":   {tooSlow.Err(), false},
		"node shutting down": {status.Error(codes.Unavailable, "ordersd is shutting down"), false},
		"deadline":           {status.Error(codes.DeadlineExceeded, "deadline exceeded"), false},
		"bad filter":         {status.Error(codes.InvalidArgument, "statuses[0]"), true},
		"not allowed":        {status.Error(codes.PermissionDenied, "no watch permission"), true},
	} {
		if got := permanent(c.err); got != c.want {
			t.Errorf("%s: permanent = %v, want %v", name, got, c.want)
		}
	}
}
