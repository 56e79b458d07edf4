//go:build unix

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFileName is the file in the data directory that a running node holds
// locked (flock) and that names its process id.
const lockFileName = "ordersd.lock"

// ErrDataDirLocked is wrapped by Run's error when another process holds the
// data directory: two NATS servers writing one JetStream store corrupt it.
var ErrDataDirLocked = errors.New("data directory in use")

// dirLock is a held lock on a data directory.
type dirLock struct{ f *os.File }

// lockDataDir creates dir when it is missing and locks it for this process,
// or fails at once, naming the process that holds it. The lock is an
// flock on dir/ordersd.lock: the kernel releases it when the process ends,
// however it ends, so a crash leaves no stale lock behind.
func lockDataDir(dir string) (*dirLock, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by %s (%s); stop it, or give this node its own --data-dir",
				ErrDataDirLocked, dir, lockHolder(path), path)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	// The lock is ours: say who holds it, for the next one to report.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}

// lockHolder names the process whose id the lock file holds.
func lockHolder(path string) string {
	b, err := os.ReadFile(path)
	if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
		return "process " + strconv.Itoa(pid)
	}
	return "another process" // it has the lock but has not written its id yet
}

// release lets another node have the directory. The file stays: removing
// it would let a third process lock a new file while a second still holds
// the old one.
func (l *dirLock) release() {
	if l != nil {
		l.f.Close()
	}
}
