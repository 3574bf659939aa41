package server

import (
	"bytes"
	"testing"

	"github.com/hush-chat/hush/internal/store"
)

// FuzzControlEvents hands arbitrary events to every control subject of a
// node, as another node (or anyone on the bus) could: nothing panics,
// and the node still serves afterwards.
func FuzzControlEvents(f *testing.F) {
	tc := startCluster(f, 1)
	node := tc.nodes[0]
	s := node.srv
	subjects := []string{ctlDevices, ctlBlocked, ctlDisconnect, ctlPow, ctlNodeKey,
		ctlLinkBase + s.cluster.node.String(), ctlLinkResult + s.cluster.node.String()}
	other := nodeTag{1, 2, 3, 4}
	event := func(body []byte) []byte {
		return append(append([]byte{controlVersion}, other[:]...), body...)
	}
	var addr [provisionAddressSize]byte
	copy(addr[:], s.cluster.node[:])
	for i := range subjects {
		f.Add(uint8(i), event([]byte("alice")))
		f.Add(uint8(i), event(encodeRef(store.DeviceRef{Username: "alice", ID: 7})))
		f.Add(uint8(i), event(append([]byte{nodeKeyAnnounce}, s.pub.Bytes()...)))
		f.Add(uint8(i), event(encodeLinkChunk(linkChunk{addr: addr, total: 3, count: 1, data: []byte("abc")})))
		f.Add(uint8(i), event(encodeLinkResult(xferID{9}, linkDelivered)))
		f.Add(uint8(i), []byte{})
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		tc.net.ctl.deliverNow(subjects[int(which)%len(subjects)], data)
	})
}

// deliverNow calls subject's handlers with data at once, bypassing the
// queue, for fuzzing.
func (m *memControl) deliverNow(subject string, data []byte) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for fn := range m.subs[subject] {
		(*fn)(data)
	}
}

// FuzzLinkChunk: parseLinkChunk accepts exactly what encodeLinkChunk
// makes of a valid chunk, and never panics.
func FuzzLinkChunk(f *testing.F) {
	f.Add(encodeLinkChunk(linkChunk{total: 1, count: 1, data: []byte{7}}))
	f.Add(encodeLinkChunk(linkChunk{total: linkChunkData + 1, index: 1, count: 2, data: []byte{7}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseLinkChunk(b)
		if err != nil {
			return
		}
		if c.total < 1 || c.total > MaxProvisionBody || c.index >= c.count || c.count > maxLinkChunks {
			t.Fatalf("accepted chunk %d/%d of a %d-byte payload", c.index, c.count, c.total)
		}
		if !bytes.Equal(encodeLinkChunk(c), b) {
			t.Fatal("chunk does not re-encode to its input")
		}
	})
}
