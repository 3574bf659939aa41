package call

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/wire"
)

// pair registers alice and bob as contacts and gives each a Phone.
func pair(t *testing.T, o devOpts) (url string, alice, bob *device) {
	url = startServer(t)
	a := newClient(t, url, "alice")
	b := newClient(t, url, "bob")
	befriend(t, a, b, "bob")
	return url, newDevice(t, "alice", a, o), newDevice(t, "bob", b, o)
}

// connect has alice dial bob with opts and bob answer with m; it returns
// both calls and their Connected events.
func connect(t *testing.T, alice, bob *device, opts Options, m Media) (ac, bc *Call, ae, be Event) {
	t.Helper()
	ac, err := alice.phone.Dial(ctxT(t), "bob", opts)
	if err != nil {
		t.Fatal(err)
	}
	ring := bob.until(Ringing)
	bc = ring.Call
	if !bc.Incoming() || bc.Peer() != "alice" || bc.ID() != ac.ID() || bc.Video() != opts.Video {
		t.Fatalf("bob rings for %s/%s incoming=%v video=%v; alice called %s", bc.Peer(), bc.ID(), bc.Incoming(), bc.Video(), ac.ID())
	}
	alice.until(Ringing) // bob's device said it rings
	if err := bc.Answer(m); err != nil {
		t.Fatal(err)
	}
	return ac, bc, alice.until(Connected), bob.until(Connected)
}

func hangupBoth(t *testing.T, by *Call, byDev, other *device) (Event, Event) {
	t.Helper()
	by.Hangup()
	return byDev.ended(), other.ended()
}

func TestCallAudioThenVideoArriveFrameByFrameBothWays(t *testing.T) {
	_, alice, bob := pair(t, devOpts{})
	for _, video := range []bool{false, true} {
		aDir, bDir := t.TempDir(), t.TempDir()
		am := Media{AudioIn: aOgg, RecordDir: aDir}
		bm := Media{AudioIn: bOgg, RecordDir: bDir}
		if video {
			am.VideoIn, bm.VideoIn = aIVF, bIVF
		}
		ac, bc, ae, be := connect(t, alice, bob, Options{Video: video, Media: am}, bm)
		// Host, or on loopback the same address learned as
		// server-reflexive from the relay's STUN; never the relay.
		direct := func(typ string) bool { return typ == "host" || typ == "srflx" }
		if !direct(ae.Local) || !direct(be.Local) {
			t.Fatalf("a direct call between contacts on loopback used %s/%s and %s/%s", ae.Local, ae.Remote, be.Local, be.Remote)
		}
		if ac.RelayOnly() || bc.RelayOnly() {
			t.Fatal("a call between contacts is relay-only unasked")
		}
		waitStats(t, ac, bc)
		a, b := hangupBoth(t, ac, alice, bob)
		if a.Reason != ReasonHangup || b.Reason != ReasonRemoteHangup {
			t.Fatalf("ended with %s / %s", a.Reason, b.Reason)
		}
		want := 1
		if video {
			want = 2
		}
		if len(a.Recordings) != want || len(b.Recordings) != want {
			t.Fatalf("recordings: %q %q", a.Recordings, b.Recordings)
		}
		for _, r := range slices.Concat(a.Recordings, b.Recordings) {
			if st, err := os.Stat(r); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("recording %s: %v, %v (want mode 0600)", r, st, err)
			}
			src := map[bool]map[string]string{
				true:  {"audio.ogg": bOgg, "video.ivf": bIVF}, // in alice's dir, from bob
				false: {"audio.ogg": aOgg, "video.ivf": aIVF},
			}[strings.HasPrefix(r, aDir)]
			for suffix, from := range src {
				if !strings.HasSuffix(r, suffix) {
					continue
				}
				if suffix == "audio.ogg" {
					sameFrames(t, r, oggPackets(t, r), oggPackets(t, from))
				} else {
					sameFrames(t, r, ivfFrames(t, r), ivfFrames(t, from))
				}
			}
		}
	}
}

// peerRelay reports whether a selected pair's remote candidate type fits
// a peer that is relay-only: its relay candidate, or the same address
// learned from the peer's first connectivity check (peer-reflexive)
// before the trickled candidate arrived.
func peerRelay(typ string) bool { return typ == "relay" || typ == "prflx" }

func TestCallRelayOnlyAskedOrWithStrangerUsesRelayOnBothSides(t *testing.T) {
	url, alice, bob := pair(t, devOpts{})
	carol := newDevice(t, "carol", newClient(t, url, "carol"), devOpts{})
	// Contacts asking for it.
	ac, bc, ae, be := connect(t, alice, bob, Options{RelayOnly: true}, Media{})
	if !ac.RelayOnly() || !bc.RelayOnly() {
		t.Fatal("not relay-only on both sides")
	}
	for _, e := range []Event{ae, be} {
		if e.Local != "relay" || !peerRelay(e.Remote) {
			t.Fatalf("relay-only call connected over %s/%s", e.Local, e.Remote)
		}
	}
	hangupBoth(t, bc, bob, alice)
	// A stranger: forced on both sides, unasked.
	cc, err := carol.phone.Dial(ctxT(t), "bob", Options{})
	if err != nil {
		t.Fatal(err)
	}
	bc = bob.until(Ringing).Call
	if !cc.RelayOnly() || !bc.RelayOnly() {
		t.Fatal("a call with a stranger is not relay-only")
	}
	if err := bc.Answer(Media{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*device{carol, bob} {
		if e := d.until(Connected); e.Local != "relay" || !peerRelay(e.Remote) {
			t.Fatalf("%s: stranger call connected over %s/%s", d.name, e.Local, e.Remote)
		}
	}
	hangupBoth(t, cc, carol, bob)
}

func TestCallHangupFromEitherSideEndsBoth(t *testing.T) {
	_, alice, bob := pair(t, devOpts{})
	for _, callee := range []bool{true, false} {
		ac, bc, _, _ := connect(t, alice, bob, Options{}, Media{})
		by, byDev, other := ac, alice, bob
		if callee {
			by, byDev, other = bc, bob, alice
		}
		a, b := hangupBoth(t, by, byDev, other)
		if a.Reason != ReasonHangup || b.Reason != ReasonRemoteHangup {
			t.Fatalf("hangup by %s: %s / %s", byDev.name, a.Reason, b.Reason)
		}
		<-ac.Done()
		<-bc.Done()
	}
	// Declining a ringing call ends the caller's.
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	bob.until(Ringing).Call.Decline()
	if e := alice.ended(); e.Reason != ReasonDeclined {
		t.Fatalf("caller ended with %s after a decline", e.Reason)
	}
	if e := bob.ended(); e.Reason != ReasonDeclined {
		t.Fatalf("callee ended with %s after declining", e.Reason)
	}
}

func TestCallAnsweredOnOneDeviceStopsTheOtherRinging(t *testing.T) {
	url := startServer(t)
	a := newClient(t, url, "alice")
	b := newClient(t, url, "bob")
	b2c := linkDevice(t, url, b, "bob-laptop")
	befriend(t, a, b, "bob", b2c)
	alice := newDevice(t, "alice", a, devOpts{})
	bob := newDevice(t, "bob", b, devOpts{})
	bob2 := newDevice(t, "bob-laptop", b2c, devOpts{})

	ac, err := alice.phone.Dial(ctxT(t), "bob", Options{})
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := bob.until(Ringing), bob2.until(Ringing)
	if r1.Call.ID() != ac.ID() || r2.Call.ID() != ac.ID() {
		t.Fatal("the devices ring for another call")
	}
	if err := r2.Call.Answer(Media{}); err != nil {
		t.Fatal(err)
	}
	if e := bob.ended(); e.Reason != ReasonAnsweredElsewhere {
		t.Fatalf("the other device ended with %s", e.Reason)
	}
	alice.until(Connected)
	bob2.until(Connected)
	if err := r1.Call.Answer(Media{}); err == nil {
		t.Fatal("answered a call already answered elsewhere")
	}
	hangupBoth(t, ac, alice, bob2)
	bob.quiet()
}

func TestCallBusyWhileInAnotherCall(t *testing.T) {
	url, alice, bob := pair(t, devOpts{})
	carol := newDevice(t, "carol", newClient(t, url, "carol"), devOpts{})
	ac, _, _, _ := connect(t, alice, bob, Options{}, Media{})
	if _, err := carol.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	if e := carol.ended(); e.Reason != ReasonBusy {
		t.Fatalf("calling a busy device ended with %s (%v)", e.Reason, e.Err)
	}
	if _, err := alice.phone.Dial(ctxT(t), "carol", Options{}); err == nil {
		t.Fatal("dialed while in a call")
	}
	hangupBoth(t, ac, alice, bob)
	bob.quiet()
}

func TestCallRingTimeoutEndsBothSides(t *testing.T) {
	_, alice, bob := pair(t, devOpts{ring: 1500 * time.Millisecond})
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	bob.until(Ringing)
	if e := alice.ended(); e.Reason != ReasonTimeout {
		t.Fatalf("caller ended with %s", e.Reason)
	}
	if e := bob.ended(); e.Reason != ReasonTimeout {
		t.Fatalf("callee ended with %s", e.Reason)
	}
}

func TestCallFromBlockedAccountNeverRings(t *testing.T) {
	url := startServer(t)
	a := newClient(t, url, "alice")
	b := newClient(t, url, "bob")
	c := newClient(t, url, "carol")
	befriend(t, a, b, "bob")
	if err := b.Block(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	alice := newDevice(t, "alice", a, devOpts{ring: time.Second})
	bob := newDevice(t, "bob", b, devOpts{})
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatal(err)
	}
	if e := alice.ended(); e.Reason != ReasonTimeout {
		t.Fatalf("calling someone who blocked you ended with %s (%v)", e.Reason, e.Err)
	}
	// Everything alice sent is processed once carol's later message is.
	if _, err := c.Send(ctxT(t), "bob", "after"); err != nil {
		t.Fatal(err)
	}
	for {
		e := <-bob.seen
		if r, ok := e.(*client.RequestEvent); ok && r.From == "carol" {
			break
		}
	}
	bob.quiet()
}

func TestCallGlareEndsInOneCall(t *testing.T) {
	url := startServer(t)
	a := newClient(t, url, "alice")
	b := newClient(t, url, "bob")
	befriend(t, a, b, "bob")
	sent := make(chan *wire.CallSignal, 64)
	watch := func(s Signaller) Signaller { return &watched{Signaller: s, sent: sent} }
	alice := newDevice(t, "alice", a, devOpts{signal: watch, noLoop: true})
	bob := newDevice(t, "bob", b, devOpts{signal: watch, noLoop: true})
	ac, err := alice.phone.Dial(ctxT(t), "bob", Options{})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bob.phone.Dial(ctxT(t), "alice", Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Both offers are on the server before either side reads.
	for offers := 0; offers < 2; {
		if (<-sent).GetOffer() != nil {
			offers++
		}
	}
	winner, loser := ac, bc
	if bc.ID() < ac.ID() {
		winner, loser = bc, ac
	}
	wantID := winner.ID()
	alice.listen()
	bob.listen()
	alice.until(Connected)
	bob.until(Connected)
	if ac.ID() != wantID || bc.ID() != wantID {
		t.Fatalf("connected on %s and %s; the lower id %s should win", ac.ID(), bc.ID(), wantID)
	}
	if winner.Incoming() || !loser.Incoming() {
		t.Fatal("the loser of the glare did not become the callee")
	}
	hangupBoth(t, ac, alice, bob)
}
