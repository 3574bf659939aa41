package client

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/wire"
)

// BenchmarkGroupSend100x2 measures a message to a group of 100 other
// members with 2 devices each (200 devices, plus the sender's second
// device), on established sessions:
//
//   - send: Send to the group, end to end against a loopback server (the
//     call returns once the server stored every copy): encrypting, the
//     outbox and 101 submissions.
//   - encrypt+queue: the client's own work, no network: queueGroup's 101
//     outbox rows and 200 ratchet encryptions with their session records
//     loaded and saved, in one transaction (rolled back).
//   - raw-200-encrypts: 200 ratchet encryptions of the same content on
//     records held in memory: 200 times a single message's raw cost.
func BenchmarkGroupSend100x2(b *testing.B) {
	srv := startServer(b)
	alice := newUser(b, srv.URL, "alice")
	linkDevice(b, srv.URL, alice, "alice", false)
	const n = 100
	members := make([]*Client, 2*n)
	names := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		names[i] = fmt.Sprintf("member%03d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p := newUser(b, srv.URL, names[i])
			members[2*i], members[2*i+1] = p, linkDevice(b, srv.URL, p, names[i], false)
		}()
	}
	wg.Wait()
	id, err := alice.CreateGroup(ctxT(b), "Benchmark", names)
	if err != nil {
		b.Fatal(err)
	}
	// Every member device takes the state and the first message and
	// answers with a delivery receipt, so alice's sessions leave the
	// prekey stage and carry steady-state ratchet messages.
	if _, err := alice.Send(ctxT(b), GroupConversation(id), "warm up"); err != nil {
		b.Fatal(err)
	}
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := m.Receive(ctxT(b), 0, func(Event) {}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := alice.Receive(ctxT(b), 0, func(Event) {}); err != nil {
		b.Fatal(err)
	}
	conv := GroupConversation(id)
	text := "a message of ordinary length, about as long as most chat lines are"

	b.Run("send", func(b *testing.B) {
		for b.Loop() {
			if _, err := alice.Send(ctxT(b), conv, text); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/(2*n), "µs/device")
	})

	a, err := alice.account()
	if err != nil {
		b.Fatal(err)
	}
	content, err := marshalPadded(&wire.Content{SentMs: time.Now().UnixMilli(), Body: &wire.Content_Text{Text: &wire.Text{Body: text}},
		Group: &wire.GroupContext{GroupId: id[:], Epoch: 1, MessageId: make([]byte, 16)}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encrypt+queue", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			tx, err := alice.db.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			mid := newMessageID()
			ct := &wire.Content{SentMs: time.Now().UnixMilli(), Body: &wire.Content_Text{Text: &wire.Text{Body: text}}}
			if err := alice.queueGroup(ctx, tx, a, conv, mid, ct); err != nil {
				b.Fatal(err)
			}
			for _, name := range names {
				if err := encryptFor(ctx, tx, name, content); err != nil {
					b.Fatal(err)
				}
			}
			tx.Rollback()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/(2*n), "µs/device")
	})

	var recs []*ratchet.Record
	for _, name := range names {
		for d := uint32(1); d <= 2; d++ {
			r, err := loadRecord(context.Background(), alice.db, name, d)
			if err != nil || !r.HasSession() {
				b.Fatalf("no session with %s/%d: %v", name, d, err)
			}
			recs = append(recs, r)
		}
	}
	b.Run("raw-200-encrypts", func(b *testing.B) {
		for b.Loop() {
			for _, r := range recs {
				if _, err := r.Encrypt(content); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/(2*n), "µs/device")
	})
}

// encryptFor encrypts content for both devices of user as prepareCopies
// does: record loaded, used and saved in the transaction.
func encryptFor(ctx context.Context, tx *sql.Tx, user string, content []byte) error {
	for d := uint32(1); d <= 2; d++ {
		r, err := loadRecord(ctx, tx, user, d)
		if err != nil {
			return err
		}
		if _, err := r.Encrypt(content); err != nil {
			return err
		}
		if err := saveRecord(ctx, tx, user, d, r); err != nil {
			return err
		}
	}
	return nil
}
