// Package reload reads a node's credentials again when their files change
// and when the process gets SIGHUP, without a restart: certificates in a
// service mesh rotate every few hours, tokens files change as services
// come and go.
package reload

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long the watcher waits after a change before it reads the
// files: a rotation replaces a certificate and its key one after the
// other, and Kubernetes swaps a whole directory of them.
const settle = 200 * time.Millisecond

// Item is something that is read from files and can be read again.
type Item struct {
	// Name says what it is, in logs: "gRPC server TLS", "tokens file".
	Name string
	// Files are the paths it reads.
	Files []string
	// Reload reads the files again. On error it must keep what is in use.
	Reload func() error
}

// Watcher reloads items when their files change or on a request (SIGHUP).
type Watcher struct {
	items []Item
	fs    *fsnotify.Watcher
	log   *slog.Logger
}

// New watches the directories of the items' files. It watches directories,
// not the files: an editor or a rotation that replaces a file by renaming
// another onto it, or Kubernetes swapping the symlink of a mounted secret,
// leaves a watch on the old file with nothing to report.
func New(items []Item, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{items: items, log: log}
	var dirs []string
	for _, it := range items {
		for _, f := range it.Files {
			if d := filepath.Dir(f); !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	if len(dirs) == 0 {
		return w, nil
	}
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch credential files: %w", err)
	}
	for _, d := range dirs {
		if err := fs.Add(d); err != nil {
			_ = fs.Close()
			return nil, fmt.Errorf("watch credential files in %s: %w", d, err)
		}
	}
	w.fs = fs
	return w, nil
}

// Run reloads items until ctx ends: every item after a change in the
// watched directories settles, and on each value of requests (SIGHUP).
// A reload that fails is logged as an error, and the item keeps what it
// had.
func (w *Watcher) Run(ctx context.Context, requests <-chan struct{}) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fs != nil {
		events, errs = w.fs.Events, w.fs.Errors
	}
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
				continue
			}
			timer.Reset(settle)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("watching credential files", "err", err)
		case <-timer.C:
			w.ReloadAll("file change")
		case <-requests:
			w.ReloadAll("SIGHUP")
		}
	}
}

// Close stops watching the files; call it once Run has returned, or
// instead of Run.
func (w *Watcher) Close() error {
	if w.fs == nil {
		return nil
	}
	return w.fs.Close()
}

// ReloadAll reloads every item now.
func (w *Watcher) ReloadAll(cause string) {
	for _, it := range w.items {
		if err := it.Reload(); err != nil {
			w.log.Error("reload refused; keeping the one in use", "what", it.Name, "cause", cause, "err", err)
			continue
		}
		w.log.Info("reloaded", "what", it.Name, "cause", cause)
	}
}
