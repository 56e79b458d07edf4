// Package faultproxy is a TCP proxy to put between ordersd and NATS, so
// tests and the fault run can break the connection and repair it, as a
// network would, without touching either end. It breaks a link in two
// ways: a cut closes it (both ends see it end at once), a stall keeps it
// open while no byte goes through in either direction (both ends see a
// healthy connection that never answers, as behind a dead router or a
// full queue).
package faultproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection it accepts to one target address until
// it is cut.
type Proxy struct {
	target string
	lis    net.Listener

	mu      sync.Mutex // protects the fields below
	cut     bool
	flowing chan struct{}      // closed while bytes flow; open while stalled
	links   map[*link]struct{} // every forwarded connection
	wg      sync.WaitGroup
}

// New listens on listen (host:port; port 0 picks a free one) and forwards
// to target.
func New(listen, target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	flowing := make(chan struct{})
	close(flowing)
	p := &Proxy{target: target, lis: lis, flowing: flowing, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Cut closes every connection through the proxy and refuses new ones (they
// are accepted and closed at once) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.links {
		l.close()
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Stall stops every byte in both directions, on open connections and on
// those accepted while stalled, without closing anything: what was read
// from one end is held, and nothing more is read, so the senders' TCP
// buffers fill as behind a dead link. Resume lets it all through, in
// order, none lost. Cut still closes stalled connections.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default: // already stalled
	}
}

// Resume ends a Stall: held and new bytes flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	err := p.lis.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.lis.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // out of file descriptors, say: do not spin
			continue
		}
		p.wg.Add(1)
		go p.forward(client)
	}
}

// link is one forwarded connection: its two ends, closed together.
type link struct {
	mu     sync.Mutex // protects server
	client net.Conn
	server net.Conn // nil until dialled
	done   chan struct{}
	once   sync.Once
}

// close ends both sides of the link and wakes its stalled pipes.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.mu.Lock()
		if l.server != nil {
			l.server.Close()
		}
		l.mu.Unlock()
	})
}

// forward pipes one client connection to a new connection to the target.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	l := &link{client: client, done: make(chan struct{})}
	defer l.close()
	if !p.track(l) {
		return
	}
	defer p.untrack(l)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.server = server
	l.mu.Unlock()
	select {
	case <-l.done: // cut while dialling
		server.Close()
		return
	default:
	}
	ended := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		p.pipe(l, dst, src)
		// One direction ended: end both, as a dropped link does.
		l.close()
		ended <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-ended
	<-ended
}

// pipe copies src to dst until either fails or the link ends, holding each
// chunk it read while the proxy is stalled.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitFlowing(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		// Check before the next read too: a stall stops reading, so the
		// sender's buffers fill rather than the proxy's.
		if !p.waitFlowing(l) {
			return
		}
	}
}

// waitFlowing waits while the proxy is stalled; false when the link ended.
func (p *Proxy) waitFlowing(l *link) bool {
	for {
		p.mu.Lock()
		flowing := p.flowing
		p.mu.Unlock()
		select {
		case <-flowing:
			// A Stall may have begun between the read and now; it holds
			// the next chunk. Stall-then-Resume cycles replace the channel,
			// so check that this one is still current.
			p.mu.Lock()
			current := p.flowing == flowing
			p.mu.Unlock()
			if current {
				return true
			}
		case <-l.done:
			return false
		}
	}
}

// track registers l, or reports false when the proxy is cut.
func (p *Proxy) track(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.links[l] = struct{}{}
	return true
}

func (p *Proxy) untrack(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}
