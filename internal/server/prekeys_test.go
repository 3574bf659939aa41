package server

import (
	"testing"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

func getPrekeys(user string, ids ...uint32) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_GetPrekeys{GetPrekeys: &wire.GetPrekeysRequest{Username: user, DeviceIds: ids}}}
}

// fetchBundle gets one bundle for user's device 1 and verifies it against
// the user's signed device list, as a client would.
func fetchBundle(t *testing.T, c *wsClient, owner *testUser) *identity.Bundle {
	t.Helper()
	r := c.do(t, getPrekeys(owner.name))
	bs := r.GetPrekeys().GetBundles()
	if len(bs) != 1 {
		t.Fatalf("got %v, want one bundle", r)
	}
	b, err := identity.ParseBundle(bs[0])
	if err != nil {
		t.Fatal(err)
	}
	list, err := owner.dev.DeviceList(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.VerifyAgainst(&list.List); err != nil {
		t.Fatalf("served bundle does not verify: %v", err)
	}
	return b
}

func TestPrekeysOneTimeHandedOutOnceThenLastResort(t *testing.T) {
	ts := startServer(t)
	bob := newUser(t, "bob", 2)
	alice := newUser(t, "alice", 0)
	ts.mustRegister(t, bob)
	ts.mustRegister(t, alice)
	c := ts.dial(t, alice)

	seenOTK, seenKEM := map[uint32]bool{}, map[uint32]bool{}
	for range 2 {
		b := fetchBundle(t, c, bob)
		if b.OneTimePrekey == nil || b.KEMPrekey.Key.LastResort() {
			t.Fatalf("one-time keys remain, but bundle has otk=%v kem last-resort=%v", b.OneTimePrekey != nil, b.KEMPrekey.Key.LastResort())
		}
		if seenOTK[b.OneTimePrekey.ID] || seenKEM[b.KEMPrekey.ID] {
			t.Fatal("a one-time key was handed out twice")
		}
		seenOTK[b.OneTimePrekey.ID], seenKEM[b.KEMPrekey.ID] = true, true
		if _, ok := bob.dev.OneTime[b.OneTimePrekey.ID]; !ok {
			t.Fatal("served a one-time key bob never uploaded")
		}
	}
	for range 2 {
		b := fetchBundle(t, c, bob)
		if b.OneTimePrekey != nil {
			t.Fatal("served a one-time X25519 key after all were taken")
		}
		if !b.KEMPrekey.Key.LastResort() || b.KEMPrekey.ID != bob.dev.LastResortID {
			t.Fatal("no last-resort KEM key after the one-time ones ran out")
		}
	}
}

func TestPrekeysErrors(t *testing.T) {
	ts := startServer(t)
	alice := newUser(t, "alice", 1)
	ts.mustRegister(t, alice)
	c := ts.dial(t, alice)
	wantError(t, c.do(t, getPrekeys("nobody")), codeNoUser)
	wantError(t, c.do(t, getPrekeys("NO SUCH NAME")), codeNoUser)
	wantError(t, c.do(t, getPrekeys("alice", 7)), codeDeviceMismatch)
	wantError(t, c.do(t, getPrekeys("alice", 1, 1)), codeBadRequest)
	wantError(t, c.do(t, getPrekeys("alice", 1, 2, 3, 4, 5, 6, 7)), codeBadRequest)
}

func TestPrekeysLowCountIsPushed(t *testing.T) {
	ts := startServer(t)
	bob := newUser(t, "bob", PrekeyLowWater)
	alice := newUser(t, "alice", 0)
	ts.mustRegister(t, bob)
	ts.mustRegister(t, alice)
	bc := ts.dial(t, bob)
	if bc.authOK.PrekeyCounts.Low {
		t.Fatalf("%d keys reported low", PrekeyLowWater)
	}
	if len(bc.backlog(t)) != 0 {
		t.Fatal("unexpected messages")
	}
	ac := ts.dial(t, alice)
	fetchBundle(t, ac, bob)
	p := bc.push(t).GetPrekeyCounts()
	if p == nil || !p.Low || p.OneTime != PrekeyLowWater-1 || p.KemOneTime != PrekeyLowWater-1 {
		t.Fatalf("push after a take: %v, want low with %d left", p, PrekeyLowWater-1)
	}
}

func TestPrekeysUpload(t *testing.T) {
	ts := startServer(t)
	u := newUser(t, "alice", 1)
	ts.mustRegister(t, u)
	c := ts.dial(t, u)
	upload := func(up *wire.PrekeyUpload) *wire.ServerFrame {
		return c.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_UploadPrekeys{UploadPrekeys: up}})
	}

	// Refill: new one-time keys of both kinds, and a rotated signed prekey.
	fresh := newUser(t, "alice", 12)
	fresh.dev.Signing, fresh.dev.Identity = u.dev.Signing, u.dev.Identity
	up := fresh.upload()
	for _, k := range up.OneTime {
		k.Id += 1000
	}
	for _, k := range up.KemOneTime {
		k.Id += 1000
		k.Signature = identity.SignPrekey(u.dev.Signing, u.dev.Identity.Public(), k.Id, k.Key)
	}
	up.KemLastResort = nil
	r := upload(up)
	pc := r.GetPrekeyCounts()
	if pc == nil || pc.OneTime != 13 || pc.KemOneTime != 13 || pc.Low {
		t.Fatalf("after refill: %v, want 13/13 not low", r)
	}
	// The rotated signed prekey is served from now on.
	other := newUser(t, "carol", 0)
	ts.mustRegister(t, other)
	b := fetchBundle(t, ts.dial(t, other), u)
	if !b.SignedPrekey.Key.Equal(fresh.dev.SPK.Public()) {
		t.Fatal("rotated signed prekey not served")
	}

	bad := fresh.upload()
	bad.OneTime, bad.KemLastResort, bad.SignedPrekey = nil, nil, nil
	bad.KemOneTime = bad.KemOneTime[:1]
	bad.KemOneTime[0].Id = 5000 // signature was over another id
	wantError(t, upload(bad), codeBadRequest)

	tooMany := &wire.PrekeyUpload{}
	for i := range MaxPrekeysUpload + 1 {
		tooMany.OneTime = append(tooMany.OneTime, &wire.OneTimePrekey{Id: uint32(i), Key: up.OneTime[0].Key})
	}
	wantError(t, upload(tooMany), codeBadRequest)

	// The stored total is capped too.
	for i := 0; ; i++ {
		batch := &wire.PrekeyUpload{}
		for j := range MaxPrekeysUpload {
			batch.OneTime = append(batch.OneTime, &wire.OneTimePrekey{Id: uint32(10000 + i*MaxPrekeysUpload + j), Key: up.OneTime[0].Key})
		}
		r := upload(batch)
		if r.GetError() != nil {
			wantError(t, r, codeBadRequest)
			break
		}
		if i > MaxPrekeysStored/MaxPrekeysUpload {
			t.Fatalf("stored more than %d one-time keys: %v", MaxPrekeysStored, r)
		}
	}
}
