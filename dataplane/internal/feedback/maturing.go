package feedback

import (
	"container/heap"
	"sync"
	"time"
)

// Maturing holds scores until their prediction is window old, then releases them. Labels come
// back after delays that differ by client, model and hour; counted when their prediction is
// exactly window old, both models' labels describe the same requests' time. A label older than
// the window on arrival is late and not counted. At most one entry per remembered prediction
// (each is scored once), so the heap is bounded by the store's capacity.
type Maturing struct {
	mu     sync.Mutex
	Window time.Duration
	clock  func() time.Time
	held   heldScores
	order  int64
}

func NewMaturing(window time.Duration, clock func() time.Time) *Maturing {
	if clock == nil {
		clock = time.Now
	}
	return &Maturing{Window: window, clock: clock}
}

// Add holds s until madeAt + window; false (dropped) when that is already past.
func (m *Maturing) Add(madeAt time.Time, s Score) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	releaseAt := madeAt.Add(m.Window)
	if releaseAt.Before(m.clock()) {
		return false
	}
	m.order++
	heap.Push(&m.held, heldScore{releaseAt, m.order, s})
	return true
}

// Release the scores whose prediction has reached the window's age.
func (m *Maturing) Release() []Score {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	var out []Score
	for m.held.Len() > 0 && !m.held[0].at.After(now) {
		out = append(out, heap.Pop(&m.held).(heldScore).score)
	}
	return out
}

type heldScore struct {
	at    time.Time
	order int64
	score Score
}

type heldScores []heldScore

func (h heldScores) Len() int { return len(h) }
func (h heldScores) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].order < h[j].order
	}
	return h[i].at.Before(h[j].at)
}
func (h heldScores) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heldScores) Push(x any)   { *h = append(*h, x.(heldScore)) }
func (h *heldScores) Pop() any {
	old := *h
	last := old[len(old)-1]
	*h = old[:len(old)-1]
	return last
}
