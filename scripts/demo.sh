#!/usr/bin/env bash
# Offline demo of the compiler on a real Open vSwitch: a private userspace
# ovs-vswitchd (in its own network namespace) with node-1's br-int and the
# seed example's pods as ports. It shows who can reach the database before
# and after the Kubernetes 1.6 DefaultDeny annotation and policy, as traced
# by ovs-appctl ofproto/trace, and the flows with their origins.
# `make demo-down` (or scripts/demo.sh down) removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=/tmp/ovs-netpol-demo
NETNS=ovs-netpol-demo

down() {
	if [ -d "$STATE" ]; then
		for p in "$STATE"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
		sleep 0.5
	fi
	ip netns del "$NETNS" 2>/dev/null || true
	rm -rf "$STATE"
}
if [ "${1:-}" = down ]; then down; echo "demo removed"; exit 0; fi

[ "$(id -u)" = 0 ] || { echo "the demo needs root (network namespace, Open vSwitch)" >&2; exit 1; }
make -s deps
echo "== building ovs-netpol"
go build -o bin/ ./cmd/ovs-netpol
down
mkdir -p "$STATE"
export OVS_RUNDIR=$STATE
OFCTL="ovs-ofctl -O OpenFlow15"
VSCTL="ovs-vsctl --db=unix:$STATE/db.sock --timeout=10"
APPCTL="ovs-appctl -t $STATE/vswitchd.ctl"

echo "== starting a private Open vSwitch in $STATE (vswitchd in netns $NETNS)"
ovsdb-tool create "$STATE/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$STATE/conf.db" --remote="punix:$STATE/db.sock" --unixctl="$STATE/ovsdb.ctl" \
	--pidfile="$STATE/ovsdb.pid" --log-file="$STATE/ovsdb.log" -vconsole:off --detach
$VSCTL --no-wait init
ip netns add "$NETNS"
ip netns exec "$NETNS" env OVS_RUNDIR="$STATE" ovs-vswitchd "unix:$STATE/db.sock" \
	--unixctl="$STATE/vswitchd.ctl" --pidfile="$STATE/vswitchd.pid" --log-file="$STATE/vswitchd.log" -vconsole:off --detach
$VSCTL -- add-br br-int -- set Bridge br-int datapath_type=netdev fail_mode=secure \
	protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15
for p in db:10 frontend:11 backend:12; do
	$VSCTL -- add-port br-int "${p%%:*}" -- set Interface "${p%%:*}" type=internal ofport_request="${p##*:}"
done
for _ in $(seq 50); do [ -S "$STATE/br-int.mgmt" ] && break; sleep 0.1; done

# who: name, in_port, source IP, source MAC
SOURCES=(
	"default/frontend 11 10.244.1.11 0a:58:0a:f4:01:0b"
	"default/backend  12 10.244.1.12 0a:58:0a:f4:01:0c"
	"myproject/client LOCAL 10.244.2.20 02:00:00:00:00:01"
	"other/stranger   LOCAL 10.244.2.21 02:00:00:00:00:01"
	"external         LOCAL 192.0.2.1 02:00:00:00:00:01"
	"node-1(host)     LOCAL 172.18.0.1 02:00:00:00:00:01"
)
TARGETS=("default/db:6379/tcp 10.244.1.10 tcp 6379" "default/db:80/tcp 10.244.1.10 tcp 80" "default/backend:80/tcp 10.244.1.12 tcp 80")

matrix() {
	printf '%-18s' "from \\ to"
	for t in "${TARGETS[@]}"; do set -- $t; printf '%-24s' "$1"; done; echo
	for s in "${SOURCES[@]}"; do
		set -- $s; local name=$1 in=$2 sip=$3 smac=$4
		printf '%-18s' "$name"
		for t in "${TARGETS[@]}"; do
			set -- $t
			if [ "$sip" = "$2" ]; then printf '%-24s' "-  (itself)"; continue; fi
			local flow="in_port=$in,$3,dl_src=$smac,dl_dst=0a:58:0a:f4:01:0a,nw_src=$sip,nw_dst=$2,$3_src=40000,$3_dst=$4"
			local last
			last=$($APPCTL ofproto/trace br-int "$flow" --ct-next trk,new | grep '^Datapath actions' | tail -1)
			if [ "$last" = "Datapath actions: drop" ]; then printf '%-24s' "X  blocked"; else printf '%-24s' ".  connected"; fi
		done
		echo
	done
}

echo
echo "== 1. the pods, no policy: everything is open"
./bin/ovs-netpol compile -f examples/seed/pods.yaml --node node-1 --ports examples/seed/ports.txt --isolation v1.6 2>/dev/null > "$STATE/open.flows"
$OFCTL --bundle replace-flows br-int "$STATE/open.flows"
matrix
echo
echo "== 2. kubectl annotate ns default DefaultDeny + the v1.6 policy test-network-policy"
echo "   (examples/seed/namespace.yaml, examples/seed/policy.yaml; --isolation v1.6)"
./bin/ovs-netpol compile -f examples/seed --node node-1 --ports examples/seed/ports.txt --isolation v1.6 > "$STATE/seed.flows"
$OFCTL --bundle replace-flows br-int "$STATE/seed.flows"
matrix
echo
echo "== the policy's flows on br-int (one conjunction: targets x peers x ports):"
grep -E '^# conjunctions|^#   |policy default/test-network-policy' "$STATE/seed.flows" | head -5
cookie=$(grep -m1 -oE '# cookie 0x[0-9a-f]+: policy default/test-network-policy' "$STATE/seed.flows" | awk '{print $3}' | tr -d :)
$OFCTL dump-flows br-int "cookie=$cookie/-1" --no-stats
echo
cat <<EOM
== the switch keeps running. Try:
   export OVS_RUNDIR=$STATE
   $OFCTL dump-flows br-int
   $APPCTL ofproto/trace br-int 'in_port=11,tcp,nw_src=10.244.1.11,nw_dst=10.244.1.10,tcp_dst=6379' --ct-next trk,new
   less $STATE/seed.flows        # every flow with the origin that made it
   make demo-down                # removes the switch, namespace and files
EOM
