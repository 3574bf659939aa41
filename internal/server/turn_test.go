package server

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/turn/v4"

	"github.com/hush-chat/hush/internal/turnrelay"
	"github.com/hush-chat/hush/wire"
)

var turnRequest = &wire.ClientFrame{Body: &wire.ClientFrame_TurnCredentials{TurnCredentials: &wire.TurnCredentialsRequest{}}}

func withTURN(edit func(*TURNConfig)) func(*Config) {
	return func(c *Config) {
		c.TURN = TURNConfig{Listen: "127.0.0.1:0", AllowPrivate: true}
		if edit != nil {
			edit(&c.TURN)
		}
	}
}

// allocateWith makes a TURN allocation on the relay at addr over UDP.
func allocateWith(t *testing.T, addr, user, pass string) (net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: addr, STUNServerAddr: addr, Conn: conn, Username: user, Password: pass, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, err
}

// TestTURNCredentialsWork: an authenticated device gets credentials for
// the relay's URLs, tagged with its own device tag, valid for the TTL,
// and they allocate on the relay; the log never holds the password.
func TestTURNCredentialsWork(t *testing.T) {
	ts := startServer(t, withTURN(func(c *TURNConfig) { c.TTL = 3 * time.Minute }))
	alice := newUser(t, "alice", 1)
	ts.mustRegister(t, alice)
	before := time.Now()
	r := ts.dial(t, alice).do(t, turnRequest).GetTurnCredentials()
	if r == nil {
		t.Fatal("no TURN credentials")
	}
	addr := ts.srv.TURNAddr().String()
	if got, want := strings.Join(r.GetUrls(), " "), "turn:"+addr+"?transport=udp turn:"+addr+"?transport=tcp"; got != want {
		t.Errorf("URLs %q, want %q", got, want)
	}
	exp, subject, err := turnrelay.ParseUsername(r.GetUsername())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := turnrelay.DeriveSecret(ts.srv.key.Seed())
	if err != nil {
		t.Fatal(err)
	}
	if tag, _ := turnrelay.DeviceTag(secret, "alice", alice.dev.ID); subject != tag {
		t.Errorf("subject %q, want alice's device tag %q", subject, tag)
	}
	if ttl := exp.Sub(before); ttl < 3*time.Minute-time.Second || ttl > 3*time.Minute+time.Second {
		t.Errorf("credentials last %v, want 3m", ttl)
	}
	if r.GetExpiresMs() != exp.UnixMilli() {
		t.Errorf("expires_ms %d, username says %d", r.GetExpiresMs(), exp.UnixMilli())
	}
	if _, err := allocateWith(t, addr, r.GetUsername(), r.GetCredential()); err != nil {
		t.Fatalf("allocate with the issued credentials: %v", err)
	}
	if _, err := allocateWith(t, addr, r.GetUsername(), "AAAA"+r.GetCredential()[4:]); err == nil {
		t.Fatal("allocated with a changed password")
	}
	if bytes.Contains(ts.logs.Bytes(), []byte(r.GetCredential())) || bytes.Contains(ts.logs.Bytes(), secret) {
		t.Fatal("the server log holds the TURN password or secret")
	}
}

// TestTURNCredentialsNeedAuth: before authentication the request is
// refused like any other and the socket closed.
func TestTURNCredentialsNeedAuth(t *testing.T) {
	ts := startServer(t, withTURN(nil))
	c := ts.dialRaw(t)
	if readFrame(t, c).GetChallenge() == nil {
		t.Fatal("no challenge")
	}
	f := &wire.ClientFrame{Id: 1, Body: turnRequest.Body}
	writeFrame(t, c, f)
	wantError(t, readFrame(t, c), codeUnauthorized)
	wantClosed(t, c, websocket.StatusPolicyViolation)
}

func TestTURNCredentialsRefused(t *testing.T) {
	t.Run("no relay", func(t *testing.T) {
		ts := startServer(t)
		u := newUser(t, "alice", 1)
		ts.mustRegister(t, u)
		wantError(t, ts.dial(t, u).do(t, turnRequest), codeNoTURN)
	})
	t.Run("rate limited", func(t *testing.T) {
		ts := startServer(t, withTURN(nil), func(c *Config) {
			c.Limits.TURNCredentialsPerMinute, c.Limits.TURNCredentialsBurst = 1, 2
		})
		u := newUser(t, "alice", 1)
		ts.mustRegister(t, u)
		c := ts.dial(t, u)
		for range 2 {
			if c.do(t, turnRequest).GetTurnCredentials() == nil {
				t.Fatal("refused within the burst")
			}
		}
		wantError(t, c.do(t, turnRequest), codeRateLimited)
	})
}

// TestTURNSecretShared: two nodes with one server key accept each other's
// credentials; a secret file replaces the derived secret with one another
// TURN server (coturn's static-auth-secret) can share.
func TestTURNSecretShared(t *testing.T) {
	a := startServer(t, withTURN(nil))
	u := newUser(t, "alice", 1)
	a.mustRegister(t, u)
	keyFile := filepath.Join(a.dir, serverKeyFile)
	b := startServer(t, withTURN(nil), func(c *Config) { c.ServerKeyFile = keyFile })
	r := a.dial(t, u).do(t, turnRequest).GetTurnCredentials()
	if _, err := allocateWith(t, b.srv.TURNAddr().String(), r.GetUsername(), r.GetCredential()); err != nil {
		t.Fatalf("node B refused node A's credentials: %v", err)
	}

	secretFile := filepath.Join(t.TempDir(), "turn-secret")
	if err := os.WriteFile(secretFile, []byte("  a shared coturn secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, withTURN(func(c *TURNConfig) { c.SecretFile = secretFile }))
	c.mustRegister(t, u)
	r = c.dial(t, u).do(t, turnRequest).GetTurnCredentials()
	exp, subject, err := turnrelay.ParseUsername(r.GetUsername())
	if err != nil {
		t.Fatal(err)
	}
	want, err := turnrelay.Issue([]byte("a shared coturn secret"), subject, exp)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetCredential() != want.Password {
		t.Fatal("the password is not HMAC-SHA1 under the file's secret")
	}
	if _, err := allocateWith(t, b.srv.TURNAddr().String(), r.GetUsername(), r.GetCredential()); err == nil {
		t.Fatal("a node with the derived secret accepted the file secret's credentials")
	}
}

func TestTURNConfigErrors(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	for name, tc := range map[string]TURNConfig{
		"ttl too short":       {Listen: "127.0.0.1:0", TTL: time.Second},
		"ttl too long":        {Listen: "127.0.0.1:0", TTL: 48 * time.Hour},
		"missing secret file": {Listen: "127.0.0.1:0", SecretFile: filepath.Join(t.TempDir(), "none")},
		"short secret":        {Listen: "127.0.0.1:0", SecretFile: short},
		"unspecified, no IP":  {Listen: "0.0.0.0:0"},
		"not an address":      {Listen: "nowhere"},
	} {
		if s, err := New(Config{DataDir: t.TempDir(), TURN: tc}); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}
