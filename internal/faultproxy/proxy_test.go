package faultproxy_test

import (
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ordersd/ordersd/internal/faultproxy"
)

// TestMain fails the package if a goroutine outlives its tests: Close
// must end every goroutine the proxy started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every connection on a loopback port until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { lis.Close(); <-done })
	return lis.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo writes msg and reads it back within a second.
func echo(c net.Conn, msg string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// closedPromptly reports whether the peer closes c within a second: a read
// that ends with EOF or a reset, not with the deadline.
func closedPromptly(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read %d bytes from a cut connection", n)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a cut connection is still open after a second")
	}
}

func TestProxyCutAndRestore(t *testing.T) {
	target := echoServer(t)
	p, err := faultproxy.New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() }) // a second Close after the one below must be harmless

	open := dial(t, p.Addr())
	if got, err := echo(open, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}

	p.Cut()
	closedPromptly(t, open)
	refused := dial(t, p.Addr()) // accepted by the listener, then closed
	_, _ = refused.Write([]byte("x"))
	closedPromptly(t, refused)

	p.Restore()
	again := dial(t, p.Addr())
	if got, err := echo(again, "back"); err != nil || got != "back" {
		t.Fatalf("after Restore: %q, %v", got, err)
	}

	closing := make(chan error, 1)
	go func() { closing <- p.Close() }()
	select {
	case err := <-closing:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	closedPromptly(t, again)
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts connections after Close")
	}
}

// silentFor reports whether c delivers nothing for d while staying open: a
// read that ends with its deadline, not with data, EOF or a reset.
func silentFor(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read %d bytes through a stalled link", n)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("a stalled link ended: %v", err)
	}
}

// peerServer accepts connections on a loopback port and hands the test
// each accepted end, so the test holds both ends of a link.
func peerServer(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c // closed by acceptedEnd's cleanup
		}
	}()
	t.Cleanup(func() { lis.Close() })
	return lis.Addr().String(), accepted
}

// through writes msg on from and reads it on to within two seconds.
func through(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	_ = to.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(to, buf); err != nil || string(buf) != msg {
		t.Fatalf("read %q, %v; want %q", buf, err, msg)
	}
}

func acceptedEnd(t *testing.T, accepted <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-accepted:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(2 * time.Second):
		t.Fatal("the proxy did not connect to the target")
		return nil
	}
}

// A stall keeps the link open and lets no byte through, in either
// direction, on open connections and on new ones; Resume delivers every
// held byte, in order; Cut still closes a stalled link.
func TestProxyStallAndResume(t *testing.T) {
	target, accepted := peerServer(t)
	p, err := faultproxy.New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	client := dial(t, p.Addr())
	server := acceptedEnd(t, accepted)
	through(t, client, server, "hello")
	through(t, server, client, "hi")

	p.Stall()
	p.Stall() // harmless twice
	// Both ends write; neither hears anything, and neither sees the link
	// end. 300 ms is ample even on a loaded machine for bytes that take
	// well under a millisecond on loopback.
	for _, m := range []string{"up-1", "up-2"} {
		if _, err := client.Write([]byte(m)); err != nil {
			t.Fatalf("write to a stalled link: %v", err)
		}
	}
	if _, err := server.Write([]byte("down-1")); err != nil {
		t.Fatalf("write to a stalled link: %v", err)
	}
	silentFor(t, server, 300*time.Millisecond)
	silentFor(t, client, 300*time.Millisecond)
	fresh := dial(t, p.Addr()) // accepted while stalled: open, and silent too
	freshServer := acceptedEnd(t, accepted)
	if _, err := fresh.Write([]byte("new")); err != nil {
		t.Fatalf("write to a link opened while stalled: %v", err)
	}
	silentFor(t, freshServer, 300*time.Millisecond)

	p.Resume()
	p.Resume() // harmless twice
	readAll := func(c net.Conn, want string) {
		t.Helper()
		buf := make([]byte, len(want))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Fatalf("after Resume: %q, %v; want the held bytes %q", buf, err, want)
		}
	}
	readAll(server, "up-1up-2")
	readAll(client, "down-1")
	readAll(freshServer, "new")
	through(t, client, server, "again")
	through(t, server, client, "again")

	// Stall again, then cut: the stalled link ends at once.
	p.Stall()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	silentFor(t, server, 200*time.Millisecond)
	p.Cut()
	closedPromptly(t, client)
	closedPromptly(t, server)
	closedPromptly(t, fresh)
	p.Restore()
	p.Resume()
	again := dial(t, p.Addr())
	againServer := acceptedEnd(t, accepted)
	through(t, again, againServer, "back")
}

// Close ends stalled links and every goroutine, as TestMain checks.
func TestProxyCloseWhileStalled(t *testing.T) {
	target := echoServer(t)
	p, err := faultproxy.New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	if got, err := echo(c, "hi"); err != nil || got != "hi" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	p.Stall()
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	closing := make(chan error, 1)
	go func() { closing <- p.Close() }()
	select {
	case <-closing:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while stalled")
	}
	closedPromptly(t, c)
}
