//go:build !unix

package node

import "errors"

// ErrDataDirLocked is wrapped by Run's error when another process holds the
// data directory. Only Unix systems lock it (flock).
var ErrDataDirLocked = errors.New("data directory in use")

type dirLock struct{}

// lockDataDir does nothing where flock does not exist.
func lockDataDir(string) (*dirLock, error) { return nil, nil }

func (l *dirLock) release() {}
