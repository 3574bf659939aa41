package call

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/wire"
)

// callID is a call id of n repeated: tests pick ids to decide a glare.
func callID(n byte) []byte { return bytes.Repeat([]byte{n}, client.CallIDSize) }

// watchInto wraps a device's Signaller so that sent receives what it sends.
func watchInto(sent chan *wire.CallSignal) func(Signaller) Signaller {
	return func(s Signaller) Signaller { return &watched{Signaller: s, sent: sent} }
}

// waitSent waits until a signal for which ok holds has been sent (it is on
// the server then).
func waitSent(t *testing.T, sent chan *wire.CallSignal, what string, ok func(*wire.CallSignal) bool) {
	t.Helper()
	for {
		select {
		case s := <-sent:
			if ok(s) {
				return
			}
		case <-time.After(guard):
			t.Fatalf("no %s sent within %v", what, guard)
		}
	}
}

// threeDevices registers alice (one device) and bob (a phone and a
// laptop) as contacts.
func threeDevices(t *testing.T) (url string, a, b, b2 *client.Client) {
	url = startServer(t)
	a = newClient(t, url, "alice")
	b = newClient(t, url, "bob")
	b2 = linkDevice(t, url, b, "bob-laptop")
	befriend(t, a, b, "bob", b2)
	return url, a, b, b2
}

// Alice calls bob; his laptop rings for it, so her call is ringing, when
// the offer bob made meanwhile on his phone arrives. His call has the
// lower id and wins: alice drops hers (the laptop stops ringing) and
// answers his, rather than telling him she is busy while her own call
// rings on.
func TestCallGlareWhileOurCallRingsOnAnotherDevice(t *testing.T) {
	_, a, b, b2c := threeDevices(t)
	bobSent, laptopSent := make(chan *wire.CallSignal, 64), make(chan *wire.CallSignal, 64)
	// A short ring, so that a call that never connects fails the test soon.
	alice := newDevice(t, "alice", a, devOpts{noLoop: true, ring: 20 * time.Second})
	bob := newDevice(t, "bob", b, devOpts{noLoop: true, signal: watchInto(bobSent)})
	laptop := newDevice(t, "bob-laptop", b2c, devOpts{signal: watchInto(laptopSent)})

	ac, err := alice.phone.dial(ctxT(t), "bob", Options{}, callID(0xff))
	if err != nil {
		t.Fatal(err)
	}
	laptop.until(Ringing)
	waitSent(t, laptopSent, "ringing", func(s *wire.CallSignal) bool { return s.GetRinging() != nil })
	bc, err := bob.phone.dial(ctxT(t), "alice", Options{}, callID(0x01))
	if err != nil {
		t.Fatal(err)
	}
	waitSent(t, bobSent, "offer", func(s *wire.CallSignal) bool { return s.GetOffer() != nil })

	// Alice reads the laptop's ringing before bob's offer.
	alice.listen()
	alice.until(Ringing)
	bob.listen()
	alice.until(Connected)
	bob.until(Connected)
	want := hex.EncodeToString(callID(0x01))
	if ac.ID() != want || bc.ID() != want || !ac.Incoming() || bc.Incoming() {
		t.Fatalf("alice on %s (incoming %v), bob on %s (incoming %v); bob's call %s should have won", ac.ID(), ac.Incoming(), bc.ID(), bc.Incoming(), want)
	}
	if e := laptop.ended(); e.Reason != ReasonRemoteHangup {
		t.Fatalf("the laptop ringing for alice's dropped call ended with %s (%v)", e.Reason, e.Err)
	}
	x, y := hangupBoth(t, bc, bob, alice)
	if x.Reason != ReasonHangup || y.Reason != ReasonRemoteHangup {
		t.Fatalf("ended with %s / %s", x.Reason, y.Reason)
	}
	laptop.quiet()
}

// Alice has a call with bob's phone, ringing and then connected; his
// laptop calls her with a higher call id. That is no glare (her call is
// not an outgoing one waiting for an answer): she is busy, and the laptop
// must be told so rather than ring unanswered.
func TestCallNewOfferFromPeerInACallIsBusy(t *testing.T) {
	_, a, b, b2c := threeDevices(t)
	alice := newDevice(t, "alice", a, devOpts{})
	bob := newDevice(t, "bob", b, devOpts{})
	// A short ring, so that a laptop nobody answers fails the test soon.
	laptop := newDevice(t, "bob-laptop", b2c, devOpts{ring: 20 * time.Second})

	bc, err := bob.phone.dial(ctxT(t), "alice", Options{}, callID(0x01))
	if err != nil {
		t.Fatal(err)
	}
	ring := alice.until(Ringing)
	bob.until(Ringing)
	for i, then := range []func(){
		func() {}, // while it rings at alice
		func() { // once it is connected
			if err := ring.Call.Answer(Media{}); err != nil {
				t.Fatal(err)
			}
			alice.until(Connected)
			bob.until(Connected)
		},
	} {
		then()
		if _, err := laptop.phone.dial(ctxT(t), "alice", Options{}, callID(byte(0x02+i))); err != nil {
			t.Fatal(err)
		}
		if e := laptop.ended(); e.Reason != ReasonBusy {
			t.Fatalf("call %d: the laptop's call ended with %s (%v), not busy", i, e.Reason, e.Err)
		}
	}
	x, y := hangupBoth(t, bc, bob, alice)
	if x.Reason != ReasonHangup || y.Reason != ReasonRemoteHangup {
		t.Fatalf("ended with %s / %s", x.Reason, y.Reason)
	}
	alice.quiet()
}

// An answer to alice's call is queued ahead of bob's winning offer: the
// offer finds her call still ringing, but once it is handled the call is
// answered. It goes on with the laptop under its own id, and bob's phone
// is told she is busy.
func TestCallGlareAfterAnAnswerQueuedIsBusy(t *testing.T) {
	_, a, b, b2c := threeDevices(t)
	bobSent, laptopSent := make(chan *wire.CallSignal, 64), make(chan *wire.CallSignal, 64)
	alice := newDevice(t, "alice", a, devOpts{noLoop: true})
	// A short ring, so that a call never told busy fails the test soon.
	bob := newDevice(t, "bob", b, devOpts{noLoop: true, signal: watchInto(bobSent), ring: 20 * time.Second})
	laptop := newDevice(t, "bob-laptop", b2c, devOpts{signal: watchInto(laptopSent)})

	ac, err := alice.phone.dial(ctxT(t), "bob", Options{}, callID(0xff))
	if err != nil {
		t.Fatal(err)
	}
	if err := laptop.until(Ringing).Call.Answer(Media{}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, laptopSent, "answer", func(s *wire.CallSignal) bool { return s.GetAnswer() != nil })
	if _, err := bob.phone.dial(ctxT(t), "alice", Options{}, callID(0x01)); err != nil {
		t.Fatal(err)
	}
	waitSent(t, bobSent, "offer", func(s *wire.CallSignal) bool { return s.GetOffer() != nil })

	// Alice's call handles nothing until her phone has taken bob's offer.
	release := make(chan struct{})
	ac.post(func() { <-release })
	alice.listen()
	for offer := false; !offer; {
		select {
		case e := <-alice.seen:
			if c, ok := e.(*client.CallEvent); ok && c.Signal.GetOffer() != nil {
				offer = true
			}
		case <-time.After(guard):
			t.Fatal("alice did not receive bob's offer")
		}
	}
	close(release)
	bob.listen()
	if e := bob.next(); e.State != Calling {
		t.Fatalf("bob's call is %s first", e.State)
	}
	if e := bob.next(); e.State != Ended || e.Reason != ReasonBusy {
		t.Fatalf("bob's call went %s (%s: %v), not ended as busy", e.State, e.Reason, e.Err)
	}
	alice.until(Connected)
	laptop.until(Connected)
	if want := hex.EncodeToString(callID(0xff)); ac.ID() != want || ac.Incoming() {
		t.Fatalf("alice's call is %s (incoming %v), not her own %s", ac.ID(), ac.Incoming(), want)
	}
	x, y := hangupBoth(t, ac, alice, laptop)
	if x.Reason != ReasonHangup || y.Reason != ReasonRemoteHangup {
		t.Fatalf("ended with %s / %s", x.Reason, y.Reason)
	}
	if _, err := alice.phone.Dial(ctxT(t), "bob", Options{}); err != nil {
		t.Fatalf("alice cannot call after her call ended: %v", err)
	}
}
