package receipt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Key is one signing key of a deployment. The operator adds a key ahead of its ActiveFrom, so
// that every replica can verify it before any replica signs with it (a mounted Secret reaches
// pods a minute or two apart), and removes a key once nothing it signed can still be fed back.
type Key struct {
	ID         string `json:"id"`
	Secret     []byte `json:"secret"` // base64 in JSON
	ActiveFrom int64  `json:"activeFrom"`
}

// MinSecretBytes: HMAC-SHA256 keys shorter than this are refused (the operator makes 32).
const MinSecretBytes = 16

var keyID = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// KeyRing is a deployment's keys, oldest first.
type KeyRing struct {
	keys []Key
}

type ringDocument struct {
	Keys []Key `json:"keys"`
}

// ParseKeyRing reads the operator's document: {"keys": [{"id", "secret", "activeFrom"}]}.
func ParseKeyRing(data []byte) (*KeyRing, error) {
	var doc ringDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("receipt keys: %w", err)
	}
	if len(doc.Keys) == 0 {
		return nil, errors.New("receipt keys: no key")
	}
	seen := map[string]bool{}
	for i, k := range doc.Keys {
		switch {
		case !keyID.MatchString(k.ID):
			return nil, fmt.Errorf("receipt keys: keys[%d].id %q is not 1-32 of [a-z0-9-]", i, k.ID)
		case seen[k.ID]:
			return nil, fmt.Errorf("receipt keys: keys[%d].id %q twice", i, k.ID)
		case len(k.Secret) < MinSecretBytes:
			return nil, fmt.Errorf("receipt keys: keys[%d].secret shorter than %d bytes", i, MinSecretBytes)
		}
		seen[k.ID] = true
	}
	keys := append([]Key(nil), doc.Keys...)
	sort.SliceStable(keys, func(a, b int) bool { return keys[a].ActiveFrom < keys[b].ActiveFrom })
	return &KeyRing{keys: keys}, nil
}

// ByID is the key a token names.
func (r *KeyRing) ByID(id string) (Key, bool) {
	for _, k := range r.keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// Signing is the key to sign with at now: the latest already active. Before the first key is
// active there is none, and answers go out without a receipt.
func (r *KeyRing) Signing(now time.Time) (Key, bool) {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i].ActiveFrom <= now.Unix() {
			return r.keys[i], true
		}
	}
	return Key{}, false
}

// RingFile is a key ring read from a mounted Secret and re-read when the file changes (the
// kubelet swaps a Secret volume's files by a symlink, so stat follows the link). A file that
// does not parse leaves the last good ring in place, and says so through Problem.
type RingFile struct {
	path  string
	every time.Duration

	ring    atomic.Pointer[KeyRing]
	checked atomic.Int64 // unix nanoseconds of the last stat
	mu      sync.Mutex   // one re-read at a time; held by no request
	stamp   fileStamp
	problem atomic.Pointer[string]
}

type fileStamp struct {
	size    int64
	modTime time.Time
	inode   uint64
}

// OpenRingFile reads path once (an unreadable or invalid file is an error at start) and then
// at most every `every` when Current is called.
func OpenRingFile(path string, every time.Duration) (*RingFile, error) {
	f := &RingFile{path: path, every: every}
	ring, stamp, err := f.read()
	if err != nil {
		return nil, err
	}
	f.ring.Store(ring)
	f.stamp = stamp
	f.checked.Store(time.Now().UnixNano())
	return f, nil
}

// Current is the ring in force. When a check is due, the one caller that gets the lock stats
// the file (and reads it only if it changed); every other caller goes on with the ring it has.
func (f *RingFile) Current(now time.Time) *KeyRing {
	if time.Duration(now.UnixNano()-f.checked.Load()) >= f.every && f.mu.TryLock() {
		f.refresh(now)
		f.mu.Unlock()
	}
	return f.ring.Load()
}

// Problem is why the last re-read was refused ("" when the file in force is the file on disk).
func (f *RingFile) Problem() string {
	if p := f.problem.Load(); p != nil {
		return *p
	}
	return ""
}

func (f *RingFile) refresh(now time.Time) {
	f.checked.Store(now.UnixNano())
	stamp, err := statStamp(f.path)
	if err == nil && stamp == f.stamp {
		return
	}
	ring, stamp, err := f.read()
	if err != nil {
		message := err.Error()
		f.problem.Store(&message)
		return
	}
	f.problem.Store(nil)
	f.ring.Store(ring)
	f.stamp = stamp
}

func (f *RingFile) read() (*KeyRing, fileStamp, error) {
	before, err := statStamp(f.path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	// A file that changed while it was read is read again at the next check.
	if after, err := statStamp(f.path); err != nil || after != before {
		return nil, fileStamp{}, errors.New("receipt keys: changed while read")
	}
	ring, err := ParseKeyRing(data)
	return ring, before, err
}

func statStamp(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	stamp := fileStamp{size: info.Size(), modTime: info.ModTime()}
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		stamp.inode = sys.Ino
	}
	return stamp, nil
}
