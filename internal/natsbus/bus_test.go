package natsbus

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// twoNodes returns two Buses on the shared NATS server with a fresh
// prefix, as two server nodes of one deployment would have.
func twoNodes(t *testing.T) (a, b *Bus) {
	url := sharedNATS(t)
	cfg := Config{URL: url, Prefix: testPrefix()}
	return newTestBus(t, cfg), newTestBus(t, cfg)
}

// The server's Bus interface, restated (this package must not import
// internal/server): *Bus must keep satisfying it.
var _ interface {
	Publish(store.DeviceRef)
	Subscribe(store.DeviceRef, func()) func()
} = (*Bus)(nil)

func TestPublishOnOneNodeWakesSubscriberOnTheOther(t *testing.T) {
	a, b := twoNodes(t)
	ref := store.DeviceRef{Username: "alice", ID: 1}
	other := store.DeviceRef{Username: "alice", ID: 2}
	c, co := newCounter(), newCounter()
	subscribeLive(t, b, ref, c)
	subscribeLive(t, b, other, co)

	a.Publish(ref)
	c.waitAtLeast(t, 2, "wake-up from the other node")
	b.Publish(ref)
	c.waitAtLeast(t, 3, "wake-up from this node")
	// Nothing published to other, so only its confirmation woke it.
	if n := co.get(); n != 1 {
		t.Errorf("unpublished device woken %d times, want 1 (confirmation only)", n)
	}
}

func TestSubscribersOnTheSameNodeShareOneNATSSubscription(t *testing.T) {
	a, b := twoNodes(t)
	ref := store.DeviceRef{Username: "bob", ID: 3}
	c1, c2 := newCounter(), newCounter()
	cancel1 := subscribeLive(t, b, ref, c1)
	// The subscription is live already, so no confirmation wakes c2.
	cancel2 := b.Subscribe(ref, c2.wake)
	if n := b.nc.NumSubscriptions(); n != 1 {
		t.Fatalf("NATS subscriptions = %d, want 1", n)
	}

	a.Publish(ref)
	c1.waitAtLeast(t, 2, "first subscriber")
	c2.waitAtLeast(t, 1, "second subscriber")

	cancel1()
	cancel1() // idempotent
	n1 := c1.get()
	if n := b.nc.NumSubscriptions(); n != 1 {
		t.Fatalf("NATS subscriptions after one cancel = %d, want 1", n)
	}
	a.Publish(ref)
	c2.waitAtLeast(t, 2, "remaining subscriber")
	if got := c1.get(); got != n1 {
		t.Errorf("cancelled subscriber woken: %d -> %d", n1, got)
	}

	cancel2()
	waitFor(t, "the NATS subscription to go", func() bool { return b.nc.NumSubscriptions() == 0 })
}

func TestCancelStopsWakeUps(t *testing.T) {
	a, b := twoNodes(t)
	ref := store.DeviceRef{Username: "carol", ID: 1}
	barrier := store.DeviceRef{Username: "carol", ID: 2}
	c, cb := newCounter(), newCounter()
	cancel := subscribeLive(t, b, ref, c)
	subscribeLive(t, b, barrier, cb)

	cancel()
	n := c.get()
	// One publisher's messages reach a subscriber in order and
	// dispatchLoop keeps that order, so once the barrier wake-up has
	// arrived, ref's message has been handled too.
	a.Publish(ref)
	a.Publish(barrier)
	cb.waitAtLeast(t, 2, "barrier")
	b.Publish(ref) // locally published too
	b.Publish(barrier)
	cb.waitAtLeast(t, 3, "barrier")
	if got := c.get(); got != n {
		t.Errorf("wake-ups after cancel: %d -> %d", n, got)
	}
	waitFor(t, "the barrier's subscription to be the only one", func() bool { return b.nc.NumSubscriptions() == 1 })
}

func TestManyDevicesEachGetTheirOwnWakeUp(t *testing.T) {
	a, b := twoNodes(t)
	const devices = 2000
	counters := make([]*counter, devices)
	for i := range counters {
		counters[i] = newCounter()
		b.Subscribe(store.DeviceRef{Username: fmt.Sprintf("user%d", i/4), ID: uint32(i % 4)}, counters[i].wake)
	}
	for i, c := range counters {
		c.waitAtLeast(t, 1, fmt.Sprintf("confirmation of device %d", i))
	}
	if n := b.nc.NumSubscriptions(); n != devices {
		t.Fatalf("NATS subscriptions = %d, want %d", n, devices)
	}
	// Publish to the even devices only: each must be woken, and no odd
	// one, once a final barrier publish has come through.
	for i := 0; i < devices; i += 2 {
		a.Publish(store.DeviceRef{Username: fmt.Sprintf("user%d", i/4), ID: uint32(i % 4)})
	}
	last := devices - 2
	a.Publish(store.DeviceRef{Username: fmt.Sprintf("user%d", last/4), ID: uint32(last % 4)})
	counters[last].waitAtLeast(t, 3, "barrier")
	for i, c := range counters {
		want := int64(1 + (1 - i%2)) // confirmation, plus the publish for even i
		if i == last {
			want++
		}
		if got := c.get(); got != want {
			t.Errorf("device %d woken %d times, want %d", i, got, want)
		}
	}
}

func TestControlMessagesReachOtherNodesWithTheirData(t *testing.T) {
	a, b := twoNodes(t)
	var mu sync.Mutex
	var got []string
	done := newCounter()
	cancel, err := b.SubscribeControl("devices.changed", func(data []byte) {
		mu.Lock()
		got = append(got, string(data))
		mu.Unlock()
		done.wake()
	})
	if err != nil {
		t.Fatal(err)
	}
	// Control subscriptions get no confirmation wake-up, so wait for the
	// NATS subscription and a round trip instead.
	waitFor(t, "control subscription", func() bool { return b.nc.NumSubscriptions() == 1 })
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	data := []byte("alice")
	if err := a.PublishControl("devices.changed", data); err != nil {
		t.Fatal(err)
	}
	copy(data, "XXXXX") // PublishControl copied it
	if err := a.PublishControl("devices.other", []byte("nobody listens")); err != nil {
		t.Fatal(err)
	}
	if err := a.PublishControl("devices.changed", nil); err != nil {
		t.Fatal(err)
	}
	done.waitAtLeast(t, 2, "control messages")
	mu.Lock()
	if len(got) != 2 || got[0] != "alice" || got[1] != "" {
		t.Errorf("control data = %q, want [alice, \"\"]", got)
	}
	mu.Unlock()

	cancel()
	waitFor(t, "control subscription to go", func() bool { return b.nc.NumSubscriptions() == 0 })

	if err := a.PublishControl("big", make([]byte, MaxControlData+1)); err == nil {
		t.Error("PublishControl accepted data over MaxControlData")
	}
	for _, bad := range []string{"", "a.*", "a b", "a..b", ">"} {
		if err := a.PublishControl(bad, nil); err == nil {
			t.Errorf("PublishControl(%q) accepted", bad)
		}
		if _, err := a.SubscribeControl(bad, func([]byte) {}); err == nil {
			t.Errorf("SubscribeControl(%q) accepted", bad)
		}
	}
}

func TestPrefixesSeparateDeployments(t *testing.T) {
	url := sharedNATS(t)
	a := newTestBus(t, Config{URL: url, Prefix: testPrefix()})
	b := newTestBus(t, Config{URL: url, Prefix: testPrefix()})
	ref := store.DeviceRef{Username: "dave", ID: 1}
	ca, cb := newCounter(), newCounter()
	subscribeLive(t, a, ref, ca)
	subscribeLive(t, b, ref, cb)
	a.Publish(ref)
	a.Publish(ref)
	ca.waitAtLeast(t, 3, "same-prefix subscriber")
	// a's publishes have come back to a, so the server has routed them;
	// had they matched b, they would reach b before b's own publish.
	b.Publish(ref)
	cb.waitAtLeast(t, 2, "barrier")
	if n := cb.get(); n != 2 {
		t.Errorf("other deployment's subscriber woken %d times, want 2", n)
	}
}

func TestCloseStopsEverythingAndIsIdempotent(t *testing.T) {
	a, b := twoNodes(t)
	ref := store.DeviceRef{Username: "erin", ID: 1}
	c := newCounter()
	cancel := subscribeLive(t, b, ref, c)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	n := c.get()
	a.Publish(ref)
	b.Publish(ref)
	if err := b.PublishControl("x", nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	b.Subscribe(ref, c.wake)() // no-op subscribe and cancel
	if got := c.get(); got != n {
		t.Errorf("woken after Close: %d -> %d", n, got)
	}
	if !b.nc.IsClosed() {
		t.Error("NATS connection still open after Close")
	}
}

func TestConcurrentSubscribeCancelAndPublishConverge(t *testing.T) {
	a, b := twoNodes(t)
	refs := make([]store.DeviceRef, 16)
	for i := range refs {
		refs[i] = store.DeviceRef{Username: "frank", ID: uint32(i)}
	}
	var wg sync.WaitGroup
	var wakes atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ref := refs[(g+i)%len(refs)]
				cancel := b.Subscribe(ref, func() { wakes.Add(1) })
				a.Publish(ref)
				b.Publish(ref)
				cancel()
			}
		})
	}
	wg.Wait()
	// Everything was cancelled, so syncLoop must end with no subscription.
	waitFor(t, "all NATS subscriptions to go", func() bool { return b.nc.NumSubscriptions() == 0 })
	// And the Bus still works.
	c := newCounter()
	subscribeLive(t, b, refs[0], c)
	a.Publish(refs[0])
	c.waitAtLeast(t, 2, "wake-up after the churn")
}

func TestSlowConsumerWakesTheDeviceDirectly(t *testing.T) {
	url := sharedNATS(t)
	cfg := Config{URL: url, Prefix: testPrefix()}
	a := newTestBus(t, cfg)
	b := newTestBusQueue(t, cfg, 1) // an inbound queue of one message
	ref := store.DeviceRef{Username: "grace", ID: 1}

	c := newCounter()
	var blockNext atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	subscribeLive(t, b, ref, c)
	// A second handler, called after c's, blocks dispatchLoop once.
	cancel := b.Subscribe(ref, func() {
		if blockNext.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
	})
	defer cancel()
	blockNext.Store(true)

	// The first message blocks dispatchLoop in the handler, the second
	// fills the queue, the rest are dropped by NATS as a slow consumer.
	before := c.get()
	for range 5 {
		a.Publish(ref)
	}
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("dispatcher never delivered")
	}
	// dispatchLoop is stuck, yet the device is woken, by syncLoop.
	c.waitAtLeast(t, before+2, "direct wake-up after NATS dropped messages")
	close(release)
	after := c.get()
	a.Publish(ref)
	c.waitAtLeast(t, after+1, "wake-up once the dispatcher caught up")
}
