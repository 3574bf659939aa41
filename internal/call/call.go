// Package call runs one device's 1:1 voice and video calls on WebRTC
// (github.com/pion/webrtc/v4), with signalling carried end to end
// encrypted by the client SDK (client.SendCall, client.CallEvent).
//
// The offer and answer hold the DTLS fingerprints, so the ratchet session
// authenticates the media's keys: a server rewriting the SDP cannot get in
// the middle. The rules, in docs/protocol.md §13.2:
//
//   - The caller sends an offer to every device of the callee (trickle
//     ICE: candidates follow as CallIce signals). Each device not busy
//     rings and says so (CallRinging); a device in a call answers
//     CallBusy, which ends the caller's call as busy.
//   - The first answer wins. The caller then sends hangup
//     ANSWERED_ELSEWHERE naming the winning device to all the callee's
//     devices, and the winner tells its own siblings the same, so every
//     other device stops ringing.
//   - Glare (both call each other at once, and no device answered the
//     own call yet, whether one rings for it or not): the offer with the
//     lower call id wins. The side whose own call has the higher id drops
//     it (hangup NORMAL to the peer's devices, so those ringing for it
//     stop) and answers the other offer with the same media; the other
//     side ignores the losing offer. Any other offer from a peer already
//     in a call with this device is busy.
//   - No answer within the ring timeout (60 s): the caller hangs up with
//     TIMEOUT. No media connection within the same time after the answer,
//     a signal that could not be sent, an undecryptable message from the
//     peer or a malformed signal: the call fails, and the peer is told
//     (hangup FAILED) when possible. A message that failed to decrypt
//     and names nobody (a sealed envelope that did not open) does not end
//     a call, but a call that then times out fails as corrupted.
//   - Relay-only calls (ICETransportPolicyRelay) hide both sides'
//     addresses: asked for by either side, and forced for calls with
//     someone who is not a contact.
//
// Each call is driven by one goroutine (its actor); WebRTC callbacks and
// received signals are queued to it, so a call's state changes in one
// order and pion is never called with a lock held.
package call

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// DefaultRingTimeout is how long a call rings, and how long an answered
// call may take to connect.
const DefaultRingTimeout = client.CallMaxAge

// signalTimeout bounds the sending of one signal.
const signalTimeout = 15 * time.Second

// Bounds on what a peer, or anyone who can send this device a message,
// can make a Phone hold.
const (
	// maxBusyReplies bounds the CallBusy replies being sent at once: a
	// flood of offers while in a call must not pile up goroutines. An
	// offer beyond it gets no reply; its caller rings until its timeout.
	maxBusyReplies = 8
	// maxRemoteCandidates bounds the ICE candidates one device of the
	// peer may send for a call (a real device sends a few, one per
	// interface and type): each one is kept and checked, with packets
	// sent to the address it names.
	maxRemoteCandidates = 64
	// maxEndedCalls bounds the call ids remembered as over (endedCalls).
	maxEndedCalls = 256
)

// Signaller sends call signals end to end encrypted: *client.Client.
type Signaller interface {
	SendCall(ctx context.Context, to string, sig *wire.CallSignal) error
}

// Config configures a Phone.
type Config struct {
	// Self and Device are this device's username and device id.
	Self   string
	Device uint32
	Signal Signaller
	// ICEServers returns the STUN/TURN servers for a new call (with
	// fresh TURN credentials); nil or an empty list means host candidates
	// only, and relay-only calls then fail.
	ICEServers func(ctx context.Context) ([]webrtc.ICEServer, error)
	// IsContact reports whether user is an accepted contact; calls with
	// anyone else are relay-only. Nil treats everyone as a stranger.
	IsContact func(ctx context.Context, user string) (bool, error)
	// AlwaysRelay makes every call of this phone relay-only, incoming ones
	// too (the caller then learns no address of this device).
	AlwaysRelay bool
	// RingTimeout is DefaultRingTimeout if zero.
	RingTimeout time.Duration
	// Loopback restricts ICE to loopback addresses (and allows them, which
	// WebRTC otherwise skips): for a server on this machine, where both
	// peers are too, and for tests.
	Loopback bool
	// Events receives every state change, in order, on a goroutine of its
	// own; it may call the Phone and the Call.
	Events func(Event)
}

// State is where a call is.
type State int

// Call states.
const (
	Calling    State = iota + 1 // caller: offer sent
	Ringing                     // callee: ringing here; caller: a callee device rings
	Connecting                  // answered, ICE and DTLS under way
	Connected                   // media flows
	Ended
)

func (s State) String() string {
	switch s {
	case Calling:
		return "calling"
	case Ringing:
		return "ringing"
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Ended:
		return "ended"
	}
	return "unknown"
}

// Reason says why a call ended.
type Reason string

// Reasons.
const (
	ReasonHangup            Reason = "hangup"             // hung up here
	ReasonRemoteHangup      Reason = "remote_hangup"      // the peer hung up
	ReasonDeclined          Reason = "declined"           // declined, here or by the peer
	ReasonTimeout           Reason = "timeout"            // nobody answered in time
	ReasonAnsweredElsewhere Reason = "answered_elsewhere" // another device of the callee answered
	ReasonBusy              Reason = "busy"               // the callee is in another call
	ReasonFailed            Reason = "failed"             // see Event.Err
)

// Event is a call's state change.
type Event struct {
	Call  *Call
	State State
	// Connected: the types of the selected candidate pair's local and
	// remote candidates: host, srflx, prflx or relay.
	Local, Remote string
	// Ended: why, what went wrong for ReasonFailed, and the files recorded.
	Reason     Reason
	Err        error
	Recordings []string
}

// Phone is one device's calls: at most one at a time.
type Phone struct {
	cfg Config

	mu     sync.Mutex
	calls  map[string]*Call // live calls by call id
	closed bool
	busy   sync.WaitGroup // busy replies being sent
	busyN  int            // how many, at most maxBusyReplies
	// ended remembers, for client.CallMaxAge, the ids of calls that are
	// over: that ended here, or that a hangup said were over before their
	// offer arrived (a sibling device answered or declined, or the caller
	// gave up, and the offer was delivered late). An offer for one of
	// them does not ring.
	ended map[string]endedCall

	evMu   sync.Mutex
	evCond *sync.Cond
	evQ    []Event
	evDone chan struct{}
}

// New returns a Phone. Feed it what client.Receive hands over (Handle);
// Close it when done.
func New(cfg Config) (*Phone, error) {
	if cfg.Signal == nil {
		return nil, errors.New("call: no signaller")
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = DefaultRingTimeout
	}
	if cfg.Events == nil {
		cfg.Events = func(Event) {}
	}
	p := &Phone{cfg: cfg, calls: map[string]*Call{}, ended: map[string]endedCall{}, evDone: make(chan struct{})}
	p.evCond = sync.NewCond(&p.evMu)
	go p.dispatch()
	return p, nil
}

// Close hangs up every call, waits for them to end and for their events to
// be delivered.
func (p *Phone) Close() {
	p.mu.Lock()
	p.closed = true
	var live []*Call
	for _, c := range p.calls {
		live = append(live, c)
	}
	p.mu.Unlock()
	for _, c := range live {
		c.Hangup()
		<-c.done
	}
	p.busy.Wait()
	p.evMu.Lock()
	p.evQ = append(p.evQ, Event{}) // the end marker
	p.evCond.Signal()
	p.evMu.Unlock()
	<-p.evDone
}

func (p *Phone) emit(e Event) {
	p.evMu.Lock()
	p.evQ = append(p.evQ, e)
	p.evCond.Signal()
	p.evMu.Unlock()
}

func (p *Phone) dispatch() {
	defer close(p.evDone)
	for {
		p.evMu.Lock()
		for len(p.evQ) == 0 {
			p.evCond.Wait()
		}
		e := p.evQ[0]
		p.evQ = p.evQ[1:]
		p.evMu.Unlock()
		if e.Call == nil {
			return
		}
		p.cfg.Events(e)
	}
}

// Options are a new call's settings.
type Options struct {
	Video     bool
	RelayOnly bool // also forced for someone who is not a contact
	Media     Media
}

// Dial calls peer. The call's progress comes as Events; Dial returns once
// it is under way.
func (p *Phone) Dial(ctx context.Context, peer string, opts Options) (*Call, error) {
	id := make([]byte, client.CallIDSize)
	rand.Read(id)
	return p.dial(ctx, peer, opts, id)
}

// dial is Dial with the call id chosen: tests set which call wins a glare.
func (p *Phone) dial(ctx context.Context, peer string, opts Options, id []byte) (*Call, error) {
	user, err := identity.NormalizeUsername(peer)
	if err != nil {
		return nil, err
	}
	if user == p.cfg.Self {
		return nil, errors.New("you cannot call yourself")
	}
	if err := opts.Media.Check(); err != nil {
		return nil, err
	}
	relay := opts.RelayOnly || p.cfg.AlwaysRelay
	if !relay {
		contact, err := p.isContact(ctx, user)
		if err != nil {
			return nil, err
		}
		relay = !contact
	}
	c := p.newCall(id, user, false, opts.Video, relay, opts.Media)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("call: phone closed")
	}
	if len(p.calls) > 0 {
		p.mu.Unlock()
		return nil, errors.New("already in a call")
	}
	c.state = Calling
	p.calls[string(id)] = c
	p.mu.Unlock()
	p.emit(Event{Call: c, State: Calling})
	go c.run()
	c.post(c.dial)
	return c, nil
}

func (p *Phone) isContact(ctx context.Context, user string) (bool, error) {
	if p.cfg.IsContact == nil {
		return false, nil
	}
	return p.cfg.IsContact(ctx, user)
}

// Handle takes what client.Receive hands over: call signals drive the
// calls, and messages that failed to decrypt are weighed by dropped.
// Everything else is ignored. Handle does not wait for the network.
func (p *Phone) Handle(e client.Event) {
	switch e := e.(type) {
	case *client.CallEvent:
		p.handleSignal(e)
	case *client.DroppedEvent:
		p.dropped(e)
	}
}

// dropped weighs a message that failed to decrypt. One whose sender is
// known to be a call's peer (an authenticated envelope, or a sealed one
// that opened but whose ratchet message did not decrypt) may have been one
// of the call's signals: that call fails at once. One that names nobody (a
// sealed envelope that did not open: anyone may send those) or comes from
// this account's other devices must not end a call, or a stranger's junk
// would end anyone's; it is remembered instead, so that a call timing out
// afterwards ends as failed with corrupted signalling, not as a bare
// timeout.
func (p *Phone) dropped(e *client.DroppedEvent) {
	p.mu.Lock()
	var live []*Call
	for _, c := range p.calls {
		live = append(live, c)
	}
	p.mu.Unlock()
	for _, c := range live {
		switch {
		case e.From == c.peer:
			err := fmt.Errorf("the call's signalling was corrupted: a message from %s (device %d) failed to decrypt: %v", e.From, e.Device, e.Err)
			c.post(func() { c.fail(err) })
		case e.From == "":
			err := fmt.Errorf("a sealed message failed to open: %v", e.Err)
			c.post(func() { c.suspect(err) })
		case e.From == p.cfg.Self:
			err := fmt.Errorf("a message from this account's device %d failed to decrypt: %v", e.Device, e.Err)
			c.post(func() { c.suspect(err) })
		}
	}
}

func (p *Phone) handleSignal(e *client.CallEvent) {
	s := e.Signal
	id := string(s.GetCallId())
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	c := p.calls[id]
	if c != nil || s.GetOffer() == nil || e.From == p.cfg.Self {
		if c == nil && s.GetHangup() != nil {
			// Delivered ahead of its offer, if any: that must not ring.
			p.remember(id, e.From)
		}
		p.mu.Unlock()
		if c != nil {
			c.post(func() { c.onSignal(e) })
		}
		return // a signal of no call of ours
	}
	// A new offer.
	if p.over(id, e.From) {
		p.mu.Unlock()
		return
	}
	for _, o := range p.calls {
		if o.peer != e.From || o.incoming || o.state != Calling && o.state != Ringing {
			continue
		}
		// Glare: we call P, no device of P answered yet, and P calls us.
		// Whether a device of P rings for ours or not, the lower call id
		// wins, so both sides agree whatever each one's state.
		if bytes.Compare(o.id, s.GetCallId()) < 0 {
			p.mu.Unlock()
			return // ours wins: P drops theirs and answers ours
		}
		// Theirs wins: this call becomes theirs.
		delete(p.calls, string(o.id))
		p.calls[id] = o
		p.mu.Unlock()
		o.post(func() { o.yield(e) })
		return
	}
	if len(p.calls) > 0 {
		// Busy, even with a call with P: a second call of P's (from
		// another device, say) must not ring unanswered.
		p.refuse(e.From, s.GetCallId())
		p.mu.Unlock()
		return
	}
	o := s.GetOffer()
	c = p.newCall(s.GetCallId(), e.From, true, o.GetVideo(), o.GetRelayOnly() || !e.Contact || p.cfg.AlwaysRelay, Media{})
	c.peerDevice = e.Device
	c.offer = o.GetSdp()
	c.state = Ringing
	p.calls[id] = c
	p.mu.Unlock()
	go c.run()
	c.post(c.ring)
}

// refuse answers the offer of call id from peer with CallBusy, best
// effort and bounded: the caller times out otherwise. p.mu is held, so
// that Close waits for it.
// At most maxBusyReplies are under way; beyond that an offer gets none.
func (p *Phone) refuse(peer string, id []byte) {
	if p.busyN >= maxBusyReplies {
		return
	}
	p.busyN++
	p.busy.Add(1)
	busy := &wire.CallSignal{CallId: id, Device: p.cfg.Device, Kind: &wire.CallSignal_Busy{Busy: &wire.CallBusy{}}}
	go func() {
		defer p.busy.Done()
		ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
		defer cancel()
		p.cfg.Signal.SendCall(ctx, peer, busy) //nolint:errcheck
		p.mu.Lock()
		p.busyN--
		p.mu.Unlock()
	}()
}

// endedCall is a call id remembered as over (Phone.ended).
type endedCall struct {
	from string // who said so: the peer, or this account (any offer)
	at   time.Time
}

// remember (p.mu held) notes that user from said call id is over.
func (p *Phone) remember(id, from string) {
	now := time.Now()
	if old, ok := p.ended[id]; ok && old.from == p.cfg.Self && now.Sub(old.at) <= client.CallMaxAge {
		from = p.cfg.Self // the own account's word covers every caller
	}
	if _, ok := p.ended[id]; !ok && len(p.ended) >= maxEndedCalls {
		oldest := ""
		for k, v := range p.ended {
			if now.Sub(v.at) > client.CallMaxAge {
				delete(p.ended, k)
			} else if oldest == "" || v.at.Before(p.ended[oldest].at) {
				oldest = k
			}
		}
		if len(p.ended) >= maxEndedCalls {
			delete(p.ended, oldest)
		}
	}
	p.ended[id] = endedCall{from: from, at: now}
}

// over (p.mu held) reports whether an offer of call id from caller is for
// a call known to be over. Only a signal younger than client.CallMaxAge
// is handed over, so an entry older than that has done its work.
func (p *Phone) over(id, caller string) bool {
	e, ok := p.ended[id]
	return ok && time.Since(e.at) <= client.CallMaxAge && (e.from == caller || e.from == p.cfg.Self)
}

func (p *Phone) newCall(id []byte, peer string, incoming, video, relay bool, m Media) *Call {
	return &Call{
		p: p, id: append([]byte(nil), id...), peer: peer, incoming: incoming, video: video, relayOnly: relay, media: m,
		ops: make(chan func(), 256), stopped: make(chan struct{}), done: make(chan struct{}),
		out: make(chan outgoing, 64), outDone: make(chan struct{}), mediaDone: make(chan struct{}), pending: map[uint32][]webrtc.ICECandidateInit{},
		candidates: map[uint32]int{},
	}
}

// Call is one call, incoming or outgoing.
type Call struct {
	p        *Phone
	id       []byte
	peer     string
	incoming bool

	ops     chan func() // run by the actor, in order
	stopped chan struct{}
	done    chan struct{}

	mu         sync.Mutex // guards the fields below it
	state      State      // also read by the Phone under p.mu
	video      bool
	relayOnly  bool
	reason     Reason
	err        error
	recordings []string
	recClosed  bool
	workers    sync.WaitGroup // recorders and media senders

	// Owned by the actor.
	media      Media
	peerDevice uint32 // callee: the caller's device; caller: the device that answered
	offer      string // callee: the offer's SDP
	pc         *webrtc.PeerConnection
	pending    map[uint32][]webrtc.ICECandidateInit // remote candidates before their description
	candidates map[uint32]int                       // remote candidates received, by device
	timer      *time.Timer
	remoteSet  bool // the peer's description is set
	audio      *webrtc.TrackLocalStaticSample
	videoTrack *webrtc.TrackLocalStaticSample
	out        chan outgoing
	outDone    chan struct{}
	stopMedia  context.CancelFunc
	corrupt    error // the first message that failed to decrypt and may have been this call's

	stats struct {
		audioSent, videoSent, audioReceived, videoReceived atomic.Int64
	}
	mediaDone chan struct{} // closed once the input files are sent
}

// Stats counts a call's media: Opus packets and VP8 frames sent from the
// input files, and received from the peer.
type Stats struct {
	AudioSent, VideoSent, AudioReceived, VideoReceived int
}

// Stats returns the media counts so far.
func (c *Call) Stats() Stats {
	return Stats{
		AudioSent: int(c.stats.audioSent.Load()), VideoSent: int(c.stats.videoSent.Load()),
		AudioReceived: int(c.stats.audioReceived.Load()), VideoReceived: int(c.stats.videoReceived.Load()),
	}
}

// MediaDone is closed once the input files were sent completely (or the
// call ended first).
func (c *Call) MediaDone() <-chan struct{} { return c.mediaDone }

type outgoing struct {
	to  string
	sig *wire.CallSignal
}

// ID is the call id in hex. It changes if the call loses a glare and
// becomes the answer to the peer's call.
func (c *Call) ID() string {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return hex.EncodeToString(c.id)
}

// Peer is the other party's username.
func (c *Call) Peer() string { return c.peer }

// Incoming reports whether the peer called (after a glare: answered).
func (c *Call) Incoming() bool {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.incoming
}

// Video reports whether the call has video.
func (c *Call) Video() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.video
}

// RelayOnly reports whether media goes only through the TURN relay.
func (c *Call) RelayOnly() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.relayOnly
}

// Done is closed once the call ended and its recordings are complete.
func (c *Call) Done() <-chan struct{} { return c.done }

// Result is why the call ended (valid once Done is closed).
func (c *Call) Result() (Reason, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason, c.err
}

// Answer picks up a ringing incoming call with the given media.
func (c *Call) Answer(m Media) error {
	if !c.incoming {
		return errors.New("only an incoming call can be answered")
	}
	if err := m.Check(); err != nil {
		return err
	}
	res := make(chan error, 1)
	if !c.post(func() { res <- c.answer(m) }) {
		return errors.New("the call has ended")
	}
	select {
	case err := <-res:
		return err
	case <-c.stopped:
		select {
		case err := <-res:
			return err
		default:
		}
		// Ended before answering, or by answering: say why if it failed.
		<-c.done
		if r, err := c.Result(); r == ReasonFailed && err != nil {
			return err
		}
		return errors.New("the call has ended")
	}
}

// Decline refuses a ringing incoming call, on every device of this
// account.
func (c *Call) Decline() {
	c.post(func() {
		if c.getState() == Ringing && c.incoming {
			c.end(ReasonDeclined, nil, c.toPeer(hangup(c.id, wire.CallHangup_DECLINED, c.p.cfg.Device)),
				outgoing{c.p.cfg.Self, hangup(c.id, wire.CallHangup_DECLINED, c.p.cfg.Device)})
		}
	})
}

// Hangup ends the call (declines it if it is ringing here).
func (c *Call) Hangup() {
	c.post(func() {
		if c.incoming && c.getState() == Ringing {
			c.end(ReasonDeclined, nil, c.toPeer(hangup(c.id, wire.CallHangup_DECLINED, c.p.cfg.Device)),
				outgoing{c.p.cfg.Self, hangup(c.id, wire.CallHangup_DECLINED, c.p.cfg.Device)})
			return
		}
		c.end(ReasonHangup, nil, c.toPeer(hangup(c.id, wire.CallHangup_NORMAL, c.signalDevice())))
	})
}

func hangup(id []byte, r wire.CallHangup_Reason, device uint32) *wire.CallSignal {
	return &wire.CallSignal{CallId: id, Device: device, Kind: &wire.CallSignal_Hangup{Hangup: &wire.CallHangup{Reason: r}}}
}

// signalDevice is what CallSignal.device holds in what this side sends:
// the callee names itself; the caller names the device that answered (0
// before an answer: every device).
func (c *Call) signalDevice() uint32 {
	if c.incoming {
		return c.p.cfg.Device
	}
	return c.peerDevice
}

func (c *Call) toPeer(s *wire.CallSignal) outgoing { return outgoing{c.peer, s} }

// post queues f for the actor; false if the call is over.
func (c *Call) post(f func()) bool {
	select {
	case <-c.stopped:
		return false
	default:
	}
	select {
	case c.ops <- f:
		return true
	case <-c.stopped:
		return false
	}
}

func (c *Call) run() {
	go c.sender()
	for {
		select {
		case f := <-c.ops:
			select {
			case <-c.stopped:
				return // ended by an earlier op
			default:
			}
			f()
		case <-c.stopped:
			return
		}
	}
}

func (c *Call) getState() State {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.state
}

func (c *Call) setState(s State) {
	c.p.mu.Lock()
	c.state = s
	c.p.mu.Unlock()
}

// sender sends the call's signals in order; a failure fails the call.
func (c *Call) sender() {
	defer close(c.outDone)
	for o := range c.out {
		ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
		err := c.p.cfg.Signal.SendCall(ctx, o.to, o.sig)
		cancel()
		if err != nil {
			c.post(func() { c.fail(fmt.Errorf("could not send a call message to %s: %w", o.to, err)) })
		}
	}
}

func (c *Call) send(o ...outgoing) {
	for _, x := range o {
		c.out <- x
	}
}

func (c *Call) startTimer(d time.Duration, f func()) {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(d, func() { c.post(f) })
}

// dial (actor) makes the offer and sends it.
func (c *Call) dial() {
	c.startTimer(c.p.cfg.RingTimeout, func() {
		if s := c.getState(); s == Calling || s == Ringing {
			if c.corrupt != nil {
				c.fail(c.corrupted("no answer"))
				return
			}
			c.end(ReasonTimeout, nil, c.toPeer(hangup(c.id, wire.CallHangup_TIMEOUT, 0)))
		}
	})
	if err := c.newPeerConnection(); err != nil {
		c.end(ReasonFailed, err)
		return
	}
	offer, err := c.pc.CreateOffer(nil)
	if err == nil {
		err = c.pc.SetLocalDescription(offer)
	}
	if err != nil {
		c.end(ReasonFailed, fmt.Errorf("making the offer: %w", err))
		return
	}
	c.send(c.toPeer(&wire.CallSignal{CallId: c.id, Kind: &wire.CallSignal_Offer{Offer: &wire.CallOffer{
		Sdp: withoutCandidates(offer.SDP), Video: c.video, RelayOnly: c.relayOnly,
	}}}))
}

// ring (actor) starts ringing here.
func (c *Call) ring() {
	c.startTimer(c.p.cfg.RingTimeout, func() {
		if c.getState() == Ringing {
			if c.corrupt != nil {
				c.fail(c.corrupted("no answer"))
				return
			}
			c.end(ReasonTimeout, nil)
		}
	})
	c.send(c.toPeer(&wire.CallSignal{CallId: c.id, Device: c.p.cfg.Device, Kind: &wire.CallSignal_Ringing{Ringing: &wire.CallRinging{}}}))
	c.p.emit(Event{Call: c, State: Ringing})
}

// yield (actor) turns this outgoing call into the answer of the peer's
// offer e, which won the glare. The peer's devices that rang for this call
// stop: its hangup goes to all of them.
func (c *Call) yield(e *client.CallEvent) {
	theirs := e.Signal.GetCallId()
	if s := c.getState(); s != Calling && s != Ringing {
		// An answer queued ahead of the offer was taken meanwhile: this
		// call goes on under its own id, and the peer's offer is busy.
		c.p.mu.Lock()
		delete(c.p.calls, string(theirs))
		c.p.calls[string(c.id)] = c
		c.p.refuse(c.peer, theirs)
		c.p.mu.Unlock()
		return
	}
	old := c.id
	c.send(c.toPeer(hangup(old, wire.CallHangup_NORMAL, 0)))
	if c.pc != nil {
		c.pc.Close()
		c.pc = nil
	}
	o := e.Signal.GetOffer()
	c.p.mu.Lock()
	c.id = append([]byte(nil), e.Signal.GetCallId()...)
	c.incoming = true
	c.p.mu.Unlock()
	c.mu.Lock()
	c.video = c.video || o.GetVideo()
	c.relayOnly = c.relayOnly || o.GetRelayOnly() || !e.Contact || c.p.cfg.AlwaysRelay
	c.mu.Unlock()
	c.peerDevice = e.Device
	c.offer = o.GetSdp()
	c.pending = map[uint32][]webrtc.ICECandidateInit{}
	c.candidates = map[uint32]int{}
	c.setState(Ringing)
	if err := c.answer(c.media); err != nil {
		c.end(ReasonFailed, err, c.toPeer(hangup(c.id, wire.CallHangup_FAILED, c.p.cfg.Device)))
	}
}

// answer (actor) answers the ringing call.
func (c *Call) answer(m Media) error {
	if c.getState() != Ringing || c.pc != nil {
		return errors.New("the call is not ringing")
	}
	c.mu.Lock()
	c.media = m
	c.mu.Unlock()
	if err := c.newPeerConnection(); err != nil {
		c.end(ReasonFailed, err, c.toPeer(hangup(c.id, wire.CallHangup_FAILED, c.p.cfg.Device)))
		return err
	}
	var ans webrtc.SessionDescription
	err := c.sdpCandidates(c.peerDevice, c.offer)
	if err == nil {
		err = c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: c.offer})
	}
	if errors.Is(err, errTooManyCandidates) {
		err = fmt.Errorf("%s %w", c.peer, err)
	} else if err != nil {
		err = fmt.Errorf("the caller's offer is not a usable session description: %w", err)
	} else if err = c.addTracks(); err == nil {
		if ans, err = c.pc.CreateAnswer(nil); err == nil {
			err = c.pc.SetLocalDescription(ans)
		}
		if err != nil {
			err = fmt.Errorf("making the answer: %w", err)
		}
	}
	if err != nil {
		c.end(ReasonFailed, err, c.toPeer(hangup(c.id, wire.CallHangup_FAILED, c.p.cfg.Device)))
		return err
	}
	c.remoteSet = true
	me := c.p.cfg.Device
	c.send(c.toPeer(&wire.CallSignal{CallId: c.id, Device: me, Kind: &wire.CallSignal_Answer{Answer: &wire.CallAnswer{Sdp: withoutCandidates(ans.SDP)}}}),
		outgoing{c.p.cfg.Self, hangup(c.id, wire.CallHangup_ANSWERED_ELSEWHERE, me)})
	c.addPending(0)
	c.connecting()
	return nil
}

// connecting (actor): answered; media must connect within the timeout.
func (c *Call) connecting() {
	c.setState(Connecting)
	c.p.emit(Event{Call: c, State: Connecting})
	c.startTimer(c.p.cfg.RingTimeout, func() {
		if c.getState() == Connecting {
			if c.corrupt != nil {
				c.fail(c.corrupted("no media connection"))
				return
			}
			c.fail(fmt.Errorf("no media connection within %v of the answer", c.p.cfg.RingTimeout))
		}
	})
}

// onSignal (actor) handles a signal for this call.
func (c *Call) onSignal(e *client.CallEvent) {
	s := e.Signal
	if !bytes.Equal(s.GetCallId(), c.id) {
		return // the call id changed under glare
	}
	if e.From == c.p.cfg.Self {
		// Another device of this account answered or declined.
		if h := s.GetHangup(); h != nil && c.incoming && c.getState() == Ringing {
			switch h.GetReason() {
			case wire.CallHangup_ANSWERED_ELSEWHERE:
				c.end(ReasonAnsweredElsewhere, nil)
			case wire.CallHangup_DECLINED:
				c.end(ReasonDeclined, nil)
			}
		}
		return
	}
	if e.From != c.peer {
		return
	}
	if c.incoming {
		c.onCallerSignal(e)
	} else {
		c.onCalleeSignal(e)
	}
}

// onCallerSignal (actor): the callee's side.
func (c *Call) onCallerSignal(e *client.CallEvent) {
	s := e.Signal
	if e.Device != c.peerDevice || s.GetDevice() != 0 && s.GetDevice() != c.p.cfg.Device && s.GetHangup() == nil {
		return
	}
	switch k := s.GetKind().(type) {
	case *wire.CallSignal_Ice:
		cand, ok := c.remoteCandidate(e.Device, k.Ice)
		if !ok {
			return
		}
		c.pending[0] = append(c.pending[0], cand)
		if c.remoteSet {
			c.addPending(0)
		}
	case *wire.CallSignal_Hangup:
		r := k.Hangup.GetReason()
		if r == wire.CallHangup_ANSWERED_ELSEWHERE {
			if s.GetDevice() != c.p.cfg.Device {
				c.end(ReasonAnsweredElsewhere, nil)
			}
			return
		}
		c.end(remoteReason(r))
	}
}

// onCalleeSignal (actor): the caller's side.
func (c *Call) onCalleeSignal(e *client.CallEvent) {
	s := e.Signal
	if c.peerDevice != 0 && e.Device != c.peerDevice {
		return // another device of the callee, told to stop ringing
	}
	switch k := s.GetKind().(type) {
	case *wire.CallSignal_Ringing:
		if c.getState() == Calling {
			c.setState(Ringing)
			c.p.emit(Event{Call: c, State: Ringing})
		}
	case *wire.CallSignal_Busy:
		if c.peerDevice == 0 {
			// The callee is in a call on one device: busy for all.
			c.end(ReasonBusy, nil, c.toPeer(hangup(c.id, wire.CallHangup_BUSY, 0)))
		}
	case *wire.CallSignal_Answer:
		if c.peerDevice != 0 {
			return
		}
		c.peerDevice = e.Device
		if err := c.sdpCandidates(e.Device, k.Answer.GetSdp()); err != nil {
			c.fail(fmt.Errorf("%s %w", c.peer, err))
			return
		}
		err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: k.Answer.GetSdp()})
		if err != nil {
			c.fail(fmt.Errorf("the answer of %s is not a usable session description: %w", c.peer, err))
			return
		}
		c.remoteSet = true
		c.send(c.toPeer(hangup(c.id, wire.CallHangup_ANSWERED_ELSEWHERE, e.Device)))
		c.addPending(e.Device)
		c.connecting()
	case *wire.CallSignal_Ice:
		cand, ok := c.remoteCandidate(e.Device, k.Ice)
		if !ok {
			return
		}
		c.pending[e.Device] = append(c.pending[e.Device], cand)
		if c.peerDevice == e.Device {
			c.addPending(e.Device)
		}
	case *wire.CallSignal_Hangup:
		c.end(remoteReason(k.Hangup.GetReason()))
	}
}

func remoteReason(r wire.CallHangup_Reason) (Reason, error) {
	switch r {
	case wire.CallHangup_DECLINED:
		return ReasonDeclined, nil
	case wire.CallHangup_TIMEOUT:
		return ReasonTimeout, nil
	case wire.CallHangup_BUSY:
		return ReasonBusy, nil
	case wire.CallHangup_ANSWERED_ELSEWHERE:
		return ReasonAnsweredElsewhere, nil
	case wire.CallHangup_FAILED:
		return ReasonFailed, errors.New("the call failed on the other side")
	}
	return ReasonRemoteHangup, nil
}

var errTooManyCandidates = fmt.Errorf("sent more than %d ICE candidates", maxRemoteCandidates)

// sdpCandidates (actor) counts the candidate lines of a description from
// the peer's device: this protocol's descriptions carry none, but one
// that does (a web client's, say) must not carry more than the bound
// CallIce signals have.
func (c *Call) sdpCandidates(device uint32, sdp string) error {
	for l := range strings.Lines(sdp) {
		if strings.HasPrefix(l, "a=candidate:") {
			if c.candidates[device]++; c.candidates[device] > maxRemoteCandidates {
				return errTooManyCandidates
			}
		}
	}
	return nil
}

// remoteCandidate (actor) parses a candidate from the peer's device and
// counts it; a bad one, or one too many, fails the call.
func (c *Call) remoteCandidate(device uint32, ice *wire.CallIce) (webrtc.ICECandidateInit, bool) {
	if c.candidates[device]++; c.candidates[device] > maxRemoteCandidates {
		c.fail(fmt.Errorf("%s %w", c.peer, errTooManyCandidates))
		return webrtc.ICECandidateInit{}, false
	}
	cand, err := parseCandidate(ice.GetCandidate())
	if err != nil {
		c.fail(fmt.Errorf("%s sent a bad ICE candidate: %v", c.peer, err))
		return webrtc.ICECandidateInit{}, false
	}
	return cand, true
}

// addPending (actor) hands the buffered remote candidates of device to
// the connection, once its remote description is set.
func (c *Call) addPending(device uint32) {
	for _, cand := range c.pending[device] {
		if err := c.pc.AddICECandidate(cand); err != nil {
			c.fail(fmt.Errorf("%s sent an unusable ICE candidate: %v", c.peer, err))
			return
		}
	}
	delete(c.pending, device)
}

// suspect (actor) remembers a message that failed to decrypt and may have
// been one of the call's signals, though nothing says it was.
func (c *Call) suspect(err error) {
	if c.corrupt == nil {
		c.corrupt = err
	}
}

// corrupted (actor) is the error of a call that timed out after a
// suspect message: its signalling was most likely corrupted.
func (c *Call) corrupted(what string) error {
	return fmt.Errorf("%s within %v, and the call's signalling was corrupted meanwhile: %w", what, c.p.cfg.RingTimeout, c.corrupt)
}

// fail (actor) ends the call as failed and tells the peer.
func (c *Call) fail(err error) {
	c.end(ReasonFailed, err, c.toPeer(hangup(c.id, wire.CallHangup_FAILED, c.signalDevice())))
}

// newPeerConnection (actor) makes the call's PeerConnection: Opus and VP8
// only, ICE servers with fresh credentials, relay policy if relay-only.
func (c *Call) newPeerConnection() error {
	ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
	defer cancel()
	var servers []webrtc.ICEServer
	if c.p.cfg.ICEServers != nil {
		var err error
		if servers, err = c.p.cfg.ICEServers(ctx); err != nil {
			return fmt.Errorf("getting TURN credentials: %w", err)
		}
	}
	relay := c.RelayOnly()
	if relay && len(servers) == 0 {
		return errors.New("a relay-only call needs a TURN relay, and the server offers none")
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opusCodec, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	vp8 := vp8Codec
	vp8.RTCPFeedback = fb
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: vp8, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return err
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if c.p.cfg.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	policy := webrtc.ICETransportPolicyAll
	if relay {
		policy = webrtc.ICETransportPolicyRelay
		// Relay candidates are all there is: no reason to wait for better.
		se.SetRelayAcceptanceMinWait(0)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: servers, ICETransportPolicy: policy})
	if err != nil {
		return err
	}
	c.pc = pc
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return // gathering done; nothing to signal
		}
		c.post(func() {
			if c.pc != pc {
				return
			}
			js, err := formatCandidate(redact(*cand).ToJSON())
			if err != nil {
				c.fail(err)
				return
			}
			c.send(c.toPeer(&wire.CallSignal{CallId: c.id, Device: c.signalDevice(), Kind: &wire.CallSignal_Ice{Ice: &wire.CallIce{Candidate: js}}}))
		})
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.post(func() {
			if c.pc != pc {
				return
			}
			switch s {
			case webrtc.PeerConnectionStateConnected:
				c.connected()
			case webrtc.PeerConnectionStateFailed:
				if is := pc.ICEConnectionState(); is == webrtc.ICEConnectionStateConnected || is == webrtc.ICEConnectionStateCompleted {
					// ICE worked, so DTLS failed: pion refuses a peer
					// certificate whose fingerprint is not the one in the
					// end-to-end encrypted description.
					c.fail(errors.New("the media connection failed: the peer's DTLS handshake failed or its certificate is not the one its signed description names"))
					return
				}
				c.fail(errors.New("the media connection failed (no ICE candidate pair worked)"))
			}
		})
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		id := c.ID()
		c.mu.Lock()
		if c.recClosed {
			c.mu.Unlock()
			return
		}
		dir, limit := c.media.RecordDir, c.media.RecordLimit
		var path string
		if dir != "" {
			ext := "audio.ogg"
			if t.Kind() == webrtc.RTPCodecTypeVideo {
				ext = "video.ivf"
			}
			path = filepath.Join(dir, fmt.Sprintf("%s-%s-%s", c.peer, id[:8], ext))
			c.recordings = append(c.recordings, path)
		}
		c.workers.Add(1)
		c.mu.Unlock()
		defer c.workers.Done()
		n := &c.stats.audioReceived
		if t.Kind() == webrtc.RTPCodecTypeVideo {
			n = &c.stats.videoReceived
		}
		if err := record(t, path, limit, n); err != nil {
			c.post(func() { c.fail(err) })
		}
	})
	if !c.incoming {
		return c.addTracks()
	}
	return nil
}

var (
	opusCodec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: opusClock, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
	vp8Codec  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
)

// addTracks (actor) adds the local audio track and, for a video call, the
// video track: always, so the peer's media can flow even if this side
// sends none.
func (c *Call) addTracks() error {
	a, err := webrtc.NewTrackLocalStaticSample(opusCodec, "audio", "hush")
	if err != nil {
		return err
	}
	if _, err := c.pc.AddTrack(a); err != nil {
		return err
	}
	c.audio = a
	if !c.Video() {
		return nil
	}
	v, err := webrtc.NewTrackLocalStaticSample(vp8Codec, "video", "hush")
	if err != nil {
		return err
	}
	if _, err := c.pc.AddTrack(v); err != nil {
		return err
	}
	c.videoTrack = v
	return nil
}

// connected (actor): media flows; report the selected pair and start
// sending the input files.
func (c *Call) connected() {
	if c.getState() != Connecting {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.setState(Connected)
	ev := Event{Call: c, State: Connected}
	for _, s := range c.pc.GetSenders() {
		if t := s.Transport(); t != nil {
			if pair, err := t.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
				ev.Local, ev.Remote = pair.Local.Typ.String(), pair.Remote.Typ.String()
				break
			}
		}
	}
	c.p.emit(ev)
	ctx, cancel := context.WithCancel(context.Background())
	c.stopMedia = cancel
	var senders sync.WaitGroup
	start := func(f func(context.Context, *webrtc.TrackLocalStaticSample, string, *atomic.Int64) error, t *webrtc.TrackLocalStaticSample, path string, n *atomic.Int64) {
		if t == nil || path == "" {
			return
		}
		senders.Add(1)
		go func() {
			defer senders.Done()
			if err := f(ctx, t, path, n); err != nil && ctx.Err() == nil {
				c.post(func() { c.fail(err) })
			}
		}()
	}
	start(sendOgg, c.audio, c.media.AudioIn, &c.stats.audioSent)
	start(sendIVF, c.videoTrack, c.media.VideoIn, &c.stats.videoSent)
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		senders.Wait()
		close(c.mediaDone)
	}()
}

// end (actor) ends the call: final signals go out, the connection closes,
// recordings are finished, then Ended is reported and Done closed.
func (c *Call) end(reason Reason, err error, final ...outgoing) {
	if c.getState() == Ended {
		return
	}
	c.p.mu.Lock()
	c.state = Ended
	for id, o := range c.p.calls {
		// Under any id: a glare may have filed it under the peer's.
		if o == c {
			delete(c.p.calls, id)
		}
	}
	c.p.remember(string(c.id), c.peer)
	c.p.mu.Unlock()
	close(c.stopped)
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.stopMedia != nil {
		c.stopMedia()
	} else {
		close(c.mediaDone)
	}
	c.send(final...)
	close(c.out)
	c.mu.Lock()
	c.recClosed = true
	c.reason, c.err = reason, err
	c.mu.Unlock()
	if c.pc != nil {
		c.pc.Close()
	}
	c.workers.Wait()
	<-c.outDone
	c.mu.Lock()
	recs := append([]string(nil), c.recordings...)
	c.mu.Unlock()
	c.p.emit(Event{Call: c, State: Ended, Reason: reason, Err: err, Recordings: recs})
	close(c.done)
}
