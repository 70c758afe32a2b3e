package cluster

// OWNER: helper A (placement).

// Move is one placement decision of the leader.
type Move struct {
	Worker string
	From   string // "" when the worker had no (live) host
	To     string
	Reason string // ReasonPlaced, ReasonFailover, ReasonDrain, ReasonRebalance
}

// Unplaced is a worker no host fits, and why.
type Unplaced struct {
	Worker string
	Reason string
}

// Plan is the placement: a pure function from a snapshot to the moves the
// leader should make now, and the workers it cannot place.
func Plan(s *Snapshot) (moves []Move, unplaced []Unplaced) { return nil, nil }
