// Package safety computes safety numbers (docs/protocol.md §8): Signal's
// numeric-fingerprint construction over (username, account public key)
// for both sides of a conversation.
package safety

import (
	"bytes"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/hush-chat/hush/internal/keys"
)

// Constants (docs/protocol.md §8).
const (
	FingerprintVersion = 0    // hashed first, as in Signal's version 0
	Iterations         = 5200 // SHA-512 iterations
	ScannableVersion   = 1
	Digits             = 60
	scannablePrefix    = "HUSH-SN1:"
	fingerprintLen     = 32 // bytes of each side's hash kept for the QR form
)

// ErrMismatch means a scanned or typed safety number differs.
var ErrMismatch = errors.New("safety: safety numbers do not match")

// ErrMalformed means a scanned payload could not be parsed.
var ErrMalformed = errors.New("safety: malformed safety number")

// fingerprint is Signal's iterated hash: h1 = SHA-512(version || key ||
// id || key), h(i+1) = SHA-512(h(i) || key), Iterations hashes in all.
func fingerprint(username string, key keys.AccountPublic) []byte {
	return iteratedHash([]byte(username), key.Bytes(), Iterations)
}

func iteratedHash(id, key []byte, iterations int) []byte {
	var ver [2]byte
	binary.BigEndian.PutUint16(ver[:], FingerprintVersion)
	h := sha512.New()
	h.Write(ver[:])
	h.Write(key)
	h.Write(id)
	h.Write(key)
	sum := h.Sum(nil)
	for i := 1; i < iterations; i++ {
		h.Reset()
		h.Write(sum)
		h.Write(key)
		sum = h.Sum(sum[:0])
	}
	return sum
}

// displayable renders the first 30 bytes as 30 digits: six 5-byte chunks,
// each a big-endian integer mod 100000.
func displayable(fp []byte) string {
	var sb strings.Builder
	for i := 0; i < 30; i += 5 {
		var chunk uint64
		for _, b := range fp[i : i+5] {
			chunk = chunk<<8 | uint64(b)
		}
		fmt.Fprintf(&sb, "%05d", chunk%100000)
	}
	return sb.String()
}

// Number is the safety number between us and a peer.
type Number struct {
	local, remote []byte // full fingerprints
	digits        string
}

// New computes the safety number of (localUser, localKey) with
// (remoteUser, remoteKey). Both sides get the same digits.
func New(localUser string, localKey keys.AccountPublic, remoteUser string, remoteKey keys.AccountPublic) *Number {
	l := fingerprint(localUser, localKey)
	r := fingerprint(remoteUser, remoteKey)
	return &Number{local: l, remote: r, digits: combine(l, r)}
}

// combine orders the two 30-digit halves so both sides agree.
func combine(l, r []byte) string {
	ld, rd := displayable(l), displayable(r)
	if rd < ld {
		return rd + ld
	}
	return ld + rd
}

// Digits is the 60-digit number.
func (n *Number) Digits() string { return n.digits }

// String groups the digits in twelve blocks of five.
func (n *Number) String() string {
	var parts []string
	for i := 0; i < Digits; i += 5 {
		parts = append(parts, n.digits[i:i+5])
	}
	return strings.Join(parts, " ")
}

// Scannable is the QR payload: a text prefix then hex of version || local
// fingerprint || remote fingerprint (first 32 bytes of each).
func (n *Number) Scannable() string {
	b := []byte{ScannableVersion}
	b = append(b, n.local[:fingerprintLen]...)
	b = append(b, n.remote[:fingerprintLen]...)
	return scannablePrefix + fmt.Sprintf("%X", b)
}

// CompareScanned checks a payload scanned from the peer's screen: their
// local fingerprint must be our remote one and the other way round.
func (n *Number) CompareScanned(payload string) error {
	hexPart, ok := strings.CutPrefix(payload, scannablePrefix)
	if !ok {
		return fmt.Errorf("%w: missing %q prefix", ErrMalformed, scannablePrefix)
	}
	var b []byte
	if _, err := fmt.Sscanf(hexPart, "%X", &b); err != nil || len(b) != 1+2*fingerprintLen || len(hexPart) != 2*len(b) {
		return fmt.Errorf("%w: bad payload", ErrMalformed)
	}
	if b[0] != ScannableVersion {
		return fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	theirLocal, theirRemote := b[1:1+fingerprintLen], b[1+fingerprintLen:]
	if subtle.ConstantTimeCompare(theirLocal, n.remote[:fingerprintLen]) != 1 ||
		subtle.ConstantTimeCompare(theirRemote, n.local[:fingerprintLen]) != 1 {
		return ErrMismatch
	}
	return nil
}

// CompareDigits checks a number the user typed or read out; spaces are
// ignored.
func (n *Number) CompareDigits(typed string) error {
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, typed)
	if len(clean) != Digits {
		return fmt.Errorf("%w: %d digits, want %d", ErrMalformed, len(clean), Digits)
	}
	if !bytes.Equal([]byte(clean), []byte(n.digits)) {
		return ErrMismatch
	}
	return nil
}
