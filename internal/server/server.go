// Package server is the Hush server: registration over HTTP, then one
// WebSocket per device for authentication, prekeys, sending and delivery
// (docs/protocol.md §9). It holds only public keys and ciphertext.
//
// Layout: server.go (lifecycle), http.go (HTTP endpoints), register.go,
// session.go (one WebSocket) with hijack.go (its buffers), auth.go,
// requests.go (WebSocket requests), sendqueue.go (storing sends),
// sealed.go (sealed sends, delivery tokens, sender certificates),
// devicelist.go (device-list changes, account lookup, key reset),
// blocking.go, provision.go (the linking relay), prekeys.go, delivery.go
// (pushing queued messages, the sweep), bus.go (wake-ups), devcache.go,
// cluster.go with clustermsg.go and provrelay.go (several nodes sharing
// one store), expiry.go, metrics.go, log.go, errors.go, limits.go,
// serverkey.go, blobs.go (encrypted file blobs), turn.go (the built-in
// TURN relay, internal/turnrelay, and its credentials). Subpackages: pow
// (proof of work), ratelimit.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/server/pow"
	"github.com/hush-chat/hush/internal/server/ratelimit"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/internal/store/sqlite"
	"github.com/hush-chat/hush/internal/turnrelay"
)

// Config configures a Server.
type Config struct {
	Listen string // for ListenAndServe, e.g. "127.0.0.1:8090"; port 0 picks one
	// DataDir is created 0700 if missing and holds hush.db and server.key.
	// It may be empty only when both Store and ServerKeyFile are given.
	DataDir string
	// ServerKeyFile is the server's long-term key (default
	// DataDir/server.key), created 0600 if missing. Every node of one
	// deployment must be given the same key: clients pin it, and sender
	// certificates and proof-of-work challenges of one node must verify
	// on the others.
	ServerKeyFile string
	// PowBits is the registration proof-of-work difficulty (0 turns it
	// off; at most pow.MaxBits). pow.DefaultBits is the suggested value.
	PowBits int
	// TLSCert and TLSKey are PEM files; with both set the server speaks
	// HTTPS and WSS only.
	TLSCert, TLSKey string
	Logger          *slog.Logger     // nil: discard
	Store           store.Store      // nil: open SQLite at DataDir/hush.db (then owned and closed by the server)
	Limits          Limits           // zero fields: production defaults (see Limits)
	Now             func() time.Time // nil: time.Now

	// Several nodes sharing one Store (docs/deploy.md) need all three of
	// Bus, LowBus and Control, or none (one node: in-process buses).
	// *natsbus.Bus implements Bus and Control; LowBus is a second one
	// under a sibling prefix.
	//
	// Bus carries "device X has new mail" wake-ups between nodes.
	Bus Bus
	// LowBus carries "device X's one-time prekeys run low" wake-ups.
	LowBus Bus
	// Control carries the events that keep nodes consistent (cluster.go):
	// cache invalidations, disconnects of removed devices, link payloads
	// for a linking device connected to another node.
	Control Control
	// SweepInterval is how often each connection re-reads its queue in
	// case a wake-up was lost (jittered ±25%). Zero means 30s when Bus is
	// set and never with the in-process bus, which cannot lose one;
	// negative turns the sweep off.
	SweepInterval time.Duration

	// BlobDir holds encrypted file blobs (§9.13; default DataDir/blobs),
	// created 0700 if missing. Nodes sharing one Store must share one
	// BlobDir too (a shared file system), or a file uploaded through one
	// node is not found through another. Empty with an empty DataDir
	// means this server stores no files.
	BlobDir string
	// MaxFileSize bounds one blob's ciphertext size in bytes (zero:
	// DefaultMaxFileSize).
	MaxFileSize int64
	// BlobQuota bounds the bytes one account keeps in live blobs and
	// unused grants (zero: DefaultBlobQuota; negative: no quota).
	BlobQuota int64

	// TURN is the built-in TURN relay (turn.go); the zero value runs none.
	TURN TURNConfig
}

// Server is a Hush server. Make one with New, run it with Serve or
// ListenAndServe; it serves once.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	store    store.Store
	ownStore bool
	key      keys.ServerPrivate
	pub      keys.ServerPublic
	pow      *pow.Issuer
	tls      *tls.Config
	metrics  *metrics
	handler  http.Handler

	devices *deviceCache
	blocks  *blockCache

	// cluster is the multi-node state (cluster.go); nil on a single node.
	cluster *cluster
	// sweepEvery is Config.SweepInterval resolved; 0 is off.
	sweepEvery time.Duration

	// blobs is the file blob directory (blobs.go); nil stores no files.
	blobs       *blobStore
	blobMu      sync.Mutex // serializes quota checks with grants
	maxFileSize int64
	blobQuota   int64

	// bus wakes a device's connections when a message is queued for it;
	// lowBus when its one-time prekeys run low.
	bus, lowBus Bus

	// turn is the built-in TURN relay (turn.go); nil runs none.
	turn       *turnrelay.Relay
	turnSecret []byte
	turnTTL    time.Duration

	regLimit, sendLimit, fetchLimit *ratelimit.Limiter
	sealedLimit, lookupLimit        *ratelimit.Limiter
	listLimit, provisionLimit       *ratelimit.Limiter
	turnLimit                       *ratelimit.Limiter
	maxConnsPerIP                   int
	authTimeout                     time.Duration // AuthTimeout; shorter in tests
	provisionLifetime               time.Duration // ProvisionLifetime; shorter in tests

	mu       sync.Mutex
	closing  bool
	sessions map[*session]struct{}
	// provisions are the linking devices waiting on GET /v1/provision,
	// by relay address (in memory only: never stored, never logged).
	provisions map[string]*provisionSlot
	connsByIP  map[string]int
	sessWG     sync.WaitGroup

	served    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New opens the store (unless one is given), loads or creates the server
// key, and prepares the handlers. It does not listen.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" && (cfg.Store == nil || cfg.ServerKeyFile == "") {
		return nil, errors.New("server: DataDir is required (it holds the server key and the SQLite database)")
	}
	multi := cfg.Bus != nil || cfg.LowBus != nil || cfg.Control != nil
	if multi && (cfg.Bus == nil || cfg.LowBus == nil || cfg.Control == nil) {
		return nil, errors.New("server: Bus, LowBus and Control go together (several nodes need all three)")
	}
	if multi && cfg.Store == nil {
		return nil, errors.New("server: several nodes must share one Store; the default SQLite file is this node's alone")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("server: TLS needs both a certificate and a key file")
	}
	if cfg.MaxFileSize < 0 {
		return nil, errors.New("server: MaxFileSize must not be negative")
	}
	if cfg.PowBits < 0 || cfg.PowBits > pow.MaxBits {
		return nil, fmt.Errorf("server: proof-of-work bits %d out of range 0..%d", cfg.PowBits, pow.MaxBits)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		now:        cfg.Now,
		bus:        NewLocalBus(),
		lowBus:     NewLocalBus(),
		sessions:   map[*session]struct{}{},
		provisions: map[string]*provisionSlot{},
		connsByIP:  map[string]int{},
		metrics:    newMetrics(),

		authTimeout:       AuthTimeout,
		provisionLifetime: ProvisionLifetime,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	// On one node every change to a device or blocked list goes through
	// this server, which drops the cached entry itself. With several,
	// another node's change arrives as a control event, which can be
	// lost: entries then also expire.
	var cacheTTL time.Duration
	if multi {
		s.bus, s.lowBus = cfg.Bus, cfg.LowBus
		cacheTTL = clusterCacheTTL
	}
	s.devices, s.blocks = newDeviceCache(cacheTTL), newBlockCache(cacheTTL)
	switch {
	case cfg.SweepInterval > 0:
		s.sweepEvery = cfg.SweepInterval
	case cfg.SweepInterval == 0 && multi:
		s.sweepEvery = DefaultSweepInterval
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("server: load TLS certificate: %w", err)
		}
		// HTTP/1.1 only: WebSockets upgrade over HTTP/1.1.
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("server: create data directory: %w", err)
		}
	}
	s.maxFileSize, s.blobQuota = cfg.MaxFileSize, cfg.BlobQuota
	if s.maxFileSize == 0 {
		s.maxFileSize = DefaultMaxFileSize
	}
	if s.blobQuota == 0 {
		s.blobQuota = DefaultBlobQuota
	}
	if blobDir := cfg.BlobDir; blobDir != "" || cfg.DataDir != "" {
		if blobDir == "" {
			blobDir = filepath.Join(cfg.DataDir, "blobs")
		}
		if err := os.MkdirAll(blobDir, 0o700); err != nil {
			return nil, fmt.Errorf("server: create blob directory: %w", err)
		}
		s.blobs = &blobStore{dir: blobDir}
	}
	keyPath := cfg.ServerKeyFile
	if keyPath == "" {
		keyPath = filepath.Join(cfg.DataDir, serverKeyFile)
	}
	key, created, err := loadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	s.key = key
	if created && (cfg.ServerKeyFile != "" || multi) {
		s.log.Warn("created a new server key; every node of this deployment must use this same file, and clients pin it", "file", keyPath)
	}
	s.pub = s.key.Public()
	secret, err := powSecret(s.key)
	if err != nil {
		return nil, err
	}
	s.pow = pow.NewIssuer(secret, cfg.PowBits, s.now)

	lim := cfg.Limits.withDefaults()
	s.regLimit = ratelimit.New(lim.RegistrationsPerHour, time.Hour, lim.RegistrationBurst, s.now)
	s.sendLimit = ratelimit.New(lim.SendsPerMinute, time.Minute, lim.SendBurst, s.now)
	s.fetchLimit = ratelimit.New(lim.PrekeyFetchesPerMinute, time.Minute, lim.PrekeyFetchBurst, s.now)
	s.sealedLimit = ratelimit.New(lim.SealedSendsPerMinute, time.Minute, lim.SealedSendBurst, s.now)
	s.lookupLimit = ratelimit.New(lim.AccountLookupsPerMinute, time.Minute, lim.AccountLookupBurst, s.now)
	s.listLimit = ratelimit.New(lim.DeviceListPostsPerHour, time.Hour, lim.DeviceListPostBurst, s.now)
	s.provisionLimit = ratelimit.New(lim.ProvisionsPerHour, time.Hour, lim.ProvisionBurst, s.now)
	s.turnLimit = ratelimit.New(lim.TURNCredentialsPerMinute, time.Minute, lim.TURNCredentialsBurst, s.now)
	s.maxConnsPerIP = lim.MaxConnsPerIP

	s.store = cfg.Store
	if s.store == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "hush.db"))
		if err != nil {
			return nil, fmt.Errorf("server: open store: %w", err)
		}
		s.store, s.ownStore = db, true
	}
	s.handler = s.routes()
	if err := s.startTURN(); err != nil {
		if s.ownStore {
			s.store.Close()
		}
		return nil, err
	}
	if multi {
		// Last: nothing may fail after the subscriptions are made
		// (Close cancels them).
		if err := s.joinCluster(cfg.Control); err != nil {
			if s.turn != nil {
				s.turn.Close()
			}
			if s.ownStore {
				s.store.Close()
			}
			return nil, err
		}
	}
	return s, nil
}

// ServerKey is the server's long-term public key, pinned by clients.
func (s *Server) ServerKey() keys.ServerPublic { return s.pub }

// Handler serves the whole HTTP API. Serve uses it; tests may mount it
// elsewhere, but then graceful shutdown of WebSockets is theirs to do.
func (s *Server) Handler() http.Handler { return s.handler }

// ListenAndServe listens on cfg.Listen, logs the bound address once (at
// Info, msg "listening", attribute addr) and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	addr := s.cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:8090"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	s.log.Info("listening", "addr", ln.Addr().String())
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then shuts down gracefully: it
// stops accepting, closes every WebSocket with status 1001 (going away),
// waits up to ShutdownTimeout for requests in flight, and closes the
// store if the server opened it. It returns nil after a shutdown caused
// by ctx, or the error that stopped the listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("server: Serve called twice")
	}
	defer s.Close()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	bgCtx, stopBG := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { s.expiryLoop(bgCtx) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		serveErr <- err // the shutdown below reads it again
	}

	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	s.goAwayAll()
	if e := hs.Shutdown(sctx); e != nil {
		s.log.Warn("shutdown: HTTP requests still running at the deadline", "err", e)
		hs.Close()
	}
	s.waitSessions(sctx)
	stopBG()
	bg.Wait()
	if e := <-serveErr; err == nil && !errors.Is(e, http.ErrServerClosed) {
		err = e
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.log.Info("stopped")
	return err
}

// Close releases the store if the server opened it. Serve calls it; call
// it yourself only for a Server that is never served.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.leaveCluster()
		if s.turn != nil {
			s.turn.Close()
		}
		if s.ownStore {
			s.closeErr = s.store.Close()
		}
	})
	return s.closeErr
}

// acquireConn admits one more WebSocket from ip, unless the server is
// shutting down or ip is at its limit. A true result must be paired with
// releaseConn.
func (s *Server) acquireConn(ip string) (ok bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, "server is shutting down"
	}
	if s.maxConnsPerIP > 0 && s.connsByIP[ip] >= s.maxConnsPerIP {
		return false, "too many connections from your address"
	}
	s.connsByIP[ip]++
	s.sessWG.Add(1)
	return true, ""
}

func (s *Server) releaseConn(ip string) {
	s.mu.Lock()
	if s.connsByIP[ip]--; s.connsByIP[ip] <= 0 {
		delete(s.connsByIP, ip)
	}
	s.mu.Unlock()
	s.sessWG.Done()
}

// track registers a live session so shutdown can reach it; false means
// shutdown began meanwhile and the session must go away at once.
func (s *Server) track(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.sessions[ss] = struct{}{}
	return true
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// disconnect closes every connection of a device that was removed from
// its account's device list: it is no longer authenticated. Other nodes
// are told to do the same (cluster.go).
func (s *Server) disconnect(ref store.DeviceRef, except *session) {
	s.disconnectLocal(ref, except)
	s.publishDisconnect(ref)
}

// disconnectLocal closes this node's connections of ref except one.
func (s *Server) disconnectLocal(ref store.DeviceRef, except *session) {
	s.mu.Lock()
	var list []*session
	for ss := range s.sessions {
		if ss != except && ss.authed.Load() && ss.ref == ref {
			list = append(list, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range list {
		go ss.conn.Close(websocket.StatusPolicyViolation, "device removed from the account")
	}
}

// goAwayAll marks the server closing and tells every session and
// provisioning socket to close with status 1001.
func (s *Server) goAwayAll() {
	s.mu.Lock()
	s.closing = true
	list := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		list = append(list, ss)
	}
	var slots []*provisionSlot
	for _, p := range s.provisions {
		slots = append(slots, p)
	}
	s.mu.Unlock()
	for _, ss := range list {
		go ss.goAway()
	}
	for _, p := range slots {
		go p.conn.Close(websocket.StatusGoingAway, "server shutting down")
	}
}

// waitSessions waits for every WebSocket handler to return, or for ctx;
// at the deadline the remaining connections are cut.
func (s *Server) waitSessions(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.sessWG.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.sessions) + len(s.provisions)
	for ss := range s.sessions {
		ss.conn.CloseNow()
	}
	for _, p := range s.provisions {
		p.conn.CloseNow()
	}
	s.mu.Unlock()
	s.log.Warn("shutdown: cut WebSocket connections still open at the deadline", "count", n)
	// A handler stuck in a store call ends within requestTimeout; do not
	// wait that long to close the store under it.
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}
