package natsconn

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Connect opens the NATS connection ordersd uses: to the embedded server in
// process when embedded is not nil, else to url (comma-separated servers).
// It never gives up: it keeps reconnecting for as long as the process runs,
// and a first connection that fails is retried in the background, so the
// gRPC server can start and report NOT_SERVING until NATS is there.
func Connect(url string, embedded *server.Server, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	log := logger.With("component", "nats")
	where := func(nc *nats.Conn) string {
		if embedded != nil {
			return "embedded server, in process"
		}
		return nc.ConnectedUrlRedacted()
	}
	opts := []nats.Option{
		nats.Name("ordersd"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("connected", "server", where(nc))
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected", "server", where(nc))
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("async error", "subject", subject, "err", err)
		}),
	}
	if embedded != nil {
		opts = append(opts, nats.InProcessServer(embedded))
		url = ""
	}
	return nats.Connect(url, append(opts, extra...)...)
}
