package client

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// FuzzParseLinkCode feeds arbitrary text (pasted or scanned) to the link
// code parser: an error or a code that encodes back to the same text.
func FuzzParseLinkCode(f *testing.F) {
	sk, _ := keys.GenerateDeviceSigning()
	ik, _ := keys.GenerateIdentity()
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for _, name := range []string{"", "Laptop", strings.Repeat("x", MaxDeviceName)} {
		l := &linkCode{signing: sk.Public(), identity: ik.Public(), name: name}
		copy(l.ephemeral[:], eph.PublicKey().Bytes())
		f.Add(l.String())
	}
	f.Add(LinkCodePrefix)
	f.Add(LinkCodePrefix + "AQ")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseLinkCode(s)
		if err != nil {
			return
		}
		if l.String() != strings.TrimSpace(s) {
			t.Fatalf("code %q re-encodes as %q", s, l.String())
		}
	})
}

// FuzzOpenLinkPayload feeds arbitrary payload plaintexts, properly sealed
// (so the checks behind the HPKE layer are reached), and arbitrary bodies
// to the new device's payload check: an error or a payload that lists
// this device, never a panic.
func FuzzOpenLinkPayload(f *testing.F) {
	sk, _ := keys.GenerateDeviceSigning()
	ik, _ := keys.GenerateIdentity()
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	code := &linkCode{signing: sk.Public(), identity: ik.Public()}
	copy(code.ephemeral[:], eph.PublicKey().Bytes())
	acct, _ := keys.GenerateAccount()
	f.Add(false, []byte{})
	good, _ := proto.Marshal(&wire.LinkPayload{Username: "alice", DeviceId: 2, AccountKey: acct.Public().Bytes()})
	f.Add(false, good)
	f.Add(true, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, rawBody bool, b []byte) {
		body := b
		if !rawBody {
			var p wire.LinkPayload
			if proto.Unmarshal(b, &p) != nil {
				return
			}
			var err error
			if body, err = sealLinkPayload(code, &p); err != nil {
				return
			}
		}
		l, err := openLinkPayload(eph, code.secret[:], sk.Public(), ik.Public(), body)
		if err != nil {
			return
		}
		d, ok := l.list.List.Find(l.deviceID)
		if !ok || !d.SigningKey.Equal(sk.Public()) {
			t.Fatal("accepted a payload that does not list this device")
		}
	})
}

// FuzzDeviceContent feeds arbitrary decrypted plaintexts, as an own
// device or a peer would send them, to the sync-copy and device-notice
// handler, inside a real (rolled back) transaction: an error or a result,
// never a panic.
func FuzzDeviceContent(f *testing.F) {
	sync, _ := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_SyncSent{SyncSent: &wire.SyncSent{
		To: "bob", MessageId: make([]byte, 16), Content: &wire.Content{Body: &wire.Content_Text{Text: &wire.Text{Body: "hi"}}},
	}}})
	notice, _ := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_DeviceNotice{DeviceNotice: &wire.DeviceNotice{
		Kind: wire.DeviceNotice_ADDED, DeviceId: 2, DeviceName: "Laptop",
	}}})
	f.Add(true, sync)
	f.Add(true, notice)
	f.Add(false, notice)
	f.Add(false, sync)
	db, err := openDB(context.Background(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	c := &Client{db: db}
	a := &account{Username: "alice", DeviceID: 1}
	f.Fuzz(func(t *testing.T, own bool, b []byte) {
		k := deviceKey{"carol", 1}
		if own {
			k = deviceKey{"alice", 2}
		}
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		evs, _, handled, err := c.receiveDeviceContent(ctx, tx, a, k, MessageID{}, b, time.UnixMilli(5))
		if !handled && (err != nil || len(evs) != 0) {
			t.Fatalf("unhandled content gave %v, %v", evs, err)
		}
		for _, e := range evs {
			if m, ok := e.(*MessageEvent); ok && m.To != "" && !own {
				t.Fatal("a peer's message shown as a sync copy")
			}
		}
	})
}
