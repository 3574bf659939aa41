package turnrelay

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v4"

	"github.com/hush-chat/hush/internal/primitive"
)

// Labels and sizes of docs/protocol.md §13.3.
const (
	// secretLabel derives the TURN REST secret from the server key's seed,
	// so every node of one deployment (which shares the key) shares it.
	secretLabel = "Hush-TURN-REST-Secret-v1"
	// tagLabel derives the key that turns a device into its opaque tag.
	tagLabel = "Hush-TURN-Device-Tag-v1"

	SecretSize    = 32 // bytes of a derived secret
	MinSecretSize = 16 // bytes of a secret read from a file

	maxSubjectLen = 64 // the opaque part of a username
	tagSize       = 12 // bytes of HMAC in a device tag (16 base64url characters)
)

// DeriveSecret derives the TURN REST secret from the server key's seed.
func DeriveSecret(seed []byte) ([]byte, error) {
	return primitive.HKDF(seed, nil, secretLabel, SecretSize)
}

// Credentials are one short-lived TURN username and password in the TURN
// REST API form (draft-uberti-behave-turn-rest-00): the username is
// "<unix expiry>:<subject>", the password base64(HMAC-SHA1(secret,
// username)). Any relay that knows the secret verifies them without
// state, coturn's static-auth-secret included.
type Credentials struct {
	Username string
	Password string
	Expires  time.Time
}

// Issue makes credentials for subject valid until expires (whole seconds,
// rounded down). subject must be a valid subject (see ParseUsername).
func Issue(secret []byte, subject string, expires time.Time) (Credentials, error) {
	if len(secret) < MinSecretSize {
		return Credentials{}, errors.New("turnrelay: secret too short")
	}
	if err := checkSubject(subject); err != nil {
		return Credentials{}, err
	}
	exp := expires.Unix()
	if exp <= 0 {
		return Credentials{}, errors.New("turnrelay: expiry before 1970")
	}
	user := strconv.FormatInt(exp, 10) + ":" + subject
	return Credentials{Username: user, Password: password(secret, user), Expires: time.Unix(exp, 0)}, nil
}

// DeviceTag is the subject for one device: stable, so per-device
// allocation caps hold across credentials, but opaque, so an observer of
// TURN traffic (which carries the username in clear) learns no username.
func DeviceTag(secret []byte, username string, device uint32) (string, error) {
	k, err := primitive.HKDF(secret, nil, tagLabel, primitive.HashSize)
	if err != nil {
		return "", err
	}
	mac := primitive.HMAC(k, fmt.Appendf(nil, "%s\x00%d", username, device))
	return base64.RawURLEncoding.EncodeToString(mac[:tagSize]), nil
}

func password(secret []byte, username string) string {
	return base64.StdEncoding.EncodeToString(primitive.HMACSHA1(secret, []byte(username)))
}

// ParseUsername splits a TURN REST username into its expiry and subject.
// It is strict: a decimal expiry of 1 to 12 digits without sign or
// leading zero, one colon, and a subject of 1 to 64 characters from
// [A-Za-z0-9._-].
func ParseUsername(u string) (expires time.Time, subject string, err error) {
	ts, subject, ok := strings.Cut(u, ":")
	if !ok {
		return time.Time{}, "", errors.New("turnrelay: username has no expiry")
	}
	if len(ts) == 0 || len(ts) > 12 || ts[0] == '0' {
		return time.Time{}, "", errors.New("turnrelay: username expiry is not a timestamp")
	}
	for _, c := range ts {
		if c < '0' || c > '9' {
			return time.Time{}, "", errors.New("turnrelay: username expiry is not a timestamp")
		}
	}
	exp, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", errors.New("turnrelay: username expiry is not a timestamp")
	}
	if err := checkSubject(subject); err != nil {
		return time.Time{}, "", err
	}
	return time.Unix(exp, 0), subject, nil
}

func checkSubject(s string) error {
	if len(s) == 0 || len(s) > maxSubjectLen {
		return fmt.Errorf("turnrelay: username subject must be 1 to %d characters", maxSubjectLen)
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return errors.New("turnrelay: username subject has a character outside [A-Za-z0-9._-]")
		}
	}
	return nil
}

// authKey is the relay's turn.AuthHandler logic: the long-term key for a
// username that parses and has not expired at now; false refuses (401).
func authKey(secret []byte, username, realm string, now time.Time) ([]byte, bool) {
	exp, _, err := ParseUsername(username)
	if err != nil || !now.Before(exp) {
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, password(secret, username)), true
}

// URLs are the ICE server URLs of a relay at host:port, UDP first.
func URLs(addr *net.UDPAddr) []string {
	hp := net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
	return []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
}
