#!/bin/sh
# turnbench.sh: TURN relay throughput and CPU, the built-in relay of
# `hush serve` side by side with coturn, under one load from coturn's
# turnutils_uclient (docs/deploy.md, "TURN relay").
#
# Each round runs the same load against coturn and then against hush:
# STREAMS clients, each allocating on the relay and sending PACKETS
# datagrams of LEN bytes every INTERVAL ms through it to a turnutils_peer
# that echoes them back through the relay. Both relays authenticate with
# one TURN REST secret (coturn --static-auth-secret, hush
# --turn-secret-file), and uclient -W computes the credentials.
#
# Reported per relay: echoed packets per second (each one crosses the
# relay twice), relayed MB/s (both directions), loss, and the CPU seconds
# the relay process used, also as CPU per stream (percent of one core) and
# per relayed datagram. CPU is the sum over the process's threads of the
# time on CPU in /proc/PID/task/*/schedstat (nanoseconds; both relays keep
# their threads for the whole run), or else utime+stime from
# /proc/PID/stat, whose 10 ms ticks are coarse for a run of a few seconds.
#
# Needs Debian's coturn package (apt-get install coturn); without it the
# script says so and exits 0. Run from the repository root; it builds
# ./cmd/hush unless HUSH names a binary. BASE names a second hush binary
# (say, built from an older commit) that runs as "base" in every round
# between coturn and hush, so a change is measured before and after under
# the same load at the same time. Loopback only.
#
#   scripts/turnbench.sh [-m STREAMS] [-n PACKETS] [-l LEN] [-z INTERVAL_MS] [-r ROUNDS] [-p BASEPORT]
set -eu

streams=10 packets=2000 len=1200 interval=0 rounds=2 base=34780
while getopts m:n:l:z:r:p: opt; do
	case $opt in
	m) streams=$OPTARG ;;
	n) packets=$OPTARG ;;
	l) len=$OPTARG ;;
	z) interval=$OPTARG ;;
	r) rounds=$OPTARG ;;
	p) base=$OPTARG ;;
	*) echo "usage: $0 [-m STREAMS] [-n PACKETS] [-l LEN] [-z INTERVAL_MS] [-r ROUNDS] [-p BASEPORT]" >&2; exit 2 ;;
	esac
done

for tool in turnserver turnutils_uclient turnutils_peer; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "turnbench: skipped: $tool not found (apt-get install coturn)"
		exit 0
	fi
done

coturn_port=$base hush_port=$((base + 10)) peer_port=$((base + 20)) base_port=$((base + 30))
tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

hush=${HUSH:-}
if [ -z "$hush" ]; then
	hush=$tmp/hush
	go build -o "$hush" ./cmd/hush
fi

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$secret" >"$tmp/secret"
chmod 600 "$tmp/secret"

turnutils_peer -L 127.0.0.1 -p $peer_port >"$tmp/peer.log" 2>&1 &
pids="$pids $!"

turnserver -n --listening-ip 127.0.0.1 --listening-port $coturn_port --relay-ip 127.0.0.1 \
	--min-port 40000 --max-port 44999 --use-auth-secret --static-auth-secret "$secret" --realm hush \
	--allow-loopback-peers --no-cli --no-tls --no-dtls --pidfile "$tmp/coturn.pid" \
	--userdb "$tmp/turndb" --log-file "$tmp/coturn.log" --simple-log --no-stdout-log >/dev/null 2>&1 &
pids="$pids $!"

# serve NAME BINARY PORT: starts a hush relay; its pid is in $served.
serve() {
	"$2" serve --listen 127.0.0.1:0 --data "$tmp/$1-data" --pow-bits 0 \
		--turn-listen 127.0.0.1:$3 --turn-allow-private --turn-secret-file "$tmp/secret" \
		--turn-device-quota 0 --turn-ip-quota 0 >"$tmp/$1.log" 2>&1 &
	served=$!
	pids="$pids $served"
}
serve hush "$hush" $hush_port
hush_pid=$served
base_bin=${BASE:-}
if [ -n "$base_bin" ]; then
	serve base "$base_bin" $base_port
	base_pid=$served
fi

# Wait (bounded) for the relays.
i=0
started() { grep -q 'TURN relay listening' "$tmp/$1.log"; }
until [ -s "$tmp/coturn.pid" ] && started hush && { [ -z "$base_bin" ] || started base; }; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "turnbench: relays did not start" >&2
		cat "$tmp/hush.log" "$tmp/base.log" "$tmp/coturn.log" >&2 2>/dev/null || true
		exit 1
	fi
	sleep 0.1
done
sleep 0.5
coturn_pid=$(cat "$tmp/coturn.pid")

# cpu PID: CPU seconds the process has used so far.
ticks=$(getconf CLK_TCK)
if [ -r "/proc/$hush_pid/task/$hush_pid/schedstat" ]; then
	cpu() { cat /proc/"$1"/task/*/schedstat | awk '{ns += $1} END {printf "%.6f\n", ns / 1e9}'; }
else
	cpu() { awk -v hz="$ticks" '{printf "%.6f\n", ($14 + $15) / hz}' "/proc/$1/stat"; }
fi
now() { date +%s.%N; }

# run NAME PID PORT: one load against one relay; prints a result line.
run() {
	name=$1 pid=$2 port=$3
	c0=$(cpu "$pid")
	t0=$(now)
	turnutils_uclient -W "$secret" -u bench -e 127.0.0.1 -r $peer_port -p "$port" \
		-m "$streams" -n "$packets" -l "$len" -z "$interval" -c 127.0.0.1 >"$tmp/uclient.log" 2>&1 || true
	t1=$(now)
	c1=$(cpu "$pid")
	recv=$(sed -n 's/.*tot_recv_msgs=\([0-9]*\)$/\1/p' "$tmp/uclient.log" | tail -1)
	loss=$(sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' "$tmp/uclient.log" | tail -1)
	if [ -z "$recv" ]; then
		echo "turnbench: $name: uclient reported nothing:" >&2
		tail -5 "$tmp/uclient.log" >&2
		recv=0 loss=100
	fi
	awk -v n="$name" -v r="$recv" -v l="$loss" -v len="$len" -v s="$streams" \
		-v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" 'BEGIN {
		wall = t1 - t0; cpu = c1 - c0
		printf "%-8s %9d %10.0f %9.2f %7.2f %8.2f %8.3f %11.2f %10.3f\n", n, r, r / wall, 2 * r * len / wall / 1e6, l, wall, cpu, 100 * cpu / wall / s, (r > 0 ? 1000 * cpu / (2 * r) * 1000 : 0)
	}'
}

echo "load: $streams streams x $packets packets x $len bytes, interval ${interval} ms, echoed by turnutils_peer; $rounds rounds"
echo "cores: $(nproc), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-8s %9s %10s %9s %7s %8s %8s %11s %10s\n" relay echoed echoed/s "MB/s" "loss%" wall_s cpu_s "cpu%/stream" "us/pkt"
r=1
while [ $r -le "$rounds" ]; do
	run coturn "$coturn_pid" $coturn_port
	if [ -n "$base_bin" ]; then
		run base "$base_pid" $base_port
	fi
	run hush "$hush_pid" $hush_port
	r=$((r + 1))
done
echo "(MB/s counts both directions through the relay; us/pkt is relay CPU per relayed datagram)"
