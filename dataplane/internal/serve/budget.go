package serve

import "sync/atomic"

// Budget counts the bytes of request bodies held by the process. A request that would take it
// over the limit is refused at once (503) instead of waiting: waiting would hold its connection
// and its partial body, which is the memory the budget protects.
type Budget struct {
	limit int64
	used  atomic.Int64
}

func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Take reserves n bytes; false (nothing reserved) when that would exceed the limit.
func (b *Budget) Take(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) Give(n int64) { b.used.Add(-n) }

func (b *Budget) Used() int64 { return b.used.Load() }
