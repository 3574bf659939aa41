// Package natsbus carries the server's wake-ups ("device X may have
// something new") between server nodes over core NATS. A *Bus satisfies
// the server's Bus interface; subject layout is in subject.go.
//
// Delivery is at most once, as core NATS is. That is enough because a
// wake-up carries no data: the store is the truth, a woken connection
// re-reads it, and the server also sweeps periodically, so a lost wake-up
// delays a message and never loses it. The Bus narrows the windows in
// which wake-ups get lost:
//
//   - a new subscription is woken once, as soon as NATS has confirmed it,
//     so a message stored between Subscribe and the subscription reaching
//     NATS is not missed;
//   - after a reconnect every local subscriber is woken once, because
//     wake-ups published while the connection was down are gone;
//   - while the connection is down, Publish wakes local subscribers
//     directly, so a single node keeps working without NATS;
//   - if the local dispatcher falls behind and NATS drops messages (a
//     slow consumer), the affected devices are woken directly.
//
// Subscribers must therefore expect spurious wake-ups.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hush-chat/hush/internal/store"
)

// Config says where NATS is and how this deployment names its subjects.
type Config struct {
	// URL is one NATS server URL or several separated by commas, as
	// nats.Connect takes them. Credentials in it are never logged.
	URL string
	// Prefix is the first tokens of every subject ("hush" if empty), so
	// several deployments, or several buses of one deployment, can share
	// a NATS cluster. Tokens are ASCII letters, digits, '-' and '_',
	// separated by '.'. Sibling prefixes ("hush", "hush-low") never
	// clash; a nested one can ("hush.ctl.x" is inside the control
	// subjects of "hush").
	Prefix string
	// MaxReconnectWait caps the exponential backoff between reconnect
	// rounds (5s if zero).
	MaxReconnectWait time.Duration
}

const (
	defaultMaxReconnectWait = 5 * time.Second
	// minReconnectWait is the first backoff step.
	minReconnectWait = 100 * time.Millisecond
	// pingInterval and maxPingsOut detect a dead link that never sent a
	// FIN (about a minute); the default two minutes times two is long for
	// wake-ups stuck in a black hole.
	pingInterval = 20 * time.Second
	maxPingsOut  = 3
	// confirmTimeout bounds the round trip that confirms new
	// subscriptions before they are woken.
	confirmTimeout = 2 * time.Second
	// closeFlushTimeout bounds how long Close waits for queued publishes
	// to reach NATS.
	closeFlushTimeout = time.Second
	// msgQueueLen and pubQueueLen size the inbound and outbound queues.
	// Overflowing either only loses wake-ups (see the package comment).
	msgQueueLen = 8192
	pubQueueLen = 8192
)

// Bus is a NATS-backed wake-up bus. It is safe for concurrent use.
type Bus struct {
	nc                *nats.Conn
	log               *slog.Logger
	wakeBase, ctlBase string // "<prefix>.wake.", "<prefix>.ctl."

	connected atomic.Bool // kept by connection callbacks; nc.IsConnected can block during a reconnect
	closed    atomic.Bool
	queueFull atomic.Bool // the outbound queue overflowed; logged once per episode

	msgs chan *nats.Msg // every NATS subscription delivers here; read by dispatchLoop
	pubs chan outgoing  // read by publishLoop
	kick chan struct{}  // capacity 1: syncLoop has work
	stop chan struct{}
	wg   sync.WaitGroup

	// topicsMu guards topics. Handlers run under its read lock, which is
	// what makes "no call after cancel returns" hold.
	topicsMu sync.RWMutex
	topics   map[string]*topic // by full subject

	// syncMu guards the work list of syncLoop. It is separate from
	// topicsMu so that NATS callbacks never wait for a running handler.
	syncMu  sync.Mutex
	dirty   map[string]struct{} // subjects whose NATS subscription may need creating or removing
	toWake  map[string]struct{} // wake subjects to wake after the next confirming round trip
	wakeAll bool                // wake every wake subject (after a reconnect)

	errMu   sync.Mutex
	lastErr error // last connection error, for New's error message
}

// topic is one subject with local handlers; it has one NATS subscription
// however many handlers it has.
type topic struct {
	wake     bool // a wake subject (may be woken spuriously), not a control subject
	handlers []*handler
}

type handler struct{ fn func([]byte) }

type outgoing struct {
	subject string
	data    []byte
}

// New connects to the NATS server(s) at url with the default prefix. See
// NewConfig.
func New(ctx context.Context, url string, logger *slog.Logger) (*Bus, error) {
	return NewConfig(ctx, Config{URL: url}, logger)
}

// NewConfig connects to NATS and returns a Bus. ctx bounds only the wait
// for the first connection: once connected, the Bus reconnects forever on
// its own until Close. A nil logger discards logs.
func NewConfig(ctx context.Context, cfg Config, logger *slog.Logger) (*Bus, error) {
	return newBus(ctx, cfg, logger, msgQueueLen)
}

// newBus is NewConfig with the inbound queue length as a knob for tests.
func newBus(ctx context.Context, cfg Config, logger *slog.Logger, msgQueue int) (*Bus, error) {
	where, err := redactURLs(cfg.URL)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = defaultPrefix
	}
	if err := checkSubject(prefix); err != nil {
		return nil, fmt.Errorf("natsbus: bad prefix: %w", err)
	}
	maxWait := cfg.MaxReconnectWait
	if maxWait <= 0 {
		maxWait = defaultMaxReconnectWait
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{
		log:      logger,
		wakeBase: prefix + "." + wakeToken + ".",
		ctlBase:  prefix + "." + ctlToken + ".",
		msgs:     make(chan *nats.Msg, msgQueue),
		pubs:     make(chan outgoing, pubQueueLen),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		topics:   map[string]*topic{},
		dirty:    map[string]struct{}{},
		toWake:   map[string]struct{}{},
	}

	up := make(chan struct{})
	var upOnce sync.Once
	nc, err := nats.Connect(cfg.URL, b.options(maxWait, func() { upOnce.Do(func() { close(up) }) })...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connecting to %s: %w", where, err)
	}
	select {
	case <-up:
	case <-ctx.Done():
		b.closed.Store(true) // silences the callbacks nc.Close triggers
		nc.Close()
		b.errMu.Lock()
		last := b.lastErr
		b.errMu.Unlock()
		if last != nil {
			return nil, fmt.Errorf("natsbus: no connection to NATS at %s: %w (last error: %v)", where, ctx.Err(), last)
		}
		return nil, fmt.Errorf("natsbus: no connection to NATS at %s: %w", where, ctx.Err())
	}
	b.nc = nc
	b.wg.Add(3)
	go b.dispatchLoop()
	go b.publishLoop()
	go b.syncLoop()
	return b, nil
}

// redactURLs checks that every URL in list parses and returns the list
// with passwords masked, so that neither errors nor logs carry them. The
// parse error itself is not wrapped because it quotes the URL.
func redactURLs(list string) (string, error) {
	if strings.TrimSpace(list) == "" {
		return "", errors.New("natsbus: no NATS URL")
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			return "", fmt.Errorf("natsbus: NATS URL %d of %d does not parse", i+1, len(parts))
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ","), nil
}

// Publish wakes every subscriber of ref on every node. It never blocks:
// the message is queued for NATS, and while the connection is down local
// subscribers are also woken directly.
func (b *Bus) Publish(ref store.DeviceRef) {
	b.publish(wakeSubject(b.wakeBase, ref), nil)
}

// Subscribe calls wake after each Publish for ref, on any node, until
// cancel is called, and also spuriously (see the package comment); in
// particular once soon after Subscribe, when NATS has confirmed the
// subscription. wake must return quickly and must not call the Bus: it
// runs under the Bus's read lock, which is why no call starts after
// cancel has returned. Subscribers of one device on this node share one
// NATS subscription. After Close, Subscribe does nothing.
func (b *Bus) Subscribe(ref store.DeviceRef, wake func()) (cancel func()) {
	return b.subscribe(wakeSubject(b.wakeBase, ref), true, func([]byte) { wake() })
}

// Close stops delivery, sends what is queued (waiting up to a second for
// NATS to take it) and closes the connection. Handlers are not called
// once Close has returned. It is safe to call more than once.
func (b *Bus) Close() error {
	b.topicsMu.Lock()
	already := b.closed.Swap(true)
	b.topics = map[string]*topic{}
	b.topicsMu.Unlock()
	if already {
		return nil
	}
	close(b.stop)
	b.wg.Wait()
	// Only this goroutine receives now, so a non-empty queue cannot block.
	for len(b.pubs) > 0 {
		m := <-b.pubs
		_ = b.nc.Publish(m.subject, m.data) // best effort; the store is the truth
	}
	if b.connected.Load() {
		if err := b.nc.FlushTimeout(closeFlushTimeout); err != nil {
			b.log.Debug("natsbus: flush on close", "err", err)
		}
	}
	b.nc.Close()
	return nil
}

// publish queues a message for NATS and, while the connection is down,
// delivers it locally at once.
func (b *Bus) publish(subject string, data []byte) {
	if b.closed.Load() {
		return
	}
	if !b.connected.Load() {
		// Also queued below: NATS buffers it until the reconnect, then
		// other nodes get it and so do we, a harmless second wake-up.
		b.deliver(subject, data)
	}
	select {
	case b.pubs <- outgoing{subject, data}:
	default:
		if b.queueFull.CompareAndSwap(false, true) {
			b.log.Warn("natsbus: publish queue full; dropping wake-ups until NATS takes them again")
		}
	}
}

// subscribe adds fn to subject's handlers, asking syncLoop to create the
// NATS subscription if it is the first.
func (b *Bus) subscribe(subject string, wake bool, fn func([]byte)) (cancel func()) {
	h := &handler{fn: fn}
	b.topicsMu.Lock()
	if b.closed.Load() {
		b.topicsMu.Unlock()
		return func() {}
	}
	t := b.topics[subject]
	first := t == nil
	if first {
		t = &topic{wake: wake}
		b.topics[subject] = t
	}
	t.handlers = append(t.handlers, h)
	b.topicsMu.Unlock()
	if first {
		b.markDirty(subject)
	}
	var once sync.Once
	return func() { once.Do(func() { b.unsubscribe(subject, h) }) }
}

func (b *Bus) unsubscribe(subject string, h *handler) {
	b.topicsMu.Lock()
	t := b.topics[subject]
	if t == nil {
		b.topicsMu.Unlock()
		return
	}
	for i, x := range t.handlers {
		if x == h {
			t.handlers = slices.Delete(t.handlers, i, i+1)
			break
		}
	}
	last := len(t.handlers) == 0
	if last {
		delete(b.topics, subject)
	}
	b.topicsMu.Unlock()
	if last {
		b.markDirty(subject)
	}
}

// deliver calls subject's local handlers.
func (b *Bus) deliver(subject string, data []byte) {
	b.topicsMu.RLock()
	defer b.topicsMu.RUnlock()
	if t := b.topics[subject]; t != nil {
		for _, h := range t.handlers {
			h.fn(data)
		}
	}
}

// wakeLocal calls the handlers of the wake subjects in set, or of all
// wake subjects.
func (b *Bus) wakeLocal(set map[string]struct{}, all bool) {
	b.topicsMu.RLock()
	defer b.topicsMu.RUnlock()
	wakeTopic := func(t *topic) {
		if t != nil && t.wake {
			for _, h := range t.handlers {
				h.fn(nil)
			}
		}
	}
	if all {
		for _, t := range b.topics {
			wakeTopic(t)
		}
		return
	}
	for s := range set {
		wakeTopic(b.topics[s])
	}
}

func (b *Bus) markDirty(subject string) {
	b.syncMu.Lock()
	b.dirty[subject] = struct{}{}
	b.syncMu.Unlock()
	b.poke()
}

func (b *Bus) markWake(subject string) {
	b.syncMu.Lock()
	b.toWake[subject] = struct{}{}
	b.syncMu.Unlock()
	b.poke()
}

func (b *Bus) markWakeAll() {
	b.syncMu.Lock()
	b.wakeAll = true
	b.syncMu.Unlock()
	b.poke()
}

// poke tells syncLoop there is work, without blocking.
func (b *Bus) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}
