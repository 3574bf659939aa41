package bench

import (
	"sync"
	"sync/atomic"
)

// The ledger is the bench's accounting of every measured message, kept
// per edge (one direction of one pair of virtual users). The sender
// records each message before it is written and the server's answer to
// it; the receiver counts every envelope it gets, before decrypting and
// without removing duplicates, so a message the server loses or delivers
// twice shows up whatever the ratchet makes of it.

// sendStatus is what the server answered to one send.
type sendStatus uint8

const (
	inFlight sendStatus = iota // written (or about to be); no answer yet
	stored                     // SendResponse{stored: true}
	refused                    // an error, or stored: false
)

// edge is one direction of one pair: messages from -> to.
type edge struct {
	from, to int

	mu     sync.Mutex
	status []sendStatus // by seq-1
	count  []uint8      // by seq-1: envelopes received, saturating at 255
	// phantom counts envelopes naming a seq the sender never used.
	phantom int64

	// helloSeen is set when the handshake message (seq 0) arrived.
	helloSeen atomic.Bool
}

// next allocates the next seq (from 1) and records it as in flight.
func (e *edge) next() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = append(e.status, inFlight)
	return uint32(len(e.status))
}

// answered records the server's answer to seq.
func (e *edge) answered(seq uint32, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq == 0 || int(seq) > len(e.status) {
		return
	}
	if ok {
		e.status[seq-1] = stored
	} else {
		e.status[seq-1] = refused
	}
}

// received counts one envelope for seq. first is true on its first
// arrival; known is false for a seq never sent (then it is a phantom).
// The count slice never grows past what the sender sent, so a hostile
// seq cannot make it allocate.
func (e *edge) received(seq uint32) (first, known bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seq == 0 || int(seq) > len(e.status) {
		e.phantom++
		return false, false
	}
	if int(seq) > len(e.count) {
		e.count = append(e.count, make([]uint8, int(seq)-len(e.count))...)
	}
	c := &e.count[seq-1]
	if *c < 255 {
		*c++
	}
	return *c == 1, true
}

// tally is the ledger's verdict over a set of edges.
type tally struct {
	sent       int64 // measured sends written
	stored     int64 // answered stored: true
	refused    int64 // answered with an error or stored: false
	unanswered int64 // no answer before the end
	delivered  int64 // distinct messages received at least once
	lost       int64 // stored, never received
	duplicated int64 // extra arrivals of a message already received
	phantom    int64 // envelopes for messages never sent
}

func (e *edge) addTo(t *tally) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t.sent += int64(len(e.status))
	t.phantom += e.phantom
	for i, s := range e.status {
		var n uint8
		if i < len(e.count) {
			n = e.count[i]
		}
		switch s {
		case stored:
			t.stored++
		case refused:
			t.refused++
		default:
			t.unanswered++
		}
		if n > 0 {
			t.delivered++
			t.duplicated += int64(n) - 1
		} else if s == stored {
			t.lost++
		}
	}
}

func tallyEdges(edges []*edge) tally {
	var t tally
	for _, e := range edges {
		e.addTo(&t)
	}
	return t
}
