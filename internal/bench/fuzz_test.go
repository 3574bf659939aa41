package bench

import (
	"testing"
	"time"
)

// Everything the bench reads from the server or a peer is parsed here;
// none of it may panic, whatever the bytes.

func FuzzParsePayload(f *testing.F) {
	pt, _ := encodePayload(payload{from: 1, to: 2, seq: 3, sent: 4}, time.Unix(0, 0), 64)
	f.Add(pt)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePayload(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same fields.
		again, err := encodePayload(p, time.Unix(0, 0), 0)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := parsePayload(again); err != nil || q != p {
			t.Fatalf("%+v re-parsed as %+v, %v", p, q, err)
		}
	})
}

func FuzzParseMsgID(f *testing.F) {
	f.Add(msgID{from: 1, to: 2, seq: 3, run: 4}.encode(5))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseMsgID(b)
		if err != nil {
			return
		}
		if got, _ := parseMsgID(id.encode(0)); got != id {
			t.Fatalf("%+v re-parsed as %+v", id, got)
		}
	})
}

func FuzzParseMetric(f *testing.F) {
	f.Add([]byte("process_resident_memory_bytes 2.5e+07\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseMetric(b, metricsRSSName); err == nil && !(v >= 0) {
			t.Fatalf("value %g", v)
		}
	})
}

func FuzzParseProcStatus(f *testing.F) {
	f.Add([]byte("VmHWM:\t2048 kB\nVmRSS:\t1024 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if cur, peak, err := parseProcStatus(b); err == nil && (cur < 0 || peak < 0) {
			t.Fatalf("negative RSS %d %d", cur, peak)
		}
	})
}
