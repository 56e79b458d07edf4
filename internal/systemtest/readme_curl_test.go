//go:build unix

package systemtest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeCurlBlocks returns the shell blocks of the README's "### curl"
// section, in order.
func readmeCurlBlocks(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### curl\n")
	if !ok {
		t.Fatal(`the README has no "### curl" section`)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// runBlock runs a README block with bash against addr instead of the
// default address, for at most d (streams are cut off then, with every
// process of the pipeline), and returns its standard output.
func runBlock(t *testing.T, block, addr string, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", strings.ReplaceAll(block, "127.0.0.1:8080", addr))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		t.Fatalf("README block failed: %v\n%s\nstdout: %s\nstderr: %s", err, block, out.String(), errOut.String())
	}
	return out.String()
}

// The README's curl commands work as pasted (on the test node's address):
// the create, the read, the health check, the error, and the monitor,
// which replays the order's created and approved events and says it
// caught up.
func TestREADMECurlCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	blocks := readmeCurlBlocks(t)
	if len(blocks) != 3 {
		t.Fatalf("found %d shell blocks in the README's curl section, want 3 (calls, error, monitor)", len(blocks))
	}
	ready, _ := runOrdersd(t, t.TempDir())
	addr := ready.HTTPAddr.String()
	c := newHTTPOrders(http.DefaultClient, "http://"+addr)
	waitHTTPServing(t, c)

	calls := runBlock(t, blocks[0], addr, 20*time.Second)
	if strings.Count(calls, `"orderId":"order-2001"`) != 2 || !strings.Contains(calls, `{"status":"SERVING"}`) {
		t.Errorf("create, get and health answered:\n%s", calls)
	}
	if bad := runBlock(t, blocks[1], addr, 20*time.Second); !strings.Contains(bad, `"code":"invalid_argument"`) || !strings.Contains(bad, `"field":"order_id"`) {
		t.Errorf("the bad order id answered:\n%s", bad)
	}
	// The monitor runs until stopped: its curl stops itself after 3 s here,
	// so that the rest of the pipeline ends as after Ctrl-C.
	monitor := runBlock(t, strings.Replace(blocks[2], "curl -sN", "curl -sN --max-time 3", 1), addr, 20*time.Second)
	lines := strings.Split(strings.TrimSpace(monitor), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], "ORDER_STATUS_CREATED") || !strings.Contains(lines[1], "ORDER_STATUS_APPROVED") || lines[2] != `{"caughtUp":true}` {
		t.Errorf("the monitor printed:\n%s\nwant the created and approved events of order-2001, then {\"caughtUp\":true}", monitor)
	}
}
