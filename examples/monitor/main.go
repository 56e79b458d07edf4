// Command monitor prints every order event as it is stored: the monitor of
// the article ordersd grew from, now an ordersd client. It keeps its
// position (the resume position of the last update it handled) in a file
// (-state) and resumes after it when started again, and the client library
// resumes it by itself when its node goes away: it sees each event once.
//
//	go run ./examples/monitor -addr 127.0.0.1:50051 -state /tmp/monitor.pos
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ordersd/ordersd/client"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "ordersd node(s), comma-separated, or a dns:/// or xds:/// target")
	ca := flag.String("ca", "", "CA certificates (PEM) of the nodes: TLS; plaintext when empty")
	state := flag.String("state", "", "file that keeps the resume position of the last update handled, to resume after; every stored event first when empty or missing")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := dial(*addr, *ca)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := monitor(ctx, c, *state, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// dial connects to ordersd: TLS when a CA is given, with the bearer token
// of ORDERSD_TOKEN when it is set.
func dial(addr, ca string) (*client.Client, error) {
	opts := []client.Option{client.WithInsecure()}
	if ca != "" {
		opts = []client.Option{client.WithCAFile(ca)}
	}
	if token := os.Getenv("ORDERSD_TOKEN"); token != "" {
		opts = append(opts, client.WithBearerToken(token))
	}
	return client.Dial(addr, opts...)
}

// monitor prints events until ctx ends, after the position in state
// (every stored event when there is none), saving the position of each
// update once it is printed.
func monitor(ctx context.Context, c *client.Client, state string, out io.Writer) error {
	opts := client.WatchOptions{ReplayAll: true}
	if saved, err := readPosition(state); err != nil {
		return err
	} else if saved != "" {
		opts = client.WatchOptions{ResumeAfter: saved}
	}
	return c.Watch(ctx, opts, func(_ context.Context, u client.WatchUpdate) error {
		if u.CaughtUp {
			fmt.Fprintln(out, "caught up: live from here")
		} else {
			e := u.Event
			fmt.Fprintf(out, "%d %s %s %s\n", e.GetSequence(), e.GetOrder().GetOrderId(), e.GetOrder().GetStatus(), e.GetOrder().GetCustomerId())
		}
		return writePosition(state, u.ResumePosition)
	})
}

// readPosition reads the saved resume position; "" when there is none.
func readPosition(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// writePosition saves position, replacing the file at once so that a
// crash never leaves half of it.
func writePosition(path, position string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(position+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
