package turnrelay

import (
	"errors"
	"os"
	"testing"
	"time"
)

// BenchmarkRelayUDP measures one relayed stream: 1200-byte datagrams (a
// video RTP packet's size) from pion's TURN client through the relay to a
// loopback peer, at most 64 in flight so loopback buffers do not drop
// them. Over TCP the client's leg is TURN-over-TCP.
func BenchmarkRelayUDP(b *testing.B) { benchRelay(b, false) }
func BenchmarkRelayTCP(b *testing.B) { benchRelay(b, true) }

func benchRelay(b *testing.B, tcp bool) {
	const size, window = 1200, 64
	r := startRelay(b, nil)
	cred := issue(b, "bench", time.Now().Add(time.Hour))
	relay, err := turnClient(b, r, cred.Username, cred.Password, tcp).Allocate()
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	peer := udpPeer(b)
	relayTo(b, relay, peer, []byte("warm up: permission and channel"))

	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	lost := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for got := 0; got+lost < b.N; {
			peer.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := peer.ReadFrom(buf); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					// Whatever is still in flight after a second is lost.
					for n := window - len(credits); n > 0; n-- {
						lost++
						credits <- struct{}{}
					}
					continue
				}
				return
			}
			got++
			credits <- struct{}{}
		}
	}()
	msg := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		<-credits
		if _, err := relay.WriteTo(msg, peer.LocalAddr()); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(lost)/float64(b.N)*100, "%lost")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}
