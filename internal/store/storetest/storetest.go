// Package storetest is the conformance suite for store.Store. Every
// implementation (SQLite now, PostgreSQL later) runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		dir := t.TempDir()
//		storetest.Run(t, func(t *testing.T, name string) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(dir, name+".db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The suite talks to the store only through the interface. Besides the
// documentation in package store it pins these points, so that every
// implementation behaves the same:
//
//   - Times may be kept at millisecond precision (the suite uses whole
//     milliseconds).
//   - A message is live while now <= Expires: Pending at exactly Expires
//     still returns it, DeleteExpired at exactly Expires keeps it.
//   - Enqueue fails with ErrNotFound, storing nothing, if any copy is for a
//     device that does not exist.
//   - A duplicate copy (same recipient device and message id, in an earlier
//     call or earlier in the same batch) keeps its first content and comes
//     back with its first Seq.
//   - Seqs increase in the order copies are stored (within a batch, and
//     from one call to the next) and are never reused, even after every
//     message was acked and the store reopened.
//   - Devices, UpdateDeviceList, UploadPrekeys, TakePrekeys, PrekeyCounts,
//     TouchDevice and Device return ErrNotFound for an unknown account or
//     device.
//   - CreateAccount is all or none: prekeys for a device not in the
//     account, or a device listed twice, fail it and leave nothing behind.
//   - UpdateDeviceList: a removed device loses its prekeys and queue for
//     good (re-adding its id later starts empty); a listed id whose signing
//     or identity key changed is a new device and starts empty too; a kept
//     device keeps its Created and LastSeen.
//   - TakePrekeys that fails with ErrNotFound (no signed prekey, or no KEM
//     key at all) consumes no one-time key.
//   - An account's DeliveryTokenHash is empty until set, and neither a
//     device-list change nor an account-key replacement touches it.
//   - SetBlocked replaces the whole list; Blocked returns it sorted and
//     without duplicates, empty (not an error) for an account that blocks
//     nobody; both return ErrNotFound for an unknown account.
//   - UpdateDeviceList is all or none with its prekeys and new account key:
//     a version conflict, a changed account key (ExpectAccountKey) or
//     prekeys for an unlisted device leave the list, the devices, the
//     prekeys and the account key as they were.
package storetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// OpenFunc returns a store for the database called name. Within one Run,
// the first use of a name gives an empty database and every later use
// reopens that same database (after the suite closed the earlier store),
// which is how the suite checks that data survives Close. Names are short
// and made of [a-z0-9_]. The suite closes every store it opens; open should
// report failures with t.Fatal.
type OpenFunc func(t *testing.T, name string) store.Store

// Run runs the whole suite, one subtest per behaviour.
func Run(t *testing.T, open OpenFunc) {
	h := &harness{open: open}
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"ping", testPing},
		{"create_account_and_read", testCreateAccountAndRead},
		{"username_taken", testUsernameTaken},
		{"concurrent_create_same_username", testConcurrentCreateSameUsername},
		{"failed_create_leaves_nothing", testFailedCreateLeavesNothing},
		{"touch_device", testTouchDevice},
		{"update_device_list", testUpdateDeviceList},
		{"update_device_list_changed_keys", testUpdateDeviceListChangedKeys},
		{"upload_prekeys", testUploadPrekeys},
		{"take_prekeys_in_order", testTakePrekeysInOrder},
		{"take_prekeys_concurrent", testTakePrekeysConcurrent},
		{"take_prekeys_not_found", testTakePrekeysNotFound},
		{"enqueue_and_pending", testEnqueueAndPending},
		{"enqueue_all_or_none", testEnqueueAllOrNone},
		{"enqueue_idempotent", testEnqueueIdempotent},
		{"pending_after_and_limit", testPendingAfterAndLimit},
		{"pending_and_delete_expired", testPendingAndDeleteExpired},
		{"ack_only_own_messages", testAckOnlyOwnMessages},
		{"concurrent_enqueue", testConcurrentEnqueue},
		{"seqs_never_reused", testSeqsNeverReused},
		{"data_survives_reopen", testDataSurvivesReopen},
		{"delivery_token_hash", testDeliveryTokenHash},
		{"blocked", testBlocked},
		{"update_device_list_with_prekeys", testUpdateDeviceListWithPrekeys},
		{"update_device_list_expect_account_key", testUpdateDeviceListExpectAccountKey},
		{"update_device_list_new_account_key", testUpdateDeviceListNewAccountKey},
		{"concurrent_account_key_resets", testConcurrentAccountKeyResets},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

type harness struct {
	open OpenFunc
}

// store opens database name and closes it when t ends (or earlier, through
// the returned store's Close, which then runs only once).
func (h *harness) store(t *testing.T, name string) store.Store {
	t.Helper()
	s := h.open(t, name)
	if s == nil {
		t.Fatalf("open(%q) returned nil", name)
	}
	c := &closeOnce{Store: s}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

type closeOnce struct {
	store.Store
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Store.Close() })
	return c.err
}

// t0 is the suite's clock: a whole number of milliseconds.
var t0 = time.UnixMilli(1_760_000_000_000)

// Fixtures. Keys are opaque to the store, so recognisable bytes serve.

func newAccount(username string, version uint64) store.Account {
	return store.Account{
		Username:          username,
		AccountKey:        []byte("account-key-" + username),
		DeviceList:        fmt.Appendf(nil, "device-list-%s-v%d", username, version),
		DeviceListVersion: version,
		Created:           t0,
	}
}

func newDevice(username string, id uint32) store.Device {
	return store.Device{
		Username:    username,
		ID:          id,
		SigningKey:  fmt.Appendf(nil, "signing-%s-%d", username, id),
		IdentityKey: fmt.Appendf(nil, "identity-%s-%d", username, id),
		Created:     t0.Add(time.Duration(id) * time.Minute),
		LastSeen:    t0.Add(time.Duration(id) * time.Minute),
	}
}

// newPrekeys makes a signed prekey, one-time keys with ids first..first+n-1,
// KEM one-time keys with ids first..first+nKEM-1, and a last-resort key.
func newPrekeys(tag string, first uint32, n, nKEM int) store.PrekeyUpload {
	up := store.PrekeyUpload{
		SignedPrekey:  &store.SignedPrekey{ID: first, Key: []byte("spk-" + tag), Signature: []byte("spk-sig-" + tag)},
		KEMLastResort: &store.KEMPrekey{ID: first + 10000, Key: []byte("kem-lr-" + tag), Signature: []byte("kem-lr-sig-" + tag)},
	}
	for i := range n {
		id := first + uint32(i)
		up.OneTime = append(up.OneTime, store.OneTimePrekey{ID: id, Key: fmt.Appendf(nil, "otk-%s-%d", tag, id)})
	}
	for i := range nKEM {
		id := first + uint32(i)
		up.KEMOneTime = append(up.KEMOneTime, store.KEMPrekey{
			ID: id, Key: fmt.Appendf(nil, "kem-%s-%d", tag, id), Signature: fmt.Appendf(nil, "kem-sig-%s-%d", tag, id),
		})
	}
	return up
}

// messageID makes a 16-byte client message id.
func messageID(n uint64) []byte {
	id := make([]byte, 16)
	copy(id, "msgid")
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

func newMessage(to store.DeviceRef, n uint64, content string) store.Message {
	return store.Message{
		Recipient:    to,
		MessageID:    messageID(n),
		Sender:       "sender",
		SenderDevice: 7,
		Content:      []byte(content),
		Received:     t0,
		Expires:      t0.Add(30 * 24 * time.Hour),
	}
}

// createAccount registers username with the given device ids, each with
// prekeys: 5 one-time (ids 1-5), 3 KEM one-time (ids 1-3), a last resort.
func createAccount(t *testing.T, s store.Store, username string, ids ...uint32) {
	t.Helper()
	var devs []store.Device
	pks := make(map[uint32]store.PrekeyUpload)
	for _, id := range ids {
		devs = append(devs, newDevice(username, id))
		pks[id] = newPrekeys(fmt.Sprintf("%s-%d", username, id), 1, 5, 3)
	}
	if err := s.CreateAccount(t.Context(), newAccount(username, 1), devs, pks); err != nil {
		t.Fatalf("CreateAccount(%q): %v", username, err)
	}
}

// Assertions.

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func checkAccount(t *testing.T, got, want store.Account) {
	t.Helper()
	if got.Username != want.Username || !bytes.Equal(got.AccountKey, want.AccountKey) ||
		!bytes.Equal(got.DeviceList, want.DeviceList) || got.DeviceListVersion != want.DeviceListVersion ||
		!got.Created.Equal(want.Created) || !bytes.Equal(got.DeliveryTokenHash, want.DeliveryTokenHash) {
		t.Fatalf("account:\n got %+v\nwant %+v", got, want)
	}
}

func checkDevice(t *testing.T, got, want store.Device) {
	t.Helper()
	if got.Username != want.Username || got.ID != want.ID || !bytes.Equal(got.SigningKey, want.SigningKey) ||
		!bytes.Equal(got.IdentityKey, want.IdentityKey) || !got.Created.Equal(want.Created) ||
		!got.LastSeen.Equal(want.LastSeen) {
		t.Fatalf("device:\n got %+v\nwant %+v", got, want)
	}
}

func checkDevices(t *testing.T, s store.Store, username string, want ...store.Device) {
	t.Helper()
	got, err := s.Devices(t.Context(), username)
	must(t, err, "Devices")
	if len(got) != len(want) {
		t.Fatalf("Devices(%q) returned %d devices, want %d: %+v", username, len(got), len(want), got)
	}
	for i := range want {
		checkDevice(t, got[i], want[i])
	}
}

func checkMessage(t *testing.T, got, want store.Message) {
	t.Helper()
	if got.Seq != want.Seq || got.Recipient != want.Recipient || !bytes.Equal(got.MessageID, want.MessageID) ||
		got.Sender != want.Sender || got.SenderDevice != want.SenderDevice || !bytes.Equal(got.Content, want.Content) ||
		!got.Received.Equal(want.Received) || !got.Expires.Equal(want.Expires) {
		t.Fatalf("message:\n got %+v\nwant %+v", got, want)
	}
}

func checkCounts(t *testing.T, s store.Store, ref store.DeviceRef, oneTime, kem int) {
	t.Helper()
	c, err := s.PrekeyCounts(t.Context(), ref)
	must(t, err, "PrekeyCounts")
	if c.OneTime != oneTime || c.KEMOneTime != kem {
		t.Fatalf("PrekeyCounts(%v) = %+v, want {OneTime:%d KEMOneTime:%d}", ref, c, oneTime, kem)
	}
}

// pending returns every live message of a device at t0.
func pending(t *testing.T, s store.Store, ref store.DeviceRef) []store.Message {
	t.Helper()
	msgs, err := s.Pending(t.Context(), ref, 0, 10000, t0)
	must(t, err, "Pending")
	return msgs
}

func seqs(msgs []store.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func testPing(t *testing.T, h *harness) {
	s := h.store(t, "ping")
	must(t, s.Ping(t.Context()), "Ping")
}

// change is a plain device-list change: no prekeys, no account key.
func change(list []byte, version uint64, devices []store.Device) store.DeviceListChange {
	return store.DeviceListChange{List: list, Version: version, Devices: devices}
}
