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
