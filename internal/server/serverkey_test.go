package server

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/hush-chat/hush/internal/keys"
)

// TestServerKeyFileSharedByNodesStartingTogether: nodes that start at
// once with one --server-key path that does not exist yet all end up
// with the same key, and only the first reports creating it.
func TestServerKeyFileSharedByNodesStartingTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.key")
	const n = 8
	got := make([]keys.ServerPublic, n)
	made := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, created, err := loadOrCreateKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			got[i], made[i] = k.Public(), created
		})
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if !got[i].Equal(got[0]) {
			t.Fatalf("node %d has another key", i)
		}
		if made[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Fatalf("%d nodes report creating the key, want 1", creators)
	}
	// A node started later with the file loads it.
	s, err := New(Config{DataDir: t.TempDir(), ServerKeyFile: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.ServerKey().Equal(got[0]) {
		t.Fatal("ServerKeyFile not used")
	}
}
