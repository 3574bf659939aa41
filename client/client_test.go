package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSendAndReplyBothDirections(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")

	mustSend(t, alice, "bob", "hello bob")
	mustSend(t, alice, "bob", "are you there?")
	got, drops := collect(t, bob, 0)
	if want := []string{"alice: hello bob", "alice: are you there?"}; !slices.Equal(texts(got), want) || len(drops) > 0 {
		t.Fatalf("bob got %q (dropped %v), want %q", texts(got), drops, want)
	}
	mustSend(t, bob, "alice", "hi alice")
	got, _ = collect(t, alice, 0)
	if want := []string{"bob: hi alice"}; !slices.Equal(texts(got), want) {
		t.Fatalf("alice got %q, want %q", texts(got), want)
	}
	mustSend(t, alice, "bob", "good")
	if got, _ := collect(t, bob, 0); !slices.Equal(texts(got), []string{"alice: good"}) {
		t.Fatalf("bob got %q after the reply", texts(got))
	}
	if got, _ := collect(t, bob, 0); len(got) != 0 {
		t.Fatalf("bob got %q again", texts(got))
	}
	h, err := alice.History(ctxT(t), "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 4 || !h[0].Outgoing || h[0].Status != Stored || h[2].Outgoing || h[2].Text != "hi alice" || h[2].Status != Received {
		t.Fatalf("alice's history: %+v", h)
	}
	if last, _ := alice.History(ctxT(t), "BOB", 1); len(last) != 1 || last[0].Text != "good" {
		t.Fatalf("last history entry: %+v", last)
	}
}

func TestRecipientOfflineThenOnline(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bobHome := t.TempDir()
	bob, err := Open(bobHome)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Register(ctxT(t), srv.URL, "bob"); err != nil {
		t.Fatal(err)
	}
	// Contacts already, so no message requests (contacts_test.go).
	knows(t, bob, "alice", "carol")
	bob.Close() // bob goes offline

	for i := range 3 {
		mustSend(t, alice, "bob", fmt.Sprintf("while you were out %d", i))
	}
	bob, err = Open(bobHome)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	got, _ := collect(t, bob, 0)
	want := []string{"alice: while you were out 0", "alice: while you were out 1", "alice: while you were out 2"}
	if !slices.Equal(texts(got), want) {
		t.Fatalf("bob got %q, want %q", texts(got), want)
	}
}

func TestServerRestartBetweenSendAndReceive(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "survives a restart")
	srv.restart()
	got, _ := collect(t, bob, 0)
	if !slices.Equal(texts(got), []string{"alice: survives a restart"}) {
		t.Fatalf("bob got %q", texts(got))
	}
	// Both sides keep working over new connections.
	mustSend(t, bob, "alice", "still here")
	if got, _ := collect(t, alice, 0); !slices.Equal(texts(got), []string{"bob: still here"}) {
		t.Fatalf("alice got %q", texts(got))
	}
}

func TestThousandMessagesInOrderWhileReceivingLive(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	const n = 1000

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var got []string
	seen := map[MessageID]bool{}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() {
		done <- bob.Receive(rctx, Forever, func(e Event) {
			m, ok := e.(*MessageEvent)
			if !ok {
				t.Errorf("unexpected event %#v", e)
				return
			}
			if seen[m.ID] {
				t.Errorf("message %s delivered twice", m.ID)
			}
			seen[m.ID] = true
			got = append(got, m.Text)
			if len(got) == n {
				stop()
			}
		})
	}()
	for i := range n {
		if _, err := alice.Send(ctx, "bob", fmt.Sprintf("message %04d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("receive ended with %v after %d messages", err, len(got))
	}
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, text := range got {
		if want := fmt.Sprintf("message %04d", i); text != want {
			t.Fatalf("message %d is %q, want %q", i, text, want)
		}
	}
	if more, _ := collect(t, bob, 0); len(more) != 0 {
		t.Fatalf("%d messages delivered again", len(more))
	}
}

func TestSendAndReceiveConcurrentlyOnOneClient(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Both run a live receiver and send at the same time, as chat does.
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, c := range []*Client{alice, bob} {
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		wg.Go(func() {
			err := c.Receive(rctx, Forever, func(e Event) {
				if _, ok := e.(*MessageEvent); ok {
					if counts[i]++; counts[i] == n {
						stop()
					}
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("receive: %v", err)
			}
		})
	}
	var sends sync.WaitGroup
	for _, p := range [][2]*Client{{alice, bob}, {bob, alice}} {
		from, to := p[0], p[1]
		sends.Go(func() {
			info, _ := to.Info()
			for i := range n {
				if _, err := from.Send(ctx, info.Username, fmt.Sprintf("m%d", i)); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	sends.Wait()
	wg.Wait()
	if counts[0] != n || counts[1] != n {
		t.Fatalf("received %v, want %d each", counts, n)
	}
}

func TestSendToUnknownUser(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	_, err := alice.Send(ctxT(t), "carol", "hello?")
	var nu *NoUserError
	if !errors.As(err, &nu) || nu.Username != "carol" || err.Error() != `no user "carol"` {
		t.Fatalf("send to carol: %v, want no user \"carol\"", err)
	}
	// Refused for good: not left in the outbox.
	if rep := alice.FlushOutbox(ctxT(t)); rep.Pending != 0 || len(rep.Failed) != 0 {
		t.Fatalf("outbox after refusal: %+v", rep)
	}
	h, _ := alice.History(ctxT(t), "carol", 0)
	if len(h) != 1 || h[0].Status != Failed {
		t.Fatalf("history: %+v", h)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	_, err := alice.Send(ctxT(t), "bob", strings.Repeat("x", 96<<10+1))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized send: %v", err)
	}
	// The largest allowed text fits even in a prekey message.
	big := strings.Repeat("y", MaxTextSize)
	mustSend(t, alice, "bob", big)
	got, _ := collect(t, bob, 0)
	if len(got) != 1 || got[0].Text != big {
		t.Fatalf("bob got %d messages", len(got))
	}
	if _, err := alice.Send(ctxT(t), "bob", ""); err == nil {
		t.Fatal("empty message accepted")
	}
}

func TestOutboxKeepsMessageWhileServerDown(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	mustSend(t, alice, "bob", "before")
	if got, _ := collect(t, bob, 0); len(got) != 1 {
		t.Fatalf("bob got %q", texts(got))
	}

	srv.stop()
	_, err := alice.Send(ctxT(t), "bob", "while down 1")
	var q *QueuedError
	if !errors.As(err, &q) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send while down: %v, want a queued unreachable error", err)
	}
	if _, err := alice.Send(ctxT(t), "bob", "while down 2"); !errors.As(err, &q) {
		t.Fatalf("second send while down: %v", err)
	}
	h, _ := alice.History(ctxT(t), "bob", 0)
	if len(h) != 3 || h[1].Status != Queued || h[2].Status != Queued {
		t.Fatalf("history while down: %+v", h)
	}

	srv.start()
	// alice's next Receive flushes the outbox, in order.
	collect(t, alice, 0)
	got, _ := collect(t, bob, 0)
	if want := []string{"alice: while down 1", "alice: while down 2"}; !slices.Equal(texts(got), want) {
		t.Fatalf("bob got %q, want %q", texts(got), want)
	}
	h, _ = alice.History(ctxT(t), "bob", 0)
	if h[1].Status != Stored || h[2].Status != Stored {
		t.Fatalf("history after flush: %+v", h)
	}
}

func TestRegisterRefusesSecondAccountAndBadNames(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	if err := alice.Register(ctxT(t), srv.URL, "alice2"); !errors.Is(err, ErrHasAccount) {
		t.Fatalf("second register: %v", err)
	}
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Register(ctxT(t), srv.URL, "alice"); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("register a taken name: %v", err)
	}
	// The refused attempt left nothing behind: another name works.
	if err := c.Register(ctxT(t), srv.URL, "Alice_2"); err != nil {
		t.Fatalf("register after refusal: %v", err)
	}
	if info, _ := c.Info(); info.Username != "alice_2" || info.DeviceID != 1 {
		t.Fatalf("info: %+v", info)
	}
	for _, bad := range []string{"ab", "no spaces", "admin"} {
		c, _ := Open(t.TempDir())
		if err := c.Register(ctxT(t), srv.URL, bad); err == nil {
			t.Errorf("registered %q", bad)
		}
		c.Close()
	}
}

func TestNoAccountErrors(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Info(); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("info: %v", err)
	}
	if _, err := c.Send(ctxT(t), "bob", "x"); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("send: %v", err)
	}
	if err := c.Receive(ctxT(t), 0, func(Event) {}); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("receive: %v", err)
	}
}

func TestReceiveWaitReturnsAfterFirstMessage(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	// Nothing pending: returns after the wait with nothing.
	start := time.Now()
	if got, _ := collect(t, bob, 200*time.Millisecond); len(got) != 0 {
		t.Fatalf("got %q", texts(got))
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatal("returned before the wait was over")
	}
	// A message arriving during the wait ends it.
	res := make(chan []*MessageEvent, 1)
	go func() {
		got, _ := collect(t, bob, time.Minute)
		res <- got
	}()
	mustSend(t, alice, "bob", "wake up")
	select {
	case got := <-res:
		if !slices.Equal(texts(got), []string{"alice: wake up"}) {
			t.Fatalf("got %q", texts(got))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("receive did not return after a message arrived")
	}
}

// TestCanaryNotInServerFilesOrDebugLog is the SDK-level canary: with the
// server logging at debug level, no plaintext reaches its files or log.
func TestCanaryNotInServerFilesOrDebugLog(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	// Contacts already, so not a message request (contacts_test.go).
	knows(t, bob, "alice")
	canary := "SDK-CANARY-e1f0-marmalade-skyline"
	mustSend(t, alice, "bob", canary)
	mustSend(t, bob, "alice", canary+" back")
	search := func(when string) {
		t.Helper()
		// Every file under the data directory, blobs included.
		files := 0
		err := filepath.WalkDir(srv.dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			if strings.Contains(string(b), canary) {
				t.Errorf("%s: server file %s holds the plaintext", when, path)
			}
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("data dir: %v (%d files)", err, files)
		}
		if strings.Contains(srv.logs.String(), canary) {
			t.Errorf("%s: server log holds the plaintext", when)
		}
	}
	search("queued")
	got, _ := collect(t, bob, 0)
	if len(got) != 1 || got[0].Text != canary {
		t.Fatalf("self-check failed: bob got %q", texts(got))
	}
	collect(t, alice, 0)
	srv.stop()
	search("stopped")
}
