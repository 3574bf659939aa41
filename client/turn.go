package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hush-chat/hush/wire"
)

// ErrNoTURN: the server runs no TURN relay; calls can still use direct
// (host and server-reflexive) candidates, but not relay-only mode.
var ErrNoTURN = errors.New("the server runs no TURN relay")

// Bounds on what a server may hand out (docs/protocol.md §13.3).
const (
	maxTURNURLs       = 8
	maxTURNURLLen     = 256
	maxTURNCredential = 512 // STUN's USERNAME limit is 513 bytes
)

// TURNCredentials are short-lived credentials for the server's TURN relay
// (docs/protocol.md §13.3), ready for a WebRTC ICE server entry.
type TURNCredentials struct {
	URLs       []string  // turn:HOST:PORT?transport=udp, ...=tcp
	Username   string    // "<unix expiry>:<opaque device tag>"
	Credential string    // the password; a secret: never log it
	Expires    time.Time // by the server's clock
}

// String leaves the credential out.
func (t *TURNCredentials) String() string {
	return fmt.Sprintf("TURN %s until %s", strings.Join(t.URLs, " "), t.Expires.Format(time.RFC3339))
}

// TURNCredentials asks the server for TURN credentials for this device.
// A server without a relay answers ErrNoTURN.
func (c *Client) TURNCredentials(ctx context.Context) (*TURNCredentials, error) {
	r, err := c.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_TurnCredentials{TurnCredentials: &wire.TurnCredentialsRequest{}}})
	var se *ServerError
	if errors.As(err, &se) && se.Code == "no_turn" {
		return nil, ErrNoTURN
	}
	if err != nil {
		return nil, err
	}
	return parseTURNCredentials(r.GetTurnCredentials())
}

// parseTURNCredentials checks what the server sent: at least one URL,
// every URL a turn: or turns: URL with an explicit port, and a username and
// credential of printable ASCII.
func parseTURNCredentials(w *wire.TurnCredentials) (*TURNCredentials, error) {
	if w == nil {
		return nil, fmt.Errorf("%w: expected TURN credentials", ErrProtocol)
	}
	if len(w.GetUrls()) == 0 || len(w.GetUrls()) > maxTURNURLs {
		return nil, fmt.Errorf("%w: TURN credentials with %d URLs (want 1 to %d)", ErrProtocol, len(w.GetUrls()), maxTURNURLs)
	}
	for _, u := range w.GetUrls() {
		if err := checkTURNURL(u); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
	}
	for what, v := range map[string]string{"username": w.GetUsername(), "credential": w.GetCredential()} {
		if v == "" || len(v) > maxTURNCredential {
			return nil, fmt.Errorf("%w: TURN %s must be 1 to %d bytes", ErrProtocol, what, maxTURNCredential)
		}
		for i := range len(v) {
			if v[i] < 0x21 || v[i] > 0x7e {
				return nil, fmt.Errorf("%w: TURN %s is not printable ASCII", ErrProtocol, what)
			}
		}
	}
	if w.GetExpiresMs() <= 0 {
		return nil, fmt.Errorf("%w: TURN credentials without an expiry", ErrProtocol)
	}
	return &TURNCredentials{
		URLs:       append([]string(nil), w.GetUrls()...),
		Username:   w.GetUsername(),
		Credential: w.GetCredential(),
		Expires:    time.UnixMilli(w.GetExpiresMs()),
	}, nil
}

// checkTURNURL accepts RFC 7065 URLs: turn[s]:HOST:PORT with an optional
// ?transport=udp|tcp, HOST an IP address ([v6]) or DNS name.
func checkTURNURL(u string) error {
	bad := func(why string) error { return fmt.Errorf("TURN URL %q: %s", clipURL(u), why) }
	if len(u) > maxTURNURLLen {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(u, "turn:")
	if !ok {
		if rest, ok = strings.CutPrefix(u, "turns:"); !ok {
			return bad("scheme must be turn: or turns:")
		}
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery && query != "transport=udp" && query != "transport=tcp" {
		return bad("the only query allowed is transport=udp or transport=tcp")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return bad("want HOST:PORT")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || port[0] == '0' {
		return bad("bad port")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if host == "" || strings.ContainsAny(host, "[]") {
		return bad("bad host")
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return bad("bad host")
		}
		for i := range len(label) {
			ch := label[i]
			if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-') {
				return bad("bad host")
			}
		}
	}
	return nil
}

// clipURL bounds what an error repeats of a hostile URL.
func clipURL(u string) string {
	if len(u) > 64 {
		return u[:64] + "..."
	}
	return u
}
