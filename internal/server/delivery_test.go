package server

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/hush-chat/hush/wire"
)

func TestDeliveryBacklogAckAndRedelivery(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	var ids [][]byte
	for i := range 3 {
		ids = append(ids, ac.send(t, "bob", fmt.Appendf(nil, "m%d", i)))
	}

	bc := ts.dial(t, bob)
	envs := bc.backlog(t)
	if len(envs) != 3 {
		t.Fatalf("backlog has %d envelopes, want 3", len(envs))
	}
	for i, e := range envs {
		if !bytes.Equal(e.MessageId, ids[i]) || string(e.Content) != fmt.Sprintf("m%d", i) ||
			e.Sender != alice.name || e.SenderDevice != 1 || e.ServerTimeMs == 0 {
			t.Fatalf("envelope %d: %v", i, e)
		}
		if i > 0 && e.ServerId <= envs[i-1].ServerId {
			t.Fatal("envelopes not in server id order")
		}
	}
	bc.ack(t, envs[0])
	bc.close()

	// The unacked two come again, and only they.
	bc = ts.dial(t, bob)
	again := bc.backlog(t)
	if len(again) != 2 || again[0].ServerId != envs[1].ServerId || again[1].ServerId != envs[2].ServerId {
		t.Fatalf("redelivered %v, want the two unacked", again)
	}
	bc.ack(t, again...)
	bc.ack(t, again...) // acks are idempotent
	bc.close()

	if n := len(ts.dial(t, bob).backlog(t)); n != 0 {
		t.Fatalf("%d messages left after acking all", n)
	}
}

func TestDeliveryOfMaximumSizeMessages(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	big := make([]byte, MaxContentSize)
	rand.Read(big)
	ac.send(t, "bob", big)
	bc := ts.dial(t, bob)
	envs := bc.backlog(t)
	if len(envs) != 1 || !bytes.Equal(envs[0].Content, big) {
		t.Fatal("a maximum-size message did not arrive intact from the backlog")
	}
	ac.send(t, "bob", big)
	if e := bc.envelope(t); !bytes.Equal(e.Content, big) {
		t.Fatal("a maximum-size message did not arrive intact live")
	}
}

func TestDeliveryLive(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	bc := ts.dial(t, bob)
	if n := len(bc.backlog(t)); n != 0 {
		t.Fatalf("%d unexpected", n)
	}
	for i := range 50 {
		ac.send(t, "bob", fmt.Appendf(nil, "live %d", i))
	}
	var last uint64
	for i := range 50 {
		e := bc.envelope(t)
		if string(e.Content) != fmt.Sprintf("live %d", i) || e.ServerId <= last {
			t.Fatalf("push %d: %q id %d after %d", i, e.Content, e.ServerId, last)
		}
		last = e.ServerId
		bc.ack(t, e)
	}
}

// TestDeliveryBacklogLargerThanAPage crosses the store's page size, and
// keeps sending while the backlog drains, so live and backlog interleave.
func TestDeliveryBacklogLargerThanAPage(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	const n = pendingPage*2 + 7
	for i := range n {
		ac.send(t, "bob", fmt.Appendf(nil, "%d", i))
	}
	bc := ts.dial(t, bob)
	sent := make(chan error, 1)
	go func() {
		var err error
		for i := n; i < n+20 && err == nil; i++ {
			err = ac.trySend("bob", fmt.Appendf(nil, "%d", i))
		}
		sent <- err
	}()
	defer func() {
		if err := <-sent; err != nil {
			t.Error(err)
		}
	}()
	seen := map[string]bool{}
	var last uint64
	for len(seen) < n+20 {
		p := bc.push(t)
		e := p.GetEnvelope()
		if e == nil {
			continue
		}
		if seen[string(e.Content)] || e.ServerId <= last {
			t.Fatalf("duplicate or out of order: %q (%d after %d)", e.Content, e.ServerId, last)
		}
		seen[string(e.Content)], last = true, e.ServerId
	}
}

func TestDeliveryToTwoConnectionsOfOneDevice(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	b1, b2 := ts.dial(t, bob), ts.dial(t, bob)
	b1.backlog(t)
	b2.backlog(t)
	ac.send(t, "bob", []byte("hi"))
	e1, e2 := b1.envelope(t), b2.envelope(t)
	if e1.ServerId != e2.ServerId {
		t.Fatal("the two connections got different messages")
	}
	b1.ack(t, e1)
	b2.ack(t, e2) // the second ack of the same message is harmless
}

func TestServerRestartLosesNothing(t *testing.T) {
	dir := t.TempDir()
	ts := startServerIn(t, dir)
	_, bob, ac := pair(t, ts)
	key := ts.srv.ServerKey()
	for i := range 5 {
		ac.send(t, "bob", fmt.Appendf(nil, "before restart %d", i))
	}
	bc := ts.dial(t, bob)
	first := bc.backlog(t)
	bc.ack(t, first[:2]...)
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}

	ts2 := startServerIn(t, dir)
	if !ts2.srv.ServerKey().Equal(key) {
		t.Fatal("server key changed across a restart")
	}
	got := ts2.dial(t, bob).backlog(t)
	if len(got) != 3 {
		t.Fatalf("after restart %d messages, want the 3 unacked", len(got))
	}
	for i, e := range got {
		if string(e.Content) != fmt.Sprintf("before restart %d", i+2) {
			t.Fatalf("after restart got %q", e.Content)
		}
	}
}

func TestExpiredMessagesAreNotDelivered(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, func(c *Config) { c.Now = clock.Now })
	_, bob, ac := pair(t, ts)
	ac.send(t, "bob", []byte("old"))
	clock.Advance(MessageTTL + time.Minute)
	ac.send(t, "bob", []byte("new"))
	ts.srv.sweepExpired(t.Context())
	envs := ts.dial(t, bob).backlog(t)
	if len(envs) != 1 || string(envs[0].Content) != "new" {
		t.Fatalf("got %v, want only the unexpired message", envs)
	}
}

func TestAckLimit(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	req := &wire.AckRequest{ServerIds: make([]uint64, MaxAckIDs+1)}
	wantError(t, ac.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_Ack{Ack: req}}), codeBadRequest)
}
