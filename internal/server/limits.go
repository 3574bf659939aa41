package server

import "time"

// Limits are the abuse limits. A zero field takes the production default
// below; a negative field turns that limit off (for tests and benchmarks).
//
// Production defaults:
//
//	RegistrationsPerHour    10   per client IP
//	RegistrationBurst        5
//	SendsPerMinute        1200   per sending account (one send = one message, all its copies)
//	SendBurst             1000   (a client flushing a long outbox is not refused)
//	PrekeyFetchesPerMinute  60   per requesting account, counted per device bundle
//	PrekeyFetchBurst        60
//	MaxConnsPerIP           64   concurrent WebSocket connections
type Limits struct {
	RegistrationsPerHour, RegistrationBurst  int
	SendsPerMinute, SendBurst                int
	PrekeyFetchesPerMinute, PrekeyFetchBurst int
	MaxConnsPerIP                            int
}

// DefaultLimits returns the production defaults.
func DefaultLimits() Limits {
	return Limits{
		RegistrationsPerHour: 10, RegistrationBurst: 5,
		SendsPerMinute: 1200, SendBurst: 1000,
		PrekeyFetchesPerMinute: 60, PrekeyFetchBurst: 60,
		MaxConnsPerIP: 64,
	}
}

// Unlimited returns limits that are all off.
func Unlimited() Limits {
	return Limits{-1, -1, -1, -1, -1, -1, -1}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	pick := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	return Limits{
		RegistrationsPerHour:   pick(l.RegistrationsPerHour, d.RegistrationsPerHour),
		RegistrationBurst:      pick(l.RegistrationBurst, d.RegistrationBurst),
		SendsPerMinute:         pick(l.SendsPerMinute, d.SendsPerMinute),
		SendBurst:              pick(l.SendBurst, d.SendBurst),
		PrekeyFetchesPerMinute: pick(l.PrekeyFetchesPerMinute, d.PrekeyFetchesPerMinute),
		PrekeyFetchBurst:       pick(l.PrekeyFetchBurst, d.PrekeyFetchBurst),
		MaxConnsPerIP:          pick(l.MaxConnsPerIP, d.MaxConnsPerIP),
	}
}

// Protocol limits and timings (docs/protocol.md §9). These are part of the
// protocol or of the server's robustness, not operator knobs.
const (
	MaxContentSize    = 96 << 10            // bytes per copy
	MessageTTL        = 30 * 24 * time.Hour // queued messages expire after this
	MaxPrekeysUpload  = 200                 // one-time keys of each kind per upload
	MaxPrekeysStored  = 1000                // one-time keys of each kind per device
	PrekeyLowWater    = 10                  // below this, the device is told to refill
	MaxAckIDs         = 1000                // server ids per ack request
	AuthTimeout       = 10 * time.Second    // from WebSocket open to a valid auth
	ShutdownTimeout   = 10 * time.Second    // graceful shutdown bound
	maxRegisterBody   = 512 << 10           // POST /v1/register body
	maxFrameSize      = 1 << 20             // one WebSocket message; sends carry up to 6 × 96 KiB
	pendingPage       = 100                 // messages read from the store per query
	writeTimeout      = 10 * time.Second    // one WebSocket write
	requestTimeout    = 30 * time.Second    // one request's store work
	pingInterval      = 30 * time.Second    // keepalive on idle connections
	pingTimeout       = 20 * time.Second    // a peer that does not answer is dropped
	expirySweepPeriod = time.Hour
)
