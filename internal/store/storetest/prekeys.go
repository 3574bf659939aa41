package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/hush-chat/hush/internal/store"
)

func testUploadPrekeys(t *testing.T, h *harness) {
	s := h.store(t, "upload_prekeys")
	ctx := t.Context()
	createAccount(t, s, "alice", 1) // one-time ids 1-5, KEM one-time ids 1-3
	ref := store.DeviceRef{Username: "alice", ID: 1}

	// Ids 4 and 5 are already stored: their new keys are ignored.
	up := store.PrekeyUpload{
		OneTime: []store.OneTimePrekey{
			{ID: 4, Key: []byte("replacement-4")}, {ID: 5, Key: []byte("replacement-5")},
			{ID: 6, Key: []byte("otk-new-6")}, {ID: 7, Key: []byte("otk-new-7")},
		},
		KEMOneTime: []store.KEMPrekey{
			{ID: 3, Key: []byte("replacement-kem-3"), Signature: []byte("x")},
			{ID: 4, Key: []byte("kem-new-4"), Signature: []byte("kem-new-sig-4")},
		},
	}
	must(t, s.UploadPrekeys(ctx, ref, up), "UploadPrekeys")
	checkCounts(t, s, ref, 7, 4)

	// Rotate the signed prekey and the last-resort key.
	must(t, s.UploadPrekeys(ctx, ref, store.PrekeyUpload{
		SignedPrekey:  &store.SignedPrekey{ID: 2, Key: []byte("spk-2"), Signature: []byte("spk-sig-2")},
		KEMLastResort: &store.KEMPrekey{ID: 20000, Key: []byte("kem-lr-2"), Signature: []byte("kem-lr-sig-2")},
	}), "UploadPrekeys (rotation)")
	// An empty upload changes nothing.
	must(t, s.UploadPrekeys(ctx, ref, store.PrekeyUpload{}), "UploadPrekeys (empty)")
	checkCounts(t, s, ref, 7, 4)

	oneTime := map[uint32]string{}
	kem := map[uint32]string{}
	for i := range 8 {
		set, err := s.TakePrekeys(ctx, ref)
		must(t, err, "TakePrekeys")
		if set.SignedPrekey.ID != 2 || string(set.SignedPrekey.Key) != "spk-2" || string(set.SignedPrekey.Signature) != "spk-sig-2" {
			t.Fatalf("take %d: signed prekey %+v, want the rotated one", i, set.SignedPrekey)
		}
		if set.OneTime != nil {
			oneTime[set.OneTime.ID] = string(set.OneTime.Key)
		}
		if set.KEMLastResort {
			if set.KEM.ID != 20000 || string(set.KEM.Key) != "kem-lr-2" || string(set.KEM.Signature) != "kem-lr-sig-2" {
				t.Fatalf("take %d: last-resort KEM key %+v, want the rotated one", i, set.KEM)
			}
		} else {
			kem[set.KEM.ID] = string(set.KEM.Key)
		}
	}
	wantOneTime := map[uint32]string{1: "otk-alice-1-1", 2: "otk-alice-1-2", 3: "otk-alice-1-3",
		4: "otk-alice-1-4", 5: "otk-alice-1-5", 6: "otk-new-6", 7: "otk-new-7"}
	wantKEM := map[uint32]string{1: "kem-alice-1-1", 2: "kem-alice-1-2", 3: "kem-alice-1-3", 4: "kem-new-4"}
	if fmt.Sprint(oneTime) != fmt.Sprint(wantOneTime) {
		t.Fatalf("one-time keys handed out: %v, want %v", oneTime, wantOneTime)
	}
	if fmt.Sprint(kem) != fmt.Sprint(wantKEM) {
		t.Fatalf("KEM one-time keys handed out: %v, want %v", kem, wantKEM)
	}

	err := s.UploadPrekeys(ctx, store.DeviceRef{Username: "alice", ID: 2}, newPrekeys("x", 1, 1, 1))
	wantErr(t, err, store.ErrNotFound, "UploadPrekeys(alice/2)")
	err = s.UploadPrekeys(ctx, store.DeviceRef{Username: "nobody", ID: 1}, newPrekeys("x", 1, 1, 1))
	wantErr(t, err, store.ErrNotFound, "UploadPrekeys(nobody/1)")
}

func testTakePrekeysInOrder(t *testing.T, h *harness) {
	s := h.store(t, "take_prekeys_in_order")
	ctx := t.Context()
	createAccount(t, s, "alice", 1, 2) // per device: 5 one-time, 3 KEM one-time
	ref := store.DeviceRef{Username: "alice", ID: 1}
	up := newPrekeys("alice-1", 1, 5, 3)
	seenOneTime := map[uint32]bool{}
	seenKEM := map[uint32]bool{}
	for i := range 7 {
		set, err := s.TakePrekeys(ctx, ref)
		must(t, err, "TakePrekeys")
		checkDevice(t, set.Device, newDevice("alice", 1))
		if !signedEqual(set.SignedPrekey, *up.SignedPrekey) {
			t.Fatalf("take %d: signed prekey %+v", i, set.SignedPrekey)
		}
		switch {
		case i < 5 && set.OneTime == nil:
			t.Fatalf("take %d: no one-time key while %d remain", i, 5-i)
		case i >= 5 && set.OneTime != nil:
			t.Fatalf("take %d: one-time key %d handed out after all 5 were taken", i, set.OneTime.ID)
		case set.OneTime != nil:
			if seenOneTime[set.OneTime.ID] {
				t.Fatalf("take %d: one-time key %d handed out twice", i, set.OneTime.ID)
			}
			seenOneTime[set.OneTime.ID] = true
			if want := fmt.Sprintf("otk-alice-1-%d", set.OneTime.ID); string(set.OneTime.Key) != want {
				t.Fatalf("take %d: one-time key %d is %q, want %q", i, set.OneTime.ID, set.OneTime.Key, want)
			}
		}
		switch {
		case i < 3 && set.KEMLastResort:
			t.Fatalf("take %d: last-resort KEM key while %d one-time remain", i, 3-i)
		case i >= 3 && !set.KEMLastResort:
			t.Fatalf("take %d: KEM key %d is not the last resort after all 3 one-time were taken", i, set.KEM.ID)
		case set.KEMLastResort:
			if !kemEqual(set.KEM, *up.KEMLastResort) {
				t.Fatalf("take %d: last-resort KEM key %+v, want %+v", i, set.KEM, *up.KEMLastResort)
			}
		default:
			if seenKEM[set.KEM.ID] {
				t.Fatalf("take %d: KEM key %d handed out twice", i, set.KEM.ID)
			}
			seenKEM[set.KEM.ID] = true
			if !kemEqual(set.KEM, up.KEMOneTime[set.KEM.ID-1]) {
				t.Fatalf("take %d: KEM key %+v, want %+v", i, set.KEM, up.KEMOneTime[set.KEM.ID-1])
			}
		}
		checkCounts(t, s, ref, max(0, 5-(i+1)), max(0, 3-(i+1)))
	}
	// The other device's keys were not touched.
	checkCounts(t, s, store.DeviceRef{Username: "alice", ID: 2}, 5, 3)
}

func signedEqual(a, b store.SignedPrekey) bool {
	return a.ID == b.ID && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Signature, b.Signature)
}

func kemEqual(a, b store.KEMPrekey) bool {
	return a.ID == b.ID && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Signature, b.Signature)
}

// testTakePrekeysConcurrent races many requesters for few keys: each
// one-time key must go to exactly one of them.
func testTakePrekeysConcurrent(t *testing.T, h *harness) {
	s := h.store(t, "take_prekeys_concurrent")
	ctx := t.Context()
	const (
		workers    = 8
		takes      = 50
		oneTime    = 30
		kemOneTime = 20
	)
	ref := store.DeviceRef{Username: "alice", ID: 1}
	must(t, s.CreateAccount(ctx, newAccount("alice", 1), []store.Device{newDevice("alice", 1)},
		map[uint32]store.PrekeyUpload{1: newPrekeys("c", 1, oneTime, kemOneTime)}), "CreateAccount")

	work := make(chan struct{}, takes)
	for range takes {
		work <- struct{}{}
	}
	close(work)
	var (
		mu      sync.Mutex
		sets    []store.PrekeySet
		wg      sync.WaitGroup
		errOnce sync.Once
		takeErr error
	)
	for range workers {
		wg.Go(func() {
			for range work {
				set, err := s.TakePrekeys(ctx, ref)
				if err != nil {
					errOnce.Do(func() { takeErr = err })
					return
				}
				mu.Lock()
				sets = append(sets, set)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	must(t, takeErr, "concurrent TakePrekeys")
	if len(sets) != takes {
		t.Fatalf("%d takes returned, want %d", len(sets), takes)
	}

	oneTimeSeen := map[uint32]int{}
	kemSeen := map[uint32]int{}
	noOneTime, lastResort := 0, 0
	for _, set := range sets {
		if set.OneTime == nil {
			noOneTime++
		} else {
			oneTimeSeen[set.OneTime.ID]++
		}
		if set.KEMLastResort {
			lastResort++
			if set.KEM.ID != 1+10000 {
				t.Fatalf("last-resort KEM key has id %d, want %d", set.KEM.ID, 1+10000)
			}
		} else {
			kemSeen[set.KEM.ID]++
		}
	}
	for id, n := range oneTimeSeen {
		if n > 1 {
			t.Errorf("one-time key %d handed out %d times", id, n)
		}
	}
	for id, n := range kemSeen {
		if n > 1 {
			t.Errorf("KEM one-time key %d handed out %d times", id, n)
		}
	}
	if len(oneTimeSeen) != oneTime || noOneTime != takes-oneTime {
		t.Errorf("%d distinct one-time keys handed out and %d takes without one, want %d and %d",
			len(oneTimeSeen), noOneTime, oneTime, takes-oneTime)
	}
	if len(kemSeen) != kemOneTime || lastResort != takes-kemOneTime {
		t.Errorf("%d distinct KEM one-time keys handed out and %d last-resort, want %d and %d",
			len(kemSeen), lastResort, kemOneTime, takes-kemOneTime)
	}
	checkCounts(t, s, ref, 0, 0)
}

func testTakePrekeysNotFound(t *testing.T, h *harness) {
	s := h.store(t, "take_prekeys_not_found")
	ctx := t.Context()
	must(t, s.CreateAccount(ctx, newAccount("alice", 1),
		[]store.Device{newDevice("alice", 1), newDevice("alice", 2), newDevice("alice", 3)}, nil), "CreateAccount")

	_, err := s.TakePrekeys(ctx, store.DeviceRef{Username: "nobody", ID: 1})
	wantErr(t, err, store.ErrNotFound, "TakePrekeys(nobody/1)")
	_, err = s.TakePrekeys(ctx, store.DeviceRef{Username: "alice", ID: 9})
	wantErr(t, err, store.ErrNotFound, "TakePrekeys(alice/9)")
	_, err = s.TakePrekeys(ctx, store.DeviceRef{Username: "alice", ID: 1})
	wantErr(t, err, store.ErrNotFound, "TakePrekeys of a device with no keys")

	// A signed prekey and one-time X25519 keys but no KEM key at all: not
	// found, and no one-time key is used up by the failed attempt.
	full := newPrekeys("alice-2", 1, 4, 0)
	noKEM := store.DeviceRef{Username: "alice", ID: 2}
	must(t, s.UploadPrekeys(ctx, noKEM, store.PrekeyUpload{SignedPrekey: full.SignedPrekey, OneTime: full.OneTime}), "UploadPrekeys")
	_, err = s.TakePrekeys(ctx, noKEM)
	wantErr(t, err, store.ErrNotFound, "TakePrekeys without KEM keys")
	checkCounts(t, s, noKEM, 4, 0)

	// KEM keys and one-time keys but no signed prekey: not found either.
	full = newPrekeys("alice-3", 1, 4, 2)
	noSigned := store.DeviceRef{Username: "alice", ID: 3}
	must(t, s.UploadPrekeys(ctx, noSigned, store.PrekeyUpload{OneTime: full.OneTime, KEMOneTime: full.KEMOneTime}), "UploadPrekeys")
	_, err = s.TakePrekeys(ctx, noSigned)
	wantErr(t, err, store.ErrNotFound, "TakePrekeys without a signed prekey")
	checkCounts(t, s, noSigned, 4, 2)

	// With a signed prekey but no last-resort key, the one-time KEM keys
	// are handed out, and then the device has no KEM key left.
	must(t, s.UploadPrekeys(ctx, noSigned, store.PrekeyUpload{SignedPrekey: full.SignedPrekey}), "UploadPrekeys")
	for range 2 {
		set, err := s.TakePrekeys(ctx, noSigned)
		must(t, err, "TakePrekeys")
		if set.KEMLastResort {
			t.Fatal("last-resort KEM key handed out while none was uploaded")
		}
	}
	checkCounts(t, s, noSigned, 2, 0)
	_, err = s.TakePrekeys(ctx, noSigned)
	wantErr(t, err, store.ErrNotFound, "TakePrekeys after the KEM keys ran out")
	checkCounts(t, s, noSigned, 2, 0)
}
