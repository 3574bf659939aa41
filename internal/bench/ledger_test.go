package bench

import "testing"

// The accounting must find every kind of misdelivery exactly, whatever
// order answers and arrivals come in.
func TestLedgerCountsLostDuplicatedAndPhantoms(t *testing.T) {
	a := &edge{from: 0, to: 1}
	b := &edge{from: 1, to: 0}
	for range 10 {
		a.next()
	}
	for range 4 {
		b.next()
	}
	// a: 1..10 stored; 3 and 7 never arrive (lost); 5 arrives three
	// times; 9 arrives before its answer.
	for seq := uint32(1); seq <= 10; seq++ {
		switch seq {
		case 3, 7:
		case 5:
			for k := range 3 {
				first, known := a.received(seq)
				if first != (k == 0) || !known {
					t.Fatalf("arrival %d of seq 5: first=%v known=%v", k, first, known)
				}
			}
		default:
			if first, known := a.received(seq); !first || !known {
				t.Fatalf("seq %d: first=%v known=%v", seq, first, known)
			}
		}
		a.answered(seq, true)
	}
	// A seq never sent, and the handshake seq 0, are phantoms.
	if _, known := a.received(11); known {
		t.Fatal("seq 11 was never sent but counts as known")
	}
	if _, known := a.received(1 << 31); known {
		t.Fatal("a huge seq counts as known")
	}
	// b: 1 refused and not delivered (not lost), 2 unanswered and not
	// delivered, 3 refused yet delivered, 4 stored and delivered twice.
	b.answered(1, false)
	b.answered(3, false)
	b.received(3)
	b.answered(4, true)
	b.received(4)
	b.received(4)

	got := tallyEdges([]*edge{a, b})
	want := tally{
		sent:       14,
		stored:     11,
		refused:    2,
		unanswered: 1,
		delivered:  8 + 2,
		lost:       2,
		duplicated: 2 + 1,
		phantom:    2,
	}
	if got != want {
		t.Fatalf("tally\n got  %+v\n want %+v", got, want)
	}
}

func TestLedgerCountSaturates(t *testing.T) {
	e := &edge{}
	e.next()
	e.answered(1, true)
	for range 1000 {
		e.received(1)
	}
	if got := tallyEdges([]*edge{e}); got.duplicated != 254 || got.lost != 0 || got.delivered != 1 {
		t.Fatalf("tally %+v", got)
	}
}

func TestLedgerIgnoresAnswersForUnknownSeqs(t *testing.T) {
	e := &edge{}
	e.answered(0, true)
	e.answered(5, true)
	if got := tallyEdges([]*edge{e}); got != (tally{}) {
		t.Fatalf("tally %+v", got)
	}
}
