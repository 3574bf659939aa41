package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// testDataSurvivesReopen closes the store and opens the same database
// again: accounts (with delivery token hashes and blocked lists), devices,
// prekeys, queues, acks and the seq counter all persist.
func testDataSurvivesReopen(t *testing.T, h *harness) {
	const name = "data_survives_reopen"
	ctx := t.Context()
	b1 := store.DeviceRef{Username: "bob", ID: 1}
	seen := t0.Add(3 * time.Hour)

	s := h.store(t, name)
	createAccount(t, s, "bob", 1, 2)
	must(t, s.UpdateDeviceList(ctx, "bob", change([]byte("list-v2"), 2, []store.Device{newDevice("bob", 1), newDevice("bob", 2)})), "UpdateDeviceList")
	must(t, s.TouchDevice(ctx, b1, seen), "TouchDevice")
	must(t, s.SetDeliveryTokenHash(ctx, "bob", []byte("token-hash-of-bob")), "SetDeliveryTokenHash")
	must(t, s.SetBlocked(ctx, "bob", []string{"mallory", "eve"}), "SetBlocked")
	first, err := s.TakePrekeys(ctx, b1)
	must(t, err, "TakePrekeys")
	stored, err := s.Enqueue(ctx, []store.Message{newMessage(b1, 1, "one"), newMessage(b1, 2, "two"), newMessage(b1, 3, "three")})
	must(t, err, "Enqueue")
	must(t, s.Close(), "Close")

	s = h.store(t, name)
	acct, err := s.Account(ctx, "bob")
	must(t, err, "Account after reopen")
	want := newAccount("bob", 2)
	want.DeviceList = []byte("list-v2")
	want.DeliveryTokenHash = []byte("token-hash-of-bob")
	checkAccount(t, acct, want)
	if blocked, err := s.Blocked(ctx, "bob"); err != nil || !slices.Equal(blocked, []string{"eve", "mallory"}) {
		t.Fatalf("Blocked after reopen = %q, %v", blocked, err)
	}
	d1 := newDevice("bob", 1)
	d1.LastSeen = seen
	checkDevices(t, s, "bob", d1, newDevice("bob", 2))
	checkCounts(t, s, b1, 4, 2)
	got := pending(t, s, b1)
	if len(got) != len(stored) {
		t.Fatalf("%d messages after reopen, want %d", len(got), len(stored))
	}
	for i := range stored {
		checkMessage(t, got[i], stored[i])
	}
	// Keys handed out before the restart stay handed out.
	again, err := s.TakePrekeys(ctx, b1)
	must(t, err, "TakePrekeys after reopen")
	if again.OneTime == nil || again.OneTime.ID == first.OneTime.ID || again.KEM.ID == first.KEM.ID {
		t.Fatalf("after reopen TakePrekeys returned %+v, first take was %+v", again, first)
	}
	n, err := s.Ack(ctx, b1, []uint64{stored[0].Seq, stored[1].Seq, stored[2].Seq})
	must(t, err, "Ack")
	if n != 3 {
		t.Fatalf("Ack deleted %d, want 3", n)
	}
	must(t, s.Close(), "Close")

	// The acks persisted and the seq counter did not go back.
	s = h.store(t, name)
	if got := pending(t, s, b1); len(got) != 0 {
		t.Fatalf("%d acked messages came back after reopen", len(got))
	}
	next, err := s.Enqueue(ctx, []store.Message{newMessage(b1, 4, "four")})
	must(t, err, "Enqueue after reopen")
	if next[0].Seq <= stored[2].Seq {
		t.Fatalf("seq %d after reopen is not after %d", next[0].Seq, stored[2].Seq)
	}
	checkCounts(t, s, b1, 3, 1)
}
