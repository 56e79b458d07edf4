package consumers

import "errors"

// ErrInvalidOption is wrapped by every error of a constructor given an
// option it cannot work with (as nats.go's jetstream options do), so a
// caller can tell a configuration mistake from a failure to reach NATS.
var ErrInvalidOption = errors.New("invalid option")
