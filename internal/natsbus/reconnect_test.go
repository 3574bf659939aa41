package natsbus

import (
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// These tests run their own nats-server so they can kill and restart it.

// fastReconnect keeps the restart tests quick.
const fastReconnect = 200 * time.Millisecond

func TestPublishWhileNATSIsDownWakesLocalSubscribersDirectly(t *testing.T) {
	s := startNATS(t)
	b := newTestBus(t, Config{URL: "nats://" + s.addr(), MaxReconnectWait: fastReconnect})
	ref := store.DeviceRef{Username: "alice", ID: 1}
	c := newCounter()
	subscribeLive(t, b, ref, c)
	var ctl []string
	if _, err := b.SubscribeControl("kick", func(data []byte) { ctl = append(ctl, string(data)) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "control subscription", func() bool { return b.nc.NumSubscriptions() == 2 })

	s.kill()
	waitFor(t, "the Bus to notice NATS is gone", func() bool { return !b.connected.Load() })

	// Delivered in the publishing goroutine, before Publish returns.
	n := c.get()
	b.Publish(ref)
	if got := c.get(); got != n+1 {
		t.Errorf("wake-ups after Publish with NATS down: %d -> %d, want one more", n, got)
	}
	if err := b.PublishControl("kick", []byte("alice")); err != nil {
		t.Fatal(err)
	}
	if len(ctl) != 1 || ctl[0] != "alice" {
		t.Errorf("control messages with NATS down = %q, want [alice]", ctl)
	}
	// A subscriber that arrives while NATS is down is woken at once: there
	// is no round trip to wait for, and the reconnect will wake it again.
	c2 := newCounter()
	b.Subscribe(store.DeviceRef{Username: "bob", ID: 1}, c2.wake)
	c2.waitAtLeast(t, 1, "new subscriber while NATS is down")

	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with NATS down", d)
	}
}

func TestNATSRestartWakesEverySubscriberAndDeliveryResumes(t *testing.T) {
	s := startNATS(t, "--user", "hush", "--pass", "s3cret")
	cfg := Config{URL: "nats://hush:s3cret@" + s.addr(), MaxReconnectWait: fastReconnect}
	a, alogs := newTestBusLogs(t, cfg, msgQueueLen)
	b, blogs := newTestBusLogs(t, cfg, msgQueueLen)

	r1, r2, r3 := store.DeviceRef{Username: "alice", ID: 1}, store.DeviceRef{Username: "bob", ID: 1}, store.DeviceRef{Username: "carol", ID: 1}
	c1, c2, c3 := newCounter(), newCounter(), newCounter()
	subscribeLive(t, b, r1, c1)
	subscribeLive(t, b, r2, c2)

	s.kill()
	waitFor(t, "both nodes to notice NATS is gone", func() bool { return !a.connected.Load() && !b.connected.Load() })
	n1, n2 := c1.get(), c2.get()
	b.Subscribe(r3, c3.wake) // subscribed while NATS is down
	c3.waitAtLeast(t, 1, "subscriber added while NATS is down")
	n3 := c3.get()

	s.start()
	// Wake-ups published elsewhere during the outage are lost, so every
	// local subscriber is woken once the subscriptions are back.
	c1.waitAtLeast(t, n1+1, "wake-up after reconnect")
	c2.waitAtLeast(t, n2+1, "wake-up after reconnect")
	c3.waitAtLeast(t, n3+1, "wake-up after reconnect")
	waitFor(t, "the publishing node to reconnect", a.connected.Load)

	for _, x := range []struct {
		ref store.DeviceRef
		c   *counter
	}{{r1, c1}, {r3, c3}} {
		n := x.c.get()
		a.Publish(x.ref)
		x.c.waitAtLeast(t, n+1, "wake-up from the other node after the restart")
	}

	for _, l := range []*testLogs{alogs, blogs} {
		text := l.String()
		for _, want := range []string{"lost NATS connection", "reconnected to NATS"} {
			if !strings.Contains(text, want) {
				t.Errorf("logs do not say %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "s3cret") {
			t.Errorf("logs contain the NATS password:\n%s", text)
		}
	}
}
