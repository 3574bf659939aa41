package server

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hush-chat/hush/internal/turnrelay"
	"github.com/hush-chat/hush/wire"
)

// DefaultTURNTTL is how long TURN credentials last unless
// TURNConfig.TTL says otherwise: long enough to set up a call (an
// allocation, once made, is refreshed with the same credentials until
// they expire), short enough that a leaked one is soon useless.
const DefaultTURNTTL = 10 * time.Minute

// maxTURNTTL bounds TURNConfig.TTL: credentials are bearer tokens.
const maxTURNTTL = 24 * time.Hour

// TURNConfig configures the built-in TURN relay (docs/protocol.md §13.3).
type TURNConfig struct {
	// Listen is the relay's UDP and TCP address, e.g. "127.0.0.1:3478";
	// empty runs no relay and refuses turn_credentials requests.
	Listen string
	// PublicIP is the address clients and peers reach the relay at (nil:
	// Listen's IP, which must then be a specific address).
	PublicIP net.IP
	// AllowPrivate lets the relay send to loopback and private addresses:
	// local deployments and tests only.
	AllowPrivate bool
	// TTL is the lifetime of issued credentials (zero: DefaultTURNTTL).
	TTL time.Duration
	// SecretFile holds the TURN REST shared secret (at least 16 bytes,
	// surrounding white space ignored), for deployments whose other TURN
	// servers (coturn's static-auth-secret) must accept the same
	// credentials. Empty: the secret is derived from the server key, so
	// nodes sharing the key share it.
	SecretFile string
	// MinPort and MaxPort bound the relayed UDP ports (both or neither).
	MinPort, MaxPort uint16
	// MaxAllocsPerDevice and MaxAllocsPerIP cap live allocations (zero:
	// turnrelay's defaults; negative: no cap).
	MaxAllocsPerDevice, MaxAllocsPerIP int
}

// startTURN starts the relay if the configuration asks for one.
func (s *Server) startTURN() error {
	c := s.cfg.TURN
	if c.Listen == "" {
		return nil
	}
	s.turnTTL = c.TTL
	if s.turnTTL == 0 {
		s.turnTTL = DefaultTURNTTL
	}
	if s.turnTTL < time.Minute || s.turnTTL > maxTURNTTL {
		return fmt.Errorf("server: TURN credential TTL %v out of range 1m..%v", c.TTL, maxTURNTTL)
	}
	secret, err := s.turnSecretFor(c.SecretFile)
	if err != nil {
		return err
	}
	r, err := turnrelay.Listen(turnrelay.Config{
		Listen:       c.Listen,
		PublicIP:     c.PublicIP,
		AllowPrivate: c.AllowPrivate,
		Secret:       secret,
		MinPort:      c.MinPort,
		MaxPort:      c.MaxPort,

		MaxAllocsPerSubject: c.MaxAllocsPerDevice,
		MaxAllocsPerIP:      c.MaxAllocsPerIP,
		Logger:              s.log,
		Registerer:          s.metrics.reg,
		Now:                 s.now,
	})
	if err != nil {
		return fmt.Errorf("server: TURN relay: %w", err)
	}
	s.turn, s.turnSecret = r, secret
	s.log.Info("TURN relay listening", "addr", r.Addr().String(), "public", r.PublicAddr().String(), "allow_private", c.AllowPrivate)
	return nil
}

// turnSecretFor reads the shared secret from path, or derives it.
func (s *Server) turnSecretFor(path string) ([]byte, error) {
	if path == "" {
		return turnrelay.DeriveSecret(s.key.Seed())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: read TURN secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < turnrelay.MinSecretSize {
		return nil, fmt.Errorf("server: the TURN secret in %s is shorter than %d bytes", path, turnrelay.MinSecretSize)
	}
	return b, nil
}

// TURNAddr is the relay's bound address, or nil when it runs none.
func (s *Server) TURNAddr() *net.UDPAddr {
	if s.turn == nil {
		return nil
	}
	return s.turn.Addr()
}

// turnCredentials answers turn_credentials (§13.3) with credentials for
// this device, valid for the configured TTL.
func (ss *session) turnCredentials() (*wire.ServerFrame, error) {
	s := ss.s
	if s.turn == nil {
		return nil, apiErr(codeNoTURN, "this server runs no TURN relay")
	}
	if !s.turnLimit.Allow(ss.ref.Username) {
		return nil, apiErr(codeRateLimited, "too many TURN credential requests; slow down")
	}
	tag, err := turnrelay.DeviceTag(s.turnSecret, ss.ref.Username, ss.ref.ID)
	if err != nil {
		return nil, err
	}
	cred, err := turnrelay.Issue(s.turnSecret, tag, s.now().Add(s.turnTTL))
	if err != nil {
		return nil, err
	}
	return &wire.ServerFrame{Body: &wire.ServerFrame_TurnCredentials{TurnCredentials: &wire.TurnCredentials{
		Urls:       s.turn.URLs(),
		Username:   cred.Username,
		Credential: cred.Password,
		ExpiresMs:  cred.Expires.UnixMilli(),
	}}}, nil
}
