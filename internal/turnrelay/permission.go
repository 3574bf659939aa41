package turnrelay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// blocked are the peer ranges a relay refuses unless AllowPrivate is set
// (docs/protocol.md §13.3), beyond what netip's predicates name: without
// this a TURN credential would reach the server's own network.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT shared space (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2002::/16"),       // 6to4: may embed any IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo: may embed any IPv4 address
	netip.MustParsePrefix("2001:10::/28"),    // ORCHID
	netip.MustParsePrefix("2001:20::/28"),    // ORCHIDv2
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its last 32 bits are
// an IPv4 address, judged as that address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// publicPeer reports whether a relay may send to ip by default: a global
// unicast address outside every special-purpose range.
func publicPeer(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// errOwnAddress: a relayed datagram addressed to the relay host itself.
var errOwnAddress = errors.New("turnrelay: refused to relay to the relay's own address")

// selfGuard keeps relayed sockets from sending to the relay host itself,
// which the permission check cannot see: permissions name an IP address
// only, and the host's own public address passes as public. A datagram
// to the relay's own TURN port would make the relay its own client (an
// allocation made from the relay's address escapes the per-IP cap, and
// relays can be chained in loops); one to another port of the host
// reaches whatever listens there on UDP, services a firewall keeps from
// the outside. So a relayed socket may send to the host's own addresses
// only at another live relayed port: both sides of a call relayed here.
// With AllowPrivate (local deployments, where the peers' own sockets are
// on the same host) only the TURN port is refused.
type selfGuard struct {
	turnPort int
	strict   bool                // only relayed ports of own addresses
	own      map[netip.Addr]bool // the host's addresses
	mu       sync.Mutex
	relayed  map[int]int // live relayed ports; a count, as IPv4 and IPv6 sockets may share one
}

// newSelfGuard knows the host by the listen and public IPs and the
// addresses of its interfaces.
func newSelfGuard(turnPort int, strict bool, ips ...net.IP) *selfGuard {
	g := &selfGuard{turnPort: turnPort, strict: strict, own: map[netip.Addr]bool{}, relayed: map[int]int{}}
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok && !a.Unmap().IsUnspecified() {
			g.own[a.Unmap()] = true
		}
	}
	for _, ip := range ips {
		add(ip)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil { // none known: the listed ones still count
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				add(n.IP)
			}
		}
	}
	return g
}

func (g *selfGuard) opened(port int) {
	g.mu.Lock()
	g.relayed[port]++
	g.mu.Unlock()
}

func (g *selfGuard) closed(port int) {
	g.mu.Lock()
	if g.relayed[port]--; g.relayed[port] <= 0 {
		delete(g.relayed, port)
	}
	g.mu.Unlock()
}

// allow reports whether a relayed socket may send to dst.
func (g *selfGuard) allow(dst net.Addr) bool {
	u, ok := dst.(*net.UDPAddr)
	if !ok {
		return false
	}
	a, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return false
	}
	a = a.Unmap()
	if !g.own[a] && !a.IsUnspecified() {
		return true
	}
	if u.Port == g.turnPort {
		return false
	}
	if !g.strict {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.relayed[u.Port] > 0
}
