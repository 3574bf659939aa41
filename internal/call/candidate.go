package call

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/hush-chat/hush/client"
)

// An ICE candidate travels in CallIce.candidate as the JSON of a WebRTC
// RTCIceCandidateInit (docs/protocol.md §13.1), the form browsers hand
// out and take, so a web client can use the same signalling:
//
//	{"candidate":"candidate:…","sdpMid":"0","sdpMLineIndex":0}
//
// usernameFragment may be present too. Parsing is strict: no unknown
// fields, nothing after the object, the candidate line non-empty (this
// protocol signals the end of candidates by not sending more).

// candidateJSON is RTCIceCandidateInit with every field optional, so a
// missing field can be told apart from a zero one.
type candidateJSON struct {
	Candidate        *string `json:"candidate"`
	SDPMid           *string `json:"sdpMid"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
	UsernameFragment *string `json:"usernameFragment"`
}

// maxCandidateLine bounds the candidate line; a real one is under 200
// bytes.
const maxCandidateLine = 512

// parseCandidate parses CallIce.candidate.
func parseCandidate(s string) (webrtc.ICECandidateInit, error) {
	if len(s) > client.MaxCallCandidate {
		return webrtc.ICECandidateInit{}, fmt.Errorf("ICE candidate of %d bytes", len(s))
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var c candidateJSON
	if err := dec.Decode(&c); err != nil {
		return webrtc.ICECandidateInit{}, fmt.Errorf("ICE candidate: %v", err)
	}
	if dec.More() || dec.InputOffset() != int64(len(bytes.TrimRight([]byte(s), " \t\r\n"))) {
		return webrtc.ICECandidateInit{}, errors.New("ICE candidate: data after the object")
	}
	if c.Candidate == nil || *c.Candidate == "" || len(*c.Candidate) > maxCandidateLine {
		return webrtc.ICECandidateInit{}, errors.New("ICE candidate: missing or oversized candidate line")
	}
	if !strings.HasPrefix(*c.Candidate, "candidate:") && !strings.HasPrefix(*c.Candidate, "a=candidate:") {
		return webrtc.ICECandidateInit{}, errors.New("ICE candidate: the line does not start with \"candidate:\"")
	}
	for _, r := range *c.Candidate {
		if r < 0x20 || r > 0x7e {
			return webrtc.ICECandidateInit{}, errors.New("ICE candidate: the line is not printable ASCII")
		}
	}
	if c.SDPMid == nil && c.SDPMLineIndex == nil {
		return webrtc.ICECandidateInit{}, errors.New("ICE candidate: neither sdpMid nor sdpMLineIndex")
	}
	return webrtc.ICECandidateInit{Candidate: *c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}, nil
}

// formatCandidate is the JSON parseCandidate reads.
func formatCandidate(c webrtc.ICECandidateInit) (string, error) {
	b, err := json.Marshal(candidateJSON{Candidate: &c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment})
	return string(b), err
}

// redact hides what a local candidate says beyond the address it offers.
// A relay candidate's related address is the local socket the relay is
// reached from, an address of this device, which relay-only calls exist
// to hide from the peer; it serves the peer nothing (browsers send
// 0.0.0.0 too), so it is left out.
func redact(c webrtc.ICECandidate) webrtc.ICECandidate {
	if c.Typ == webrtc.ICECandidateTypeRelay {
		c.RelatedAddress, c.RelatedPort = "", 0
	}
	return c
}

// withoutCandidates removes the candidate lines from a local session
// description: every local candidate is trickled (redacted) on its own,
// so the description need not carry any, and must not carry one
// unredacted.
func withoutCandidates(sdp string) string {
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, "a=candidate:") && !strings.HasPrefix(l, "a=end-of-candidates") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
