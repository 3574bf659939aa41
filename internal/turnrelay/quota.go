package turnrelay

import (
	"net"
	"sync"
	"time"
)

// quota caps live allocations per credential subject (one device) and per
// client IP. pion asks before it allocates and reports afterwards, and
// TURN over TCP asks from one goroutine per connection, so an approved
// request is held as pending until its allocation is reported; a pending
// one whose allocation failed is forgotten after pendingAllocTimeout.
type quota struct {
	perSubject, perIP int // 0: no cap
	mu                sync.Mutex
	active            map[string]int
	pending           map[string][]time.Time
}

func newQuota(perSubject, perIP int) *quota {
	return &quota{perSubject: perSubject, perIP: perIP, active: map[string]int{}, pending: map[string][]time.Time{}}
}

func quotaKeys(username string, src net.Addr) (subject, ip string) {
	_, sub, err := ParseUsername(username)
	if err != nil {
		sub = "?" // cannot happen: the username authenticated
	}
	return "s:" + sub, "i:" + remoteIP(src)
}

// reserve approves one more allocation for username from src, or refuses
// it when either cap is reached.
func (q *quota) reserve(username string, src net.Addr, now time.Time) bool {
	s, ip := quotaKeys(username, src)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.full(s, q.perSubject, now) || q.full(ip, q.perIP, now) {
		return false
	}
	q.pending[s] = append(q.pending[s], now)
	q.pending[ip] = append(q.pending[ip], now)
	return true
}

// full drops k's stale pending entries and reports whether k is at max.
func (q *quota) full(k string, max int, now time.Time) bool {
	p := q.pending[k]
	for len(p) > 0 && now.Sub(p[0]) > pendingAllocTimeout {
		p = p[1:]
	}
	if len(p) == 0 {
		delete(q.pending, k)
	} else {
		q.pending[k] = p
	}
	return max > 0 && q.active[k]+len(p) >= max
}

func (q *quota) created(username string, src net.Addr) {
	s, ip := quotaKeys(username, src)
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range []string{s, ip} {
		if p := q.pending[k]; len(p) > 0 {
			if q.pending[k] = p[1:]; len(p) == 1 {
				delete(q.pending, k)
			}
		}
		q.active[k]++
	}
}

func (q *quota) deleted(username string, src net.Addr) {
	s, ip := quotaKeys(username, src)
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range []string{s, ip} {
		if q.active[k]--; q.active[k] <= 0 {
			delete(q.active, k)
		}
	}
}
