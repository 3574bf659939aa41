// Package ratelimit is a keyed token bucket: one bucket per key (an IP
// address, a username), refilled continuously, with an injectable clock so
// tests can move time instead of sleeping.
package ratelimit

import (
	"sync"
	"time"
)

// sweepAt is the number of keys above which Allow drops full buckets; a
// full bucket behaves exactly like a missing one, so dropping it is free
// and keeps memory bounded by the keys that are actually being limited.
const sweepAt = 10000

// Limiter allows Rate events per Interval per key, with bursts of up to
// Burst. A nil *Limiter allows everything (a disabled limit).
type Limiter struct {
	perSec float64
	burst  float64
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter allowing rate events per interval per key with the
// given burst. rate <= 0 or burst <= 0 returns nil: no limit. now nil
// means time.Now.
func New(rate int, interval time.Duration, burst int, now func() time.Time) *Limiter {
	if rate <= 0 || burst <= 0 || interval <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		perSec:  float64(rate) / interval.Seconds(),
		burst:   float64(burst),
		now:     now,
		buckets: map[string]*bucket{},
	}
}

// Allow takes one token from key's bucket and reports whether there was one.
func (l *Limiter) Allow(key string) bool { return l.AllowN(key, 1) }

// AllowN takes n tokens from key's bucket if it holds at least n; otherwise
// it takes none and reports false. n larger than the burst never succeeds.
func (l *Limiter) AllowN(key string, n int) bool {
	if l == nil {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= sweepAt {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	// A clock that goes backwards leaves last alone, so returning to the
	// present mints no tokens for time already counted.
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Seconds() * l.perSec
		if b.tokens > l.burst {
			b.tokens = l.burst
		}
		b.last = now
	}
}

// sweep drops buckets that have refilled completely.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// Len returns how many keys are tracked (for tests and metrics).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
