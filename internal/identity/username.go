// Package identity holds what names a device and proves its keys: the
// username rules, the account-signed device list and the device-signed
// prekey bundle (docs/protocol.md §3).
package identity

import (
	"errors"
	"fmt"
	"strings"
)

// Username limits (docs/protocol.md §3.1).
const (
	MinUsernameLen = 3
	MaxUsernameLen = 32
)

// ErrBadUsername is wrapped by every username error.
var ErrBadUsername = errors.New("invalid username")

// reserved names cannot be registered; they could impersonate the service.
var reserved = map[string]bool{
	"admin": true, "administrator": true, "root": true, "system": true,
	"hush": true, "support": true, "security": true, "server": true,
	"moderator": true, "staff": true, "official": true, "help": true,
	"info": true, "abuse": true, "postmaster": true, "webmaster": true,
	"noreply": true, "no_reply": true, "everyone": true, "nobody": true,
}

// NormalizeUsername lower-cases u and checks the rules: 3–32 characters of
// a-z 0-9 _ . (docs/protocol.md §3.1). It does not check the reserved list.
func NormalizeUsername(u string) (string, error) {
	// Only ASCII is lower-cased: Unicode case folding would map other
	// characters (the Kelvin sign, dotted I) onto a-z.
	for i := 0; i < len(u); i++ {
		if u[i] >= 0x80 {
			return "", fmt.Errorf("%w: %q may only contain a-z, 0-9, '_' and '.'", ErrBadUsername, clip(u))
		}
	}
	if len(u) < MinUsernameLen || len(u) > MaxUsernameLen {
		return "", fmt.Errorf("%w: %q must be %d to %d characters", ErrBadUsername, clip(u), MinUsernameLen, MaxUsernameLen)
	}
	n := strings.ToLower(u)
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return "", fmt.Errorf("%w: %q may only contain a-z, 0-9, '_' and '.'", ErrBadUsername, clip(u))
		}
	}
	return n, nil
}

// IsReserved reports whether a normalized username is reserved.
func IsReserved(u string) bool { return reserved[u] }

// checkCanonical accepts only a username already in normal form; used when
// parsing signed structures, where a second spelling must not exist.
func checkCanonical(u string) error {
	n, err := NormalizeUsername(u)
	if err != nil {
		return err
	}
	if n != u {
		return fmt.Errorf("%w: %q is not lower-case", ErrBadUsername, clip(u))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
