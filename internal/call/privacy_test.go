package call

import (
	"strings"
	"testing"

	"github.com/pion/ice/v4"

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
