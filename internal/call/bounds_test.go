package call

import (
	"context"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/wire"
)

// These tests drive a Phone with the signals a hostile peer or server
// could hand it, through a stand-in for the client: what is checked is
// what the Phone keeps and sends, not the network.

// recorder is a Signaller that keeps what is sent; busy replies wait for
// hold to be closed (a slow or dead connection) if it is set.
type recorder struct {
	hold chan struct{}
	mu   sync.Mutex
	sent []*wire.CallSignal
}

func (r *recorder) SendCall(ctx context.Context, _ string, sig *wire.CallSignal) error {
	if r.hold != nil && sig.GetBusy() != nil {
		select {
		case <-r.hold:
		case <-ctx.Done():
		}
	}
	r.mu.Lock()
	r.sent = append(r.sent, sig)
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(kind func(*wire.CallSignal) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sent {
		if kind(s) {
			n++
		}
	}
	return n
}

// bareDevice is a Phone of bob's device 1 fed by hand.
func bareDevice(t *testing.T, sig Signaller) *device {
	t.Helper()
	d := &device{t: t, name: "bob", events: make(chan Event, 256)}
	var err error
	d.phone, err = New(Config{Self: "bob", Device: 1, Signal: sig, Events: func(e Event) { d.events <- e }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.phone.Close)
	return d
}

func signal(from string, device uint32, id []byte, s *wire.CallSignal) *client.CallEvent {
	s.CallId = id
	now := time.Now()
	return &client.CallEvent{From: from, Device: device, Sent: now, Received: now, Contact: true, Signal: s}
}

func offer(from string, device uint32, id []byte) *client.CallEvent {
	return signal(from, device, id, &wire.CallSignal{Kind: &wire.CallSignal_Offer{Offer: &wire.CallOffer{Sdp: "v=0\r\n"}}})
}

func hangupFrom(from string, device uint32, id []byte, r wire.CallHangup_Reason) *client.CallEvent {
	return signal(from, device, id, hangup(nil, r, device))
}

// A flood of offers while a call rings (strangers calling again and
// again) is answered busy by a bounded number of goroutines at a time, not
// one per offer: with the connection stuck, the replies beyond the bound
// are not sent at all.
func TestCallBusyRepliesAreBounded(t *testing.T) {
	sig := &recorder{hold: make(chan struct{})}
	bob := bareDevice(t, sig)
	bob.phone.Handle(offer("alice", 1, callID(0x01)))
	bob.until(Ringing)
	const flood = 5 * maxBusyReplies
	for i := range flood {
		bob.phone.Handle(offer("mallory", 1, callID(byte(0x10+i))))
	}
	close(sig.hold)
	bob.phone.Close()
	if n := sig.count(func(s *wire.CallSignal) bool { return s.GetBusy() != nil }); n != maxBusyReplies {
		t.Fatalf("%d busy replies sent for %d offers with the connection stuck, want %d", n, flood, maxBusyReplies)
	}
}

// An offer delivered after a hangup for its call (the server held it
// back, or a device came online and read a sibling's "answered elsewhere"
// first) does not ring, nor does a replay of a call that ended here. A
// hangup from someone other than the caller or this account changes
// nothing.
func TestCallOfferForACallKnownOverDoesNotRing(t *testing.T) {
	bob := bareDevice(t, &recorder{})
	// Answered on bob's device 2 before this one saw the offer.
	bob.phone.Handle(hangupFrom("bob", 2, callID(0x01), wire.CallHangup_ANSWERED_ELSEWHERE))
	bob.phone.Handle(offer("alice", 1, callID(0x01)))
	// Alice gave up before the offer got here.
	bob.phone.Handle(hangupFrom("alice", 1, callID(0x02), wire.CallHangup_TIMEOUT))
	bob.phone.Handle(offer("alice", 1, callID(0x02)))
	// Mallory cannot cancel alice's call.
	bob.phone.Handle(hangupFrom("mallory", 1, callID(0x03), wire.CallHangup_NORMAL))
	bob.phone.Handle(offer("alice", 1, callID(0x03)))
	// Had an earlier offer rung, this one would find bob busy.
	e := bob.until(Ringing)
	if e.Call.ID() != hexID(0x03) {
		t.Fatalf("call %s rang, want %s", e.Call.ID(), hexID(0x03))
	}
	e.Call.Decline()
	if e := bob.ended(); e.Reason != ReasonDeclined {
		t.Fatalf("ended with %s (%v)", e.Reason, e.Err)
	}
	// The declined call's offer again, then a new call.
	bob.phone.Handle(offer("alice", 1, callID(0x03)))
	bob.phone.Handle(offer("alice", 1, callID(0x04)))
	if e := bob.until(Ringing); e.Call.ID() != hexID(0x04) {
		t.Fatalf("call %s rang, want %s", e.Call.ID(), hexID(0x04))
	}
}

func hexID(n byte) string { return hex.EncodeToString(callID(n)) }

// The peer's candidates are bounded: every one is kept and checked (with
// packets sent to the address it names), so a flood fails the call.
func TestCallTooManyCandidatesFailsTheCall(t *testing.T) {
	sig := &recorder{}
	bob := bareDevice(t, sig)
	bob.phone.Handle(offer("alice", 7, callID(0x01)))
	bob.until(Ringing)
	mid := "0"
	cand, err := formatCandidate(webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host", SDPMid: &mid})
	if err != nil {
		t.Fatal(err)
	}
	for range maxRemoteCandidates + 1 {
		bob.phone.Handle(signal("alice", 7, callID(0x01), &wire.CallSignal{Kind: &wire.CallSignal_Ice{Ice: &wire.CallIce{Candidate: cand}}}))
	}
	bob.phone.Handle(hangupFrom("alice", 7, callID(0x01), wire.CallHangup_NORMAL))
	e := bob.ended()
	if e.Reason != ReasonFailed || e.Err == nil || !strings.Contains(e.Err.Error(), "ICE candidates") {
		t.Fatalf("ended with %s (%v), want failed for too many candidates", e.Reason, e.Err)
	}
	if n := sig.count(func(s *wire.CallSignal) bool { return s.GetHangup().GetReason() == wire.CallHangup_FAILED }); n != 1 {
		t.Fatalf("%d FAILED hangups sent, want 1", n)
	}
}

// Candidate lines inside the offer count towards the same bound: a
// description stuffed with them fails the call when answered.
func TestCallOfferWithTooManyCandidatesFailsTheAnswer(t *testing.T) {
	bob := bareDevice(t, &recorder{})
	sdp := "v=0\r\n" + strings.Repeat("a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n", maxRemoteCandidates+1)
	bob.phone.Handle(signal("alice", 7, callID(0x01), &wire.CallSignal{Kind: &wire.CallSignal_Offer{Offer: &wire.CallOffer{Sdp: sdp}}}))
	e := bob.until(Ringing)
	if err := e.Call.Answer(Media{}); err == nil || !strings.Contains(err.Error(), "ICE candidates") {
		t.Fatalf("answer: %v, want too many candidates", err)
	}
	if e := bob.ended(); e.Reason != ReasonFailed || !strings.Contains(e.Err.Error(), "ICE candidates") {
		t.Fatalf("ended with %s (%v)", e.Reason, e.Err)
	}
}

// A recording is bounded: the peer decides how much it sends, so past
// the limit the call fails rather than fill the disk.
func TestCallRecordingPastItsLimitFailsTheCall(t *testing.T) {
	_, alice, bob := pair(t, devOpts{})
	dir := t.TempDir()
	ac, bc, _, _ := connect(t, alice, bob, Options{Media: Media{AudioIn: aOgg}}, Media{RecordDir: dir, RecordLimit: 1000})
	be, ae := bob.ended(), alice.ended()
	if r, err := bc.Result(); r != ReasonFailed || !strings.Contains(err.Error(), "more than 1000 bytes") {
		t.Fatalf("bob's call ended with %s (%v), want failed for the recording's size", r, err)
	}
	if ae.Reason != ReasonFailed || ac != ae.Call {
		t.Fatalf("alice's call ended with %s (%v), want failed", ae.Reason, ae.Err)
	}
	if len(be.Recordings) != 1 {
		t.Fatalf("recordings %v, want bob's audio", be.Recordings)
	}
	for _, p := range be.Recordings {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 2000 { // the limit, plus the Ogg headers and pages
			t.Fatalf("%s holds %d bytes", p, st.Size())
		}
	}
}
