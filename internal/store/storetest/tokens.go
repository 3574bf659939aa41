package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/hush-chat/hush/internal/store"
)

func testDeliveryTokenHash(t *testing.T, h *harness) {
	s := h.store(t, "delivery_token_hash")
	ctx := t.Context()
	createAccount(t, s, "alice", 1)
	a, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	if len(a.DeliveryTokenHash) != 0 {
		t.Fatalf("new account has delivery token hash %x", a.DeliveryTokenHash)
	}

	h1, h2 := sha256.Sum256([]byte("token one")), sha256.Sum256([]byte("token two"))
	must(t, s.SetDeliveryTokenHash(ctx, "alice", h1[:]), "SetDeliveryTokenHash")
	want := newAccount("alice", 1)
	want.DeliveryTokenHash = h1[:]
	a, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, want)

	// Replaced, not added to; other accounts are untouched.
	createAccount(t, s, "bob", 1)
	must(t, s.SetDeliveryTokenHash(ctx, "alice", h2[:]), "SetDeliveryTokenHash (replace)")
	want.DeliveryTokenHash = h2[:]
	a, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, want)
	b, err := s.Account(ctx, "bob")
	must(t, err, "Account(bob)")
	checkAccount(t, b, newAccount("bob", 1))

	// A device-list change and an account-key reset keep the token.
	must(t, s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v2"), Version: 2, Devices: []store.Device{newDevice("alice", 1)},
		NewAccountKey: []byte("new-account-key"),
	}), "UpdateDeviceList")
	a, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	if !bytes.Equal(a.DeliveryTokenHash, h2[:]) {
		t.Fatalf("delivery token hash after a device-list change: %x, want %x", a.DeliveryTokenHash, h2)
	}

	// CreateAccount stores a hash it is given.
	carol := newAccount("carol", 1)
	carol.DeliveryTokenHash = h1[:]
	must(t, s.CreateAccount(ctx, carol, []store.Device{newDevice("carol", 1)}, nil), "CreateAccount with a token hash")
	c, err := s.Account(ctx, "carol")
	must(t, err, "Account(carol)")
	checkAccount(t, c, carol)

	wantErr(t, s.SetDeliveryTokenHash(ctx, "nobody", h1[:]), store.ErrNotFound, "SetDeliveryTokenHash(nobody)")
}

func testBlocked(t *testing.T, h *harness) {
	s := h.store(t, "blocked")
	ctx := t.Context()
	createAccount(t, s, "alice", 1)
	createAccount(t, s, "bob", 1)
	check := func(user string, want ...string) {
		t.Helper()
		got, err := s.Blocked(ctx, user)
		must(t, err, "Blocked("+user+")")
		if !slices.Equal(got, want) {
			t.Fatalf("Blocked(%s) = %q, want %q", user, got, want)
		}
	}
	check("alice")

	// Names need not be accounts; duplicates are kept once; the result is
	// sorted.
	must(t, s.SetBlocked(ctx, "alice", []string{"zed", "carol", "bob", "carol"}), "SetBlocked")
	check("alice", "bob", "carol", "zed")
	check("bob")

	must(t, s.SetBlocked(ctx, "bob", []string{"alice"}), "SetBlocked(bob)")
	must(t, s.SetBlocked(ctx, "alice", []string{"dave"}), "SetBlocked (replace)")
	check("alice", "dave")
	check("bob", "alice")
	must(t, s.SetBlocked(ctx, "alice", nil), "SetBlocked (clear)")
	check("alice")
	check("bob", "alice")

	wantErr(t, s.SetBlocked(ctx, "nobody", []string{"alice"}), store.ErrNotFound, "SetBlocked(nobody)")
	_, err := s.Blocked(ctx, "nobody")
	wantErr(t, err, store.ErrNotFound, "Blocked(nobody)")
}

func testUpdateDeviceListWithPrekeys(t *testing.T, h *harness) {
	s := h.store(t, "update_device_list_with_prekeys")
	ctx := t.Context()
	createAccount(t, s, "alice", 1)
	a1 := store.DeviceRef{Username: "alice", ID: 1}
	a2 := store.DeviceRef{Username: "alice", ID: 2}
	two := []store.Device{newDevice("alice", 1), newDevice("alice", 2)}

	// Prekeys for a device not in the list: refused, nothing changes.
	err := s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v2"), Version: 2, Devices: two,
		Prekeys: map[uint32]store.PrekeyUpload{2: newPrekeys("a2", 1, 4, 2), 3: newPrekeys("a3", 1, 4, 2)},
	})
	wantErr(t, err, store.ErrNotFound, "UpdateDeviceList with prekeys for an unlisted device")
	// A stale version with prekeys: refused, the prekeys are not stored.
	err = s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("stale"), Version: 1, Devices: []store.Device{newDevice("alice", 1)},
		Prekeys: map[uint32]store.PrekeyUpload{1: newPrekeys("a1-more", 100, 4, 2)},
	})
	wantErr(t, err, store.ErrVersionConflict, "UpdateDeviceList stale with prekeys")
	a, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, newAccount("alice", 1))
	checkDevices(t, s, "alice", newDevice("alice", 1))
	checkCounts(t, s, a1, 5, 3)

	// The new device arrives with its prekeys, usable at once.
	must(t, s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v2"), Version: 2, Devices: two,
		Prekeys: map[uint32]store.PrekeyUpload{2: newPrekeys("a2", 1, 4, 2)},
	}), "UpdateDeviceList with prekeys")
	checkDevices(t, s, "alice", two...)
	checkCounts(t, s, a1, 5, 3)
	checkCounts(t, s, a2, 4, 2)
	set, err := s.TakePrekeys(ctx, a2)
	must(t, err, "TakePrekeys(alice/2)")
	if string(set.SignedPrekey.Key) != "spk-a2" || set.OneTime == nil || string(set.OneTime.Key) != "otk-a2-1" ||
		set.KEMLastResort || string(set.KEM.Key) != "kem-a2-1" {
		t.Fatalf("TakePrekeys(alice/2) = %+v, want the keys that came with the list", set)
	}
}

func testUpdateDeviceListExpectAccountKey(t *testing.T, h *harness) {
	s := h.store(t, "update_device_list_expect_account_key")
	ctx := t.Context()
	createAccount(t, s, "alice", 1)
	orig := newAccount("alice", 1)
	two := []store.Device{newDevice("alice", 1), newDevice("alice", 2)}

	err := s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v2"), Version: 2, Devices: two,
		Prekeys:          map[uint32]store.PrekeyUpload{2: newPrekeys("a2", 1, 4, 2)},
		ExpectAccountKey: []byte("some-other-key"),
	})
	wantErr(t, err, store.ErrAccountKeyChanged, "UpdateDeviceList expecting another account key")
	a, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, orig)
	checkDevices(t, s, "alice", newDevice("alice", 1))

	must(t, s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v2"), Version: 2, Devices: two,
		Prekeys:          map[uint32]store.PrekeyUpload{2: newPrekeys("a2", 1, 4, 2)},
		ExpectAccountKey: orig.AccountKey,
	}), "UpdateDeviceList expecting the stored account key")
	checkDevices(t, s, "alice", two...)
	checkCounts(t, s, store.DeviceRef{Username: "alice", ID: 2}, 4, 2)
	a, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	want := newAccount("alice", 2)
	want.DeviceList = []byte("list-v2")
	checkAccount(t, a, want)

	err = s.UpdateDeviceList(ctx, "nobody", store.DeviceListChange{
		List: []byte("l"), Version: 2, Devices: []store.Device{newDevice("nobody", 1)}, ExpectAccountKey: []byte("k"),
	})
	wantErr(t, err, store.ErrNotFound, "UpdateDeviceList(nobody)")
}

func testUpdateDeviceListNewAccountKey(t *testing.T, h *harness) {
	s := h.store(t, "update_device_list_new_account_key")
	ctx := t.Context()
	createAccount(t, s, "alice", 1, 2)
	orig := newAccount("alice", 1)
	a1 := store.DeviceRef{Username: "alice", ID: 1}
	_, err := s.Enqueue(ctx, []store.Message{newMessage(a1, 1, "queued before the reset")})
	must(t, err, "Enqueue")

	// A stale version: the key is not replaced either.
	err = s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("stale"), Version: 1, Devices: []store.Device{newDevice("alice", 1)},
		NewAccountKey: []byte("new-key"),
	})
	wantErr(t, err, store.ErrVersionConflict, "reset with a stale version")
	a, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, orig)

	// The reset replaces key and list together; device 2 leaves, device 1
	// keeps its prekeys and queue.
	must(t, s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v2"), Version: 2, Devices: []store.Device{newDevice("alice", 1)},
		ExpectAccountKey: orig.AccountKey, NewAccountKey: []byte("new-key"),
	}), "reset")
	want := newAccount("alice", 2)
	want.AccountKey, want.DeviceList = []byte("new-key"), []byte("list-v2")
	a, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, want)
	checkDevices(t, s, "alice", newDevice("alice", 1))
	checkCounts(t, s, a1, 5, 3)
	if msgs := pending(t, s, a1); len(msgs) != 1 {
		t.Fatalf("device 1 has %d queued messages after the reset, want 1", len(msgs))
	}

	// A list verified with the old key no longer lands.
	err = s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
		List: []byte("list-v9"), Version: 9, Devices: []store.Device{newDevice("alice", 1)},
		ExpectAccountKey: orig.AccountKey,
	})
	wantErr(t, err, store.ErrAccountKeyChanged, "update signed by the replaced key")
	a, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, a, want)
}

// testConcurrentAccountKeyResets races resets from the same starting key
// and version: exactly one lands, and the stored key and list are its.
func testConcurrentAccountKeyResets(t *testing.T, h *harness) {
	s := h.store(t, "concurrent_account_key_resets")
	ctx := t.Context()
	createAccount(t, s, "alice", 1)
	orig := newAccount("alice", 1)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.UpdateDeviceList(ctx, "alice", store.DeviceListChange{
				List: fmt.Appendf(nil, "list-%d", i), Version: 2, Devices: []store.Device{newDevice("alice", 1)},
				ExpectAccountKey: orig.AccountKey, NewAccountKey: fmt.Appendf(nil, "key-%d", i),
			})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("two resets succeeded (%d and %d)", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrAccountKeyChanged) && !errors.Is(err, store.ErrVersionConflict):
			t.Fatalf("reset %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no reset succeeded")
	}
	a, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	want := newAccount("alice", 2)
	want.AccountKey, want.DeviceList = fmt.Appendf(nil, "key-%d", winner), fmt.Appendf(nil, "list-%d", winner)
	checkAccount(t, a, want)
}
