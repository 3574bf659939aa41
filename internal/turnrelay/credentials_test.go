package turnrelay

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIssueMatchesTURNREST pins the TURN REST API form: coturn's
// static-auth-secret and pion's LongTermTURNRESTAuthHandler accept the
// same credentials. The vector was computed with
//
//	printf %s '1700000000:dev' | openssl dgst -sha1 -hmac 0123456789abcdef-test-secret -binary | base64
func TestIssueMatchesTURNREST(t *testing.T) {
	c, err := Issue(testSecret, "dev", time.Unix(1700000000, 999e6))
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "1700000000:dev" || !c.Expires.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("username %q expires %v", c.Username, c.Expires)
	}
	if c.Password != restVector {
		t.Fatalf("password %q, want %q", c.Password, restVector)
	}
	for _, bad := range []string{"", "a:b", strings.Repeat("x", maxSubjectLen+1), "dev/1"} {
		if _, err := Issue(testSecret, bad, time.Unix(1700000000, 0)); err == nil {
			t.Errorf("Issue accepted subject %q", bad)
		}
	}
	if _, err := Issue([]byte("short"), "dev", time.Unix(1700000000, 0)); err == nil {
		t.Error("Issue accepted a short secret")
	}
	if _, err := Issue(testSecret, "dev", time.Unix(0, 0)); err == nil {
		t.Error("Issue accepted expiry 0")
	}
}

func TestDeviceTag(t *testing.T) {
	a1, _ := DeviceTag(testSecret, "alice", 1)
	a1again, _ := DeviceTag(testSecret, "alice", 1)
	a2, _ := DeviceTag(testSecret, "alice", 2)
	b1, _ := DeviceTag(testSecret, "bob", 1)
	other, _ := DeviceTag([]byte("another deployment's secret"), "alice", 1)
	if a1 != a1again || a1 == a2 || a1 == b1 || a1 == other {
		t.Fatalf("tags not stable and distinct: %q %q %q %q %q", a1, a1again, a2, b1, other)
	}
	if err := checkSubject(a1); err != nil || strings.Contains(a1, "alice") {
		t.Fatalf("tag %q: %v", a1, err)
	}
}

func TestParseUsername(t *testing.T) {
	exp, sub, err := ParseUsername("1700000000:ab.C_d-9")
	if err != nil || exp.Unix() != 1700000000 || sub != "ab.C_d-9" {
		t.Fatalf("got %v %q %v", exp, sub, err)
	}
	for _, bad := range []string{
		"", ":", "1700000000", "1700000000:", ":dev", "01700000000:dev", "-1:dev", "+1:dev",
		"17000000000000:dev", "1e9:dev", "1700000000:dev:x", "1700000000:de v", "1700000000:dév",
		"1700000000:" + strings.Repeat("x", maxSubjectLen+1), " 1700000000:dev",
	} {
		if _, _, err := ParseUsername(bad); err == nil {
			t.Errorf("ParseUsername(%q) accepted", bad)
		}
	}
}

// FuzzParseUsername: a parsed username re-forms exactly, so nothing in it
// went unchecked, and authKey never accepts what ParseUsername refuses.
func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:dev", "1:a", "", "x:y", "01:a", "9999999999999:a"} {
		f.Add(s)
	}
	now := time.Unix(1, 0)
	f.Fuzz(func(t *testing.T, u string) {
		exp, sub, err := ParseUsername(u)
		_, ok := authKey(testSecret, u, DefaultRealm, now)
		if err != nil {
			if ok {
				t.Fatalf("authKey accepted unparsable %q", u)
			}
			return
		}
		if got := strings.Join([]string{strconv.FormatInt(exp.Unix(), 10), sub}, ":"); got != u {
			t.Fatalf("ParseUsername(%q) re-forms as %q", u, got)
		}
		if ok != now.Before(exp) {
			t.Fatalf("authKey(%q) = %v at %v", u, ok, now)
		}
	})
}

const restVector = "dQk8q34BJlDSaRYUnWh0/ZEowBo="
