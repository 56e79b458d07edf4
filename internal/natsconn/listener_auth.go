package natsconn

import (
	"crypto/subtle"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ordersd/ordersd/internal/eventstore"
)

// ReaderPermissions are the NATS permissions of a reader of ordersd's
// streams (those named: every partition's, the dead letters', ...): it can look the streams up, read their messages (by sequence
// or subject, directly or from the leader), create consumers on them and
// take their messages (pull, push, ordered, with acks and flow control),
// and subscribe to the events' subjects; it cannot publish on ORDERS.> or
// ORDER_IDS.>, nor create, update, purge or delete a stream, nor delete a
// consumer or a message. It is what the embedded listener's user gets
// without --nats-listen-access=full, and the docs' "Other writers" shows it
// as the grant of an external NATS account.
//
// NATS names consumers in these subjects by name only, so a reader that
// knows the name of a durable work queue could also pull from it or ack
// its messages; on an external NATS, give readers grants that name their
// own consumers if that matters.
func ReaderPermissions(streams []string) *server.Permissions {
	pub := []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST"}
	for _, stream := range streams {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.STREAM.MSG.GET."+stream,
			"$JS.API.DIRECT.GET."+stream,
			"$JS.API.DIRECT.GET."+stream+".>",
			"$JS.API.CONSUMER.CREATE."+stream,
			"$JS.API.CONSUMER.CREATE."+stream+".>",
			"$JS.API.CONSUMER.NAMES."+stream,
			"$JS.API.CONSUMER.LIST."+stream,
			"$JS.API.CONSUMER.INFO."+stream+".*",
			"$JS.API.CONSUMER.MSG.NEXT."+stream+".*",
			"$JS.ACK."+stream+".>",
			"$JS.FC."+stream+".>",
		)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{eventstore.StreamSubjects, eventstore.IndexStreamName + ".>", "_INBOX.>"}},
	}
}

// listenerAuth authenticates the clients of the embedded server: ordersd's
// own connections by a secret only this process knows (every right), and
// the listener's user by its password or token, with ReaderPermissions
// unless it has full access. nats-server's own settings cannot do this: a
// token carries no permissions, and a token and users cannot be mixed.
type listenerAuth struct {
	own            string   // ordersd's own connections
	user, password string   // the listener's user
	token          string   // or its token
	full           bool     // the listener's user has every right
	streams        []string // the streams a reader may read
}

// Check implements server.Authentication.
func (a *listenerAuth) Check(c server.ClientAuthentication) bool {
	opts := c.GetOpts()
	var user *server.User
	switch {
	case opts.Token != "" && equal(opts.Token, a.own):
		user = &server.User{Username: "ordersd"}
	case a.token != "" && opts.Token != "" && equal(opts.Token, a.token):
		user = &server.User{Username: "nats-listen"}
	case a.user != "" && opts.Username == a.user && equal(opts.Password, a.password):
		user = &server.User{Username: a.user}
	default:
		return false
	}
	if user.Username != "ordersd" && !a.full {
		user.Permissions = ReaderPermissions(a.streams)
	}
	c.RegisterUser(user)
	return true
}

// equal compares secrets in constant time.
func equal(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
