package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

func testCreateAccountAndRead(t *testing.T, h *harness) {
	s := h.store(t, "create_account_and_read")
	ctx := t.Context()
	acct := newAccount("alice", 1)
	// Listed out of order: Devices must still return them by id.
	devs := []store.Device{newDevice("alice", 3), newDevice("alice", 1), newDevice("alice", 2)}
	pks := map[uint32]store.PrekeyUpload{1: newPrekeys("a1", 1, 5, 3)}
	must(t, s.CreateAccount(ctx, acct, devs, pks), "CreateAccount")

	got, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, got, acct)
	checkDevices(t, s, "alice", devs[1], devs[2], devs[0])
	d, err := s.Device(ctx, store.DeviceRef{Username: "alice", ID: 2})
	must(t, err, "Device")
	checkDevice(t, d, devs[2])
	checkCounts(t, s, store.DeviceRef{Username: "alice", ID: 1}, 5, 3)
	checkCounts(t, s, store.DeviceRef{Username: "alice", ID: 2}, 0, 0)

	_, err = s.Account(ctx, "nobody")
	wantErr(t, err, store.ErrNotFound, "Account(nobody)")
	_, err = s.Devices(ctx, "nobody")
	wantErr(t, err, store.ErrNotFound, "Devices(nobody)")
	_, err = s.Device(ctx, store.DeviceRef{Username: "alice", ID: 9})
	wantErr(t, err, store.ErrNotFound, "Device(alice/9)")
	_, err = s.Device(ctx, store.DeviceRef{Username: "nobody", ID: 1})
	wantErr(t, err, store.ErrNotFound, "Device(nobody/1)")
	_, err = s.PrekeyCounts(ctx, store.DeviceRef{Username: "alice", ID: 9})
	wantErr(t, err, store.ErrNotFound, "PrekeyCounts(alice/9)")

	// A second account is independent of the first.
	createAccount(t, s, "bob", 1)
	checkDevices(t, s, "alice", devs[1], devs[2], devs[0])
	checkDevices(t, s, "bob", newDevice("bob", 1))
}

func testUsernameTaken(t *testing.T, h *harness) {
	s := h.store(t, "username_taken")
	ctx := t.Context()
	createAccount(t, s, "alice", 1)

	// A second registration of the same (normalized) name, with other keys,
	// more devices and prekeys: refused, and none of it stored.
	other := newAccount("alice", 5)
	other.AccountKey = []byte("another-account-key")
	d1, d2 := newDevice("alice", 1), newDevice("alice", 2)
	d1.SigningKey = []byte("another-signing-key")
	err := s.CreateAccount(ctx, other, []store.Device{d1, d2}, map[uint32]store.PrekeyUpload{
		1: newPrekeys("other1", 100, 7, 7),
		2: newPrekeys("other2", 100, 7, 7),
	})
	wantErr(t, err, store.ErrUsernameTaken, "second CreateAccount(alice)")

	got, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, got, newAccount("alice", 1))
	checkDevices(t, s, "alice", newDevice("alice", 1))
	checkCounts(t, s, store.DeviceRef{Username: "alice", ID: 1}, 5, 3)
	_, err = s.Device(ctx, store.DeviceRef{Username: "alice", ID: 2})
	wantErr(t, err, store.ErrNotFound, "Device(alice/2)")
	set, err := s.TakePrekeys(ctx, store.DeviceRef{Username: "alice", ID: 1})
	must(t, err, "TakePrekeys")
	if set.SignedPrekey.ID != 1 || set.OneTime == nil || set.OneTime.ID > 5 {
		t.Fatalf("TakePrekeys after refused create returned the refused upload's keys: %+v", set)
	}
}

func testConcurrentCreateSameUsername(t *testing.T, h *harness) {
	s := h.store(t, "concurrent_create_same_username")
	ctx := t.Context()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := newAccount("carol", 1)
			a.AccountKey = fmt.Appendf(nil, "key-%d", i)
			d := newDevice("carol", 1)
			d.SigningKey = fmt.Appendf(nil, "signing-%d", i)
			errs[i] = s.CreateAccount(ctx, a, []store.Device{d},
				map[uint32]store.PrekeyUpload{1: newPrekeys(fmt.Sprint(i), 1, 2, 2)})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("CreateAccount(carol) succeeded twice (%d and %d)", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrUsernameTaken):
			t.Fatalf("CreateAccount(carol) #%d: %v, want ErrUsernameTaken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no CreateAccount(carol) succeeded")
	}
	a, err := s.Account(ctx, "carol")
	must(t, err, "Account")
	d, err := s.Device(ctx, store.DeviceRef{Username: "carol", ID: 1})
	must(t, err, "Device")
	if string(a.AccountKey) != fmt.Sprintf("key-%d", winner) || string(d.SigningKey) != fmt.Sprintf("signing-%d", winner) {
		t.Fatalf("stored account key %q and device key %q, want the winner's (%d)", a.AccountKey, d.SigningKey, winner)
	}
	checkCounts(t, s, store.DeviceRef{Username: "carol", ID: 1}, 2, 2)
}

func testFailedCreateLeavesNothing(t *testing.T, h *harness) {
	s := h.store(t, "failed_create_leaves_nothing")
	ctx := t.Context()
	cases := []struct {
		name    string
		devices []store.Device
		prekeys map[uint32]store.PrekeyUpload
	}{
		{
			name:    "prekeys for an unlisted device",
			devices: []store.Device{newDevice("dave", 1)},
			prekeys: map[uint32]store.PrekeyUpload{1: newPrekeys("d1", 1, 3, 3), 7: newPrekeys("d7", 1, 3, 3)},
		},
		{
			name:    "device listed twice",
			devices: []store.Device{newDevice("dave", 1), newDevice("dave", 1)},
			prekeys: map[uint32]store.PrekeyUpload{1: newPrekeys("d1", 1, 3, 3)},
		},
	}
	for _, tc := range cases {
		if err := s.CreateAccount(ctx, newAccount("dave", 1), tc.devices, tc.prekeys); err == nil {
			t.Fatalf("CreateAccount with %s succeeded", tc.name)
		}
		_, err := s.Account(ctx, "dave")
		wantErr(t, err, store.ErrNotFound, "Account after failed create ("+tc.name+")")
		_, err = s.Devices(ctx, "dave")
		wantErr(t, err, store.ErrNotFound, "Devices after failed create ("+tc.name+")")
		_, err = s.PrekeyCounts(ctx, store.DeviceRef{Username: "dave", ID: 1})
		wantErr(t, err, store.ErrNotFound, "PrekeyCounts after failed create ("+tc.name+")")
	}
	// Nothing partial blocks the name or leaks into the next registration.
	must(t, s.CreateAccount(ctx, newAccount("dave", 1), []store.Device{newDevice("dave", 1)}, nil), "CreateAccount")
	checkDevices(t, s, "dave", newDevice("dave", 1))
	checkCounts(t, s, store.DeviceRef{Username: "dave", ID: 1}, 0, 0)
}

func testTouchDevice(t *testing.T, h *harness) {
	s := h.store(t, "touch_device")
	ctx := t.Context()
	createAccount(t, s, "alice", 1, 2)
	seen := t0.Add(90 * time.Minute)
	must(t, s.TouchDevice(ctx, store.DeviceRef{Username: "alice", ID: 2}, seen), "TouchDevice")
	want := newDevice("alice", 2)
	want.LastSeen = seen
	checkDevices(t, s, "alice", newDevice("alice", 1), want)

	err := s.TouchDevice(ctx, store.DeviceRef{Username: "alice", ID: 3}, seen)
	wantErr(t, err, store.ErrNotFound, "TouchDevice(alice/3)")
	err = s.TouchDevice(ctx, store.DeviceRef{Username: "nobody", ID: 1}, seen)
	wantErr(t, err, store.ErrNotFound, "TouchDevice(nobody/1)")
}

func testUpdateDeviceList(t *testing.T, h *harness) {
	s := h.store(t, "update_device_list")
	ctx := t.Context()
	createAccount(t, s, "alice", 1, 2)
	a1 := store.DeviceRef{Username: "alice", ID: 1}
	a2 := store.DeviceRef{Username: "alice", ID: 2}
	a3 := store.DeviceRef{Username: "alice", ID: 3}
	_, err := s.Enqueue(ctx, []store.Message{newMessage(a1, 1, "to 1"), newMessage(a2, 1, "to 2")})
	must(t, err, "Enqueue")
	seen := t0.Add(time.Hour)
	must(t, s.TouchDevice(ctx, a1, seen), "TouchDevice")
	d1 := newDevice("alice", 1)
	d1.LastSeen = seen

	// Not newer: refused, nothing changes.
	for _, v := range []uint64{0, 1} {
		err := s.UpdateDeviceList(ctx, "alice", change([]byte("stale"), v, []store.Device{newDevice("alice", 1)}))
		wantErr(t, err, store.ErrVersionConflict, fmt.Sprintf("UpdateDeviceList version %d over 1", v))
	}
	got, err := s.Account(ctx, "alice")
	must(t, err, "Account")
	checkAccount(t, got, newAccount("alice", 1))
	checkDevices(t, s, "alice", d1, newDevice("alice", 2))

	// Version 2: device 2 removed, device 3 added, device 1 kept. The
	// caller's Created/LastSeen for a kept device do not overwrite the
	// stored ones.
	kept := newDevice("alice", 1)
	kept.Created, kept.LastSeen = t0.Add(24*time.Hour), t0.Add(24*time.Hour)
	must(t, s.UpdateDeviceList(ctx, "alice", change([]byte("list-v2"), 2, []store.Device{newDevice("alice", 3), kept})), "UpdateDeviceList v2")
	got, err = s.Account(ctx, "alice")
	must(t, err, "Account")
	want := newAccount("alice", 2)
	want.DeviceList = []byte("list-v2")
	checkAccount(t, got, want)
	checkDevices(t, s, "alice", d1, newDevice("alice", 3))

	_, err = s.Device(ctx, a2)
	wantErr(t, err, store.ErrNotFound, "Device of removed device")
	_, err = s.TakePrekeys(ctx, a2)
	wantErr(t, err, store.ErrNotFound, "TakePrekeys of removed device")
	_, err = s.PrekeyCounts(ctx, a2)
	wantErr(t, err, store.ErrNotFound, "PrekeyCounts of removed device")
	if msgs := pending(t, s, a2); len(msgs) != 0 {
		t.Fatalf("removed device still has %d queued messages", len(msgs))
	}
	_, err = s.Enqueue(ctx, []store.Message{newMessage(a2, 2, "late")})
	wantErr(t, err, store.ErrNotFound, "Enqueue to removed device")

	checkCounts(t, s, a1, 5, 3)
	if msgs := pending(t, s, a1); len(msgs) != 1 || string(msgs[0].Content) != "to 1" {
		t.Fatalf("kept device's queue: %+v", msgs)
	}
	checkCounts(t, s, a3, 0, 0)
	if msgs := pending(t, s, a3); len(msgs) != 0 {
		t.Fatalf("new device has %d queued messages", len(msgs))
	}

	// Version 3 lists device 2 again: it starts empty, nothing comes back.
	must(t, s.UpdateDeviceList(ctx, "alice", change([]byte("list-v3"), 3, []store.Device{newDevice("alice", 1), newDevice("alice", 2), newDevice("alice", 3)})), "UpdateDeviceList v3")
	checkDevices(t, s, "alice", d1, newDevice("alice", 2), newDevice("alice", 3))
	checkCounts(t, s, a2, 0, 0)
	if msgs := pending(t, s, a2); len(msgs) != 0 {
		t.Fatalf("re-added device got back %d old messages", len(msgs))
	}

	err = s.UpdateDeviceList(ctx, "nobody", change([]byte("list"), 2, []store.Device{newDevice("nobody", 1)}))
	wantErr(t, err, store.ErrNotFound, "UpdateDeviceList(nobody)")
}

func testUpdateDeviceListChangedKeys(t *testing.T, h *harness) {
	s := h.store(t, "update_device_list_changed_keys")
	ctx := t.Context()
	createAccount(t, s, "alice", 1, 2)
	a2 := store.DeviceRef{Username: "alice", ID: 2}
	_, err := s.Enqueue(ctx, []store.Message{newMessage(a2, 1, "for the old device 2")})
	must(t, err, "Enqueue")

	// Device id 2 now names a device with other keys: the old device's
	// prekeys and queue were made for keys no longer listed.
	replaced := newDevice("alice", 2)
	replaced.IdentityKey = []byte("new-identity-key")
	replaced.Created = t0.Add(48 * time.Hour)
	replaced.LastSeen = replaced.Created
	must(t, s.UpdateDeviceList(ctx, "alice", change([]byte("list-v2"), 2, []store.Device{newDevice("alice", 1), replaced})), "UpdateDeviceList")
	checkDevices(t, s, "alice", newDevice("alice", 1), replaced)
	checkCounts(t, s, a2, 0, 0)
	if msgs := pending(t, s, a2); len(msgs) != 0 {
		t.Fatalf("replaced device kept %d messages for the old keys", len(msgs))
	}
	checkCounts(t, s, store.DeviceRef{Username: "alice", ID: 1}, 5, 3)
}
