package client

import (
	"context"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// FuzzScreenIncoming feeds decrypted contents, as a peer or an own device
// would send them, to the contacts/requests/token screening inside a real
// (rolled back) transaction: an error or a decision, never a panic; a
// blocked sender's content is never shown and a stranger's text never
// reaches the history as a message.
func FuzzScreenIncoming(f *testing.F) {
	text, _ := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_Text{Text: &wire.Text{Body: "hi"}}, SenderDeliveryToken: make([]byte, 32)})
	token, _ := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_DeliveryToken{DeliveryToken: &wire.DeliveryToken{Token: make([]byte, 32)}}})
	notice, _ := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_DeviceNotice{DeviceNotice: &wire.DeviceNotice{Kind: wire.DeviceNotice_ACCOUNT_KEY_CHANGED}}})
	syncToken, _ := marshalPadded(&wire.Content{SentMs: 1, Body: &wire.Content_SyncSent{SyncSent: &wire.SyncSent{
		To: "carol", MessageId: make([]byte, 16), Content: &wire.Content{Body: &wire.Content_DeliveryToken{DeliveryToken: &wire.DeliveryToken{Token: make([]byte, 32)}}},
	}}})
	for _, b := range [][]byte{text, token, notice, syncToken} {
		for st := range 3 {
			f.Add(uint8(st), false, false, b)
			f.Add(uint8(st), true, false, b)
		}
		f.Add(uint8(0), false, true, b)
	}
	db, err := openDB(context.Background(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	c := &Client{db: db}
	a := &account{Username: "alice", DeviceID: 1, AccountPub: func() keys.AccountPublic { k, _ := keys.GenerateAccount(); return k.Public() }()}
	f.Fuzz(func(t *testing.T, state uint8, blocked, own bool, b []byte) {
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
		now := time.UnixMilli(5)
		if err := setContact(ctx, tx, "carol", now, `state = ?, blocked = ?`, int(state%3), flagInt(blocked)); err != nil {
			t.Fatal(err)
		}
		sc, err := c.screenIncoming(ctx, tx, a, k, MessageID{}, now, b)
		if err != nil {
			if _, ok := err.(*localError); ok {
				t.Fatal(err)
			}
			return
		}
		if !sc.done && len(sc.events) != 0 {
			t.Fatal("events from content left to the caller")
		}
		if blocked && !own && len(sc.events) != 0 {
			t.Fatalf("a blocked sender's content gave %v", sc.events)
		}
		for _, e := range sc.events {
			if m, ok := e.(*MessageEvent); ok && !own {
				t.Fatalf("screening showed a peer's message %v", m)
			}
		}
	})
}
