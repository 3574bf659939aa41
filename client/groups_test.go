package client

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hush-chat/hush/wire"
)

// groupEvents receives the backlog and renders group traffic as lines:
// "Book club bob: text" for messages, "Book club 2 updated by alice
// +[erin] -[]" for states, "dropped …" for refused messages. Anything
// else is rendered too, so an unexpected message shows up.
func groupEvents(t *testing.T, c *Client) []string {
	t.Helper()
	var out []string
	err := c.Receive(ctxT(t), 0, func(e Event) {
		switch e := e.(type) {
		case *MessageEvent:
			name := "direct"
			if e.Group != nil {
				name = "group " + hex.EncodeToString(e.Group)
				var id GroupID
				copy(id[:], e.Group)
				if n, err := c.GroupName(ctxT(t), id); err == nil && n != "" {
					name = n
				}
			}
			out = append(out, fmt.Sprintf("%s %s: %s", name, e.From, e.Text))
		case *GroupEvent:
			out = append(out, fmt.Sprintf("%s %d %s by %s +%v -%v", e.Name, e.Epoch, e.Change, e.By, e.Added, e.Removed))
		case *DroppedEvent:
			out = append(out, fmt.Sprintf("dropped %s/%d", e.From, e.Device))
		case *RequestEvent:
			out = append(out, "request "+e.From)
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return out
}

func mustGroup(t *testing.T, c *Client, id GroupID) Group {
	t.Helper()
	gs, err := c.Groups(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.ID == id {
			return g
		}
	}
	t.Fatalf("group %s unknown", id)
	return Group{}
}

func sendGroup(t *testing.T, c *Client, id GroupID, text string) MessageID {
	t.Helper()
	mid, err := c.Send(ctxT(t), GroupConversation(id), text)
	if err != nil {
		t.Fatalf("group send: %v", err)
	}
	return mid
}

// member is one account with its devices in the group tests.
type member struct {
	name    string
	devices []*Client
}

func TestGroupFourUsersWithTwoDevicesEach(t *testing.T) {
	srv := startServer(t)
	var ms []*member
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		p := newUser(t, srv.URL, name)
		ms = append(ms, &member{name: name, devices: []*Client{p, linkDevice(t, srv.URL, p, name, false)}})
	}
	all := func() []*Client {
		var out []*Client
		for _, m := range ms {
			out = append(out, m.devices...)
		}
		return out
	}
	for _, d := range all() {
		groupEvents(t, d) // device notices
	}
	alice, bob, carol, dave := ms[0], ms[1], ms[2], ms[3]
	id, err := alice.devices[0].CreateGroup(ctxT(t), "Book club", []string{"bob", "carol", "dave"})
	if err != nil {
		t.Fatal(err)
	}
	joined := "Book club 1 joined by alice +[alice bob carol dave] -[]"
	for _, d := range all()[1:] {
		want(t, "a member's device", groupEvents(t, d), joined)
	}
	// Nobody became a contact or got a request by being in a group.
	if cs, _ := carol.devices[0].Contacts(ctxT(t)); len(cs) != 0 {
		t.Fatalf("carol's contacts: %v", cs)
	}

	// A message from bob's first device reaches the 7 other devices,
	// his own second one included.
	mid := sendGroup(t, bob.devices[0], id, "first meeting on Friday")
	for _, d := range all() {
		if d == bob.devices[0] {
			continue
		}
		want(t, "a device", groupEvents(t, d), "Book club bob: first meeting on Friday")
	}
	h, err := carol.devices[1].History(ctxT(t), GroupConversation(id), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].ID != mid || h[0].Text != "first meeting on Friday" {
		t.Fatalf("carol's second device holds %+v, want bob's message under id %s", h, mid)
	}
	if st, err := bob.devices[0].History(ctxT(t), GroupConversation(id), 0); err != nil || len(st) != 1 || st[0].Status != Stored {
		t.Fatalf("bob's own history: %+v, %v", st, err)
	}

	// Dave is removed: every device learns it, dave's too; after that he
	// gets nothing, and what he still sends is ignored.
	if err := alice.devices[1].RemoveGroupMembers(ctxT(t), id, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	removed := "Book club 2 updated by alice +[] -[dave]"
	for _, d := range all() {
		if d == alice.devices[1] {
			continue
		}
		w := removed
		if d == dave.devices[0] || d == dave.devices[1] {
			w = "Book club 2 left by alice +[] -[dave]"
		}
		want(t, "a device", groupEvents(t, d), w)
	}
	if g := mustGroup(t, dave.devices[0], id); g.Active || g.Epoch != 2 {
		t.Fatalf("dave's view after removal: %+v", g)
	}
	if _, err := dave.devices[0].Send(ctxT(t), GroupConversation(id), "still here"); err == nil {
		t.Fatal("a removed member's client sent to the group")
	}
	sendGroup(t, carol.devices[0], id, "dave is out")
	for _, d := range dave.devices {
		want(t, "dave", groupEvents(t, d))
	}
	for _, d := range []*Client{alice.devices[0], alice.devices[1], bob.devices[0], bob.devices[1], carol.devices[1]} {
		want(t, "a member", groupEvents(t, d), "Book club carol: dave is out")
	}

	// Carol leaves by herself (she is no admin): a self-removal state.
	if err := carol.devices[1].LeaveGroup(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Client{alice.devices[0], alice.devices[1], bob.devices[0], bob.devices[1]} {
		want(t, "a member", groupEvents(t, d), "Book club 3 updated by carol +[] -[carol]")
	}
	want(t, "carol's other device", groupEvents(t, carol.devices[0]), "Book club 3 left by carol +[] -[carol]")
	sendGroup(t, alice.devices[0], id, "two of us")
	for _, d := range carol.devices {
		want(t, "carol", groupEvents(t, d))
	}
	for _, d := range []*Client{alice.devices[1], bob.devices[0], bob.devices[1]} {
		want(t, "a member", groupEvents(t, d), "Book club alice: two of us")
	}
	g := mustGroup(t, bob.devices[1], id)
	if !slices.Equal(g.Members, []string{"alice", "bob"}) || !slices.Equal(g.Admins, []string{"alice"}) || g.Epoch != 3 {
		t.Fatalf("bob's view: %+v", g)
	}

	// A new member gets the current state from the admin who adds them
	// and can write at once.
	erin := newUser(t, srv.URL, "erin")
	if err := alice.devices[0].AddGroupMembers(ctxT(t), id, []string{"erin"}); err != nil {
		t.Fatal(err)
	}
	want(t, "erin", groupEvents(t, erin), "Book club 4 joined by alice +[alice bob erin] -[]")
	sendGroup(t, erin, id, "hi all")
	want(t, "alice", groupEvents(t, alice.devices[0]), "Book club erin: hi all")
	for _, d := range []*Client{alice.devices[1], bob.devices[0], bob.devices[1]} {
		want(t, "a member", groupEvents(t, d), "Book club 4 updated by alice +[erin] -[]", "Book club erin: hi all")
	}
}

// forgeGroupText sends, from c to user, a text that claims to belong to
// group id, as a modified client could.
func forgeGroupText(t *testing.T, c *Client, user string, id GroupID, epoch uint64, text string) {
	t.Helper()
	mid := newMessageID()
	err := c.sendControl(ctxT(t), user, &wire.Content{
		SentMs: c.now().UnixMilli(),
		Body:   &wire.Content_Text{Text: &wire.Text{Body: text}},
		Group:  &wire.GroupContext{GroupId: id[:], Epoch: epoch, MessageId: mid[:]},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sendState sends a signed state from c to user, as a modified client
// could send any state it holds or makes.
func sendState(t *testing.T, c *Client, user string, g *groupState) {
	t.Helper()
	err := c.sendControl(ctxT(t), user, &wire.Content{SentMs: c.now().UnixMilli(),
		Body: &wire.Content_GroupUpdate{GroupUpdate: &wire.GroupUpdate{State: g.signed}}})
	if err != nil {
		t.Fatal(err)
	}
}

func head(t *testing.T, c *Client, id GroupID) *groupState {
	t.Helper()
	g, err := loadHead(ctxT(t), c.db, id)
	if err != nil || g == nil {
		t.Fatalf("head of %s: %v", id, err)
	}
	return g
}

func TestGroupMessagesFromNonMembersAreIgnored(t *testing.T) {
	srv := startServer(t)
	alice, bob, mallory := newUser(t, srv.URL, "alice"), newUser(t, srv.URL, "bob"), newUser(t, srv.URL, "mallory")
	id, err := alice.CreateGroup(ctxT(t), "Plans", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	// Mallory, a real account, knows the group id (say bob showed it)
	// and crafts a message in it: bob's client ignores it, and it does
	// not even become a message request.
	forgeGroupText(t, mallory, "bob", id, 1, "click this link")
	want(t, "bob", groupEvents(t, bob))
	if h, _ := bob.History(ctxT(t), GroupConversation(id), 0); len(h) != 0 {
		t.Fatalf("bob stored %+v", h)
	}
	if rs, _ := bob.Requests(ctxT(t)); len(rs) != 0 {
		t.Fatalf("bob's requests: %+v", rs)
	}
	// A group bob does not know: ignored too.
	forgeGroupText(t, mallory, "bob", newGroupID(), 1, "join my group")
	want(t, "bob", groupEvents(t, bob))
	// A member's message still arrives.
	sendGroup(t, alice, id, "real")
	want(t, "bob", groupEvents(t, bob), "Plans alice: real")
}

func TestGroupReplayedOldStateIsIgnored(t *testing.T) {
	srv := startServer(t)
	alice, bob, carol := newUser(t, srv.URL, "alice"), newUser(t, srv.URL, "bob"), newUser(t, srv.URL, "carol")
	id, err := alice.CreateGroup(ctxT(t), "Plans", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.AddGroupMembers(ctxT(t), id, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	withCarol := head(t, alice, id) // epoch 2
	if err := alice.RemoveGroupMembers(ctxT(t), id, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	groupEvents(t, carol)
	// The epoch-2 state (carol in) comes again, validly signed by the
	// admin: it is older than what bob holds, so nothing changes and
	// carol's messages stay ignored.
	sendState(t, alice, "bob", withCarol)
	want(t, "bob", groupEvents(t, bob))
	if g := mustGroup(t, bob, id); g.Epoch != 3 || slices.Contains(g.Members, "carol") {
		t.Fatalf("bob's view after the replay: %+v", g)
	}
	forgeGroupText(t, carol, "bob", id, 2, "I am back")
	want(t, "bob", groupEvents(t, bob))
}

func TestGroupStateForgedByNonAdminIsIgnored(t *testing.T) {
	srv := startServer(t)
	alice, bob, carol := newUser(t, srv.URL, "alice"), newUser(t, srv.URL, "bob"), newUser(t, srv.URL, "carol")
	newUser(t, srv.URL, "mallory")
	id, err := alice.CreateGroup(ctxT(t), "Plans", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	groupEvents(t, carol)
	// Bob, a member but no admin, signs a state that adds mallory and
	// makes him admin, and sends it to carol.
	ba, err := bob.account()
	if err != nil {
		t.Fatal(err)
	}
	cur := head(t, bob, id)
	forged, err := bob.nextState(ba, cur, "Plans", []string{"alice", "bob", "carol", "mallory"}, []string{"alice", "bob"}, bob.now())
	if err != nil {
		t.Fatal(err)
	}
	sendState(t, bob, "carol", forged)
	got := groupEvents(t, carol)
	if len(got) != 1 || !strings.HasPrefix(got[0], "dropped bob/") {
		t.Fatalf("carol got %q, want the forged state dropped", got)
	}
	if g := mustGroup(t, carol, id); g.Epoch != 1 || slices.Contains(g.Members, "mallory") {
		t.Fatalf("carol's view after the forgery: %+v", g)
	}
	// A state signed by bob but claiming to be alice's: refused too.
	aa, err := alice.account()
	if err != nil {
		t.Fatal(err)
	}
	aliceNext, err := alice.nextState(aa, cur, "Plans", []string{"alice", "carol"}, []string{"alice"}, alice.now())
	if err != nil {
		t.Fatal(err)
	}
	sendState(t, bob, "carol", aliceNext) // relayed by bob
	got = groupEvents(t, carol)
	if len(got) != 1 || !strings.HasPrefix(got[0], "dropped bob/") {
		t.Fatalf("carol got %q, want the relayed state dropped", got)
	}
	if g := mustGroup(t, carol, id); g.Epoch != 1 {
		t.Fatalf("carol's view after the relay: %+v", g)
	}
}

func TestGroupConcurrentAdminChangesConverge(t *testing.T) {
	srv := startServer(t)
	alice, bob, carol := newUser(t, srv.URL, "alice"), newUser(t, srv.URL, "bob"), newUser(t, srv.URL, "carol")
	newUser(t, srv.URL, "erin")
	newUser(t, srv.URL, "frank")
	id, err := alice.CreateGroup(ctxT(t), "Plans", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	// Make bob an admin (epoch 2).
	aa, _ := alice.account()
	g2, err := alice.nextState(aa, head(t, alice, id), "Plans", []string{"alice", "bob", "carol"}, []string{"alice", "bob"}, alice.now())
	if err != nil {
		t.Fatal(err)
	}
	prev := head(t, alice, id)
	err = inTx(ctxT(t), alice.db, func(tx *sql.Tx) error {
		if err := storeHead(ctxT(t), tx, "alice", g2, alice.now()); err != nil {
			return err
		}
		return queueGroupUpdate(ctxT(t), tx, aa, prev, g2, alice.now())
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.flushGroup(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	groupEvents(t, carol)
	// Both admins change the group before seeing the other's change.
	if err := alice.AddGroupMembers(ctxT(t), id, []string{"erin"}); err != nil {
		t.Fatal(err)
	}
	if err := bob.AddGroupMembers(ctxT(t), id, []string{"frank"}); err != nil {
		t.Fatal(err)
	}
	// Each sees the other's; the losing admin makes its change again on
	// top of the winner, which everyone then takes.
	for range 3 {
		for _, c := range []*Client{alice, bob, carol} {
			groupEvents(t, c)
		}
	}
	ha, hb, hc := head(t, alice, id), head(t, bob, id), head(t, carol, id)
	if ha.hash != hb.hash || hb.hash != hc.hash {
		t.Fatalf("heads differ: alice %d %v, bob %d %v, carol %d %v", ha.st.Epoch, ha.st.Members, hb.st.Epoch, hb.st.Members, hc.st.Epoch, hc.st.Members)
	}
	if w := []string{"alice", "bob", "carol", "erin", "frank"}; !slices.Equal(ha.st.Members, w) || ha.st.Epoch != 4 {
		t.Fatalf("converged on epoch %d %v, want epoch 4 %v", ha.st.Epoch, ha.st.Members, w)
	}
}

// The last member leaving signs nothing, yet the group turns inactive on
// every device of the account: the other device learns it from a sync copy
// of the head it left.
func TestGroupLastMemberLeavingOnEveryDevice(t *testing.T) {
	srv := startServer(t)
	a1 := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	a2 := linkDevice(t, srv.URL, a1, "alice", false)
	groupEvents(t, a1)
	id, err := a1.CreateGroup(ctxT(t), "Book club", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	groupEvents(t, bob)
	if err := bob.LeaveGroup(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	want(t, "alice's laptop", groupEvents(t, a2), "Book club 1 joined by alice +[alice bob] -[]", "Book club 2 updated by bob +[] -[bob]")
	groupEvents(t, a1)
	if err := a1.LeaveGroup(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	want(t, "alice's laptop", groupEvents(t, a2), "Book club 2 left by alice +[] -[alice]")
	for _, c := range []*Client{a1, a2} {
		if g := mustGroup(t, c, id); g.Active {
			t.Errorf("%s: the group is still active: %+v", c.cfg.Home, g)
		}
		if _, err := c.Send(ctxT(t), GroupConversation(id), "anyone?"); err == nil || !strings.Contains(err.Error(), "no longer a member") {
			t.Errorf("%s: sending to the group left: %v", c.cfg.Home, err)
		}
	}
}
