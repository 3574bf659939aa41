package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// hush bench starts its own server (this hush binary), loads it and
// reports; $HUSH_SERVER (here not loopback) must not redirect it.
func TestCLIBenchJSONReportsACleanRun(t *testing.T) {
	u := newHome(t, "http://192.0.2.1:8090")
	r := u.run("", "bench", "--users", "5", "--rate", "200", "--duration", "2s", "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d\nstderr: %s\nstdout: %s", r.code, r.stderr, r.stdout)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("want one line of JSON, got %q", r.stdout)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("not JSON: %v: %q", err, r.stdout)
	}
	num := func(k string) float64 {
		t.Helper()
		v, ok := m[k].(float64)
		if !ok {
			t.Fatalf("%q is %v (%T), want a number; report %s", k, m[k], m[k], r.stdout)
		}
		return v
	}
	for _, k := range []string{"users", "rate", "duration_s", "sent", "errors", "p999_ms", "server_rss_peak_bytes", "server_cpu_s", "bench_cpu_s"} {
		num(k)
	}
	if num("users") != 5 || num("rate") != 200 || num("duration_s") != 2 {
		t.Fatalf("configuration echoed wrong: %s", r.stdout)
	}
	if num("lost") != 0 || num("duplicated") != 0 || num("errors") != 0 {
		t.Fatalf("not clean: %s", r.stdout)
	}
	if num("sent") < 300 || num("delivered_per_sec") <= 0 || num("echo_ceiling_per_sec") <= 0 || num("server_rss_bytes") <= 0 {
		t.Fatalf("implausible: %s", r.stdout)
	}
	if p50, p99 := num("p50_ms"), num("p99_ms"); p50 <= 0 || p99 < p50 || num("p999_ms") < p99 {
		t.Fatalf("latencies: %s", r.stdout)
	}
}

func TestCLIBenchTable(t *testing.T) {
	u := newHome(t, "")
	r := u.run("", "bench", "--users", "3", "--rate", "100", "--duration", "1s")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d\nstderr: %s\nstdout: %s", r.code, r.stderr, r.stdout)
	}
	for _, want := range []string{"hush bench: 3 users", "\n  lost           0\n", "\n  duplicated     0\n", "latency        p50 ", "server RSS     ", "cpu time       server ", "echo ceiling   "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q in\n%s", want, r.stdout)
		}
	}
}

func TestCLIBenchRefusesRemoteServersAndUnboundedRuns(t *testing.T) {
	u := newHome(t, "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--server", "http://example.com:8090"}, "not a loopback address"},
		{[]string{"--server", "http://10.1.2.3:8090", "bench"}, "not a loopback address"},
		{[]string{"bench", "--users", "1"}, "--users must be 2 to 10000"},
		{[]string{"bench", "--users", "10001"}, "--users must be 2 to 10000"},
		{[]string{"bench", "--rate", "1000001"}, "--rate must be"},
		{[]string{"bench", "--duration", "25h"}, "--duration must be"},
		{[]string{"bench", "--peers", "100"}, "--peers must be"},
		{[]string{"bench", "now"}, "bench takes only flags"},
	} {
		r := u.run("", c.args...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "hush: ") || !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
}
