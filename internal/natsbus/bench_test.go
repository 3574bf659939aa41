package natsbus

import (
	"slices"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// BenchmarkPublishToWake measures one wake-up's latency from Publish on
// one node to the wake callback on another, one at a time, through the
// NATS server named by HUSH_TEST_NATS. It reports the median and 99th
// percentile as well as the mean (ns/op).
func BenchmarkPublishToWake(b *testing.B) {
	url := sharedNATS(b)
	cfg := Config{URL: url, Prefix: testPrefix()}
	pub, sub := newTestBus(b, cfg), newTestBus(b, cfg)
	ref := store.DeviceRef{Username: "alice", ID: 1}
	woken := make(chan struct{}, 1)
	sub.Subscribe(ref, func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	})
	<-woken // confirmation: the subscription is live

	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		pub.Publish(ref)
		<-woken
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkPublishThroughput measures wake-ups per second from one node
// to another with many in flight; the subscriber's coalescing callback
// is the kind the server uses.
func BenchmarkPublishThroughput(b *testing.B) {
	url := sharedNATS(b)
	cfg := Config{URL: url, Prefix: testPrefix()}
	pub, sub := newTestBus(b, cfg), newTestBus(b, cfg)
	const devices = 64
	refs := make([]store.DeviceRef, devices)
	c := newCounter()
	for i := range refs {
		refs[i] = store.DeviceRef{Username: "bench", ID: uint32(i)}
		sub.Subscribe(refs[i], c.wake)
	}
	c.waitAtLeast(b, devices, "confirmations")
	base := c.get()
	i := 0
	for b.Loop() {
		pub.Publish(refs[i%devices])
		i++
		// Stay within the publish queue so nothing is dropped.
		if i%(pubQueueLen/2) == 0 {
			c.waitAtLeast(b, base+int64(i), "wake-ups")
		}
	}
	c.waitAtLeast(b, base+int64(i), "wake-ups")
}
