package router

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// signature is what changes when the file (or a ConfigMap's swapped ..data symlink) changes.
type signature struct {
	device, inode uint64
	mtimeNanos    int64
	size          int64
}

func signatureOf(path string) (signature, bool) {
	info, err := os.Stat(path) // follows symlinks: a ConfigMap update shows as a new inode
	if err != nil {
		return signature{}, false
	}
	stat, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return signature{}, false
	}
	return signature{uint64(stat.Dev), stat.Ino, info.ModTime().UnixNano(), info.Size()}, true
}

// Watcher polls the configuration file off the request path; a valid new document replaces
// the live configuration in one pointer swap (each request sees the old or the new one in
// full), an invalid one is logged with the field at fault and the last good one stays.
type Watcher struct {
	Path     string
	Live     atomic.Pointer[Live]
	OnReload func(live *Live, ok bool) // metrics
	seen     signature
	digest   [32]byte
	rejected bool
}

// LoadInitial reads the file at start-up, where an invalid file is fatal.
func (w *Watcher) LoadInitial() error {
	text, sig, err := w.readWhole()
	if err != nil {
		return err
	}
	live, err := ParseConfig(text)
	if err != nil {
		return err
	}
	w.seen, w.digest = sig, sha256.Sum256(text)
	w.Live.Store(live)
	return nil
}

// readWhole reads the file only when it is complete: the same signature before and after the
// read, and as many bytes as its size. A file being written is read again at the next poll.
func (w *Watcher) readWhole() ([]byte, signature, error) {
	before, ok := signatureOf(w.Path)
	if !ok {
		return nil, before, fmt.Errorf("cannot read %s", w.Path)
	}
	text, err := os.ReadFile(w.Path)
	if err != nil {
		return nil, before, fmt.Errorf("cannot read %s: %v", w.Path, err)
	}
	after, ok := signatureOf(w.Path)
	if !ok || after != before || int64(len(text)) != before.size {
		return nil, before, errChanging
	}
	return text, before, nil
}

var errChanging = fmt.Errorf("the file changed while it was read")

// Poll checks the file once.
func (w *Watcher) Poll() {
	sig, ok := signatureOf(w.Path)
	if !ok || sig == w.seen {
		return
	}
	text, sig, err := w.readWhole()
	if err == errChanging {
		return // not marked as seen: read again next tick
	}
	w.seen = sig
	if err != nil {
		w.reject(err)
		return
	}
	digest := sha256.Sum256(text)
	if digest == w.digest && !w.rejected {
		return // touched or re-linked with identical content
	}
	live, err := ParseConfig(text)
	if err != nil {
		w.reject(err)
		return
	}
	w.digest, w.rejected = digest, false
	w.Live.Store(live)
	slog.Info("configuration reloaded", "mode", live.Mode, "challengerWeight",
		live.ChallengerWeight, "mirrorPercent", live.MirrorPercent)
	if w.OnReload != nil {
		w.OnReload(live, true)
	}
}

func (w *Watcher) reject(err error) {
	w.rejected = true // a later good file counts as a reload, even if unchanged
	slog.Error("rejected the configuration file, keeping the last good configuration",
		"path", w.Path, "error", err.Error())
	if w.OnReload != nil {
		w.OnReload(nil, false)
	}
}

// Run polls every interval until ctx ends; a panic in a poll is logged and polling goes on.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			func() {
				defer func() {
					if r := recover(); r != nil {
						slog.Error("configuration poll failed", "panic", fmt.Sprint(r))
					}
				}()
				w.Poll()
			}()
		}
	}
}
