package receipt

import (
	"container/heap"
	"sync"
	"time"
)

// Seen remembers which receipts this replica has already scored, until they expire, so that a
// label sent twice (a client's retry, a replay) counts once. It is bounded: at capacity the
// receipt closest to expiry is forgotten first (and counted by the caller as an eviction).
//
// The bound that holds: a receipt is scored at most once per replica as long as fewer than
// `capacity` other receipts arrived at that replica within its lifetime; a replay sent to each
// of n replicas can count n times. The router sends a receipt's label to the replica that
// answered when it can (X-Modelops-Served-By), which makes the second case rare.
type Seen struct {
	mu       sync.Mutex
	capacity int
	expiries map[[16]byte]int64
	order    expiryHeap
}

// NewSeen remembers at most capacity receipts (≥ 1).
func NewSeen(capacity int) *Seen {
	if capacity < 1 {
		capacity = 1
	}
	return &Seen{capacity: capacity, expiries: make(map[[16]byte]int64)}
}

// FirstTime records v as scored and says whether it was new; evicted says how many unexpired
// receipts were forgotten to make room.
func (s *Seen) FirstTime(v Verified, maxAge time.Duration, now time.Time) (first bool, evicted int) {
	var id [16]byte
	copy(id[:], v.MAC[:16])
	expiry := time.Unix(v.Issued, 0).Add(maxAge).Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpired(now.Unix())
	if _, found := s.expiries[id]; found {
		return false, 0
	}
	for len(s.expiries) >= s.capacity {
		oldest := heap.Pop(&s.order).(entry)
		delete(s.expiries, oldest.id)
		evicted++
	}
	s.expiries[id] = expiry
	heap.Push(&s.order, entry{id: id, expiry: expiry})
	return true, evicted
}

// Len is how many receipts are remembered.
func (s *Seen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.expiries)
}

func (s *Seen) dropExpired(now int64) {
	for len(s.order) > 0 && s.order[0].expiry < now {
		oldest := heap.Pop(&s.order).(entry)
		delete(s.expiries, oldest.id)
	}
}

type entry struct {
	id     [16]byte
	expiry int64
}

type expiryHeap []entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(a, b int) bool { return h[a].expiry < h[b].expiry }
func (h expiryHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	last := old[len(old)-1]
	*h = old[:len(old)-1]
	return last
}
