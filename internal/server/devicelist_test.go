package server

import (
	"bytes"
	"context"
	"testing"

	"github.com/coder/websocket"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

func lookupAccount(t testing.TB, ts *testServer, name string) (int, *wire.AccountResponse, *wire.Error) {
	t.Helper()
	a := &wire.AccountResponse{}
	status, e := ts.getMsg(t, "/v1/account/"+name, a)
	if e != nil {
		return status, nil, e
	}
	return status, a, nil
}

func TestAccountLookup(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.AccountLookupsPerMinute, c.Limits.AccountLookupBurst = 1, 4 })
	alice, _, _ := pair(t, ts)
	for _, name := range []string{"alice", "ALICE"} {
		_, a, e := lookupAccount(t, ts, name)
		if e != nil || a.Username != "alice" || !bytes.Equal(a.AccountKey, alice.dev.Account.Public().Bytes()) ||
			!bytes.Equal(a.DeviceList, alice.deviceList(t, 1)) {
			t.Fatalf("lookup %s: %v %v", name, a, e)
		}
	}
	status, _, e := lookupAccount(t, ts, "carol")
	wantHTTPError(t, status, e, codeNoUser)
	if e.Message != `no user "carol"` {
		t.Fatalf("message %q", e.Message)
	}
	status, _, e = lookupAccount(t, ts, "not%20a%20name")
	wantHTTPError(t, status, e, codeNoUser)
	status, _, e = lookupAccount(t, ts, "alice")
	wantHTTPError(t, status, e, codeRateLimited)
}

func postList(t testing.TB, ts *testServer, req *wire.DeviceListUpdate) (int, *wire.AccountResponse, *wire.Error) {
	t.Helper()
	a := &wire.AccountResponse{}
	status, e := ts.postMsg(t, "/v1/devicelist", req, a)
	if e != nil {
		return status, nil, e
	}
	return status, a, nil
}

// TestDeviceListRestore is a restore from the recovery key: no listed
// device asks, the stored account key's signature authorizes a list that
// drops the old primary (device 1) and adds a new device, which arrives
// with prekeys and is reachable at once.
func TestDeviceListRestore(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	alice2 := newDeviceOf(t, alice, 2, 0)
	setList(t, ac, listOf(t, 2, alice, alice2))
	a2 := ts.dial(t, alice2)
	fresh := newDeviceOf(t, alice, 3, 2)

	list := listOf(t, 3, alice2, fresh)
	_, a, e := postList(t, ts, &wire.DeviceListUpdate{
		Username: "alice", DeviceList: list, Prekeys: map[uint32]*wire.PrekeyUpload{3: fresh.upload()},
	})
	if e != nil || a.Username != "alice" || !bytes.Equal(a.DeviceList, list) || !bytes.Equal(a.AccountKey, alice.dev.Account.Public().Bytes()) {
		t.Fatalf("POST /v1/devicelist: %v %v", a, e)
	}
	// The old primary is gone: disconnected, and it cannot come back.
	<-ac.done
	if websocket.CloseStatus(ac.readErr) != websocket.StatusPolicyViolation {
		t.Fatalf("removed device's connection ended with %v", ac.readErr)
	}
	c := ts.dialRaw(t)
	writeFrame(t, c, alice.authFrame(readFrame(t, c).GetChallenge().GetNonce()))
	wantError(t, readFrame(t, c), codeUnauthorized)

	// The new device's prekeys are there for bob before it ever connects.
	bc := ts.dial(t, bob)
	r := bc.do(t, getPrekeys("alice", 3))
	if len(r.GetPrekeys().GetBundles()) != 1 {
		t.Fatalf("prekeys of the restored device: %v", r)
	}
	b, err := identity.ParseBundle(r.GetPrekeys().GetBundles()[0])
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := identity.ParseSignedDeviceList(list)
	if err := b.VerifyAgainst(&parsed.List); err != nil || b.OneTimePrekey == nil {
		t.Fatalf("bundle of the restored device: %v (one-time key %v)", err, b.OneTimePrekey != nil)
	}
	bc.send(t, "alice", []byte("to both"), 2, 3)
	if e := a2.envelope(t); string(e.Content) != "to both" {
		t.Fatalf("device 2 got %q", e.Content)
	}
	ts.dial(t, fresh)
}

func TestDeviceListPostRejects(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	alice2 := newDeviceOf(t, alice, 2, 1)
	setList(t, ac, listOf(t, 2, alice, alice2))
	fresh := newDeviceOf(t, alice, 3, 1)
	stranger := newUser(t, "alice", 1) // another account key
	stranger.dev.ID = 3
	good := func() *wire.DeviceListUpdate {
		return &wire.DeviceListUpdate{Username: "alice", DeviceList: listOf(t, 3, alice, fresh),
			Prekeys: map[uint32]*wire.PrekeyUpload{3: fresh.upload()}}
	}
	changed := newDeviceOf(t, alice, 2, 0) // id 2 with other keys
	for _, tc := range []struct {
		name string
		edit func(r *wire.DeviceListUpdate)
		code string
	}{
		{"unknown user", func(r *wire.DeviceListUpdate) { r.Username = "carol" }, codeNoUser},
		{"invalid user", func(r *wire.DeviceListUpdate) { r.Username = "Not A Name!" }, codeNoUser},
		{"garbage list", func(r *wire.DeviceListUpdate) { r.DeviceList = []byte{1, 2, 3} }, codeBadRequest},
		{"signed by another key", func(r *wire.DeviceListUpdate) { r.DeviceList = listOf(t, 3, stranger) }, codeBadRequest},
		{"list of another user", func(r *wire.DeviceListUpdate) { r.DeviceList = listOf(t, 3, bob) }, codeBadRequest},
		{"posted for another user", func(r *wire.DeviceListUpdate) { r.Username = "bob" }, codeBadRequest},
		{"version not newer", func(r *wire.DeviceListUpdate) { r.DeviceList = listOf(t, 2, alice, fresh) }, codeVersionConflict},
		{"new device without prekeys", func(r *wire.DeviceListUpdate) { r.Prekeys = nil }, codeBadRequest},
		{"new device with another device's prekeys", func(r *wire.DeviceListUpdate) { r.Prekeys[3] = alice2.upload() }, codeBadRequest},
		{"new device without a last-resort key", func(r *wire.DeviceListUpdate) { r.Prekeys[3].KemLastResort = nil }, codeBadRequest},
		{"prekeys for a kept device", func(r *wire.DeviceListUpdate) { r.Prekeys[1] = alice.upload() }, codeBadRequest},
		{"prekeys for an unlisted device", func(r *wire.DeviceListUpdate) { r.Prekeys[9] = fresh.upload() }, codeBadRequest},
		{"kept id with other keys", func(r *wire.DeviceListUpdate) { r.DeviceList = listOf(t, 3, alice, changed) }, codeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.edit(r)
			status, a, e := postList(t, ts, r)
			if a != nil {
				t.Fatalf("accepted: %v", a)
			}
			wantHTTPError(t, status, e, tc.code)
		})
	}
	status, e := ts.postBytes(t, "/v1/devicelist", []byte("\xff\xff"), &wire.AccountResponse{})
	wantHTTPError(t, status, e, codeBadRequest)
	status, e = ts.postBytes(t, "/v1/devicelist", make([]byte, maxDeviceListBody+1), &wire.AccountResponse{})
	wantHTTPError(t, status, e, codeTooLarge)

	// Nothing refused changed the account; the good request still works.
	_, a, _ := lookupAccount(t, ts, "alice")
	if !bytes.Equal(a.DeviceList, listOf(t, 2, alice, alice2)) {
		t.Fatal("a refused update changed the device list")
	}
	if _, a, e := postList(t, ts, good()); e != nil || a == nil {
		t.Fatalf("good update after the refusals: %v", e)
	}
}

func TestDeviceListPostRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.DeviceListPostsPerHour, c.Limits.DeviceListPostBurst = 1, 2 })
	req := &wire.DeviceListUpdate{Username: "nobody"}
	for range 2 {
		status, _, e := postList(t, ts, req)
		wantHTTPError(t, status, e, codeNoUser)
	}
	status, _, e := postList(t, ts, req)
	wantHTTPError(t, status, e, codeRateLimited)
}

func resetFrame(key keys.AccountPublic, list []byte) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_ResetAccountKey{ResetAccountKey: &wire.ResetAccountKeyRequest{
		AccountKey: key.Bytes(), DeviceList: list,
	}}}
}

// TestResetAccountKey: a listed device replaces the account key and the
// list together; afterwards only the new key's signature counts, on every
// path.
func TestResetAccountKey(t *testing.T) {
	ts := startServer(t)
	alice, _, ac := pair(t, ts)
	alice2 := newDeviceOf(t, alice, 2, 0)
	setList(t, ac, listOf(t, 2, alice, alice2))
	a2 := ts.dial(t, alice2)
	oldKey := alice.dev.Account

	newKey, err := keys.GenerateAccount()
	if err != nil {
		t.Fatal(err)
	}
	alice.dev.Account, alice2.dev.Account = newKey, newKey
	list := listOf(t, 3, alice) // the reset also drops device 2
	r := ac.do(t, resetFrame(newKey.Public(), list)).GetAccount()
	if r == nil || !bytes.Equal(r.AccountKey, newKey.Public().Bytes()) || !bytes.Equal(r.DeviceList, list) {
		t.Fatalf("reset_account_key: %v", r)
	}
	_, a, _ := lookupAccount(t, ts, "alice")
	if !bytes.Equal(a.AccountKey, newKey.Public().Bytes()) {
		t.Fatal("GET /v1/account still shows the old key")
	}
	<-a2.done
	if websocket.CloseStatus(a2.readErr) != websocket.StatusPolicyViolation {
		t.Fatalf("dropped device's connection ended with %v", a2.readErr)
	}

	// The old key signs nothing any more.
	alice.dev.Account = oldKey
	wantError(t, ac.do(t, updateList(listOf(t, 4, alice, alice2))), codeBadRequest)
	status, _, e := postList(t, ts, &wire.DeviceListUpdate{Username: "alice", DeviceList: listOf(t, 4, alice, alice2),
		Prekeys: map[uint32]*wire.PrekeyUpload{2: alice2.upload()}})
	wantHTTPError(t, status, e, codeBadRequest)
	// The new one does.
	alice.dev.Account = newKey
	setList(t, ac, listOf(t, 4, alice, alice2))
}

func TestResetAccountKeyRejects(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	alice2 := newDeviceOf(t, alice, 2, 0)
	setList(t, ac, listOf(t, 2, alice, alice2))
	oldKey := alice.dev.Account
	newKey, err := keys.GenerateAccount()
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(k keys.AccountPrivate, version uint64, devs ...*testUser) []byte {
		for _, d := range devs {
			d.dev.Account = k
		}
		return listOf(t, version, devs...)
	}
	for _, tc := range []struct {
		name string
		f    *wire.ClientFrame
		code string
	}{
		{"list signed by the old key", resetFrame(newKey.Public(), withKey(oldKey, 3, alice, alice2)), codeBadRequest},
		{"without the requesting device", resetFrame(newKey.Public(), withKey(newKey, 3, alice2)), codeBadRequest},
		{"version not newer", resetFrame(newKey.Public(), withKey(newKey, 2, alice, alice2)), codeVersionConflict},
		{"list of another user", resetFrame(newKey.Public(), func() []byte { bob.dev.Account = newKey; return listOf(t, 3, bob) }()), codeBadRequest},
		{"bad key", &wire.ClientFrame{Body: &wire.ClientFrame_ResetAccountKey{ResetAccountKey: &wire.ResetAccountKeyRequest{
			AccountKey: []byte{1, 2, 3}, DeviceList: withKey(newKey, 3, alice, alice2)}}}, codeBadRequest},
		{"garbage list", resetFrame(newKey.Public(), []byte{9}), codeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, ac.do(t, tc.f), tc.code) })
	}
	a, err := ts.srv.store.Account(context.Background(), "alice")
	if err != nil || !bytes.Equal(a.AccountKey, oldKey.Public().Bytes()) || a.DeviceListVersion != 2 {
		t.Fatalf("a refused reset changed the account: %v", err)
	}
}
