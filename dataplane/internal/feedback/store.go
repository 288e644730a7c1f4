package feedback

import "time"

// MaxValues is how many predicted values one entry keeps (memory per entry is bounded).
const MaxValues = 64

// Prediction is what a label is scored against.
type Prediction struct {
	Values         []any // float64/json.Number, bool or string, as the model answered
	Classification bool
}

// Memory is where the sidecar keeps predictions for their labels. Today it is this replica's
// own store (Store); a verifier of signed receipts, where the label carries what it is scored
// against, can take its place without the sidecar changing.
type Memory interface {
	// Remember a prediction by id; keepTime: a live entry keeps its age (a retry's answer
	// replaces its first attempt's, which the retry window is measured from).
	Remember(id string, p Prediction, keepTime bool)
	// Age of the prediction remembered for id; ok false when there is none.
	Age(id string) (age time.Duration, ok bool)
	// Take the prediction for id (each is scored at most once), and when it was made.
	Take(id string) (p Prediction, madeAt time.Time, ok bool)
	Len() int
	Evicted() int64
}

// Store is the per-replica Memory: bounded in entries, time and values per entry.
type Store struct{ *TTLMap[Prediction] }

func NewStore(capacity int, ttl time.Duration, clock func() time.Time) *Store {
	return &Store{NewTTLMap[Prediction](capacity, ttl, clock)}
}

func (s *Store) Remember(id string, p Prediction, keepTime bool) {
	if len(p.Values) > MaxValues {
		p.Values = p.Values[:MaxValues]
	}
	if keepTime {
		s.ReplaceOrPut(id, p)
		return
	}
	s.Put(id, p)
}

func (s *Store) Age(id string) (time.Duration, bool) {
	_, age, ok := s.GetAged(id)
	return age, ok
}

func (s *Store) Take(id string) (Prediction, time.Time, bool) { return s.TakeDated(id) }
