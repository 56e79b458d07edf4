//go:build unix

package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// The default addresses the documents' commands use; the tests replace
// them by the addresses of the nodes they start.
const (
	docGRPCAddr    = "127.0.0.1:50051"
	docHTTPAddr    = "127.0.0.1:8080"
	docMetricsAddr = "127.0.0.1:9464"
	docNATSPort    = "4222"
)

// docStreamLimit is how long a `curl -sN` stream of the documents runs
// before it is cut off, as a reader would stop it with Ctrl-C.
const docStreamLimit = "3"

// Every unmarked shell block of README.md, CHANGELOG.md and docs/*.md runs
// as pasted (with the test node's addresses): against one fresh node, the
// README's blocks first and then the others, docs/*.md in name order, so
// docs/api.md and docs/queues.md go on with the walk through's order-1001.
// A block passes when bash exits 0, its output holds what its "# prints: "
// lines say, in order, and every grpcurl call exited 0 or failed as the
// block expects. The conventions are in docs/development.md.
func TestREADMEAndDocsCommandsRunAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds grpcurl")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	docs := docBlocks(t, doccheck.RunHere)
	grpcurl := buildGrpcurl(t)
	ready, _ := runOrdersd(t, t.TempDir())
	nc, err := ready.ConnectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	replacer := strings.NewReplacer(
		docGRPCAddr, ready.GRPCAddr.String(),
		docHTTPAddr, ready.HTTPAddr.String(),
		docMetricsAddr, ready.MetricsAddr.String(),
		"curl -sN ", "curl -sN --max-time "+docStreamLimit+" ",
	)
	ran := map[string]int{}
	for _, b := range docs {
		runAndCheckDocBlock(t, b, replacer.Replace(b.Text), docRun{dir: "../..", grpcurl: grpcurl, limit: time.Minute})
		waitReviewed(t, js)
		ran[b.doc]++
	}
	for _, doc := range []string{"README.md", "docs/api.md", "docs/queues.md", "docs/clients.md"} {
		if ran[doc] == 0 {
			t.Errorf("ran no block of %s; the selection is broken", doc)
		}
	}
}

// Every shell block marked "run on its own" (it starts its own ordersd)
// runs as pasted, each in an empty directory of its own holding the
// ordersd binary (this test binary, which runs as ordersd when
// ORDERSD_TEST_RUN_MAIN is set), with free ports for ordersd's listeners
// (the ORDERSD_*_ADDR variables, and in the commands) and NATS, and
// ordersd logging only errors, so that no log line stands in for what a
// command prints. It passes as the blocks above do.
func TestDocsCommandsOnTheirOwnRunAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds grpcurl and runs ordersd processes")
	}
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	blocks := docBlocks(t, doccheck.RunOnItsOwn)
	if len(blocks) < 5 {
		t.Fatalf("found %d blocks that run on their own; the selection is broken", len(blocks))
	}
	grpcurl := buildGrpcurl(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		t.Run(b.where(), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Symlink(self, filepath.Join(dir, "ordersd")); err != nil {
				t.Fatal(err)
			}
			addrs := freePorts(t, 4)
			env := []string{
				"ORDERSD_TEST_RUN_MAIN=1",
				"ORDERSD_LOG_LEVEL=error",
				"XDG_DATA_HOME=" + dir,
				"ORDERSD_GRPC_ADDR=" + addrs[0],
				"ORDERSD_METRICS_ADDR=" + addrs[2],
			}
			if !strings.Contains(b.Text, "--xds") { // which refuses the HTTP port
				env = append(env, "ORDERSD_HTTP_ADDR="+addrs[1])
			}
			_, natsPort, _ := net.SplitHostPort(addrs[3])
			replacer := strings.NewReplacer(
				docGRPCAddr, addrs[0],
				docHTTPAddr, addrs[1],
				docMetricsAddr, addrs[2],
				docNATSPort, natsPort,
			)
			runAndCheckDocBlock(t, b, replacer.Replace(b.Text), docRun{dir: dir, env: env, grpcurl: grpcurl, limit: 3 * time.Minute})
		})
	}
}

// docBlock is a shell block of a document.
type docBlock struct {
	doccheck.Block
	doc string // relative to the root of the repository
}

func (b docBlock) where() string { return fmt.Sprintf("%s:%d", b.doc, b.Line) }

// docBlocks returns the shell blocks with the given marker of README.md,
// CHANGELOG.md and docs/*.md, in the order they run: the README's, the
// changelog's, then docs/ by name.
func docBlocks(t *testing.T, marker string) []docBlock {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	sort.Strings(docs)
	files := []string{"README.md", "CHANGELOG.md"}
	for _, d := range docs {
		files = append(files, "docs/"+filepath.Base(d))
	}
	var blocks []docBlock
	for _, doc := range files {
		md, err := os.ReadFile(filepath.Join("../..", doc))
		if err != nil {
			t.Fatal(err)
		}
		all, err := doccheck.ShellBlocks(string(md))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		for _, b := range all {
			if b.Marker == marker {
				blocks = append(blocks, docBlock{b, doc})
			}
		}
	}
	return blocks
}

// docRun is where and how a block runs.
type docRun struct {
	dir     string        // the working directory
	env     []string      // added to the test's environment
	grpcurl string        // the grpcurl binary
	limit   time.Duration // how long the block may run
}

// runAndCheckDocBlock runs a block (its text as given, addresses replaced)
// and fails t unless it passes: bash exits 0, or with the status of its
// last grpcurl call when that one failed as expected; every grpcurl call
// exits 0 or fails as expected; and the output holds the block's
// "# prints: " texts in order.
func runAndCheckDocBlock(t *testing.T, b docBlock, text string, run docRun) {
	t.Helper()
	calls := t.TempDir()
	out, rc := runDocBlock(t, text, calls, run)
	want := doccheck.Prints(b.Text)
	last := checkGrpcurlCalls(t, b.where(), calls, want)
	if rc != 0 && rc != last {
		t.Errorf("%s: the block exited %d\n%s\n--- output:\n%s", b.where(), rc, text, out)
	}
	if err := doccheck.CheckPrints(out, want); err != nil {
		t.Errorf("%s: %v\n%s\n--- output:\n%s", b.where(), err, text, out)
	}
}

// runDocBlock runs a block with bash, with grpcurl as a function that logs
// each call (its arguments, output and exit status) in calls, and returns
// what the block printed (standard output and error) and its exit status.
// A block that runs past its limit is stopped and fails t; whatever it
// left running is killed.
func runDocBlock(t *testing.T, block, calls string, run docRun) (string, int) {
	t.Helper()
	script := fmt.Sprintf(`grpcurl() {
  n=$(ls %[1]s | grep -c '\.args$')
  printf '%%s\n' "$*" > %[1]s/$n.args
  %[2]q "$@" > %[1]s/$n.out 2>&1
  rc=$?
  echo $rc > %[1]s/$n.rc
  cat %[1]s/$n.out
  return $rc
}
`, calls, run.grpcurl) + block
	ctx, cancel := context.WithTimeout(context.Background(), run.limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = run.dir
	cmd.Env = append(os.Environ(), run.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what the block left behind
	}
	if ctx.Err() != nil {
		t.Errorf("the block ran for more than %s\n%s\n--- output:\n%s", run.limit, block, out.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("bash: %v", err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// checkGrpcurlCalls checks every grpcurl call logged in dir: each exited 0,
// or failed as the block expects, its output holding the text of one of
// the block's "# prints: " lines (a "Code: X" grpcurl prints, say), or
// DeadlineExceeded for a call with -max-time. It returns the exit status
// of the last call, which is the block's when the block ends with it.
func checkGrpcurlCalls(t *testing.T, where, dir string, prints []string) (last int) {
	t.Helper()
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
		expected := prints
		if strings.Contains(string(args), "-max-time") {
			expected = append(expected[:len(expected):len(expected)], "Code: DeadlineExceeded")
		}
		ok := false
		for _, p := range expected {
			ok = ok || doccheck.Holds(string(out), p)
		}
		if !ok {
			t.Errorf("%s: grpcurl %s\nexited %d, printing none of %q:\n%s", where, args, last, expected, out)
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
