package postgres

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// BenchmarkEnqueueAck measures one message's trip through the store as
// the server makes it: enqueue (one commit), read the queue, ack (a second
// commit).
func BenchmarkEnqueueAck(b *testing.B) {
	s := newTestSchemas(b).open(b, "bench_enqueue_ack")
	addBob(b, s, 1)
	ctx := b.Context()
	ref := store.DeviceRef{Username: "bob", ID: 1}
	content := make([]byte, 1024)
	var id uint64
	for b.Loop() {
		id++
		m := message(1, id, "")
		m.Content = content
		if _, err := s.Enqueue(ctx, []store.Message{m}); err != nil {
			b.Fatal(err)
		}
		msgs, err := s.Pending(ctx, ref, 0, 100, time.Now())
		if err != nil || len(msgs) != 1 {
			b.Fatalf("Pending: %d messages, %v", len(msgs), err)
		}
		if n, err := s.Ack(ctx, ref, []uint64{msgs[0].Seq}); err != nil || n != 1 {
			b.Fatalf("Ack: %d, %v", n, err)
		}
	}
}

// BenchmarkEnqueueAckParallel is the same trip from many goroutines, each
// for its own device: devices do not share locks, so commits overlap and
// the server's group commit shares fsyncs between them.
func BenchmarkEnqueueAckParallel(b *testing.B) {
	const devices = 64
	s := newTestSchemas(b).open(b, "bench_enqueue_ack_parallel")
	addBob(b, s, devices)
	ctx := b.Context()
	var next atomic.Uint64
	content := make([]byte, 1024)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		dev := uint32(next.Add(1)-1)%devices + 1
		ref := store.DeviceRef{Username: "bob", ID: dev}
		for pb.Next() {
			m := message(dev, next.Add(1), "")
			m.Content = content
			out, err := s.Enqueue(ctx, []store.Message{m})
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Pending(ctx, ref, out[0].Seq-1, 100, time.Now()); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Ack(ctx, ref, []uint64{out[0].Seq}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEnqueueBatch stores a batch of 100 copies in one call.
func BenchmarkEnqueueBatch(b *testing.B) {
	s := newTestSchemas(b).open(b, "bench_enqueue_batch")
	addBob(b, s, 1)
	ctx := b.Context()
	content := make([]byte, 1024)
	var id uint64
	batch := make([]store.Message, 100)
	for b.Loop() {
		for i := range batch {
			id++
			batch[i] = message(1, id, "")
			batch[i].Content = content
		}
		if _, err := s.Enqueue(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "msgs/s")
}
