package testsupport

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines collects what a program under test writes, from any goroutine,
// as lines.
type Lines struct {
	mu      sync.Mutex // protects text
	text    strings.Builder
	changed chan struct{} // closed and replaced at each write
}

// NewLines returns an empty Lines.
func NewLines() *Lines { return &Lines{changed: make(chan struct{})} }

// Write implements io.Writer.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// All returns the complete lines written so far.
func (l *Lines) All() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.text.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// WaitFor waits until cond holds for the lines written, failing the test
// after d, and returns those lines.
func (l *Lines) WaitFor(t testing.TB, d time.Duration, what string, cond func([]string) bool) []string {
	t.Helper()
	deadline := time.After(d)
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if lines := l.All(); cond(lines) {
			return lines
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: not within %s; output so far:\n%s", what, d, strings.Join(l.All(), "\n"))
		}
	}
}
