package systemtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// readmeAddr is the gRPC address the README's examples use.
const readmeAddr = "127.0.0.1:50051"

// expectedFailures are the README examples that show an error on purpose:
// a fragment of the command, and the status it must end with.
var expectedFailures = []struct{ fragment, code string }{
	{`"reason": "too late"`, "FailedPrecondition"}, // a shipped order cannot be rejected
	{`"order.1001"`, "InvalidArgument"},            // an id with a '.'
	{"-max-time", "DeadlineExceeded"},              // grpcurl hangs up on a stream
}

// Every grpcurl example of the README runs as pasted, in order, against a
// fresh node (the walk through's data directory is empty too): each
// command succeeds, or fails with the status its comment announces.
// Blocks that start ordersd, define the alias, or watch without end (the
// walk through's second terminal) are the reader's to run and are left out.
func TestREADMEGrpcurlExamplesRunAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds grpcurl")
	}
	grpcurl := buildGrpcurl(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := runOrdersd(t, t.TempDir())
	nc, err := ready.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	logDir := t.TempDir()
	ran := 0
	for i, block := range shellBlocks(string(readme)) {
		if !strings.Contains(block, "grpcurl ") || strings.Contains(block, "go run ./cmd/ordersd") ||
			strings.Contains(block, "alias grpcurl") || (strings.Contains(block, "WatchOrders") && !strings.Contains(block, "-max-time")) {
			continue
		}
		ran++
		script := fmt.Sprintf(`grpcurl() {
  n=$(ls %[1]s | wc -l)
  printf '%%s\n' "$*" > %[1]s/$n.args
  %[2]q "$@" > %[1]s/$n.out 2>&1
  rc=$?
  echo $rc > %[1]s/$n.rc
  cat %[1]s/$n.out
  return $rc
}
`, logDir+"/calls", grpcurl) + strings.ReplaceAll(block, readmeAddr, ready.GRPCAddr.String())
		if err := os.MkdirAll(logDir+"/calls", 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "-c", script)
		out, err := cmd.CombinedOutput()
		if err != nil && !expectsFailure(block) {
			t.Errorf("README block %d failed: %v\n%s\n--- output:\n%s", i, err, block, out)
		}
		checkCalls(t, logDir+"/calls")
		waitReviewed(t, js)
	}
	if ran < 5 {
		t.Fatalf("ran only %d README blocks with grpcurl; the selection is broken", ran)
	}
}

// shellBlocks returns the README's ```sh code blocks, in order.
func shellBlocks(readme string) []string {
	re := regexp.MustCompile("(?s)```sh\n(.*?)```")
	var blocks []string
	for _, m := range re.FindAllStringSubmatch(readme, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

func expectsFailure(block string) bool {
	for _, f := range expectedFailures {
		if strings.Contains(block, f.fragment) {
			return true
		}
	}
	return false
}

// checkCalls checks every grpcurl call logged so far, then clears the log:
// each exited 0, or failed with the status its example expects.
func checkCalls(t *testing.T, dir string) {
	t.Helper()
	rcs, _ := filepath.Glob(filepath.Join(dir, "*.rc"))
	for _, rcFile := range rcs {
		base := strings.TrimSuffix(rcFile, ".rc")
		rc, _ := os.ReadFile(rcFile)
		args, _ := os.ReadFile(base + ".args")
		out, _ := os.ReadFile(base + ".out")
		if strings.TrimSpace(string(rc)) == "0" {
			continue
		}
		want := ""
		for _, f := range expectedFailures {
			if strings.Contains(string(args), f.fragment) {
				want = f.code
				break
			}
		}
		if want == "" || !strings.Contains(string(out), "Code: "+want) {
			t.Errorf("grpcurl %s\nexited %s (expected: %q):\n%s", args, strings.TrimSpace(string(rc)), want, out)
		}
	}
	_ = os.RemoveAll(dir)
	_ = os.MkdirAll(dir, 0o755)
}

// waitReviewed waits until the review worker has settled every created
// order, as a reader does who reads on before running the next block.
func waitReviewed(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cons, err := js.Consumer(ctx, eventstore.StreamName, consumers.ReviewConsumer)
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(ctx)
		}
		cancel()
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the review worker did not catch up: %v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildGrpcurl builds the grpcurl pinned in tools/go.mod, as the README's
// alias runs it.
func buildGrpcurl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "grpcurl")
	cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", bin, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build grpcurl: %v\n%s", err, out)
	}
	return bin
}
