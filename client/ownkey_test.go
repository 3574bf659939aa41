package client

import (
	"testing"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

func fingerprint(t *testing.T, c *Client) string {
	t.Helper()
	i, err := c.Info()
	if err != nil {
		t.Fatal(err)
	}
	return i.Fingerprint
}

// queueForgedKeyNotice makes from send to to an ACCOUNT_KEY_CHANGED notice
// carrying key, as a modified client could.
func queueForgedKeyNotice(t *testing.T, from *Client, to string, key keys.AccountPublic) {
	t.Helper()
	ctx := ctxT(t)
	now := from.now()
	content, err := marshalPadded(&wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_DeviceNotice{DeviceNotice: &wire.DeviceNotice{
		Kind: wire.DeviceNotice_ACCOUNT_KEY_CHANGED, DeviceId: 1, AccountKey: key.Bytes(),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	mid := newMessageID()
	if _, err := from.db.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
		mid[:], to, content, now.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if rep := from.flush(ctx); len(rep.Failed) > 0 || rep.Pending > 0 {
		t.Fatalf("forged notice not delivered: %+v", rep)
	}
}

func TestIdentityResetReachesLinkedDevices(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	befriend(t, alice1, "alice", bob, "bob")
	alice2 := linkDevice(t, srv.URL, alice1, "Laptop", false)
	want(t, "bob", events(t, bob), "device alice added 2 (Laptop)")
	want(t, "alice2", events(t, alice2))
	ctx := ctxT(t)

	// A contact's notice carrying an account key is not the own account's
	// word: the linked device keeps its key.
	oldFP := fingerprint(t, alice2)
	forged, err := keys.GenerateAccount()
	if err != nil {
		t.Fatal(err)
	}
	queueForgedKeyNotice(t, bob, "alice", forged.Public())
	want(t, "alice2", events(t, alice2), "device bob account_key_changed 1 ()")
	if fp := fingerprint(t, alice2); fp != oldFP {
		t.Fatalf("a notice from bob changed alice's account key on her laptop: %s, was %s", fp, oldFP)
	}
	want(t, "alice1", events(t, alice1), "device bob account_key_changed 1 ()")
	if fp := fingerprint(t, alice1); fp != oldFP {
		t.Fatal("a notice from bob changed alice's account key on her primary")
	}

	if err := alice1.ResetIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	newFP := fingerprint(t, alice1)
	if newFP == oldFP {
		t.Fatal("the account key did not change")
	}
	// The laptop takes the new key from its own primary's notice.
	want(t, "alice2", events(t, alice2), "device alice account_key_changed 1 ()")
	if fp := fingerprint(t, alice2); fp != newFP {
		t.Fatalf("alice's laptop has key %s, the primary %s", fp, newFP)
	}
	// It still refuses the key from a contact afterwards.
	queueForgedKeyNotice(t, bob, "alice", forged.Public())
	want(t, "alice2", events(t, alice2), "device bob account_key_changed 1 ()")
	want(t, "alice1", events(t, alice1), "device bob account_key_changed 1 ()")
	if fp := fingerprint(t, alice2); fp != newFP {
		t.Fatalf("a notice from bob after the reset changed the laptop's key to %s", fp)
	}

	// bob, a contact, must accept the new key himself.
	want(t, "bob", events(t, bob), "device alice account_key_changed 1 ()")
	if changed, err := bob.Trust(ctx, "alice"); err != nil || !changed {
		t.Fatalf("bob trusts alice's new key: %v %v", changed, err)
	}

	// The laptop sends; its sync copy reaches the primary.
	mustSend(t, alice2, "bob", "from the laptop")
	want(t, "bob", events(t, bob), "alice: from the laptop")
	want(t, "alice1", events(t, alice1), "alice -> bob: from the laptop")
	mustSend(t, bob, "alice", "got it")
	want(t, "alice1", events(t, alice1), "bob: got it")
	want(t, "alice2", events(t, alice2), "bob: got it")

	// Every device computes the same safety number.
	n := mustSafety(t, bob, "alice").Number
	if got := mustSafety(t, alice2, "bob").Number; got != n {
		t.Fatalf("alice's laptop shows %s, bob %s", got, n)
	}
	if got := mustSafety(t, alice1, "bob").Number; got != n {
		t.Fatalf("alice's primary shows %s, bob %s", got, n)
	}

	// The key survives reopening the laptop's home.
	home := alice2.cfg.Home
	if err := alice2.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := New(Config{Home: home, Warn: func(err error) { t.Logf("warning for alice2: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reopened.Close() })
	if fp := fingerprint(t, reopened); fp != newFP {
		t.Fatalf("reopened laptop has key %s, want %s", fp, newFP)
	}
	if got := mustSafety(t, reopened, "bob").Number; got != n {
		t.Fatalf("reopened laptop shows %s, bob %s", got, n)
	}
}
