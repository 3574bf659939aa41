package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// Delivery (docs/protocol.md §9.6). A connection pushes from a short-lived
// worker goroutine that exists only while there is work: the backlog
// after authentication, a wake-up from the bus, a low prekey count, a
// keepalive ping, a sweep. Idle connections (most of them) then cost one
// goroutine, the reader. Work requests coalesce into a bit set; one
// worker at a time handles them, so envelopes go out in seq order.
//
// The sweep covers lost wake-ups: a bus between nodes (NATS) delivers at
// most once, so every sweepEvery (jittered, so that connections made
// together after a node failure do not sweep together) the connection
// reads its queue as if woken, and checks that its device is still
// listed, in case the event that should have disconnected it was lost.
// A lost wake-up thus delays a message by at most one sweep period and
// never loses it. The in-process bus cannot lose one, so a single node
// does not sweep unless told to.

type pushWork uint8

const (
	workBacklog pushWork = 1 << iota // first run: everything queued, then queue_empty
	workDrain                        // a message was queued: push what is new
	workCounts                       // prekeys were taken: push counts if low
	workPing                         // keepalive
	workSweep                        // periodic re-read in case a wake-up was lost
)

// pusher is the push side of one session.
type pusher struct {
	ss     *session
	ctx    context.Context // cancelled when the session ends
	cancel context.CancelFunc

	mu      sync.Mutex
	work    pushWork
	running bool
	stopped bool
	wg      sync.WaitGroup

	last   uint64 // highest seq pushed on this connection; worker only
	unsubs [2]func()
	ping   *time.Timer
	sweep  *time.Timer // nil when the server does not sweep
}

// startPush subscribes to the device's wake-ups and queues the backlog.
// Subscribing first means a message queued while the backlog is read
// wakes the pusher again rather than being missed.
func (ss *session) startPush() *pusher {
	p := &pusher{ss: ss}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.unsubs[0] = ss.s.bus.Subscribe(ss.ref, func() { p.kick(workDrain) })
	p.unsubs[1] = ss.s.lowBus.Subscribe(ss.ref, func() { p.kick(workCounts) })
	p.ping = time.AfterFunc(pingInterval, func() { p.kick(workPing) })
	if ss.s.sweepEvery > 0 {
		p.sweep = time.AfterFunc(jitter(ss.s.sweepEvery), func() { p.kick(workSweep) })
	}
	p.kick(workBacklog)
	return p
}

// stop ends the pusher and waits for a running worker.
func (p *pusher) stop() {
	for _, u := range p.unsubs {
		u()
	}
	p.ping.Stop()
	if p.sweep != nil {
		p.sweep.Stop()
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// kick records work and starts a worker if none is running. It never
// blocks, so the bus may call it.
func (p *pusher) kick(w pushWork) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.work |= w
	if !p.running {
		p.running = true
		p.wg.Add(1)
		go p.worker()
	}
}

func (p *pusher) worker() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		w := p.work
		p.work = 0
		if w == 0 || p.stopped {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if err := p.do(w); err != nil {
			p.failed(err)
			p.mu.Lock()
			p.running, p.stopped = false, true
			p.mu.Unlock()
			return
		}
	}
}

func (p *pusher) do(w pushWork) error {
	switch {
	case w&workBacklog != 0:
		if err := p.drain(false); err != nil {
			return err
		}
		if err := p.ss.write(&wire.ServerFrame{Body: &wire.ServerFrame_QueueEmpty{QueueEmpty: &wire.QueueEmpty{}}}); err != nil {
			return err
		}
	case w&workDrain != 0:
		if err := p.drain(false); err != nil {
			return err
		}
	case w&workSweep != 0:
		if err := p.drain(true); err != nil {
			return err
		}
	}
	if w&workSweep != 0 {
		if gone, err := p.deviceGone(); err != nil || gone {
			return err
		}
		p.sweep.Reset(jitter(p.ss.s.sweepEvery))
	}
	if w&workCounts != 0 {
		if err := p.pushCounts(); err != nil {
			return err
		}
	}
	if w&workPing != 0 {
		ctx, cancel := context.WithTimeout(p.ctx, pingTimeout)
		err := p.ss.conn.Ping(ctx)
		cancel()
		if err != nil {
			return err
		}
		p.ping.Reset(pingInterval)
	}
	return nil
}

// drain pushes every queued message after p.last, in seq order. sweep
// says a sweep asked, so what it finds was missed by its wake-up.
func (p *pusher) drain(sweep bool) error {
	ss := p.ss
	for {
		ctx, cancel := context.WithTimeout(p.ctx, requestTimeout)
		msgs, err := ss.s.store.Pending(ctx, ss.ref, p.last, pendingPage, ss.s.now())
		cancel()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			err := ss.write(&wire.ServerFrame{Body: &wire.ServerFrame_Envelope{Envelope: &wire.Envelope{
				ServerId:     m.Seq,
				MessageId:    m.MessageID,
				Sender:       m.Sender,
				SenderDevice: m.SenderDevice,
				ServerTimeMs: m.Received.UnixMilli(),
				Content:      m.Content,
				// Only sealed sends are stored without a sender (§9.8).
				Sealed: m.Sender == "",
			}}})
			if err != nil {
				return err
			}
			p.last = m.Seq
			ss.s.metrics.delivered.Inc()
			if sweep {
				ss.s.metrics.swept.Inc()
			}
		}
		if len(msgs) < pendingPage {
			return nil
		}
	}
}

// deviceGone ends the connection if its device is no longer in the
// account's device list (removed through another node whose disconnect
// event was lost), and reports whether it did.
func (p *pusher) deviceGone() (bool, error) {
	ctx, cancel := context.WithTimeout(p.ctx, requestTimeout)
	defer cancel()
	_, err := p.ss.s.store.Device(ctx, p.ss.ref)
	if errors.Is(err, store.ErrNotFound) {
		p.ss.s.log.Info("device no longer listed; disconnecting", "user", p.ss.ref.Username, "device", p.ss.ref.ID)
		go p.ss.conn.Close(websocket.StatusPolicyViolation, "device removed from the account")
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		return true, nil
	}
	return false, err
}

// jitter returns d scaled by a random factor in [0.75, 1.25).
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// pushCounts tells the device its one-time prekeys are running low.
func (p *pusher) pushCounts() error {
	ctx, cancel := context.WithTimeout(p.ctx, requestTimeout)
	defer cancel()
	c, err := p.ss.s.store.PrekeyCounts(ctx, p.ss.ref)
	if err != nil || !isLow(c) {
		return err
	}
	return p.ss.write(&wire.ServerFrame{Body: &wire.ServerFrame_PrekeyCounts{PrekeyCounts: countsFrame(c)}})
}

// failed ends the connection after a failed push, so the device
// reconnects and gets its queue again from the start.
func (p *pusher) failed(err error) {
	if p.ctx.Err() != nil {
		return // the session is ending; nothing to report
	}
	p.ss.s.log.Warn("delivery stopped", "user", p.ss.ref.Username, "device", p.ss.ref.ID, "err", err)
	p.ss.conn.CloseNow()
}
