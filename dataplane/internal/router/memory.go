package router

import (
	"time"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/marks"
)

// Answered is where one request went, so that its feedback follows it and its retries stay
// with it: the arm and its URL, the replica that answered (X-Modelops-Served-By), the same for
// its shadow copy, and the latest attempt routed.
type Answered struct {
	Arm, URL, ShadowURL, Replica, ShadowReplica string
	Attempt                                     int
}

// Memory of request ids: at most capacity, each ttl from its first attempt. Feedback takes an
// id's record; an attempt whose id was first routed less than window before is a retry, sent
// where the first one went. One map serves both, so a retry costs one lookup.
type Memory struct {
	routes *feedback.TTLMap[Answered]
	window time.Duration
}

func NewMemory(capacity int, ttl, window time.Duration, clock func() time.Time) *Memory {
	return &Memory{routes: feedback.NewTTLMap[Answered](capacity, ttl, clock), window: window}
}

// Earlier is the record of the attempt this one retries (ok false: no retry the memory knows)
// and this attempt's number. A client's X-Modelops-Attempt is not believed.
func (m *Memory) Earlier(mk marks.Marks) (Answered, bool, int) {
	if mk.RequestID != "" {
		found, age, ok := m.routes.GetAged(mk.RequestID)
		if ok && age <= m.window {
			return found, true, max(mk.Standard, found.Attempt+1)
		}
	}
	return Answered{}, false, mk.Standard
}

// Dispatched: an attempt is on its way (before its answer: a retry may come while it is in
// flight). A retry keeps the first attempt's place and time; a first attempt starts anew.
func (m *Memory) Dispatched(id string, earlier Answered, retry bool, arm, url string, attempt int) {
	if id == "" {
		return
	}
	if retry {
		record := Answered{arm, url, earlier.ShadowURL, earlier.Replica, earlier.ShadowReplica, attempt}
		if m.routes.Replace(id, record) {
			return
		}
	}
	m.routes.Put(id, Answered{Arm: arm, URL: url, Attempt: attempt})
}

// Answer records the replica that answered (and the copy's arm in shadow mode), unless a later
// attempt is already on its way; a retry keeps the first attempt's shadow copy.
func (m *Memory) Answer(id, arm, url, shadowURL, replica string, attempt int) {
	m.routes.Upsert(id, func(current Answered, found bool) (Answered, bool) {
		if found && current.Attempt > attempt {
			return current, false
		}
		shadowReplica := ""
		if attempt > 1 && found {
			shadowURL, shadowReplica = current.ShadowURL, current.ShadowReplica
		}
		return Answered{arm, url, shadowURL, replica, shadowReplica, attempt}, true
	})
}

// NoteShadowReplica: the challenger's replica that answered a copy, unless that id's
// feedback came already or the id was used again for another request.
func (m *Memory) NoteShadowReplica(id, shadowURL, replica string) {
	m.routes.Update(id, func(current Answered) (Answered, bool) {
		if current.ShadowURL != shadowURL {
			return current, false
		}
		current.ShadowReplica = replica
		return current, true
	})
}

// Take the record of id (feedback is sent once).
func (m *Memory) Take(id string) (Answered, bool) {
	found, _, ok := m.routes.TakeDated(id)
	return found, ok
}

// RouteArm is an inference request's arm: its first attempt's while the configuration still
// sends traffic there, else the split's choice (weight, or the sticky value's position).
func RouteArm(live *Live, sticky *Sticky, earlier Answered, retry bool, value string, hasValue bool) string {
	split := live.Mode == "split" && live.Challenger != nil
	if retry && (earlier.Arm == Champion || (split && live.ChallengerWeight > 0)) {
		return earlier.Arm
	}
	if live.Mode != "split" {
		return Champion
	}
	return sticky.ChooseArm(live.ChallengerWeight, value, hasValue)
}
