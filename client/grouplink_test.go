package client

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// TestGroupLinkedDeviceLearnsGroups: alice links a laptop after her
// group was made and changed. The laptop holds the same chain, shows the
// group's history with its authors, receives the group's next message
// and can write to it.
func TestGroupLinkedDeviceLearnsGroups(t *testing.T) {
	srv := startServer(t)
	alice, bob, carol := newUser(t, srv.URL, "alice"), newUser(t, srv.URL, "bob"), newUser(t, srv.URL, "carol")
	newUser(t, srv.URL, "dave")
	id, err := alice.CreateGroup(ctxT(t), "Plans", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.AddGroupMembers(ctxT(t), id, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	groupEvents(t, carol)
	sendGroup(t, bob, id, "noon?")
	groupEvents(t, alice)
	sendGroup(t, alice, id, "noon it is")
	groupEvents(t, bob)
	// A group alice left: carried too, inactive.
	old, err := carol.CreateGroup(ctxT(t), "Old", []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	groupEvents(t, alice)
	if err := alice.LeaveGroup(ctxT(t), old); err != nil {
		t.Fatal(err)
	}

	laptop := linkDevice(t, srv.URL, alice, "alice", true)
	g, ok := findGroup(t, laptop, id)
	if !ok || !g.Active || g.Epoch != 2 || !slices.Equal(g.Members, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("the laptop's view of the group: %+v (known %v)", g, ok)
	}
	if h, l := head(t, alice, id), head(t, laptop, id); h.hash != l.hash {
		t.Fatal("the laptop's head differs from the primary's")
	}
	if s, err := loadStateAt(ctxT(t), laptop.db, id, 1); err != nil || s == nil {
		t.Fatalf("the laptop lacks epoch 1 (needed to settle a concurrent change): %v", err)
	}
	if g, ok := findGroup(t, laptop, old); !ok || g.Active {
		t.Fatalf("the group alice left: %+v (known %v)", g, ok)
	}
	h, err := laptop.History(ctxT(t), GroupConversation(id), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h {
		got = append(got, e.Author+": "+e.Text)
	}
	if !slices.Equal(got, []string{"bob: noon?", "alice: noon it is"}) {
		t.Fatalf("the laptop's group history: %q", got)
	}
	groupEvents(t, laptop)
	sendGroup(t, carol, id, "see you")
	want(t, "the laptop", groupEvents(t, laptop), "Plans carol: see you")
	sendGroup(t, laptop, id, "from my laptop")
	want(t, "bob", groupEvents(t, bob), "Plans carol: see you", "Plans alice: from my laptop")
}

func findGroup(t *testing.T, c *Client, id GroupID) (Group, bool) {
	t.Helper()
	gs, err := c.Groups(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.ID == id {
			return g, true
		}
	}
	return Group{}, false
}

// FuzzLinkedGroups feeds arbitrary link payloads' groups to the checks a
// new device applies: an error or runs that each hold one group's
// states, each following the one before.
func FuzzLinkedGroups(f *testing.F) {
	alice := newStateSigner(f, "alice")
	g1 := genesis(f, alice, "bob")
	g2 := alice.next(f, g1, []string{"alice", "bob", "carol"}, []string{"alice"})
	good, _ := proto.Marshal(&wire.LinkPayload{Groups: []*wire.LinkedGroup{{States: []*wire.SignedGroupState{g1.signed, g2.signed}}}})
	f.Add(good)
	bad, _ := proto.Marshal(&wire.LinkPayload{Groups: []*wire.LinkedGroup{{States: []*wire.SignedGroupState{g2.signed, g1.signed}}}})
	f.Add(bad)
	f.Add([]byte{0x52, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p wire.LinkPayload
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		runs, err := parseLinkedGroups(p.GetGroups())
		if err != nil {
			return
		}
		for _, run := range runs {
			for i := 1; i < len(run); i++ {
				if checkSuccessor(run[i-1], run[i]) != nil {
					t.Fatal("a run whose states do not follow each other")
				}
			}
		}
	})
}
