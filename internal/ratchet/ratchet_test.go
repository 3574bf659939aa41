package ratchet_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet"
)

func TestInOrderExchange(t *testing.T) {
	alice, bob := newPair(t)
	for i := range 5 {
		m := msg("a->b %d", i)
		bob.mustDecrypt(t, alice.encrypt(t, m), m)
	}
	for i := range 5 {
		m := msg("b->a %d", i)
		alice.mustDecrypt(t, bob.encrypt(t, m), m)
	}
	m := msg("a->b again")
	bob.mustDecrypt(t, alice.encrypt(t, m), m)
}

func TestPrekeyMessagesUntilFirstReply(t *testing.T) {
	alice, bob := newPair(t)
	c1 := alice.encrypt(t, msg("one"))
	c2 := alice.encrypt(t, msg("two"))
	for _, c := range [][]byte{c1, c2} {
		m, err := ratchet.ParseMessage(c)
		if err != nil || !m.IsPrekey() {
			t.Fatalf("message before any reply is not a prekey message (err %v)", err)
		}
	}
	bob.mustDecrypt(t, c2, msg("two"))
	bob.mustDecrypt(t, c1, msg("one"))
	alice.mustDecrypt(t, bob.encrypt(t, msg("reply")), msg("reply"))
	m, err := ratchet.ParseMessage(alice.encrypt(t, msg("three")))
	if err != nil || m.IsPrekey() {
		t.Fatalf("message after a reply is still a prekey message (err %v)", err)
	}
}

// TestRandomOrder2300 delivers 2,300 messages in a random order in which
// no message is more than 1,900 places late (inside the 2,000 stored-key
// window) and across three sending chains; each decrypts exactly once.
func TestRandomOrder2300Messages(t *testing.T) {
	alice, bob := newPair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	type sent struct {
		ct, pt []byte
		key    int
	}
	var all []sent
	for i := range 2300 {
		if i == 800 || i == 1600 {
			// A reply from bob moves alice to a new sending chain. Bob
			// can only reply once he has the session: give him the
			// first message of the batch early and drop it from the set.
			if i == 800 {
				bob.mustDecrypt(t, all[0].ct, all[0].pt)
				all[0].ct = nil
			}
			alice.mustDecrypt(t, bob.encrypt(t, msg("ack %d", i)), msg("ack %d", i))
		}
		pt := msg("message %d", i)
		all = append(all, sent{ct: alice.encrypt(t, pt), pt: pt, key: i + rng.IntN(1900)})
	}
	order := make([]sent, 0, len(all))
	for _, s := range all {
		if s.ct != nil {
			order = append(order, s)
		}
	}
	// Stable sort by the jittered key gives a random bounded-lateness order.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && order[j-1].key > order[j].key; j-- {
			order[j-1], order[j] = order[j], order[j-1]
		}
	}
	for _, s := range order {
		bob.mustDecrypt(t, s.ct, s.pt)
	}
	for _, s := range order[:50] {
		bob.mustFailUnchanged(t, s.ct, ratchet.ErrDuplicate)
	}
}

func TestJumpOf25001Rejected(t *testing.T) {
	alice, bob := newPair(t)
	var cts [][]byte
	for i := range ratchet.MaxSkip + 3 {
		cts = append(cts, alice.encrypt(t, msg("%d", i)))
	}
	bob.mustDecrypt(t, cts[0], msg("0"))
	// Bob expects message 1; message 25,002 would skip 25,001 keys.
	bob.mustFailUnchanged(t, cts[ratchet.MaxSkip+2], ratchet.ErrTooFarAhead)
	// Skipping exactly 25,000 is allowed.
	bob.mustDecrypt(t, cts[ratchet.MaxSkip+1], msg("%d", ratchet.MaxSkip+1))
	// Only the newest 2,000 skipped keys are kept.
	bob.mustDecrypt(t, cts[ratchet.MaxSkip], msg("%d", ratchet.MaxSkip))
	bob.mustFailUnchanged(t, cts[1], ratchet.ErrDuplicate)
}

func TestJumpOf25001RejectedInNewChain(t *testing.T) {
	alice, bob := newPair(t)
	bob.mustDecrypt(t, alice.encrypt(t, msg("hi")), msg("hi"))
	var cts [][]byte
	for i := range ratchet.MaxSkip + 2 {
		cts = append(cts, bob.encrypt(t, msg("%d", i)))
	}
	alice.mustFailUnchanged(t, cts[ratchet.MaxSkip+1], ratchet.ErrTooFarAhead)
	alice.mustDecrypt(t, cts[ratchet.MaxSkip], msg("%d", ratchet.MaxSkip))
}

func TestReplayRejected(t *testing.T) {
	alice, bob := newPair(t)
	c0 := alice.encrypt(t, msg("zero"))
	c1 := alice.encrypt(t, msg("one"))
	c2 := alice.encrypt(t, msg("two"))
	bob.mustDecrypt(t, c0, msg("zero"))
	bob.mustFailUnchanged(t, c0, ratchet.ErrDuplicate)
	bob.mustDecrypt(t, c2, msg("two"))
	bob.mustFailUnchanged(t, c2, ratchet.ErrDuplicate)
	bob.mustDecrypt(t, c1, msg("one")) // from the skipped keys
	bob.mustFailUnchanged(t, c1, ratchet.ErrDuplicate)
	// Replays after a DH ratchet step too.
	r := bob.encrypt(t, msg("reply"))
	alice.mustDecrypt(t, r, msg("reply"))
	alice.mustFailUnchanged(t, r, ratchet.ErrDuplicate)
}

func TestFlippedBitRejectedStateUnchanged(t *testing.T) {
	alice, bob := newPair(t)
	bob.mustDecrypt(t, alice.encrypt(t, msg("setup")), msg("setup"))
	alice.mustDecrypt(t, bob.encrypt(t, msg("setup reply")), msg("setup reply"))

	// Same chain (existing ratchet key) and a new chain (DH step).
	sameChain := alice.encrypt(t, msg("same chain"))
	for i := range len(sameChain) * 8 {
		bad := bytes.Clone(sameChain)
		bad[i/8] ^= 1 << (i % 8)
		bob.mustFailUnchanged(t, bad, nil)
	}
	bob.mustDecrypt(t, sameChain, msg("same chain"))

	newChain := bob.encrypt(t, msg("new chain"))
	for i := range len(newChain) * 8 {
		bad := bytes.Clone(newChain)
		bad[i/8] ^= 1 << (i % 8)
		alice.mustFailUnchanged(t, bad, nil)
	}
	alice.mustDecrypt(t, newChain, msg("new chain"))
}

func TestFlippedBitInPrekeyMessageRejected(t *testing.T) {
	alice, bob := newPair(t)
	ct := alice.encrypt(t, msg("first"))
	// Every 7th bit keeps the test fast across the 1.6 KB KEM ciphertext.
	for i := 0; i < len(ct)*8; i += 7 {
		bad := bytes.Clone(ct)
		bad[i/8] ^= 1 << (i % 8)
		bob.mustFailUnchanged(t, bad, nil)
		if len(bob.dev.OneTime) != 4 {
			t.Fatal("a failed prekey message consumed a one-time prekey")
		}
	}
	bob.mustDecrypt(t, ct, msg("first"))
}

func TestWrongAssociatedDataRejected(t *testing.T) {
	alice, bob := newPair(t)
	ct := alice.encrypt(t, msg("hello"))
	// The AD binds the usernames: the same bytes claimed by another user fail.
	before := bob.rec.Marshal()
	if _, err := bob.rec.DecryptFrom(bob.dev.Responder(), "mallory", bob.peerID, ct); !errors.Is(err, ratchet.ErrTampered) {
		t.Fatalf("decrypt with wrong sender username: %v, want ErrTampered", err)
	}
	if !bytes.Equal(before, bob.rec.Marshal()) {
		t.Fatal("state changed")
	}
	bob.mustDecrypt(t, ct, msg("hello"))
}

func TestForgedBundleSignatureRefused(t *testing.T) {
	alice := newDevice(t, "alice")
	bob := newDevice(t, "bob")
	otk, kem := bob.AnyOneTime()
	for _, forge := range []func(b *identity.Bundle){
		func(b *identity.Bundle) { b.SignedPrekey.Signature[0] ^= 1 },
		func(b *identity.Bundle) { b.KEMPrekey.Signature[63] ^= 0x80 },
		func(b *identity.Bundle) { b.SignedPrekey.ID++ },
		func(b *identity.Bundle) {
			m := newDevice(t, "bob")
			b.SignedPrekey.Key = m.SPK.Public()
		},
	} {
		b, err := bob.Bundle(otk, kem)
		if err != nil {
			t.Fatal(err)
		}
		forge(b)
		var rec ratchet.Record
		if err := rec.Initiate("alice", alice.Identity, b); !errors.Is(err, pqxdh.ErrBadBundle) {
			t.Fatalf("initiate with forged bundle: %v, want ErrBadBundle", err)
		}
		if rec.HasSession() {
			t.Fatal("forged bundle left a session")
		}
	}
}

func TestOneTimePrekeyReuseRefused(t *testing.T) {
	bob := &party{dev: newDevice(t, "bob"), rec: &ratchet.Record{}, peer: "alice"}
	otk, kem := bob.dev.AnyOneTime()
	bundle, err := bob.dev.Bundle(otk, kem)
	if err != nil {
		t.Fatal(err)
	}
	a1 := &party{dev: newDevice(t, "alice"), rec: &ratchet.Record{}, peer: "bob"}
	introduce(a1, bob)
	if err := a1.rec.Initiate("alice", a1.dev.Identity, bundle); err != nil {
		t.Fatal(err)
	}
	bob.mustDecrypt(t, a1.encrypt(t, msg("first")), msg("first"))
	// A second session (a malicious server handing the same keys out
	// twice) with the same one-time prekeys is refused.
	var rec2 ratchet.Record
	if err := rec2.Initiate("alice", a1.dev.Identity, bundle); err != nil {
		t.Fatal(err)
	}
	ct, err := rec2.Encrypt(msg("second"))
	if err != nil {
		t.Fatal(err)
	}
	bob.mustFailUnchanged(t, ct, pqxdh.ErrUnknownPrekey)
}

func TestLastResortKEMPrekeyReusable(t *testing.T) {
	bob := &party{dev: newDevice(t, "bob"), rec: &ratchet.Record{}, peer: "alice"}
	for i := range 2 {
		bundle, err := bob.dev.Bundle(0, 0) // no one-time keys left
		if err != nil {
			t.Fatal(err)
		}
		a := &party{dev: newDevice(t, "alice"), rec: &ratchet.Record{}, peer: "bob"}
		introduce(a, bob)
		if err := a.rec.Initiate("alice", a.dev.Identity, bundle); err != nil {
			t.Fatal(err)
		}
		bob.mustDecrypt(t, a.encrypt(t, msg("hi %d", i)), msg("hi %d", i))
	}
}

func Test1000AlternatingRoundTrips(t *testing.T) {
	alice, bob := newPair(t)
	for i := range 1000 {
		m := msg("ping %d", i)
		bob.mustDecrypt(t, alice.encrypt(t, m), m)
		m = msg("pong %d", i)
		alice.mustDecrypt(t, bob.encrypt(t, m), m)
	}
}

func TestArchivedSessionDecryptsLateMessage(t *testing.T) {
	alice, bob := newPair(t)
	bob.mustDecrypt(t, alice.encrypt(t, msg("s1 first")), msg("s1 first"))
	alice.mustDecrypt(t, bob.encrypt(t, msg("s1 reply")), msg("s1 reply"))
	late := alice.encrypt(t, msg("late on s1"))
	lateFromBob := bob.encrypt(t, msg("late from bob on s1"))

	// Alice starts over (say, after a reinstall of her session store).
	initiate(t, alice, bob)
	bob.mustDecrypt(t, alice.encrypt(t, msg("s2 first")), msg("s2 first"))
	alice.mustDecrypt(t, bob.encrypt(t, msg("s2 reply")), msg("s2 reply"))

	bob.mustDecrypt(t, late, msg("late on s1"))
	alice.mustDecrypt(t, lateFromBob, msg("late from bob on s1"))
	// The archived session did not take over: new messages use s2.
	m := msg("after")
	bob.mustDecrypt(t, alice.encrypt(t, m), m)
}

func TestArchiveKeepsAtMost40Sessions(t *testing.T) {
	for _, restarts := range []int{ratchet.MaxArchivedSessions, ratchet.MaxArchivedSessions + 1} {
		alice, bob := newPair(t)
		bob.mustDecrypt(t, alice.encrypt(t, msg("s1")), msg("s1"))
		alice.mustDecrypt(t, bob.encrypt(t, msg("s1 reply")), msg("s1 reply"))
		late := alice.encrypt(t, msg("late on s1"))
		for range restarts {
			initiate(t, alice, bob)
			bob.mustDecrypt(t, alice.encrypt(t, msg("x")), msg("x"))
		}
		_, err := bob.decrypt(late)
		if restarts <= ratchet.MaxArchivedSessions && err != nil {
			t.Fatalf("after %d new sessions the first one no longer decrypts: %v", restarts, err)
		}
		if restarts > ratchet.MaxArchivedSessions && err == nil {
			t.Fatalf("after %d new sessions the first one still decrypts", restarts)
		}
	}
}

func TestSimultaneousInitiationConverges(t *testing.T) {
	for round := range 8 {
		alice := &party{dev: newDevice(t, "alice"), rec: &ratchet.Record{}, peer: "bob"}
		bob := &party{dev: newDevice(t, "bob"), rec: &ratchet.Record{}, peer: "alice"}
		introduce(alice, bob)
		initiate(t, alice, bob)
		initiate(t, bob, alice)
		a1 := alice.encrypt(t, msg("alice first"))
		b1 := bob.encrypt(t, msg("bob first"))
		// Both cross in flight.
		bob.mustDecrypt(t, a1, msg("alice first"))
		alice.mustDecrypt(t, b1, msg("bob first"))
		ka, _ := alice.rec.CurrentBaseKey()
		kb, _ := bob.rec.CurrentBaseKey()
		if ka != kb {
			t.Fatalf("round %d: alice and bob chose different sessions", round)
		}
		// Now both must send on the same session: each side's next
		// message is decrypted by the other's current session.
		for i := range 5 {
			m := msg("a %d", i)
			ct := alice.encrypt(t, m)
			bob.mustDecrypt(t, ct, m)
			m = msg("b %d", i)
			alice.mustDecrypt(t, bob.encrypt(t, m), m)
		}
		ida, _ := alice.rec.RemoteIdentity()
		idb, _ := bob.rec.RemoteIdentity()
		if !ida.Equal(bob.dev.Identity.Public()) || !idb.Equal(alice.dev.Identity.Public()) {
			t.Fatalf("round %d: current sessions point at the wrong peers", round)
		}
		// After convergence neither side sends prekey messages.
		m, err := ratchet.ParseMessage(alice.encrypt(t, msg("z")))
		if err != nil || m.IsPrekey() {
			t.Fatalf("round %d: alice still sends prekey messages", round)
		}
		m, err = ratchet.ParseMessage(bob.encrypt(t, msg("z")))
		if err != nil || m.IsPrekey() {
			t.Fatalf("round %d: bob still sends prekey messages", round)
		}
	}
}

func TestStateRoundTripAndStrictLoad(t *testing.T) {
	alice, bob := newPair(t)
	for i := range 20 {
		bob.mustDecrypt(t, alice.encrypt(t, msg("%d", i)), msg("%d", i))
		if i%3 == 0 {
			alice.mustDecrypt(t, bob.encrypt(t, msg("r%d", i)), msg("r%d", i))
		}
	}
	_ = alice.encrypt(t, msg("skipped"))
	bob.mustDecrypt(t, alice.encrypt(t, msg("after skip")), msg("after skip"))
	enc := bob.rec.Marshal()
	loaded, err := ratchet.UnmarshalRecord(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded.Marshal(), enc) {
		t.Fatal("state does not round-trip")
	}
	bob.rec = loaded
	m := msg("after reload")
	bob.mustDecrypt(t, alice.encrypt(t, m), m)
	alice.mustDecrypt(t, bob.encrypt(t, m), m)

	for _, bad := range [][]byte{
		nil,
		{2},
		enc[:len(enc)-1],
		append(bytes.Clone(enc), 0),
	} {
		if _, err := ratchet.UnmarshalRecord(bad); !errors.Is(err, ratchet.ErrBadState) {
			t.Fatalf("UnmarshalRecord(%d bytes) = %v, want ErrBadState", len(bad), err)
		}
	}
}

func TestNoSessionError(t *testing.T) {
	var rec ratchet.Record
	if _, err := rec.Encrypt(msg("x")); !errors.Is(err, ratchet.ErrNoSession) {
		t.Fatalf("encrypt without session: %v", err)
	}
}

// TestSimultaneousInitiationWithReorderConverges: the side with the higher
// base key has its first prekey message delayed until after the other side
// has already received an answer on its own session. The delayed message
// makes a new current session on one side only; the first reply on it
// makes the other side promote it too (docs/protocol.md §6.1).
func TestSimultaneousInitiationWithReorderConverges(t *testing.T) {
	for round := range 6 {
		a := &party{dev: newDevice(t, "alice"), rec: &ratchet.Record{}, peer: "bob"}
		b := &party{dev: newDevice(t, "bob"), rec: &ratchet.Record{}, peer: "alice"}
		introduce(a, b)
		initiate(t, a, b)
		initiate(t, b, a)
		ka, _ := a.rec.CurrentBaseKey()
		kb, _ := b.rec.CurrentBaseKey()
		lo, hi := a, b
		if bytes.Compare(kb[:], ka[:]) < 0 {
			lo, hi = b, a
		}
		delayed := hi.encrypt(t, msg("delayed from hi"))
		hi.mustDecrypt(t, lo.encrypt(t, msg("lo first")), msg("lo first"))
		lo.mustDecrypt(t, hi.encrypt(t, msg("hi reply")), msg("hi reply"))
		lo.mustDecrypt(t, delayed, msg("delayed from hi"))
		for i := range 4 {
			m := msg("lo %d", i)
			hi.mustDecrypt(t, lo.encrypt(t, m), m)
			m = msg("hi %d", i)
			lo.mustDecrypt(t, hi.encrypt(t, m), m)
			ka, _ := lo.rec.CurrentBaseKey()
			kb, _ := hi.rec.CurrentBaseKey()
			if ka != kb {
				t.Fatalf("round %d, exchange %d: the two sides use different sessions", round, i)
			}
		}
	}
}

// TestPrekeyReplayAfterArchiveEvictionRejected: a prekey message that used
// no one-time keys is replayed after its session left the archive.
func TestPrekeyReplayAfterArchiveEvictionRejected(t *testing.T) {
	alice := &party{dev: newDevice(t, "alice"), rec: &ratchet.Record{}, peer: "bob"}
	bob := &party{dev: newDevice(t, "bob"), rec: &ratchet.Record{}, peer: "alice"}
	introduce(alice, bob)
	lastResortOnly := func() {
		b, err := bob.dev.Bundle(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.rec.Initiate("alice", alice.dev.Identity, b); err != nil {
			t.Fatal(err)
		}
	}
	lastResortOnly()
	first := alice.encrypt(t, msg("transfer 100 EUR"))
	bob.mustDecrypt(t, first, msg("transfer 100 EUR"))
	for range ratchet.MaxArchivedSessions + 1 {
		lastResortOnly()
		bob.mustDecrypt(t, alice.encrypt(t, msg("x")), msg("x"))
	}
	bob.mustFailUnchanged(t, first, ratchet.ErrDuplicate)
}

// TestSkippedKeyOfDroppedChainStillDecrypts: a message skipped in a chain
// that has since left the kept receiving chains still decrypts from its
// stored key.
func TestSkippedKeyOfDroppedChainStillDecrypts(t *testing.T) {
	alice, bob := newPair(t)
	bob.mustDecrypt(t, alice.encrypt(t, msg("hello")), msg("hello"))
	alice.mustDecrypt(t, bob.encrypt(t, msg("hi")), msg("hi"))
	late := alice.encrypt(t, msg("late"))
	bob.mustDecrypt(t, alice.encrypt(t, msg("on time")), msg("on time"))
	for i := range ratchet.MaxOldReceiveChains + 2 {
		alice.mustDecrypt(t, bob.encrypt(t, msg("b%d", i)), msg("b%d", i))
		bob.mustDecrypt(t, alice.encrypt(t, msg("a%d", i)), msg("a%d", i))
	}
	bob.mustDecrypt(t, late, msg("late"))
	bob.mustFailUnchanged(t, late, nil)
}
