package server

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
)

// ipPattern matches an IPv4 address, or the IPv6 loopback the tests use.
var ipPattern = regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}\b|::1`)

// TestSealedCanary is issue 5's canary: after sealed sends from alice to
// bob, no row of the server's database names alice next to those
// messages, and what the server logged for the sealed requests names
// neither alice nor any IP address (§9.8).
func TestSealedCanary(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	bc := ts.dial(t, bob)
	bob2 := newDeviceOf(t, bob, 2, 0)
	setList(t, bc, listOf(t, 2, bob, bob2))
	token := setToken(t, bc)
	bc.close()
	cert := certificate(t, ac)
	ac.close()
	// Alice's own connection logged her name, as it may. Once both
	// sessions have logged their end, everything logged is about the
	// sealed sends below.
	for _, u := range []string{"alice", "bob"} {
		eventually(t, u+"'s disconnect is logged", func() bool {
			return bytes.Contains(ts.logs.Bytes(), fmt.Appendf(nil, `"msg":"disconnected","user":%q`, u))
		})
	}
	mark := len(ts.logs.Bytes())

	var ids [][]byte
	for i := range 3 {
		req := sealedReq("bob", token, sealTo(t, cert, fmt.Appendf(nil, "sealed %d from %s", i, alice.name), bob, bob2))
		ts.mustPostSealed(t, req)
		ids = append(ids, req.MessageId)
	}
	// A refused one is logged too, and must say no more.
	status, _, e := ts.postSealed(t, sealedReq("bob", newToken(), sealTo(t, cert, []byte("x"), bob, bob2)))
	wantHTTPError(t, status, e, codeUnauthorized)

	window := ts.logs.Bytes()[mark:]
	if n := bytes.Count(window, []byte(`"msg":"sealed send stored","recipient":"bob","n":2`)); n != 3 {
		t.Fatalf("%d sealed sends logged as stored, want 3; the test proves nothing:\n%s", n, window)
	}
	checkSealedLogs(t, window)
	checkSealedRows(t, ts, ids)

	// Bob receives them sealed, with no sender.
	bc = ts.dial(t, bob)
	envs := bc.backlog(t)
	if len(envs) != 3 {
		t.Fatalf("bob got %d messages, want 3", len(envs))
	}
	for _, e := range envs {
		if !e.Sealed || e.Sender != "" || e.SenderDevice != 0 {
			t.Fatalf("envelope %v names a sender", e)
		}
	}
	bc.ack(t, envs...)
	bc.close()
	eventually(t, "bob's second disconnect is logged", func() bool {
		return bytes.Count(ts.logs.Bytes(), []byte(`"msg":"disconnected","user":"bob"`)) == 2
	})
	checkSealedLogs(t, ts.logs.Bytes()[mark:])
}

func checkSealedLogs(t *testing.T, logs []byte) {
	t.Helper()
	if bytes.Contains(logs, []byte("alice")) {
		t.Errorf("the log of the sealed sends names the sender:\n%s", logs)
	}
	if ip := ipPattern.Find(logs); ip != nil {
		t.Errorf("the log of the sealed sends holds an IP address (%s):\n%s", ip, logs)
	}
}

// checkSealedRows reads every row of every table in the server's SQLite
// database. A row that holds one of the sealed message ids must not name
// alice in any column, and a message row must have no sender.
func checkSealedRows(t *testing.T, ts *testServer, ids [][]byte) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(ts.dir, "hush.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	hits := 0
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := map[string]any{}
			holds := false
			for i, v := range vals {
				row[cols[i]] = v
				b := asBytes(v)
				for _, id := range ids {
					holds = holds || bytes.Contains(b, id)
				}
			}
			if !holds {
				continue
			}
			hits++
			for col, v := range row {
				if bytes.Contains(asBytes(v), []byte("alice")) {
					t.Errorf("table %s: column %s of a sealed message's row names the sender", table, col)
				}
			}
			if table == "messages" && (row["sender"] != "" || row["sender_device"] != int64(0)) {
				t.Errorf("sealed message row has sender %v, device %v", row["sender"], row["sender_device"])
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if want := 2 * len(ids); hits != want {
		t.Fatalf("%d rows hold the sealed message ids, want %d (one per copy)", hits, want)
	}
}

func asBytes(v any) []byte {
	switch v := v.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}
