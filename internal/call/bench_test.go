package call

import (
	"testing"
)

// BenchmarkCallSetup measures a call from Dial (the offer) to both sides
// connected, on loopback with a real server: direct (host candidates)
// and relayed through the server's TURN relay (relay-only). The callee
// answers as soon as it rings.
func BenchmarkCallSetup(b *testing.B) {
	for _, bc := range []struct {
		name  string
		relay bool
	}{{"direct", false}, {"relayed", true}} {
		b.Run(bc.name, func(b *testing.B) {
			url := startServer(b)
			a, c := newClient(b, url, "alice"), newClient(b, url, "bob")
			befriend(b, a, c, "bob")
			alice := newDevice(b, "alice", a, devOpts{})
			bob := newDevice(b, "bob", c, devOpts{})
			b.ResetTimer()
			for range b.N {
				ac, err := alice.phone.Dial(ctxT(b), "bob", Options{RelayOnly: bc.relay})
				if err != nil {
					b.Fatal(err)
				}
				if err := bob.until(Ringing).Call.Answer(Media{}); err != nil {
					b.Fatal(err)
				}
				alice.until(Connected)
				bob.until(Connected)
				b.StopTimer()
				ac.Hangup()
				alice.ended()
				bob.ended()
				b.StartTimer()
			}
		})
	}
}
