package reload

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordersd/ordersd/internal/testsupport"
)

// lockedBuffer collects log lines written from the watcher's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// A file replaced in a watched directory reloads the items, and so does a
// request (SIGHUP); an item whose reload fails is logged as an error
// naming it, and does not keep the others from reloading.
func TestWatcherReloadsOnChangeAndRequest(t *testing.T) {
	dir := t.TempDir()
	file := testsupport.WriteFile(t, dir, "cert.pem", []byte("one"))
	var good, bad atomic.Int32
	logs := &lockedBuffer{}
	w, err := New([]Item{
		{Name: "broken item", Files: []string{file}, Reload: func() error { bad.Add(1); return errors.New("no PEM certificate") }},
		{Name: "good item", Files: []string{file}, Reload: func() error { good.Add(1); return nil }},
	}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	requests := make(chan struct{})
	go func() { w.Run(ctx, requests); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = w.Close() })

	testsupport.ReplaceFile(t, file, []byte("two"))
	if !waitFor(5*time.Second, func() bool { return good.Load() >= 1 && bad.Load() >= 1 }) {
		t.Fatalf("after a file change: %d good and %d bad reloads, want both tried", good.Load(), bad.Load())
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), `what="broken item"`) || !strings.Contains(logs.String(), "no PEM certificate") {
		t.Fatalf("log %q: want an error naming the refused item and why", logs.String())
	}
	before := good.Load()
	requests <- struct{}{}
	if !waitFor(5*time.Second, func() bool { return good.Load() > before }) {
		t.Fatal("a reload request reloaded nothing")
	}
}
