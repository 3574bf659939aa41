package cli

import (
	"flag"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/internal/turnrelay"
)

// turnFlags are serve's flags for the built-in TURN relay
// (docs/protocol.md §13.3, docs/deploy.md).
type turnFlags struct {
	listen, publicIP, secretFile, ports string
	allowPrivate                        bool
	ttl                                 time.Duration
	deviceQuota, ipQuota                int
}

func (tf *turnFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&tf.listen, "turn-listen", "127.0.0.1:3478", `TURN relay address, UDP and TCP (port 0 picks one; "off" runs no relay)`)
	fs.StringVar(&tf.publicIP, "turn-public-ip", "", "IP address clients and peers reach the TURN relay at (default: the --turn-listen IP)")
	fs.BoolVar(&tf.allowPrivate, "turn-allow-private", false, "let the TURN relay send to loopback and private addresses (local deployments and tests only)")
	fs.DurationVar(&tf.ttl, "turn-ttl", server.DefaultTURNTTL, "lifetime of the TURN credentials given to devices")
	fs.StringVar(&tf.secretFile, "turn-secret-file", "", "file holding the TURN REST shared secret, to share with other TURN servers (default: derived from the server key)")
	fs.StringVar(&tf.ports, "turn-ports", "", "relayed UDP port range MIN-MAX, for firewalls (default: any port)")
	fs.IntVar(&tf.deviceQuota, "turn-device-quota", turnrelay.DefaultMaxAllocsPerSubject, "live TURN allocations per device (0: no cap)")
	fs.IntVar(&tf.ipQuota, "turn-ip-quota", turnrelay.DefaultMaxAllocsPerIP, "live TURN allocations per client IP address (0: no cap)")
}

func (tf *turnFlags) config() (server.TURNConfig, error) {
	if tf.listen == "off" {
		return server.TURNConfig{}, nil
	}
	c := server.TURNConfig{Listen: tf.listen, AllowPrivate: tf.allowPrivate, TTL: tf.ttl, SecretFile: tf.secretFile}
	if host, _, err := net.SplitHostPort(tf.listen); err != nil || net.ParseIP(host) == nil {
		return c, usagef("serve: --turn-listen must be IP:PORT or off, not %q", tf.listen)
	}
	if tf.publicIP != "" {
		if c.PublicIP = net.ParseIP(tf.publicIP); c.PublicIP == nil || c.PublicIP.IsUnspecified() {
			return c, usagef("serve: --turn-public-ip must be an IP address, not %q", tf.publicIP)
		}
	}
	if tf.ttl < time.Minute || tf.ttl > 24*time.Hour {
		return c, usagef("serve: --turn-ttl must be 1m to 24h")
	}
	if tf.deviceQuota < 0 || tf.ipQuota < 0 {
		return c, usagef("serve: --turn-device-quota and --turn-ip-quota must not be negative")
	}
	c.MaxAllocsPerDevice, c.MaxAllocsPerIP = noCap(tf.deviceQuota), noCap(tf.ipQuota)
	if tf.ports != "" {
		lo, hi, ok := strings.Cut(tf.ports, "-")
		min, err1 := strconv.ParseUint(lo, 10, 16)
		max, err2 := strconv.ParseUint(hi, 10, 16)
		if !ok || err1 != nil || err2 != nil || min == 0 || min > max {
			return c, usagef("serve: --turn-ports must be MIN-MAX, 1 to 65535, not %q", tf.ports)
		}
		c.MinPort, c.MaxPort = uint16(min), uint16(max)
	}
	return c, nil
}

// noCap turns a flag's "0: no cap" into the config's negative.
func noCap(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
