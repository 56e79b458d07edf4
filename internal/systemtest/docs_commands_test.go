//go:build unix

package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordersd/ordersd/consumers"
	"github.com/ordersd/ordersd/internal/doccheck"
	"github.com/ordersd/ordersd/internal/eventstore"
)

// The default addresses the documents' commands use, and what the test
// node listens on instead.
const (
	docGRPCAddr    = "127.0.0.1:50051"
	docHTTPAddr    = "127.0.0.1:8080"
	docMetricsAddr = "127.0.0.1:9464"
)

// docStreamLimit is how long a `curl -sN` stream of the documents runs
// before it is cut off, as a reader would stop it with Ctrl-C.
const docStreamLimit = "3"

// codeRE finds the codes a block expects its grpcurl calls to fail with.
var codeRE = regexp.MustCompile(`^Code: (\w+)$`)

// Every shell block of README.md and docs/*.md runs as pasted (with the
// test node's addresses), unless a marker says why it cannot: against one
// fresh node, the README's blocks first and then those of docs/*.md in
// name order, so docs/api.md and docs/queues.md go on with the walk
// through's order-1001. A block passes when bash exits 0, its output holds
// what its "# prints: " lines say, in order, and every grpcurl call exited
// 0 or failed with a code the block expects (a "# prints: Code: X" line,
// or DeadlineExceeded for a call with -max-time). The conventions are in
// docs/development.md.
func TestREADMEAndDocsCommandsRunAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds grpcurl")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	docs := docFiles(t)
	grpcurl := buildGrpcurl(t)
	ready, _ := runOrdersd(t, t.TempDir())
	nc, err := ready.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	calls := t.TempDir()
	replacer := strings.NewReplacer(
		docGRPCAddr, ready.GRPCAddr.String(),
		docHTTPAddr, ready.HTTPAddr.String(),
		docMetricsAddr, ready.MetricsAddr.String(),
		"curl -sN ", "curl -sN --max-time "+docStreamLimit+" ",
	)
	ran := map[string]int{}
	for _, doc := range docs {
		md, err := os.ReadFile(filepath.Join("../..", doc))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := doccheck.ShellBlocks(string(md))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		for _, b := range blocks {
			if b.Marker != doccheck.RunHere {
				continue
			}
			where := fmt.Sprintf("%s:%d", doc, b.Line)
			out, rc := runDocBlock(t, replacer.Replace(b.Text), grpcurl, calls)
			last := checkGrpcurlCalls(t, where, calls, expectedCodes(b.Text))
			if rc != 0 && rc != last {
				t.Errorf("%s: the block exited %d\n%s\n--- output:\n%s", where, rc, b.Text, out)
			}
			if err := doccheck.CheckPrints(out, doccheck.Prints(b.Text)); err != nil {
				t.Errorf("%s: %v\n%s\n--- output:\n%s", where, err, b.Text, out)
			}
			waitReviewed(t, js)
			ran[doc]++
		}
	}
	for _, doc := range []string{"README.md", "docs/api.md", "docs/queues.md", "docs/clients.md"} {
		if ran[doc] == 0 {
			t.Errorf("ran no block of %s; the selection is broken", doc)
		}
	}
}

// docFiles returns README.md and docs/*.md in the order their blocks run.
func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	sort.Strings(docs)
	files := []string{"README.md"}
	for _, d := range docs {
		files = append(files, "docs/"+filepath.Base(d))
	}
	return files
}

// runDocBlock runs a block with bash at the root of the repository, with
// grpcurl as a function that logs each call (its arguments, output and
// exit status) in calls, and returns what the block printed (standard
// output and error) and its exit status. A block that runs past a minute
// is stopped and fails t.
func runDocBlock(t *testing.T, block, grpcurl, calls string) (string, int) {
	t.Helper()
	script := fmt.Sprintf(`grpcurl() {
  n=$(ls %[1]s | wc -l)
  printf '%%s\n' "$*" > %[1]s/$n.args
  %[2]q "$@" > %[1]s/$n.out 2>&1
  rc=$?
  echo $rc > %[1]s/$n.rc
  cat %[1]s/$n.out
  return $rc
}
`, calls, grpcurl) + block
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = "../.."
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Errorf("the block ran for more than a minute\n%s\n--- output:\n%s", block, out.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("bash: %v", err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// expectedCodes returns the codes a block's "# prints: Code: X" lines
// expect a grpcurl call to fail with.
func expectedCodes(block string) []string {
	var codes []string
	for _, p := range doccheck.Prints(block) {
		if m := codeRE.FindStringSubmatch(p); m != nil {
			codes = append(codes, m[1])
		}
	}
	return codes
}

// checkGrpcurlCalls checks every grpcurl call logged in dir, then clears
// the log: each exited 0, or failed with a code the block expects. It
// returns the exit status of the last call, which is the block's when the
// block ends with it.
func checkGrpcurlCalls(t *testing.T, where, dir string, codes []string) (last int) {
	t.Helper()
	defer func() {
		_ = os.RemoveAll(dir)
		_ = os.MkdirAll(dir, 0o755)
	}()
	for n := 0; ; n++ {
		base := filepath.Join(dir, strconv.Itoa(n))
		rc, err := os.ReadFile(base + ".rc")
		if err != nil {
			return last
		}
		args, _ := os.ReadFile(base + ".args")
		out, _ := os.ReadFile(base + ".out")
		last, _ = strconv.Atoi(strings.TrimSpace(string(rc)))
		if last == 0 {
			continue
		}
		allowed := codes
		if strings.Contains(string(args), "-max-time") {
			allowed = append(allowed[:len(allowed):len(allowed)], "DeadlineExceeded")
		}
		ok := false
		for _, c := range allowed {
			ok = ok || strings.Contains(string(out), "Code: "+c+"\n")
		}
		if !ok {
			t.Errorf("%s: grpcurl %s\nexited %d (the block expects %v):\n%s", where, args, last, allowed, out)
		}
	}
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
