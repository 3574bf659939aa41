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
//	SealedSendsPerMinute  1200   per recipient and client IP (the sender is unknown)
//	SealedSendBurst       1000   (matches SendBurst: a flushed outbox is not refused)
//	PrekeyFetchesPerMinute  60   per requesting account, counted per device bundle
//	PrekeyFetchBurst        60
//	AccountLookupsPerMinute 60   per client IP (GET /v1/account/{username})
//	AccountLookupBurst      60
//	DeviceListPostsPerHour  20   per client IP (POST /v1/devicelist)
//	DeviceListPostBurst     10
//	ProvisionsPerHour       30   per client IP (GET /v1/provision)
//	ProvisionBurst          10
//	TURNCredentialsPerMinute 10  per account (turn_credentials requests)
//	TURNCredentialsBurst     10
//	MaxConnsPerIP           64   concurrent WebSocket connections (provisioning ones included)
type Limits struct {
	RegistrationsPerHour, RegistrationBurst        int
	SendsPerMinute, SendBurst                      int
	SealedSendsPerMinute, SealedSendBurst          int
	PrekeyFetchesPerMinute, PrekeyFetchBurst       int
	AccountLookupsPerMinute, AccountLookupBurst    int
	DeviceListPostsPerHour, DeviceListPostBurst    int
	ProvisionsPerHour, ProvisionBurst              int
	TURNCredentialsPerMinute, TURNCredentialsBurst int
	MaxConnsPerIP                                  int
}

// DefaultLimits returns the production defaults.
func DefaultLimits() Limits {
	return Limits{
		RegistrationsPerHour: 10, RegistrationBurst: 5,
		SendsPerMinute: 1200, SendBurst: 1000,
		SealedSendsPerMinute: 1200, SealedSendBurst: 1000,
		PrekeyFetchesPerMinute: 60, PrekeyFetchBurst: 60,
		AccountLookupsPerMinute: 60, AccountLookupBurst: 60,
		DeviceListPostsPerHour: 20, DeviceListPostBurst: 10,
		ProvisionsPerHour: 30, ProvisionBurst: 10,
		TURNCredentialsPerMinute: 10, TURNCredentialsBurst: 10,
		MaxConnsPerIP: 64,
	}
}

// Unlimited returns limits that are all off.
func Unlimited() Limits {
	return Limits{
		RegistrationsPerHour: -1, RegistrationBurst: -1,
		SendsPerMinute: -1, SendBurst: -1,
		SealedSendsPerMinute: -1, SealedSendBurst: -1,
		PrekeyFetchesPerMinute: -1, PrekeyFetchBurst: -1,
		AccountLookupsPerMinute: -1, AccountLookupBurst: -1,
		DeviceListPostsPerHour: -1, DeviceListPostBurst: -1,
		ProvisionsPerHour: -1, ProvisionBurst: -1,
		TURNCredentialsPerMinute: -1, TURNCredentialsBurst: -1,
		MaxConnsPerIP: -1,
	}
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
		RegistrationsPerHour:     pick(l.RegistrationsPerHour, d.RegistrationsPerHour),
		RegistrationBurst:        pick(l.RegistrationBurst, d.RegistrationBurst),
		SendsPerMinute:           pick(l.SendsPerMinute, d.SendsPerMinute),
		SendBurst:                pick(l.SendBurst, d.SendBurst),
		SealedSendsPerMinute:     pick(l.SealedSendsPerMinute, d.SealedSendsPerMinute),
		SealedSendBurst:          pick(l.SealedSendBurst, d.SealedSendBurst),
		PrekeyFetchesPerMinute:   pick(l.PrekeyFetchesPerMinute, d.PrekeyFetchesPerMinute),
		PrekeyFetchBurst:         pick(l.PrekeyFetchBurst, d.PrekeyFetchBurst),
		AccountLookupsPerMinute:  pick(l.AccountLookupsPerMinute, d.AccountLookupsPerMinute),
		AccountLookupBurst:       pick(l.AccountLookupBurst, d.AccountLookupBurst),
		DeviceListPostsPerHour:   pick(l.DeviceListPostsPerHour, d.DeviceListPostsPerHour),
		DeviceListPostBurst:      pick(l.DeviceListPostBurst, d.DeviceListPostBurst),
		ProvisionsPerHour:        pick(l.ProvisionsPerHour, d.ProvisionsPerHour),
		ProvisionBurst:           pick(l.ProvisionBurst, d.ProvisionBurst),
		TURNCredentialsPerMinute: pick(l.TURNCredentialsPerMinute, d.TURNCredentialsPerMinute),
		TURNCredentialsBurst:     pick(l.TURNCredentialsBurst, d.TURNCredentialsBurst),
		MaxConnsPerIP:            pick(l.MaxConnsPerIP, d.MaxConnsPerIP),
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

	// Sealed sender (§9.8).
	DeliveryTokenSize         = 32             // bytes; the server stores SHA-256 of it
	SenderCertificateLifetime = 24 * time.Hour // clients refresh when less than an hour is left
	maxSealedBody             = maxFrameSize   // POST /v1/sealed: up to 6 copies of 96 KiB

	// Blocking (§9.11).
	MaxBlocked = 1000 // usernames per blocked list

	// Device lists and linking (§9.9, §9.10).
	MaxProvisionBody   = 8 << 20          // provision_send body (a LinkPayload with history)
	ProvisionLifetime  = 10 * time.Minute // a provisioning socket is closed after this
	maxDeviceListBody  = 6 * maxRegisterBody
	maxAuthedFrameSize = MaxProvisionBody + 64<<10 // provision_send frames; others stay within maxFrameSize
	provisionWrite     = time.Minute               // writing one ProvisionEnvelope (up to 8 MiB)
)
