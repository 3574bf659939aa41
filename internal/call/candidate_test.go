package call

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestCandidateJSONRoundTripAndRejects(t *testing.T) {
	mid, idx := "0", uint16(0)
	in := webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", SDPMid: &mid, SDPMLineIndex: &idx}
	s, err := formatCandidate(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCandidate(s)
	if err != nil || got.Candidate != in.Candidate || *got.SDPMid != mid || *got.SDPMLineIndex != idx {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{
		``, `null`, `[]`, `{}`, `{"candidate":""}`,
		`{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}`,                         // neither mid nor index
		`{"candidate":"x","sdpMid":"0"}`,                                                 // not a candidate line
		`{"candidate":"candidate:1\n","sdpMid":"0"}`,                                     // control character
		`{"candidate":"candidate:1","sdpMid":"0","extra":1}`,                             // unknown field
		`{"candidate":"candidate:1","sdpMid":"0"} {}`,                                    // trailing data
		`{"candidate":"candidate:1","sdpMLineIndex":70000}`,                              // out of range
		`{"candidate":"candidate:1","sdpMid":"0","candidate":"candidate:2"}` + `garbage`, // trailing garbage
	} {
		if _, err := parseCandidate(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzParseCandidate: a peer's CallIce.candidate never panics the parser,
// and what it accepts formats and parses back to the same candidate.
func FuzzParseCandidate(f *testing.F) {
	f.Add(`{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}`)
	f.Add(`{"candidate":"candidate:2 1 udp 1 10.0.0.1 3478 typ relay raddr 0.0.0.0 rport 0","sdpMid":"1","usernameFragment":"abcd"}`)
	f.Add(`{"candidate":"a=candidate:x","sdpMLineIndex":3}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCandidate(s)
		if err != nil {
			return
		}
		out, err := formatCandidate(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := parseCandidate(out)
		if err != nil || c2.Candidate != c.Candidate {
			t.Fatalf("%q reformatted as %q: %v", s, out, err)
		}
	})
}
