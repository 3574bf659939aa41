package client

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// stateSigner is an account with one device and its verified list, for
// signing group states without a server.
type stateSigner struct {
	a    *account
	list *identity.SignedDeviceList
}

func newStateSigner(t testing.TB, name string) stateSigner {
	t.Helper()
	ak, err := keys.GenerateAccount()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := keys.GenerateDeviceSigning()
	if err != nil {
		t.Fatal(err)
	}
	ik, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	l, err := identity.SignDeviceList(identity.DeviceList{Username: name, Version: 1, Devices: []identity.Device{
		{ID: 1, SigningKey: sk.Public(), IdentityKey: ik.Public()},
	}}, ak)
	if err != nil {
		t.Fatal(err)
	}
	return stateSigner{a: &account{Username: name, DeviceID: 1, Signing: sk}, list: l}
}

func (s stateSigner) sign(t testing.TB, st *wire.GroupState) *groupState {
	t.Helper()
	g, err := signGroupState(s.a, st)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (s stateSigner) next(t testing.TB, prev *groupState, members, admins []string) *groupState {
	t.Helper()
	return s.sign(t, &wire.GroupState{GroupId: prev.id[:], Name: prev.st.GetName(), Members: members, Admins: admins,
		Epoch: prev.st.GetEpoch() + 1, Previous: prev.hash[:], ChangedMs: 1})
}

func genesis(t testing.TB, s stateSigner, members ...string) *groupState {
	t.Helper()
	id := newGroupID()
	return s.sign(t, &wire.GroupState{GroupId: id[:], Name: "Book club", Members: sortedSet(append(members, s.a.Username)),
		Admins: []string{s.a.Username}, Epoch: 1, ChangedMs: 1})
}

func TestGroupStateSignatureVerifiesOnlyWithSignersDevice(t *testing.T) {
	alice, bob := newStateSigner(t, "alice"), newStateSigner(t, "bob")
	g := genesis(t, alice, "bob")
	if err := g.verifySignature(alice.list); err != nil {
		t.Fatalf("alice's own state: %v", err)
	}
	if err := g.verifySignature(bob.list); !errors.Is(err, ErrBadGroupState) {
		t.Fatalf("checked with bob's list: %v", err)
	}
	// The same state claimed by bob: his device key did not sign it.
	forged := proto.Clone(g.signed).(*wire.SignedGroupState)
	forged.Signer = "bob"
	st := proto.Clone(g.st).(*wire.GroupState)
	st.ChangedBy = "bob"
	forged.State, _ = proto.MarshalOptions{Deterministic: true}.Marshal(st)
	fg, err := parseGroupState(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := fg.verifySignature(bob.list); !errors.Is(err, ErrBadGroupState) {
		t.Fatalf("alice's signature passed as bob's: %v", err)
	}
	// One flipped bit of the state.
	tampered := proto.Clone(g.signed).(*wire.SignedGroupState)
	tampered.State = bytes.Clone(tampered.State)
	tampered.State[len(tampered.State)-1] ^= 1
	if tg, err := parseGroupState(tampered); err == nil {
		if err := tg.verifySignature(alice.list); !errors.Is(err, ErrBadGroupState) {
			t.Fatalf("tampered state verified: %v", err)
		}
	}
	// Another device id.
	other := proto.Clone(g.signed).(*wire.SignedGroupState)
	other.SignerDevice = 2
	og, err := parseGroupState(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := og.verifySignature(alice.list); !errors.Is(err, ErrBadGroupState) {
		t.Fatalf("an unlisted device's signature: %v", err)
	}
}

func TestGroupStateStructureRules(t *testing.T) {
	alice := newStateSigner(t, "alice")
	id := newGroupID()
	valid := func() *wire.GroupState {
		return &wire.GroupState{GroupId: id[:], Name: "Book club", Members: []string{"alice", "bob"}, Admins: []string{"alice"}, Epoch: 1}
	}
	tests := []struct {
		name string
		edit func(*wire.GroupState)
	}{
		{"short id", func(s *wire.GroupState) { s.GroupId = s.GroupId[:15] }},
		{"empty name", func(s *wire.GroupState) { s.Name = "" }},
		{"control character in name", func(s *wire.GroupState) { s.Name = "a\u202eb" }},
		{"escape sequence in name", func(s *wire.GroupState) { s.Name = "a\x1b[2Jb" }},
		{"C1 control in name", func(s *wire.GroupState) { s.Name = "a\u009bb" }},
		{"line separator in name", func(s *wire.GroupState) { s.Name = "a\u2028b" }},
		{"paragraph separator in name", func(s *wire.GroupState) { s.Name = "a\u2029b" }},
		{"long name", func(s *wire.GroupState) { s.Name = string(bytes.Repeat([]byte("x"), MaxGroupName+1)) }},
		{"no members", func(s *wire.GroupState) { s.Members = nil }},
		{"unsorted members", func(s *wire.GroupState) { s.Members = []string{"bob", "alice"} }},
		{"duplicate member", func(s *wire.GroupState) { s.Members = []string{"alice", "alice"} }},
		{"not a username", func(s *wire.GroupState) { s.Members = []string{"Alice", "bob"} }},
		{"no admin", func(s *wire.GroupState) { s.Admins = nil }},
		{"admin not a member", func(s *wire.GroupState) { s.Admins = []string{"alice", "carol"} }},
		{"epoch 0", func(s *wire.GroupState) { s.Epoch = 0 }},
		{"epoch 1 with previous", func(s *wire.GroupState) { s.Previous = make([]byte, 32) }},
		{"epoch 2 without previous", func(s *wire.GroupState) { s.Epoch = 2 }},
	}
	if _, err := signGroupState(alice.a, valid()); err != nil {
		t.Fatalf("valid state refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := valid()
			tt.edit(st)
			if _, err := signGroupState(alice.a, st); !errors.Is(err, ErrBadGroupState) {
				t.Fatalf("got %v, want ErrBadGroupState", err)
			}
		})
	}
	// A non-canonical encoding: a field repeated, which a parser would
	// merge; the hash and signature must cover what is shown.
	g, err := signGroupState(alice.a, valid())
	if err != nil {
		t.Fatal(err)
	}
	s := proto.Clone(g.signed).(*wire.SignedGroupState)
	s.State = append(bytes.Clone(s.State), 0x12, 1, 'X') // name again
	if _, err := parseGroupState(s); !errors.Is(err, ErrBadGroupState) {
		t.Fatalf("non-canonical state: %v", err)
	}
}

func TestGroupStateSuccessorRules(t *testing.T) {
	alice, bob, carol := newStateSigner(t, "alice"), newStateSigner(t, "bob"), newStateSigner(t, "carol")
	g1 := genesis(t, alice, "bob", "carol")
	if err := checkGenesis(g1); err != nil {
		t.Fatal(err)
	}
	if err := checkGenesis(bob.sign(t, &wire.GroupState{GroupId: g1.id[:], Name: "x", Members: []string{"alice", "bob"}, Admins: []string{"alice"}, Epoch: 1})); err == nil {
		t.Fatal("a genesis naming another admin than its signer passed")
	}
	other := genesis(t, alice, "bob")
	tests := []struct {
		name string
		next *groupState
		ok   bool
	}{
		{"admin adds", alice.next(t, g1, []string{"alice", "bob", "carol", "dave"}, []string{"alice"}), true},
		{"admin removes", alice.next(t, g1, []string{"alice", "bob"}, []string{"alice"}), true},
		{"admin promotes", alice.next(t, g1, []string{"alice", "bob", "carol"}, []string{"alice", "bob"}), true},
		{"member adds", bob.next(t, g1, []string{"alice", "bob", "carol", "eve"}, []string{"alice"}), false},
		{"member removes another", bob.next(t, g1, []string{"alice", "bob"}, []string{"alice"}), false},
		{"member promotes themself", bob.next(t, g1, []string{"alice", "bob", "carol"}, []string{"alice", "bob"}), false},
		{"member leaves", carol.next(t, g1, []string{"alice", "bob"}, []string{"alice"}), true},
		{"member leaves and renames", carol.sign(t, &wire.GroupState{GroupId: g1.id[:], Name: "Mine", Members: []string{"alice", "bob"},
			Admins: []string{"alice"}, Epoch: 2, Previous: g1.hash[:]}), false},
		{"epoch skipped", alice.sign(t, &wire.GroupState{GroupId: g1.id[:], Name: "Book club", Members: g1.st.Members,
			Admins: []string{"alice"}, Epoch: 3, Previous: g1.hash[:]}), false},
		{"wrong previous", alice.next(t, other, []string{"alice", "bob", "carol"}, []string{"alice"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSuccessor(g1, tt.next)
			if tt.ok != (err == nil) {
				t.Fatalf("checkSuccessor = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestGroupConcurrentChangesResolveDeterministically(t *testing.T) {
	alice, bob := newStateSigner(t, "alice"), newStateSigner(t, "bob")
	g1 := genesis(t, alice, "bob", "carol")
	g2 := alice.next(t, g1, g1.st.Members, []string{"alice", "bob"})
	// Two admins add someone at once: exactly one wins, the same for
	// every pair order.
	a := alice.next(t, g2, []string{"alice", "bob", "carol", "dave"}, g2.st.Admins)
	b := bob.next(t, g2, []string{"alice", "bob", "carol", "erin"}, g2.st.Admins)
	if preferred(g2, a, b) == preferred(g2, b, a) {
		t.Fatal("both or neither of two competing states win")
	}
	ra, rb := signerRank(g2, "alice"), signerRank(g2, "bob")
	if preferred(g2, a, b) != (bytes.Compare(rb[:], ra[:]) < 0) {
		t.Fatal("the lower-ranked signer did not win")
	}
	// Two states of one signer: the lower hash wins.
	a2 := alice.next(t, g2, []string{"alice", "bob", "carol", "erin"}, g2.st.Admins)
	if preferred(g2, a, a2) != (bytes.Compare(a2.hash[:], a.hash[:]) < 0) {
		t.Fatal("the lower hash did not win between two states of one signer")
	}
	// Alice removes bob while bob adds erin: the removal wins whatever
	// the hashes (bob cannot undo his removal by racing it).
	for range 8 {
		rm := alice.next(t, g2, []string{"alice", "carol"}, []string{"alice"})
		add := bob.next(t, g2, []string{"alice", "bob", "carol", "erin"}, g2.st.Admins)
		if !preferred(g2, add, rm) || preferred(g2, rm, add) {
			t.Fatal("a racing state undid the removal of its signer")
		}
	}
}

// TestGroupConcurrentRemovalCannotBeGround: alice takes bob's admin
// role away, and bob, having seen it, signs a competing state that takes
// alice's away. Which one wins must not depend on anything bob can
// choose: he tries state after state (their times differ, so their
// hashes do) and the outcome stays the same.
func TestGroupConcurrentRemovalCannotBeGround(t *testing.T) {
	alice, bob := newStateSigner(t, "alice"), newStateSigner(t, "bob")
	g1 := genesis(t, alice, "bob", "carol")
	g2 := alice.next(t, g1, g1.st.Members, []string{"alice", "bob"})
	rm := alice.next(t, g2, []string{"alice", "carol"}, []string{"alice"})
	want := preferred(g2, rm, bob.next(t, g2, g2.st.Members, []string{"bob"}))
	var lower, higher bool
	for ms := int64(1); ms < 200 && !(lower && higher); ms++ {
		counter := bob.sign(t, &wire.GroupState{GroupId: g2.id[:], Name: "Book club", Members: g2.st.Members, Admins: []string{"bob"},
			Epoch: 3, Previous: g2.hash[:], ChangedMs: ms})
		if bytes.Compare(counter.hash[:], rm.hash[:]) < 0 {
			lower = true
		} else {
			higher = true
		}
		if preferred(g2, rm, counter) != want || preferred(g2, counter, rm) == want {
			t.Fatalf("bob's state at time %d changed the outcome", ms)
		}
	}
	if !lower || !higher {
		t.Fatal("no competing states with both a lower and a higher hash")
	}
}

// FuzzGroupState feeds arbitrary SignedGroupState encodings (what a
// member's device controls) to the parser and verifier: an error or a
// state that verifies and follows, never a panic, and nothing accepted
// that was not signed by alice's device.
func FuzzGroupState(f *testing.F) {
	alice := newStateSigner(f, "alice")
	g1 := genesis(f, alice, "bob")
	g2 := alice.next(f, g1, []string{"alice", "bob", "carol"}, []string{"alice"})
	for _, g := range []*groupState{g1, g2} {
		b, err := g.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := parseSignedGroupState(b)
		if err != nil {
			if !errors.Is(err, ErrBadGroupState) {
				t.Fatalf("error %v is not ErrBadGroupState", err)
			}
			return
		}
		again, err := g.encode()
		if err != nil {
			t.Fatal(err)
		}
		if g2, err := parseSignedGroupState(again); err != nil || g2.hash != g.hash {
			t.Fatalf("a parsed state does not parse back the same: %v", err)
		}
		if err := g.verifySignature(alice.list); err != nil {
			return
		}
		if g.signer() != "alice" {
			t.Fatalf("a state signed as %s verified with alice's device", g.signer())
		}
		if checkSuccessor(g1, g) == nil && (g.st.GetEpoch() != 2 || !bytes.Equal(g.st.GetPrevious(), g1.hash[:])) {
			t.Fatalf("epoch %d follows epoch 1", g.st.GetEpoch())
		}
	})
}
