package client

import (
	"crypto/sha256"
	"database/sql"
	"slices"
	"testing"

	"github.com/hush-chat/hush/wire"
)

// stateHolder is a device's store with a group account, for applying
// states (already verified) the way receiveGroupUpdate does after the
// signature check.
type stateHolder struct {
	c *Client
	a *account
}

func newStateHolder(t *testing.T, name string) stateHolder {
	t.Helper()
	c, err := New(Config{Home: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return stateHolder{c: c, a: newStateSigner(t, name).a}
}

func (h stateHolder) accept(t *testing.T, g *groupState) {
	t.Helper()
	err := inTx(ctxT(t), h.c.db, func(tx *sql.Tx) error {
		_, err := h.c.acceptGroupState(ctxT(t), tx, h.a, g, h.c.now())
		return err
	})
	if err != nil {
		t.Logf("state %d by %s refused: %v", g.st.GetEpoch(), g.signer(), err)
	}
}

// TestGroupRemovedAdminCannotForkBackIntoTheGroup: mallory, an admin at
// epoch 2, is removed at epoch 4. Afterwards she signs a state for epoch
// 3 that follows epoch 2 and takes alice's admin role away, so by the
// concurrent-change rule alone it would beat alice's epoch-3 state.
// Carol, who holds epochs 1 to 4, must keep them.
func TestGroupRemovedAdminCannotForkBackIntoTheGroup(t *testing.T) {
	alice, mallory := newStateSigner(t, "alice"), newStateSigner(t, "mallory")
	carol := newStateHolder(t, "carol")
	g1 := genesis(t, alice, "bob", "carol", "mallory")
	g2 := alice.next(t, g1, g1.st.Members, []string{"alice", "mallory"})
	a3 := alice.next(t, g2, []string{"alice", "bob", "carol", "dave", "mallory"}, g2.st.Admins)
	a4 := alice.next(t, a3, []string{"alice", "bob", "carol", "dave"}, []string{"alice"})
	for _, g := range []*groupState{g1, g2, a3, a4} {
		carol.accept(t, g)
	}
	if h := head(t, carol.c, g1.id); h.hash != a4.hash {
		t.Fatalf("carol's head is epoch %d, want 4", h.st.GetEpoch())
	}
	b3 := mallory.next(t, g2, g2.st.Members, []string{"mallory"})
	if !preferred(g2, a3, b3) {
		t.Fatal("test setup: mallory's state should win against alice's epoch 3 alone")
	}
	carol.accept(t, b3)
	if h := head(t, carol.c, g1.id); h.hash != a4.hash {
		t.Fatalf("after mallory's fork carol's head is epoch %d by %s, admins %v", h.st.GetEpoch(), h.signer(), h.st.GetAdmins())
	}
}

// TestGroupPendingStatesCannotBeCrowdedOut: bob, a member, and mallory,
// a stranger who knows the group id, send states for epochs the group
// has not reached, to fill what carol holds for states on their way.
// Alice's epoch 3, arriving before her epoch 2, must still be held and
// applied once epoch 2 arrives.
func TestGroupPendingStatesCannotBeCrowdedOut(t *testing.T) {
	alice, bob, mallory := newStateSigner(t, "alice"), newStateSigner(t, "bob"), newStateSigner(t, "mallory")
	carol := newStateHolder(t, "carol")
	g1 := genesis(t, alice, "bob", "carol")
	carol.accept(t, g1)
	junk := func(s stateSigner, members []string, epoch uint64) *groupState {
		prev := sha256.Sum256([]byte{byte(epoch), byte(epoch >> 8)})
		return s.sign(t, &wire.GroupState{GroupId: g1.id[:], Name: "Book club", Members: members, Admins: []string{s.a.Username},
			Epoch: epoch, Previous: prev[:], ChangedMs: 1})
	}
	for e := uint64(3); e < 3+2*maxPendingStates; e++ {
		carol.accept(t, junk(bob, g1.st.Members, e))
		carol.accept(t, junk(mallory, []string{"carol", "mallory"}, e))
	}
	carol.accept(t, junk(bob, g1.st.Members, 1<<62))
	g2 := alice.next(t, g1, []string{"alice", "bob", "carol", "dave"}, g1.st.Admins)
	g3 := alice.next(t, g2, []string{"alice", "bob", "carol", "dave", "erin"}, g1.st.Admins)
	carol.accept(t, g3)
	carol.accept(t, g2)
	h := head(t, carol.c, g1.id)
	if h.hash != g3.hash {
		t.Fatalf("carol's head is epoch %d %v, want epoch 3", h.st.GetEpoch(), h.st.GetMembers())
	}
	if !slices.Equal(h.st.GetMembers(), g3.st.GetMembers()) {
		t.Fatalf("members %v", h.st.GetMembers())
	}
}

// TestGroupMessageIDCannotBeTaken: carol, a member, sends a text that
// reuses the id of bob's message. Alice keeps one message under that id,
// bob's, so bob's edit still applies to it and carol's text is ignored.
func TestGroupMessageIDCannotBeTaken(t *testing.T) {
	srv := startServer(t)
	alice, bob, carol := newUser(t, srv.URL, "alice"), newUser(t, srv.URL, "bob"), newUser(t, srv.URL, "carol")
	id, err := alice.CreateGroup(ctxT(t), "Plans", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	groupEvents(t, carol)
	mid := sendGroup(t, bob, id, "meet at noon")
	want(t, "alice", groupEvents(t, alice), "Plans bob: meet at noon")
	groupEvents(t, carol)
	// Carol, twice: once with bob's id, once reusing the id of her own
	// message.
	cm := sendGroup(t, carol, id, "hello")
	for _, reuse := range []MessageID{mid, cm} {
		err := carol.sendControl(ctxT(t), "alice", &wire.Content{
			SentMs: carol.now().UnixMilli(),
			Body:   &wire.Content_Text{Text: &wire.Text{Body: "meet at midnight"}},
			Group:  &wire.GroupContext{GroupId: id[:], Epoch: 1, MessageId: reuse[:]},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want(t, "alice", groupEvents(t, alice), "Plans carol: hello")
	h, err := alice.History(ctxT(t), GroupConversation(id), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h {
		got = append(got, e.Author+": "+e.Text)
	}
	if !slices.Equal(got, []string{"bob: meet at noon", "carol: hello"}) {
		t.Fatalf("alice's history: %q", got)
	}
}
