package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// A connection's sends are stored by a worker goroutine, in the order
// they arrived, while the read loop goes on reading. Sends that queue up
// while one commit is running are stored together by the next one: a
// client that pipelines sends pays one durable commit per batch instead
// of one per message, and one sender's messages keep their order (the
// store assigns seqs in slice order). The reply to each send goes out
// only after its copies are durable.

const (
	// maxPendingSends bounds one connection's sends awaiting storage; past
	// it the read loop waits, which pushes back on the client.
	maxPendingSends = 256
	// maxSendBatch bounds the sends stored by one Enqueue call.
	maxSendBatch = 64
)

// errReplyLater is what send returns when the send queue will answer.
var errReplyLater = errors.New("reply later")

type pendingSend struct {
	id        uint64    // request id to answer
	start     time.Time // when the request was read, for its duration
	recipient string
	msgs      []store.Message
}

type sendQueue struct {
	ss *session

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the queue shrinks
	queue   []pendingSend
	running bool
	wg      sync.WaitGroup
}

// submit queues a checked send, waiting while maxPendingSends are queued.
// Read loop only.
func (q *sendQueue) submit(p pendingSend) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cond == nil {
		q.cond = sync.NewCond(&q.mu)
	}
	for len(q.queue) >= maxPendingSends {
		q.cond.Wait()
	}
	q.queue = append(q.queue, p)
	if !q.running {
		q.running = true
		q.wg.Add(1)
		go q.worker()
	}
}

// wait returns once every submitted send has been stored and answered.
func (q *sendQueue) wait() { q.wg.Wait() }

func (q *sendQueue) worker() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		n := min(len(q.queue), maxSendBatch)
		if n == 0 {
			q.running = false
			q.queue = nil
			q.mu.Unlock()
			return
		}
		batch := q.queue[:n:n]
		q.queue = q.queue[n:]
		q.mu.Unlock()
		q.store(batch)
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// store commits a batch of sends in one Enqueue call and answers each.
func (q *sendQueue) store(batch []pendingSend) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	st := q.ss.s.store
	var all []store.Message
	for _, p := range batch {
		all = append(all, p.msgs...)
	}
	_, err := st.Enqueue(ctx, all)
	if err != nil && len(batch) > 1 && errors.Is(err, store.ErrNotFound) {
		// A recipient's device list changed: all or none failed, so
		// store them one by one (still in order) to find whose.
		for _, p := range batch {
			_, err := st.Enqueue(ctx, p.msgs)
			q.answer(p, err)
		}
		return
	}
	for _, p := range batch {
		q.answer(p, err)
	}
}

func (q *sendQueue) answer(p pendingSend, err error) {
	ss := q.ss
	if errors.Is(err, store.ErrNotFound) {
		// The device list changed between the check and the commit.
		ss.s.devices.invalidate(p.recipient)
		err = apiErr(codeDeviceMismatch, "the recipient's devices changed; fetch the account and retry")
	}
	if err == nil {
		ss.s.metrics.stored.Add(float64(len(p.msgs)))
		for _, m := range p.msgs {
			ss.s.bus.Publish(m.Recipient)
		}
	}
	ss.s.finish("send", p.start, err, "user", ss.ref.Username, "device", ss.ref.ID)
	if err != nil {
		ss.reject(p.id, err)
		return
	}
	if ss.write(&wire.ServerFrame{Id: p.id, Body: &wire.ServerFrame_Sent{Sent: &wire.SendResponse{Stored: true}}}) != nil {
		ss.conn.CloseNow()
	}
}
