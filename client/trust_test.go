package client

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

var safetyFormat = regexp.MustCompile(`^\d{5}( \d{5}){11}$`)

func mustSafety(t *testing.T, c *Client, peer string) SafetyNumber {
	t.Helper()
	sn, err := c.Safety(ctxT(t), peer)
	if err != nil {
		t.Fatalf("safety number with %s: %v", peer, err)
	}
	if !safetyFormat.MatchString(sn.Number) {
		t.Fatalf("safety number %q is not 12 groups of 5 digits", sn.Number)
	}
	return sn
}

func TestSafetyNumbersEqualOnBothSidesAndVerify(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	carol := newUser(t, srv.URL, "carol")
	ctx := ctxT(t)

	ab, ba := mustSafety(t, alice, "bob"), mustSafety(t, bob, "alice")
	if ab.Number != ba.Number {
		t.Fatalf("alice sees %s, bob sees %s", ab.Number, ba.Number)
	}
	if ac := mustSafety(t, alice, "carol"); ac.Number == ab.Number {
		t.Fatal("the same number with two peers")
	}
	if ab.Verified || ab.KeyChanged {
		t.Fatalf("fresh number: %+v", ab)
	}
	// A wrong number is refused and verifies nothing.
	wrong := strings.Replace(ab.Number, ab.Number[:5], "00000", 1)
	if wrong == ab.Number {
		wrong = strings.Replace(ab.Number, ab.Number[:5], "11111", 1)
	}
	if err := alice.Verify(ctx, "bob", wrong); !errors.Is(err, ErrSafetyMismatch) {
		t.Fatalf("verify with a wrong number: %v", err)
	}
	if err := alice.Verify(ctx, "bob", "12345"); err == nil || errors.Is(err, ErrSafetyMismatch) {
		t.Fatalf("verify with a short number: %v", err)
	}
	if k, _ := alice.ContactInfo(ctx, "bob"); k.Verified {
		t.Fatal("verified after a mismatch")
	}
	// The digits as read out (spaces or not), or bob's scanned code.
	if err := alice.Verify(ctx, "bob", strings.ReplaceAll(ab.Number, " ", "")); err != nil {
		t.Fatal(err)
	}
	if err := bob.Verify(ctx, "alice", ab.Scannable); err != nil {
		t.Fatalf("verify by bob scanning alice's code: %v", err)
	}
	if err := carol.Verify(ctx, "alice", ab.Scannable); !errors.Is(err, ErrSafetyMismatch) {
		t.Fatalf("carol scanning the code of alice and bob: %v", err)
	}
	if sn := mustSafety(t, alice, "bob"); !sn.Verified {
		t.Fatal("not verified")
	}
	if _, err := alice.Safety(ctx, "nobody"); !errors.Is(err, ErrNoUser) {
		t.Fatalf("safety number with nobody: %v", err)
	}
}

func TestSafetyNumbersEqualOnEveryDevice(t *testing.T) {
	srv := startServer(t)
	alice1 := newUser(t, srv.URL, "alice")
	bob1 := newUser(t, srv.URL, "bob")
	alice2 := linkDevice(t, srv.URL, alice1, "alice laptop", false)
	alice3 := linkDevice(t, srv.URL, alice1, "alice tablet", false)
	bob2 := linkDevice(t, srv.URL, bob1, "bob laptop", false)
	n := mustSafety(t, alice1, "bob").Number
	for _, c := range []struct {
		c    *Client
		peer string
	}{{alice2, "bob"}, {alice3, "bob"}, {bob1, "alice"}, {bob2, "alice"}} {
		if got := mustSafety(t, c.c, c.peer).Number; got != n {
			t.Fatalf("a device of %s shows %s, want %s", c.peer, got, n)
		}
	}
}

func TestIdentityResetBlocksSendingUntilTrust(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	sealedPair(t, alice, bob)
	ctx := ctxT(t)
	before := mustSafety(t, alice, "bob")
	if err := alice.Verify(ctx, "bob", before.Number); err != nil {
		t.Fatal(err)
	}

	oldFP := func() string { i, _ := bob.Info(); return i.Fingerprint }()
	if err := bob.ResetIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	if i, _ := bob.Info(); i.Fingerprint == oldFP {
		t.Fatal("the account key did not change")
	}
	// bob's own device still works with the new key.
	after := mustSafety(t, bob, "alice")
	if after.Number == before.Number {
		t.Fatal("the safety number did not change")
	}
	// alice hears of it, and her verified peer is shown loudly.
	got := events(t, alice)
	if len(got) != 1 || !strings.Contains(got[0], "account_key_changed") {
		t.Fatalf("alice got %q", got)
	}
	_, err := alice.Send(ctx, "bob", "are you still you?")
	var kc *KeyChangedError
	if !errors.As(err, &kc) || kc.Username != "bob" || !kc.Verified || !strings.Contains(err.Error(), "WARNING") {
		t.Fatalf("send after bob's reset: %v", err)
	}
	// Nothing went out; the number alice can compare is the new one.
	want(t, "bob", events(t, bob))
	sn := mustSafety(t, alice, "bob")
	if !sn.KeyChanged || !sn.WasVerified || sn.Verified || sn.Number != after.Number {
		t.Fatalf("alice's view after the change: %+v (bob shows %s)", sn, after.Number)
	}
	if err := alice.Verify(ctx, "bob", sn.Number); !errors.Is(err, ErrAccountKeyChanged) {
		t.Fatalf("verify before trust: %v", err)
	}
	if _, err := alice.Send(ctx, "bob", "still?"); !errors.Is(err, ErrAccountKeyChanged) {
		t.Fatalf("second send: %v", err)
	}

	changed, err := alice.Trust(ctx, "bob")
	if err != nil || !changed {
		t.Fatalf("trust: %v %v", changed, err)
	}
	if changed, err := alice.Trust(ctx, "bob"); err != nil || changed {
		t.Fatalf("second trust: %v %v", changed, err)
	}
	if k, _ := alice.ContactInfo(ctx, "bob"); k.Verified || k.KeyChanged {
		t.Fatalf("after trust: %+v", k)
	}
	mustSend(t, alice, "bob", "hello again")
	want(t, "bob", events(t, bob), "alice: hello again")
	mustSend(t, bob, "alice", "yes, still me")
	want(t, "alice", events(t, alice), "bob: yes, still me")
	if a, b := mustSafety(t, alice, "bob"), mustSafety(t, bob, "alice"); a.Number != b.Number {
		t.Fatalf("after trust alice sees %s, bob %s", a.Number, b.Number)
	}
}

func TestIdentityResetOnlyOnThePrimary(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	laptop := linkDevice(t, srv.URL, alice, "laptop", false)
	if err := laptop.ResetIdentity(ctxT(t)); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("reset on a linked device: %v", err)
	}
}

func TestHostileServerSubstitutesAccountKey(t *testing.T) {
	srv := startServer(t)
	m := newMITM(t, srv.URL)
	alice := newUser(t, m.URL, "alice")
	bob := newUser(t, m.URL, "bob")
	sealedPair(t, alice, bob)
	ctx := ctxT(t)
	if err := alice.Verify(ctx, "bob", ""); err != nil {
		t.Fatal(err)
	}
	db := serverDB(t, srv)
	// The server shows alice an impostor's key for bob, over a list of
	// devices the impostor holds.
	impostor, _ := keys.GenerateAccount()
	dev, _ := keys.GenerateDeviceSigning()
	ik, _ := keys.GenerateIdentity()
	forged, _ := identity.SignDeviceList(identity.DeviceList{Username: "bob", Version: 9, Devices: []identity.Device{
		{ID: 1, SigningKey: dev.Public(), IdentityKey: ik.Public()},
	}}, impostor)
	enc, _ := forged.Marshal()
	m.set(func(f *wire.ServerFrame) [][]byte {
		if a := f.GetAccount(); a != nil && a.GetUsername() == "bob" {
			a.AccountKey, a.DeviceList = impostor.Public().Bytes(), enc
		}
		return raw(f)
	})
	alice.mu.Lock()
	delete(alice.fresh, "bob") // as a new process would
	alice.mu.Unlock()
	for range 2 {
		_, err := alice.Send(ctx, "bob", "for bob only")
		var kc *KeyChangedError
		if !errors.As(err, &kc) || !kc.Verified {
			t.Fatalf("send with a substituted key: %v", err)
		}
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM messages WHERE username = 'bob'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d messages reached the server for bob (%v)", n, err)
	}
	k, _ := alice.ContactInfo(ctx, "bob")
	if !k.KeyChanged || k.Verified {
		t.Fatalf("alice's view of bob: %+v", k)
	}
	// The number alice would compare differs from the one bob shows.
	if a, b := mustSafety(t, alice, "bob"), mustSafety(t, bob, "alice"); a.Number == b.Number {
		t.Fatal("the substituted key gives the real safety number")
	}
	// The server shows the real key again: the change is withdrawn, the
	// lost verification is not given back.
	m.set(nil)
	mustSend(t, alice, "bob", "real bob")
	want(t, "bob", events(t, bob), "alice: real bob")
	if k, _ := alice.ContactInfo(ctx, "bob"); k.KeyChanged || k.Verified {
		t.Fatalf("after the real key came back: %+v", k)
	}
}
