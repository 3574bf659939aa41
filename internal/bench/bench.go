// Package bench is "hush bench": a load generator for a Hush server on
// this machine. It registers virtual users with real keys, makes a PQXDH
// session between each user and its peers, then has every user send
// real ratchet-encrypted messages to random peers at a fixed total rate
// (open loop: the schedule does not wait for the server). Receivers
// decrypt and acknowledge, as clients do. The report gives delivered
// messages per second, end-to-end latency (send to decrypt) percentiles,
// errors, lost and duplicated messages, the server's resident memory,
// and the raw loopback WebSocket echo ceiling measured in the same run.
//
// Layout: bench.go (configuration, the run), user.go and receive.go (a
// virtual user), payload.go (what a message carries), ledger.go (lost
// and duplicated accounting), hist.go (latency), echo.go (the ceiling),
// child.go (a server started for the run), rss.go, report.go.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds: the bench is for one machine, and every run ends.
const (
	MaxUsers    = 10_000
	MaxRate     = 1_000_000 // messages per second
	MaxDuration = 24 * time.Hour
	// MaxMessages bounds rate × duration: the ledger keeps two bytes per
	// message.
	MaxMessages = 100_000_000
	MaxPeers    = 64

	DefaultUsers    = 50
	DefaultRate     = 1000
	DefaultDuration = 10 * time.Second
	DefaultPeers    = 8
	DefaultTextSize = 64 // a short chat message
	MaxTextSize     = 64 << 10

	// DefaultDrain is how long the bench waits after the last send for
	// answers and deliveries still on their way.
	DefaultDrain = 10 * time.Second

	// SetupTimeout bounds registration, connection and the handshakes.
	SetupTimeout = 10 * time.Minute

	// behindSlack: a send that leaves more than this after its
	// scheduled time is counted as behind schedule.
	behindSlack  = 10 * time.Millisecond
	writeTimeout = 30 * time.Second
	rssPeriod    = time.Second
)

// Config describes one run.
type Config struct {
	// Server is the base URL of a running server on a loopback address
	// (http://127.0.0.1:PORT); see CheckLoopback.
	Server   string
	Users    int           // virtual users, each with one device and one connection
	Rate     float64       // messages per second, all users together
	Duration time.Duration // of the sending phase
	// Peers is how many others each user talks to (its contacts, chosen
	// at random); 0 means min(DefaultPeers, Users-1). Each pair needs a
	// PQXDH handshake during setup, so sending to everyone would make
	// setup quadratic in Users.
	Peers    int
	TextSize int           // bytes of text per message; 0 means DefaultTextSize
	Drain    time.Duration // 0 means DefaultDrain
	// EchoDuration is how long the echo ceiling is measured; 0 means a
	// tenth of Duration, between 1 and 10 seconds.
	EchoDuration time.Duration

	// RSS reads the server's resident memory now and its peak; nil means
	// sampling process_resident_memory_bytes from the server's /metrics.
	RSS func() (cur, peak int64, err error)
	// Progress, if not nil, gets a line at each phase.
	Progress io.Writer
}

// Validate checks the bounds; its errors name the flag at fault.
func (c *Config) Validate() error {
	switch {
	case c.Users < 2 || c.Users > MaxUsers:
		return fmt.Errorf("--users must be 2 to %d", MaxUsers)
	case !(c.Rate > 0) || c.Rate > MaxRate:
		return fmt.Errorf("--rate must be above 0 and at most %d", MaxRate)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("--duration must be above 0 and at most %v", MaxDuration)
	case c.Rate*c.Duration.Seconds() > MaxMessages:
		return fmt.Errorf("--rate × --duration is over %d messages", MaxMessages)
	case c.Peers < 0 || c.Peers > MaxPeers || c.Peers > c.Users-1:
		return fmt.Errorf("--peers must be 1 to %d and below --users", MaxPeers)
	case c.TextSize < 0 || c.TextSize > MaxTextSize:
		return fmt.Errorf("text size must be 0 to %d", MaxTextSize)
	case c.Drain < 0 || c.Drain > time.Minute:
		return errors.New("drain must be 0 to 1 minute")
	case c.EchoDuration < 0 || c.EchoDuration > time.Minute:
		return errors.New("echo duration must be 0 to 1 minute")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Peers == 0 {
		c.Peers = min(DefaultPeers, c.Users-1)
	}
	if c.TextSize == 0 {
		c.TextSize = DefaultTextSize
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.EchoDuration == 0 {
		c.EchoDuration = min(max(c.Duration/10, time.Second), 10*time.Second)
	}
	return c
}

// Deadline bounds a whole run with this configuration: setup, sending,
// draining and the echo measurement, with room to spare.
func (c Config) Deadline() time.Duration {
	c = c.withDefaults()
	return SetupTimeout + c.Duration + c.Drain + c.EchoDuration + 5*time.Minute
}

// CheckLoopback refuses a server URL that is not on this machine: the
// bench floods its target.
func CheckLoopback(server string) error {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q is not an http:// or https:// URL", server)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--server %q is not a loopback address (127.0.0.1, ::1 or localhost): the bench only loads servers on this machine", server)
}

// run is the state of one run, shared by its users.
type run struct {
	cfg     Config
	baseURL string
	wsURL   string
	httpc   *http.Client
	start   time.Time // the monotonic base of message timestamps
	runTag  uint32
	runName string // in usernames, so runs against one server never collide

	users []*vuser
	edges []*edge
	pairs [][2]*vuser // [initiator, responder]
	hist  histogram

	sent, answered, stored, delivered atomic.Int64 // measured messages
	behind, hellos                    atomic.Int64
	frameBytes                        atomic.Int64 // of measured send frames
	lastDelivery                      atomic.Int64 // since start, ns

	errMu    sync.Mutex
	errKinds map[string]int64
	errFirst map[string]string // the first message of each kind
}

func (r *run) since() time.Duration { return time.Since(r.start) }

// noteDelivery keeps the time of the latest first arrival.
func (r *run) noteDelivery(at time.Duration) {
	for {
		last := r.lastDelivery.Load()
		if int64(at) <= last || r.lastDelivery.CompareAndSwap(last, int64(at)) {
			return
		}
	}
}

// fail counts one error of a kind, keeping the first message of each.
func (r *run) fail(kind, msg string) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	r.errKinds[kind]++
	if _, ok := r.errFirst[kind]; !ok {
		r.errFirst[kind] = msg
	}
}

func (r *run) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "hush bench: "+format+"\n", args...)
	}
}

// Run runs the bench against cfg.Server and reports. A run that cannot
// set up (registration, connection or handshake fails) returns an error;
// failures while sending are counted in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckLoopback(cfg.Server); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline())
	defer cancel()

	var tag [4]byte
	rand.Read(tag[:])
	r := &run{
		cfg:      cfg,
		baseURL:  strings.TrimRight(cfg.Server, "/"),
		start:    time.Now(),
		runTag:   binary.BigEndian.Uint32(tag[:]),
		runName:  fmt.Sprintf("%02x%02x%02x", tag[0], tag[1], tag[2]),
		errKinds: map[string]int64{},
		errFirst: map[string]string{},
		httpc: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // loopback only, never through a proxy
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
	defer r.httpc.CloseIdleConnections()
	r.wsURL = "ws" + strings.TrimPrefix(r.baseURL, "http") + "/v1/ws"

	// The users' connections live until the end of the run.
	life, endLife := context.WithCancel(ctx)
	defer endLife()
	setupStart := time.Now()
	if err := r.setup(ctx, life); err != nil {
		r.closeAll()
		return nil, err
	}
	setup := time.Since(setupStart)

	w := &watch{r: r}
	w.sample(ctx)
	serverCPU0, serverCPUOK := w.serverCPU(ctx)
	benchCPU0, benchCPUOK := processCPU()
	r.progress("sending %g messages/s from %d users for %v", cfg.Rate, cfg.Users, cfg.Duration)
	loadStart := r.since()
	stopWatch := w.every(ctx, rssPeriod)
	r.load(ctx, loadStart)
	r.progress("draining (up to %v)", cfg.Drain)
	drainStart := time.Now()
	r.drain(ctx)
	drained := time.Since(drainStart)
	stopWatch()
	w.sample(ctx)
	serverCPU1, ok1 := w.serverCPU(ctx)
	benchCPU1, ok2 := processCPU()
	r.settleAcks(ctx)
	r.closeAll()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	rep := r.report(loadStart, setup, drained)
	rep.ServerRSSBytes, rep.ServerRSSPeakBytes, rep.RSSNote = w.rss()
	rep.CPUs = runtime.NumCPU()
	if serverCPUOK && ok1 {
		v := round(serverCPU1-serverCPU0, 2)
		rep.ServerCPUS = &v
	}
	if benchCPUOK && ok2 {
		v := round((benchCPU1 - benchCPU0).Seconds(), 2)
		rep.BenchCPUS = &v
	}

	rep.EchoConnections = echoConnections(cfg.Users)
	rep.MessageBytes = 400 // a send frame of a short text, if none was sent
	if n := r.sent.Load(); n > 0 {
		rep.MessageBytes = int(r.frameBytes.Load() / n)
	}
	r.progress("measuring the WebSocket echo ceiling for %v", cfg.EchoDuration)
	echo, err := echoCeiling(ctx, rep.EchoConnections, rep.MessageBytes, cfg.EchoDuration)
	if err != nil {
		return nil, err
	}
	rep.EchoCeilingPerSec = round(echo, 1)
	return rep, nil
}

// setup makes the users, registers them, connects them and runs the
// handshakes.
func (r *run) setup(ctx, life context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, SetupTimeout)
	defer cancel()
	cfg := r.cfg
	n := cfg.Users

	// Contacts: each user picks Peers others to send to. A session per
	// unordered pair, initiated by the lower index.
	out := make([][]int, n)
	pairSet := map[[2]int]bool{}
	responder := make([]int, n) // handshakes each user answers
	for i := range n {
		for len(out[i]) < cfg.Peers {
			j := mrand.IntN(n - 1)
			if j >= i {
				j++ // never oneself
			}
			if slices.Contains(out[i], j) {
				continue
			}
			out[i] = append(out[i], j)
			k := [2]int{min(i, j), max(i, j)}
			if !pairSet[k] {
				pairSet[k] = true
				responder[k[1]]++
			}
		}
	}

	r.progress("making keys for %d users", n)
	r.users = make([]*vuser, n)
	if err := parallel(ctx, n, runtime.GOMAXPROCS(0), func(i int) error {
		u, err := newUser(r, i, min(responder[i], 200))
		r.users[i] = u
		return err
	}); err != nil {
		return fmt.Errorf("making keys: %w", err)
	}
	for k := range pairSet {
		a, b := r.users[k[0]], r.users[k[1]]
		ab := &edge{from: a.idx, to: b.idx}
		ba := &edge{from: b.idx, to: a.idx}
		r.edges = append(r.edges, ab, ba)
		a.peers[b.idx] = &peer{u: b, out: ab, in: ba}
		b.peers[a.idx] = &peer{u: a, out: ba, in: ab}
		r.pairs = append(r.pairs, [2]*vuser{a, b})
	}
	for i, u := range r.users {
		for _, j := range out[i] {
			u.out = append(u.out, u.peers[j])
		}
	}

	r.progress("registering %d users", n)
	if err := parallel(ctx, n, 2*runtime.GOMAXPROCS(0)+2, func(i int) error {
		return r.users[i].register(ctx)
	}); err != nil {
		return fmt.Errorf("registering: %w%s", err, limitsHint(err))
	}

	r.progress("connecting %d users", n)
	if err := parallel(ctx, n, 32, func(i int) error {
		u := r.users[i]
		if err := u.connect(ctx, life); err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
		select {
		case <-u.queueEmpty:
			return nil
		case <-u.done:
			return fmt.Errorf("%s: connection closed", u.name)
		case <-ctx.Done():
			return ctx.Err()
		}
	}); err != nil {
		return fmt.Errorf("connecting: %w%s", err, limitsHint(err))
	}

	r.progress("starting %d sessions", len(r.pairs))
	return r.handshakes(ctx)
}

// handshakes starts every pair's session: the initiator fetches the
// responder's prekey bundle, runs PQXDH and sends a hello; once all
// hellos arrived, each responder answers, so both sides are past the
// prekey message before anything is measured.
func (r *run) handshakes(ctx context.Context) error {
	if err := parallel(ctx, len(r.pairs), 64, func(i int) error {
		a, b := r.pairs[i][0], r.pairs[i][1]
		return a.initiate(ctx, a.peers[b.idx])
	}); err != nil {
		return fmt.Errorf("starting sessions: %w%s", err, limitsHint(err))
	}
	if err := r.waitHellos(ctx, int64(len(r.pairs))); err != nil {
		return err
	}
	if err := parallel(ctx, len(r.pairs), 64, func(i int) error {
		a, b := r.pairs[i][0], r.pairs[i][1]
		return b.send(ctx, b.peers[a.idx], 0)
	}); err != nil {
		return fmt.Errorf("answering sessions: %w", err)
	}
	return r.waitHellos(ctx, 2*int64(len(r.pairs)))
}

// waitHellos waits until want handshake messages arrived, as long as
// they keep arriving: a minute without one, or any error, ends setup.
func (r *run) waitHellos(ctx context.Context, want int64) error {
	last, lastAt := r.hellos.Load(), time.Now()
	waitUntil(ctx, SetupTimeout, func() bool {
		n := r.hellos.Load()
		if n != last {
			last, lastAt = n, time.Now()
		}
		return n >= want || r.errorCount() > 0 || time.Since(lastAt) > time.Minute
	})
	if n := r.hellos.Load(); n < want {
		return fmt.Errorf("starting sessions: %d of %d handshake messages arrived%s", n, want, r.firstErrors())
	}
	return nil
}

// initiate fetches p's bundle, checks it against p's device list and
// sends the first message (docs/protocol.md §9.5, §4.2).
func (u *vuser) initiate(ctx context.Context, p *peer) error {
	f, err := u.call(ctx, getPrekeys(p.u.name, p.u.dev.ID))
	if err != nil {
		return fmt.Errorf("%s: prekeys of %s: %w", u.name, p.u.name, err)
	}
	bundle, err := parseOneBundle(f)
	if err != nil {
		return fmt.Errorf("%s: prekeys of %s: %w", u.name, p.u.name, err)
	}
	if err := bundle.VerifyAgainst(&p.u.list); err != nil {
		return fmt.Errorf("%s: prekeys of %s: %w", u.name, p.u.name, err)
	}
	p.mu.Lock()
	err = p.rec.Initiate(u.name, u.dev.Identity, bundle)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: session with %s: %w", u.name, p.u.name, err)
	}
	return u.send(ctx, p, 0)
}

// load runs every user's sender until the end of the sending phase.
func (r *run) load(ctx context.Context, start time.Duration) {
	interval := time.Duration(float64(time.Second) * float64(len(r.users)) / r.cfg.Rate)
	begin := r.start.Add(start)
	end := begin.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	for _, u := range r.users {
		if len(u.out) == 0 {
			continue
		}
		// A random phase spreads the users' sends over the interval.
		first := begin.Add(time.Duration(mrand.Int64N(int64(max(interval, 1)))))
		wg.Go(func() { u.sendLoop(ctx, first, end, interval) })
	}
	wg.Wait()
}

// sendLoop sends one message every interval from first until end, each
// to a random peer. The schedule is fixed in advance (open loop): a late
// send goes as soon as it can and counts as behind.
func (u *vuser) sendLoop(ctx context.Context, first, end time.Time, interval time.Duration) {
	r := u.r
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for next := first; next.Before(end); next = next.Add(interval) {
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-u.done:
				return
			case <-ctx.Done():
				return
			}
		}
		select {
		case u.window <- struct{}{}:
		case <-u.done:
			return
		case <-ctx.Done():
			return
		}
		if time.Since(next) > behindSlack {
			r.behind.Add(1)
		}
		p := u.out[mrand.IntN(len(u.out))]
		seq := p.out.next()
		r.sent.Add(1)
		if err := u.send(ctx, p, seq); err != nil {
			// Never written: answered as refused, so it is not lost.
			p.out.answered(seq, false)
			r.answered.Add(1)
			<-u.window
			if ctx.Err() != nil {
				return
			}
			r.fail("send_failed", fmt.Sprintf("%s: %v", u.name, err))
		}
	}
}

// drain waits until every send was answered and every stored message
// arrived, or for cfg.Drain.
func (r *run) drain(ctx context.Context) {
	waitUntil(ctx, r.cfg.Drain, func() bool {
		return r.answered.Load() == r.sent.Load() && r.delivered.Load() >= r.stored.Load()
	})
}

// settleAcks gives the writers a moment to send the last acks, so the
// server's queues are left empty.
func (r *run) settleAcks(ctx context.Context) {
	waitUntil(ctx, 5*time.Second, func() bool {
		for _, u := range r.users {
			if u.conn != nil && !u.settled() {
				select {
				case <-u.done:
					continue
				default:
					return false
				}
			}
		}
		return true
	})
}

func (r *run) closeAll() {
	var wg sync.WaitGroup
	for _, u := range r.users {
		if u != nil {
			wg.Go(u.close)
		}
	}
	wg.Wait()
}

func (r *run) errorCount() int64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	var n int64
	for _, c := range r.errKinds {
		n += c
	}
	return n
}

// firstErrors is "; first error: …" for each kind so far, for setup
// failures.
func (r *run) firstErrors() string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	var b strings.Builder
	for _, m := range r.errFirst {
		b.WriteString("; " + m)
	}
	return b.String()
}

// limitsHint suggests the likely cause when a server refused the load.
func limitsHint(err error) string {
	if strings.Contains(err.Error(), "rate_limited") {
		return " (is the server running with --no-rate-limits?)"
	}
	return ""
}

// parallel runs f(0..n-1) on up to workers goroutines and returns the
// first error; after an error the remaining items are skipped.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// waitUntil polls cond every few milliseconds for at most d; it reports
// whether cond became true.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return cond()
		case <-ctx.Done():
			return false
		}
	}
	return true
}
