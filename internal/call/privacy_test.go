package call

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// drain returns what was sent so far.
func drain(ch chan *wire.CallSignal) []*wire.CallSignal {
	var out []*wire.CallSignal
	for {
		select {
		case s := <-ch:
			out = append(out, s)
		default:
			return out
		}
	}
}

// candidateTypes checks the descriptions and candidates a device sent: no
// description carries a candidate or an address other than 0.0.0.0, and
// every candidate is valid; it returns the count of candidates by type.
// A relay candidate must not name the local address it was gathered from.
func candidateTypes(t *testing.T, who string, sent []*wire.CallSignal) map[string]int {
	t.Helper()
	types := map[string]int{}
	for _, s := range sent {
		if sdp := s.GetOffer().GetSdp() + s.GetAnswer().GetSdp(); sdp != "" {
			for _, l := range strings.Split(sdp, "\r\n") {
				if strings.HasPrefix(l, "a=candidate") || strings.HasPrefix(l, "c=") && l != "c=IN IP4 0.0.0.0" ||
					strings.HasPrefix(l, "o=") && !strings.HasSuffix(l, " IN IP4 0.0.0.0") {
					t.Errorf("%s: a description sent says %q", who, l)
				}
			}
		}
		ice1 := s.GetIce()
		if ice1 == nil {
			continue
		}
		init, err := parseCandidate(ice1.GetCandidate())
		if err != nil {
			t.Fatalf("%s sent %q: %v", who, ice1.GetCandidate(), err)
		}
		c, err := ice.UnmarshalCandidate(init.Candidate)
		if err != nil {
			t.Fatalf("%s sent %q: %v", who, init.Candidate, err)
		}
		types[c.Type().String()]++
		if r := c.RelatedAddress(); c.Type() == ice.CandidateTypeRelay && r != nil && r.Address != "" && r.Address != "0.0.0.0" {
			t.Errorf("%s: relay candidate %q names a local address", who, init.Candidate)
		}
	}
	return types
}

func TestCallRelayOnlySignalsNoAddressButTheRelays(t *testing.T) {
	url := startServer(t)
	a := newClient(t, url, "alice")
	b := newClient(t, url, "bob")
	c := newClient(t, url, "carol")
	befriend(t, a, b, "bob")
	as, bs, cs := make(chan *wire.CallSignal, 1024), make(chan *wire.CallSignal, 1024), make(chan *wire.CallSignal, 1024)
	watch := func(ch chan *wire.CallSignal) func(Signaller) Signaller {
		return func(s Signaller) Signaller { return &watched{Signaller: s, sent: ch} }
	}
	alice := newDevice(t, "alice", a, devOpts{signal: watch(as)})
	bob := newDevice(t, "bob", b, devOpts{signal: watch(bs)})
	carol := newDevice(t, "carol", c, devOpts{signal: watch(cs)})

	// A direct call first: the watch sees host candidates, so it is not
	// blind to them.
	ac, _, _, _ := connect(t, alice, bob, Options{}, Media{})
	hangupBoth(t, ac, alice, bob)
	for who, ch := range map[string]chan *wire.CallSignal{"alice": as, "bob": bs} {
		if n := candidateTypes(t, who, drain(ch))["host"]; n == 0 {
			t.Fatalf("%s sent no host candidate in a direct call", who)
		}
	}

	// Asked for by the caller.
	ac, _, _, _ = connect(t, alice, bob, Options{RelayOnly: true}, Media{})
	hangupBoth(t, ac, alice, bob)
	// Forced: a stranger calls.
	cc, err := carol.phone.Dial(ctxT(t), "bob", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.until(Ringing).Call.Answer(Media{}); err != nil {
		t.Fatal(err)
	}
	carol.until(Connected)
	bob.until(Connected)
	hangupBoth(t, cc, carol, bob)
	for who, ch := range map[string]chan *wire.CallSignal{"alice": as, "bob": bs, "carol": cs} {
		types := candidateTypes(t, who, drain(ch))
		if len(types) != 1 || types["relay"] == 0 {
			t.Errorf("%s sent candidates %v in relay-only calls, want relay only", who, types)
		}
	}
}

// forger replaces the DTLS fingerprint in the descriptions a device sends
// with another certificate's, before they are encrypted: what a server
// rewriting descriptions to get in the middle of the media would need,
// and what the end-to-end encryption keeps it from doing.
type forger struct{ Signaller }

var fingerprintLine = regexp.MustCompile(`a=fingerprint:sha-256 [0-9A-F:]+`)

func (f forger) SendCall(ctx context.Context, to string, sig *wire.CallSignal) error {
	sig = proto.Clone(sig).(*wire.CallSignal)
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	defer pc.Close()
	// A fingerprint of a certificate nobody in the call holds.
	if _, err := pc.CreateDataChannel("x", nil); err != nil {
		return err
	}
	other, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	forged := fingerprintLine.FindString(other.SDP)
	if o := sig.GetOffer(); o != nil {
		o.Sdp = fingerprintLine.ReplaceAllLiteralString(o.Sdp, forged)
	}
	if a := sig.GetAnswer(); a != nil {
		a.Sdp = fingerprintLine.ReplaceAllLiteralString(a.Sdp, forged)
	}
	return f.Signaller.SendCall(ctx, to, sig)
}

// TestCallRefusesMediaFromACertificateOtherThanSignalled shows pion checks
// the peer's DTLS certificate against the fingerprint in the description
// the ratchet delivered: with a forged fingerprint in the offer, then in
// the answer, the media never connects and the call fails.
func TestCallRefusesMediaFromACertificateOtherThanSignalled(t *testing.T) {
	for _, forgeAlice := range []bool{true, false} {
		url := startServer(t)
		a := newClient(t, url, "alice")
		b := newClient(t, url, "bob")
		befriend(t, a, b, "bob")
		// A short connect timeout bounds a handshake pion leaves hanging.
		ao, bo := devOpts{ring: 5 * time.Second}, devOpts{ring: 5 * time.Second}
		if forgeAlice {
			ao.signal = func(s Signaller) Signaller { return forger{s} }
		} else {
			bo.signal = func(s Signaller) Signaller { return forger{s} }
		}
		alice := newDevice(t, "alice", a, ao)
		bob := newDevice(t, "bob", b, bo)
		ac, err := alice.phone.Dial(ctxT(t), "bob", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.until(Ringing).Call.Answer(Media{}); err != nil {
			t.Fatal(err)
		}
		var errs []string
		for _, d := range []*device{alice, bob} {
			for {
				e := d.next()
				if e.State == Connected {
					t.Fatalf("forged fingerprint (alice's: %v): %s connected", forgeAlice, d.name)
				}
				if e.State == Ended {
					if e.Reason != ReasonFailed {
						t.Fatalf("forged fingerprint (alice's: %v): %s ended with %s (%v)", forgeAlice, d.name, e.Reason, e.Err)
					}
					errs = append(errs, e.Err.Error())
					break
				}
			}
		}
		// Usually the side whose DTLS failed first says "certificate is
		// not the one" (either may: the checker refuses the certificate,
		// the other sees the handshake aborted) and the other hears of
		// the failure; now and then pion leaves the refused handshake
		// hanging and the connect timeout ends it.
		t.Logf("forged fingerprint (alice's: %v): %q", forgeAlice, errs)
		if s := ac.Stats(); s.AudioReceived != 0 {
			t.Fatalf("media flowed: %+v", s)
		}
	}
}
