// Package feedback is the sidecar's memory of predictions and how labels are scored against it.
package feedback

import (
	"container/list"
	"sync"
	"time"
)

// TTLMap holds at most capacity entries, each forgotten ttl after it was put. Entries are kept
// in insertion order, which with one fixed TTL is also expiry order: purging pops the front and
// every operation is O(1) amortised, so memory and time stay flat under any load.
type TTLMap[V any] struct {
	mu       sync.Mutex
	capacity int
	ttl      time.Duration
	clock    func() time.Time
	order    *list.List // of *entry[V], oldest first
	index    map[string]*list.Element
	evicted  int64 // dropped for room before they expired
}

type entry[V any] struct {
	key     string
	expires time.Time
	value   V
}

func NewTTLMap[V any](capacity int, ttl time.Duration, clock func() time.Time) *TTLMap[V] {
	if clock == nil {
		clock = time.Now
	}
	return &TTLMap[V]{capacity: capacity, ttl: ttl, clock: clock, order: list.New(),
		index: map[string]*list.Element{}}
}

func (m *TTLMap[V]) purge(now time.Time) {
	for front := m.order.Front(); front != nil; front = m.order.Front() {
		e := front.Value.(*entry[V])
		if e.expires.After(now) {
			return
		}
		m.order.Remove(front)
		delete(m.index, e.key)
	}
}

// Put stores value under key as a new entry (a live one is replaced and starts anew).
func (m *TTLMap[V]) Put(key string, value V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(key, value)
}

func (m *TTLMap[V]) put(key string, value V) {
	now := m.clock()
	m.purge(now)
	if old, ok := m.index[key]; ok {
		m.order.Remove(old)
	} else if m.order.Len() >= m.capacity {
		oldest := m.order.Front()
		m.order.Remove(oldest)
		delete(m.index, oldest.Value.(*entry[V]).key)
		m.evicted++
	}
	m.index[key] = m.order.PushBack(&entry[V]{key: key, expires: now.Add(m.ttl), value: value})
}

// GetAged is the value and its age (time since it was put); ok false when gone.
func (m *TTLMap[V]) GetAged(key string) (value V, age time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	m.purge(now)
	found, ok := m.index[key]
	if !ok {
		return value, 0, false
	}
	e := found.Value.(*entry[V])
	return e.value, now.Sub(e.expires) + m.ttl, true
}

// Replace gives a live entry a new value, keeping its place and expiry; false when gone.
func (m *TTLMap[V]) Replace(key string, value V) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replace(key, value)
}

func (m *TTLMap[V]) replace(key string, value V) bool {
	m.purge(m.clock())
	found, ok := m.index[key]
	if ok {
		found.Value.(*entry[V]).value = value
	}
	return ok
}

// Update applies change to the live value of key under the lock; false when gone.
func (m *TTLMap[V]) Update(key string, change func(V) (V, bool)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.purge(m.clock())
	found, ok := m.index[key]
	if !ok {
		return false
	}
	e := found.Value.(*entry[V])
	if updated, keep := change(e.value); keep {
		e.value = updated
	}
	return true
}

// ReplaceOrPut replaces a live entry's value (keeping its expiry) or puts a new one.
func (m *TTLMap[V]) ReplaceOrPut(key string, value V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.replace(key, value) {
		m.put(key, value)
	}
}

// TakeDated removes and returns the value and when it was put.
func (m *TTLMap[V]) TakeDated(key string) (value V, putAt time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.purge(m.clock())
	found, ok := m.index[key]
	if !ok {
		return value, putAt, false
	}
	m.order.Remove(found)
	delete(m.index, key)
	e := found.Value.(*entry[V])
	return e.value, e.expires.Add(-m.ttl), true
}

func (m *TTLMap[V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}

func (m *TTLMap[V]) Evicted() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evicted
}

// Upsert sets key to change(current, found) under the lock; change returns false to leave it.
// A live entry keeps its place and expiry; a new one is put.
func (m *TTLMap[V]) Upsert(key string, change func(current V, found bool) (V, bool)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.purge(m.clock())
	if found, ok := m.index[key]; ok {
		e := found.Value.(*entry[V])
		if updated, keep := change(e.value, true); keep {
			e.value = updated
		}
		return
	}
	var zero V
	if value, keep := change(zero, false); keep {
		m.put(key, value)
	}
}
