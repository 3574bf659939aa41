package cli

import (
	"context"
	"flag"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTURNFlags(t *testing.T) {
	parse := func(args ...string) (turnFlags, error) {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var tf turnFlags
		tf.register(fs)
		return tf, fs.Parse(args)
	}
	tf, _ := parse()
	c, err := tf.config()
	if err != nil || c.Listen != "127.0.0.1:3478" || c.AllowPrivate || c.TTL != 10*time.Minute || c.PublicIP != nil {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	tf, _ = parse("--turn-listen", "off")
	if c, err := tf.config(); err != nil || c.Listen != "" {
		t.Fatalf("off: %+v, %v", c, err)
	}
	tf, _ = parse("--turn-listen", "0.0.0.0:3478", "--turn-public-ip", "203.0.113.7", "--turn-allow-private",
		"--turn-ttl", "5m", "--turn-secret-file", "/s", "--turn-ports", "49152-49200",
		"--turn-device-quota", "0", "--turn-ip-quota", "7")
	c, err = tf.config()
	if err != nil || !c.PublicIP.Equal(net.ParseIP("203.0.113.7")) || !c.AllowPrivate || c.TTL != 5*time.Minute ||
		c.SecretFile != "/s" || c.MinPort != 49152 || c.MaxPort != 49200 || c.MaxAllocsPerDevice != -1 || c.MaxAllocsPerIP != 7 {
		t.Fatalf("all flags: %+v, %v", c, err)
	}
	for _, args := range [][]string{
		{"--turn-listen", "localhost:3478"},
		{"--turn-listen", "3478"},
		{"--turn-public-ip", "turn.example.org"},
		{"--turn-public-ip", "0.0.0.0"},
		{"--turn-ttl", "10s"},
		{"--turn-ttl", "48h"},
		{"--turn-ports", "5000"},
		{"--turn-ports", "6000-5000"},
		{"--turn-ports", "0-10"},
		{"--turn-ports", "1-70000"},
		{"--turn-ip-quota", "-1"},
	} {
		tf, err := parse(args...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tf.config(); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// A TURN port someone else holds stops serve with a hint at the flag.
func TestServeTURNPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr strings.Builder
	code := Run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--pow-bits", "0",
		"--turn-listen", ln.Addr().String()}, Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	if code != exitError || !strings.Contains(stderr.String(), "address already in use") || !strings.Contains(stderr.String(), "--turn-listen off") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
