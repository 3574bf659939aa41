// Package pow is the registration proof of work (docs/protocol.md §9.2).
//
// The server hands out a stateless challenge
//
//	expiry (8 bytes, big-endian unix seconds) || random (16 bytes) ||
//	HMAC-SHA256(secret, expiry || random) (32 bytes)
//
// and the client finds a uint64 nonce such that
// SHA-256(challenge || username || uint64be(nonce)) starts with at least
// `bits` zero bits. Binding the username stops one solution from
// registering many names. The server remembers each accepted challenge
// until it expires, so a challenge is good for one registration.
package pow

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"
)

// Sizes and limits (docs/protocol.md §9.2).
const (
	expirySize    = 8
	randomSize    = 16
	macSize       = sha256.Size
	ChallengeSize = expirySize + randomSize + macSize

	// Validity is how long a challenge may be used after it is issued.
	Validity = 10 * time.Minute
	// DefaultBits takes about 65,000 hashes: well under a second on one core.
	DefaultBits = 16
	// MaxBits bounds the difficulty a server may ask for; 2^32 hashes is
	// already minutes of work.
	MaxBits = 32

	// maxRemembered bounds the used-challenge set. Reaching it needs that
	// many solved challenges within Validity, which the per-IP
	// registration limit makes impractical; if it happens, Verify refuses
	// rather than forgetting (forgetting would allow reuse).
	maxRemembered = 1 << 16
)

// Errors returned by Verify; all wrap ErrInvalid.
var (
	ErrInvalid  = errors.New("pow: invalid proof of work")
	ErrBusy     = errors.New("pow: too many registrations in progress")
	errMAC      = fmt.Errorf("%w: challenge was not issued by this server", ErrInvalid)
	errExpired  = fmt.Errorf("%w: challenge expired", ErrInvalid)
	errReused   = fmt.Errorf("%w: challenge already used", ErrInvalid)
	errWork     = fmt.Errorf("%w: not enough work", ErrInvalid)
	errTooEarly = fmt.Errorf("%w: challenge expiry is too far in the future", ErrInvalid)
)

// Challenge is a parsed challenge. Parse does not check the MAC.
type Challenge struct {
	Expiry time.Time
	Random [randomSize]byte
	MAC    [macSize]byte
}

// Parse splits an encoded challenge. It checks only the length.
func Parse(b []byte) (Challenge, error) {
	var c Challenge
	if len(b) != ChallengeSize {
		return c, fmt.Errorf("%w: challenge is %d bytes, want %d", ErrInvalid, len(b), ChallengeSize)
	}
	secs := binary.BigEndian.Uint64(b[:expirySize])
	if secs > 1<<62 {
		return c, fmt.Errorf("%w: challenge expiry out of range", ErrInvalid)
	}
	c.Expiry = time.Unix(int64(secs), 0)
	copy(c.Random[:], b[expirySize:expirySize+randomSize])
	copy(c.MAC[:], b[expirySize+randomSize:])
	return c, nil
}

// Issuer makes and checks challenges with one secret and difficulty.
type Issuer struct {
	secret []byte
	bits   int
	now    func() time.Time

	mu   sync.Mutex
	used map[[randomSize]byte]time.Time // random part -> expiry
}

// NewIssuer returns an issuer. bits is clamped to [0, MaxBits]; 0 turns
// the work check off (challenges are still issued and MACed, and Verify
// accepts any nonce). now nil means time.Now.
func NewIssuer(secret []byte, difficulty int, now func() time.Time) *Issuer {
	if now == nil {
		now = time.Now
	}
	difficulty = max(0, min(difficulty, MaxBits))
	return &Issuer{secret: append([]byte(nil), secret...), bits: difficulty, now: now, used: map[[randomSize]byte]time.Time{}}
}

// Bits is the difficulty clients must meet.
func (i *Issuer) Bits() int { return i.bits }

func (i *Issuer) mac(head []byte) []byte {
	m := hmac.New(sha256.New, i.secret)
	m.Write(head)
	return m.Sum(nil)
}

// New issues a challenge valid for Validity.
func (i *Issuer) New() []byte {
	b := make([]byte, expirySize+randomSize, ChallengeSize)
	binary.BigEndian.PutUint64(b, uint64(i.now().Add(Validity).Unix()))
	rand.Read(b[expirySize:]) // crypto/rand.Read never fails
	return append(b, i.mac(b)...)
}

// Verify checks that challenge was issued here, has not expired or been
// used, and that nonce meets the difficulty for username. On success the
// challenge is spent.
func (i *Issuer) Verify(challenge []byte, username string, nonce uint64) error {
	c, err := Parse(challenge)
	if err != nil {
		return err
	}
	if !hmac.Equal(c.MAC[:], i.mac(challenge[:expirySize+randomSize])) {
		return errMAC
	}
	now := i.now()
	if !now.Before(c.Expiry) {
		return errExpired
	}
	if c.Expiry.After(now.Add(Validity + time.Minute)) {
		return errTooEarly
	}
	if !Valid(challenge, username, nonce, i.bits) {
		return errWork
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, ok := i.used[c.Random]; ok {
		return errReused
	}
	if len(i.used) >= maxRemembered {
		for r, exp := range i.used {
			if !now.Before(exp) {
				delete(i.used, r)
			}
		}
		if len(i.used) >= maxRemembered {
			return ErrBusy
		}
	}
	i.used[c.Random] = c.Expiry
	return nil
}

// Spend marks challenge as used without checking any work, for a
// challenge another server node of the same deployment (same secret)
// accepted. It ignores a challenge that was not issued with this secret
// or has expired, so a flood of made-up challenges cannot fill the set;
// at maxRemembered it does nothing (Verify then refuses new ones anyway).
func (i *Issuer) Spend(challenge []byte) {
	c, err := Parse(challenge)
	if err != nil || !hmac.Equal(c.MAC[:], i.mac(challenge[:expirySize+randomSize])) {
		return
	}
	now := i.now()
	if !now.Before(c.Expiry) || c.Expiry.After(now.Add(Validity+time.Minute)) {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.used) < maxRemembered {
		i.used[c.Random] = c.Expiry
	}
}

// Forget drops spent challenges that have expired; the server calls it
// now and then so the set does not wait for maxRemembered to shrink.
func (i *Issuer) Forget() {
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	for r, exp := range i.used {
		if !now.Before(exp) {
			delete(i.used, r)
		}
	}
}

// hash is SHA-256(challenge || username || uint64be(nonce)).
func hash(challenge []byte, username string, nonce uint64) [sha256.Size]byte {
	h := sha256.New()
	h.Write(challenge)
	h.Write([]byte(username))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], nonce)
	h.Write(n[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// LeadingZeroBits counts the zero bits at the start of b.
func LeadingZeroBits(b []byte) int {
	n := 0
	for _, x := range b {
		if x != 0 {
			return n + bits.LeadingZeros8(x)
		}
		n += 8
	}
	return n
}

// Valid reports whether nonce is a solution for difficulty bits.
func Valid(challenge []byte, username string, nonce uint64, difficulty int) bool {
	if difficulty <= 0 {
		return true
	}
	h := hash(challenge, username, nonce)
	return LeadingZeroBits(h[:]) >= difficulty
}

// Solve searches nonces from 0 until one meets the difficulty or ctx is
// done. Each nonce succeeds with probability 2^-bits.
func Solve(ctx context.Context, challenge []byte, username string, difficulty int) (uint64, error) {
	if difficulty > MaxBits {
		return 0, fmt.Errorf("pow: difficulty %d above the maximum %d", difficulty, MaxBits)
	}
	for nonce := uint64(0); ; nonce++ {
		if nonce&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if Valid(challenge, username, nonce, difficulty) {
			return nonce, nil
		}
	}
}
