// Package turnrelay is Hush's built-in TURN relay (docs/protocol.md
// §13.3): github.com/pion/turn/v4 on one address over UDP and TCP, with
// time-limited TURN REST credentials as the only way in, relaying only to
// public peer addresses unless told otherwise, and per-device and per-IP
// allocation caps.
//
// The relay never sees call media in clear: WebRTC media is DTLS-SRTP
// end to end, and the relay forwards the datagrams as they are.
package turnrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero fields of Config.
const (
	DefaultRealm               = "hush"
	DefaultMaxAllocsPerSubject = 10 // a call needs one or two per device
	DefaultMaxAllocsPerIP      = 64 // several devices behind one NAT
	DefaultMaxTCPConnsPerIP    = 64 // TURN over TCP connections from one address
	pendingAllocTimeout        = 10 * time.Second
	maxInboundMTU              = 1600 // pion's default; bigger datagrams are dropped
	listenRetries              = 20   // finding a port free on both UDP and TCP

	// Socket buffers, asked for (the kernel caps them at rmem_max and
	// wmem_max): all clients share the one listening socket, and a burst
	// while the relay is not scheduled must not overflow it.
	listenerBuffer = 4 << 20
	relayBuffer    = 512 << 10
)

// Config configures a Relay.
type Config struct {
	// Listen is the host:port of both the UDP and the TCP listener; port 0
	// picks one port free for both.
	Listen string
	// PublicIP is the address clients and peers reach the relay at: the
	// host of the URLs and of every relayed address. Nil means Listen's
	// IP, which then must not be unspecified (0.0.0.0 or ::).
	PublicIP net.IP
	// AllowPrivate lets allocations relay to loopback, private, link-local,
	// CGNAT and other special-purpose addresses: for local deployments and
	// tests only, because it opens the server's own network to anyone
	// holding a credential.
	AllowPrivate bool
	// Secret verifies credentials (see Issue); at least MinSecretSize
	// bytes. Never logged.
	Secret []byte
	Realm  string // zero: DefaultRealm

	// Caps on live allocations, per credential subject (one device) and
	// per client IP address, and on TURN-over-TCP connections per client
	// IP. Zero: the defaults; negative: no cap.
	MaxAllocsPerSubject, MaxAllocsPerIP, MaxTCPConnsPerIP int
	// MinPort and MaxPort bound the relayed ports (both or neither).
	MinPort, MaxPort uint16

	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	Now        func() time.Time      // nil: time.Now; judges credential expiry
}

// Relay is a running TURN server.
type Relay struct {
	srv    *turn.Server
	udp    net.PacketConn
	tcp    net.Listener
	public *net.UDPAddr
	log    *slog.Logger
	m      *metrics
	quota  *quota

	closeOnce sync.Once
	closeErr  error
}

// Listen starts a relay on cfg.Listen.
func Listen(cfg Config) (*Relay, error) {
	if len(cfg.Secret) < MinSecretSize {
		return nil, fmt.Errorf("turnrelay: the secret must be at least %d bytes", MinSecretSize)
	}
	if (cfg.MinPort == 0) != (cfg.MaxPort == 0) || cfg.MinPort > cfg.MaxPort {
		return nil, errors.New("turnrelay: relay port range needs both ends, lowest first")
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("turnrelay: listen address %q: %w", cfg.Listen, err)
	}
	listenIP := net.ParseIP(host)
	if listenIP == nil {
		return nil, fmt.Errorf("turnrelay: listen address %q must be an IP address and port", cfg.Listen)
	}
	public := cfg.PublicIP
	if public == nil {
		if listenIP.IsUnspecified() {
			return nil, fmt.Errorf("turnrelay: listening on %s needs a public IP for clients and peers to reach", cfg.Listen)
		}
		public = listenIP
	}
	if public.IsUnspecified() {
		return nil, errors.New("turnrelay: the public IP must not be unspecified")
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	m := newMetrics()
	if cfg.Registerer != nil {
		if err := m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("turnrelay: register metrics: %w", err)
		}
	}
	udp, tcp, err := listenBoth(cfg.Listen)
	if err != nil {
		if cfg.Registerer != nil {
			m.unregister(cfg.Registerer)
		}
		return nil, err
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	guard := newSelfGuard(port, !cfg.AllowPrivate, listenIP, public)
	r := &Relay{
		udp:    udp,
		tcp:    &capListener{Listener: tcp, max: pick(cfg.MaxTCPConnsPerIP, DefaultMaxTCPConnsPerIP), conns: map[string]int{}},
		public: &net.UDPAddr{IP: public, Port: port},
		log:    lg,
		m:      m,
		quota:  newQuota(pick(cfg.MaxAllocsPerSubject, DefaultMaxAllocsPerSubject), pick(cfg.MaxAllocsPerIP, DefaultMaxAllocsPerIP)),
	}
	secret := append([]byte(nil), cfg.Secret...)
	permit := func(client net.Addr, peer net.IP) bool {
		if cfg.AllowPrivate || publicPeer(peer) {
			return true
		}
		m.refused.WithLabelValues("peer_address").Inc()
		lg.Debug("TURN permission refused: peer address is not public", "client", client.String(), "peer", peer.String())
		return false
	}
	gen := func() turn.RelayAddressGenerator {
		var inner turn.RelayAddressGenerator = &turn.RelayAddressGeneratorStatic{RelayAddress: public, Address: host}
		if cfg.MinPort != 0 {
			inner = &turn.RelayAddressGeneratorPortRange{RelayAddress: public, Address: host, MinPort: cfg.MinPort, MaxPort: cfg.MaxPort}
		}
		return &countingGenerator{inner: inner, m: m, guard: guard}
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		LoggerFactory: pionLogs{lg},
		InboundMTU:    maxInboundMTU,
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			return authKey(secret, username, realm, now())
		},
		QuotaHandler: func(username, _ string, src net.Addr) bool {
			if r.quota.reserve(username, src, now()) {
				return true
			}
			m.refused.WithLabelValues("quota").Inc()
			return false
		},
		EventHandler: turn.EventHandler{
			OnAuth: func(src, _ net.Addr, _, _, _ string, method string, ok bool) {
				if !ok {
					m.refused.WithLabelValues("auth").Inc()
					lg.Debug("TURN authentication failed", "client", src.String(), "method", method)
				}
			},
			OnAllocationCreated: func(src, _ net.Addr, _, username, _ string, _ net.Addr, _ int) {
				r.quota.created(username, src)
				m.allocations.Inc()
				m.allocationsTotal.Inc()
			},
			OnAllocationDeleted: func(src, _ net.Addr, _, username, _ string) {
				r.quota.deleted(username, src)
				m.allocations.Dec()
			},
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: udp, RelayAddressGenerator: gen(), PermissionHandler: permit}},
		ListenerConfigs:   []turn.ListenerConfig{{Listener: r.tcp, RelayAddressGenerator: gen(), PermissionHandler: permit}},
	})
	if err != nil {
		udp.Close()
		tcp.Close()
		if cfg.Registerer != nil {
			m.unregister(cfg.Registerer)
		}
		return nil, fmt.Errorf("turnrelay: %w", err)
	}
	r.srv = srv
	return r, nil
}

// ErrListen is wrapped by the error of a relay that could not bind its
// address (the cause, such as syscall.EADDRINUSE, is wrapped too).
var ErrListen = errors.New("turnrelay: listen")

// listenBoth binds UDP and TCP on one address; with port 0 it looks for a
// port free on both.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, portStr, _ := net.SplitHostPort(addr)
	for range listenRetries {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("%w on TCP %s: %w", ErrListen, addr, err)
		}
		port := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			setBuffers(udp, listenerBuffer)
			return udp, tcp, nil
		}
		tcp.Close()
		if portStr != "0" {
			return nil, nil, fmt.Errorf("%w on UDP %s: %w", ErrListen, addr, err)
		}
	}
	return nil, nil, fmt.Errorf("turnrelay: found no port free on both UDP and TCP at %s", host)
}

// Addr is the address the relay listens on (UDP and TCP).
func (r *Relay) Addr() *net.UDPAddr { return r.udp.LocalAddr().(*net.UDPAddr) }

// PublicAddr is the address clients are told: PublicIP and the port.
func (r *Relay) PublicAddr() *net.UDPAddr { return r.public }

// URLs are the ICE server URLs of this relay.
func (r *Relay) URLs() []string { return URLs(r.public) }

// Allocations is the number of live allocations.
func (r *Relay) Allocations() int { return r.srv.AllocationCount() }

// Close stops the relay and ends every allocation.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.srv.Close() })
	return r.closeErr
}

// setBuffers asks for bigger socket buffers; the kernel's defaults only
// cost loss, so a refusal is not an error.
func setBuffers(c net.PacketConn, n int) {
	if u, ok := c.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(n)
		_ = u.SetWriteBuffer(n)
	}
}

func pick(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// capListener refuses TCP connections from an address that already has
// max open, so one client cannot hold unbounded goroutines and buffers.
type capListener struct {
	net.Listener
	max   int // 0: no cap
	mu    sync.Mutex
	conns map[string]int
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		l.mu.Lock()
		if l.max > 0 && l.conns[ip] >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[ip]++
		l.mu.Unlock()
		return &trackedConn{Conn: c, release: func() {
			l.mu.Lock()
			if l.conns[ip]--; l.conns[ip] <= 0 {
				delete(l.conns, ip)
			}
			l.mu.Unlock()
		}}, nil
	}
}

type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func remoteIP(a net.Addr) string {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP.String()
	case *net.TCPAddr:
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// countingGenerator allocates relayed sockets through inner and counts the
// bytes they carry, refusing to send where guard says no. It relays UDP
// only (RFC 6062 TCP relaying is off).
type countingGenerator struct {
	inner turn.RelayAddressGenerator
	m     *metrics
	guard *selfGuard
}

func (g *countingGenerator) Validate() error { return g.inner.Validate() }

func (g *countingGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	c, a, err := g.inner.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	setBuffers(c, relayBuffer)
	local := c.LocalAddr().(*net.UDPAddr).Port
	g.guard.opened(local)
	return &countingConn{PacketConn: c, m: g.m, guard: g.guard, port: local}, a, nil
}

func (g *countingGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("turnrelay: TCP relaying is not offered")
}

type countingConn struct {
	net.PacketConn
	m     *metrics
	guard *selfGuard
	port  int
	once  sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.guard.closed(c.port) })
	return c.PacketConn.Close()
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		c.m.fromPeers.Add(float64(n))
	}
	return n, a, err
}

func (c *countingConn) WriteTo(p []byte, a net.Addr) (int, error) {
	if !c.guard.allow(a) {
		c.m.refused.WithLabelValues("own_address").Inc()
		return 0, errOwnAddress
	}
	n, err := c.PacketConn.WriteTo(p, a)
	if n > 0 {
		c.m.toPeers.Add(float64(n))
	}
	return n, err
}

// pionLogs sends pion's log lines to slog at Debug: they are mostly about
// malformed or unauthenticated packets from the network, which must not
// flood an operator's log. pion logs every relayed packet at Debug, so
// nothing is formatted unless Debug is on.
type pionLogs struct{ l *slog.Logger }

func (p pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{p.l.With("component", "turn", "scope", scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) log(msg string) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(msg)
	}
}

func (p pionLogger) logf(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Trace(string)              {}
func (p pionLogger) Tracef(string, ...any)     {}
func (p pionLogger) Debug(msg string)          { p.log(msg) }
func (p pionLogger) Debugf(f string, a ...any) { p.logf(f, a...) }
func (p pionLogger) Info(msg string)           { p.log(msg) }
func (p pionLogger) Infof(f string, a ...any)  { p.logf(f, a...) }
func (p pionLogger) Warn(msg string)           { p.log(msg) }
func (p pionLogger) Warnf(f string, a ...any)  { p.logf(f, a...) }
func (p pionLogger) Error(msg string)          { p.log(msg) }
func (p pionLogger) Errorf(f string, a ...any) { p.logf(f, a...) }
