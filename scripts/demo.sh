#!/usr/bin/env bash
# The seed example (the Kubernetes 1.6 NetworkPolicy documentation) live, with
# real traffic, on this machine, on two nodes joined by a routed underlay
# (no shared L2) and the agents' Geneve overlay:
#
#   etcd + kube-apiserver (built from k8s.io/kubernetes, cached)
#   a router namespace (ovs-netpol-demo-rt) and two nodes, each a private
#   userspace Open vSwitch whose ovs-vswitchd runs in the node's "host"
#   network namespace (node-1: ovs-netpol-demo, node-2: ovs-netpol-demo-2):
#   its underlay address 172.30.N.2 (the Node's InternalIP) on a br-phy
#   bridge holding its link to the router, default route via 172.30.N.1
#   a Node object per node with spec.podCIDR 10.244.N.0/24, as the node IPAM
#   controller sets it
#   the ovs-netpol agent on each node (--isolation v1.6), started with the
#   same arguments on both (no node IP, no subnet): it puts the gateway
#   10.244.N.1 on br-int, creates the Geneve port, routes the other node's
#   podCIDR into br-int and writes the CNI configuration (pod MTU 1450)
#   kube-proxy (iptables mode, built like kube-apiserver, cached) in each
#   node's host namespace, as on a real node; it reaches the API server
#   through e2e/cmd/netns-forward
#   pods made as a runtime makes them: a Pod object, a network namespace
#   (demo-NAME) attached by the ovs-netpol CNI plugin with the configuration
#   its node's agent wrote, the pod IP from the CNI result; each runs a small
#   TCP/UDP server. node-1: db, backend; node-2: frontend, client, stranger
#   the db Service 10.96.0.10:6379 and its EndpointSlice
#   (examples/seed/service.yaml, the slice's address set to db's real IP)
#
# It prints who can connect to whom (real connections from inside the pods),
# directly and through the Service (pods: balanced inside br-int; the node's
# host: kube-proxy's iptables), applies the documentation's annotation (its
# exact kubectl command) and its policy (converted by `ovs-netpol convert`,
# applied with kubectl), prints the matrices again and the bridge's flows with
# their origins, and leaves it all running. `make demo-down` (scripts/demo.sh
# down) removes everything (kube-proxy's iptables rules go with the node's
# network namespace).
#
# Needs root, Debian 12, Go, kubectl; installs the Debian packages it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=/tmp/ovs-netpol-demo       # short: unix socket paths must stay < 108 bytes
NETNS=ovs-netpol-demo            # node-1's host network namespace (node-2: $NETNS-2)
ROUTER=$NETNS-rt                 # the router between the nodes
PODNS_PREFIX=demo-               # pod network namespaces
NODES=(node-1 node-2)
declare -A NS O GW UNDERLAY PODCIDR METRICS
for i in 1 2; do
	NS[node-$i]=$NETNS; [ $i = 1 ] || NS[node-$i]=$NETNS-$i
	O[node-$i]=$STATE/ovs$i                  # the node's Open vSwitch run dir
	GW[node-$i]=10.244.$i.1                  # its gateway on br-int (first address of its podCIDR)
	UNDERLAY[node-$i]=172.30.$i.2            # its InternalIP, on br-phy
	PODCIDR[node-$i]=10.244.$i.0/24          # its spec.podCIDR
done
CLUSTER_CIDR=10.244.0.0/16       # kube-proxy's clusterCIDR (detectLocalMode)
SERVICE_CIDR=10.96.0.0/16        # kube-apiserver's --service-cluster-ip-range
DB_VIP=10.96.0.10                # the db Service's cluster IP (examples/seed/service.yaml)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

down() {
	if [ -d "$STATE" ]; then
		# Every process the demo started left a pidfile.
		for p in "$STATE"/*.pid "$STATE"/ovs*/*.pid; do
			[ -f "$p" ] || continue
			pid=$(cat "$p" 2>/dev/null || true)
			[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
		done
		for p in "$STATE"/*.pid "$STATE"/ovs*/*.pid; do
			[ -f "$p" ] || continue
			pid=$(cat "$p" 2>/dev/null || true)
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
		done
	fi
	# Pod namespaces (their veths go with them), the nodes' and the router's.
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case "$ns" in "$PODNS_PREFIX"*|"$NETNS"|"$NETNS"-*) ip netns delete "$ns" 2>/dev/null || true ;; esac
	done
	rm -rf "$STATE"
}

if [ "${1:-}" = down ]; then
	down
	echo "demo removed (processes incl. kube-proxy, network namespaces with their veths and iptables rules, $STATE)"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, Open vSwitch)"
command -v go >/dev/null || die "Go is not installed"
command -v kubectl >/dev/null || die "kubectl is not installed"

say "installing what is missing (make deps)"
make -s deps
# openssl: the service account key; jq: the CNI configuration the agents write.
for tool in openssl jq; do
	if ! command -v $tool >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $tool
	fi
done

say "building ovs-netpol (agent, CNI plugin, CLI), netpol-agnhost and netns-forward"
go build -o bin/ ./cmd/... ./e2e/cmd/netpol-agnhost ./e2e/cmd/netns-forward
say "kube-apiserver and kube-proxy (built once from k8s.io/kubernetes and cached; ~10 min the first time)"
# build_kube COMPONENT: prints the cached binary's path, building it if missing.
build_kube() {
	local ticker bin
	# Its stdout is not the command substitution's pipe, which would stay open
	# (and the caller wait) until its sleep ends.
	(t0=$SECONDS; while sleep 30; do echo "   ... still building $1 ($((SECONDS - t0)) s)"; done) >&2 &
	ticker=$!
	bin=$(bash scripts/build-kube.sh "$1" | tail -1) || { kill $ticker; die "building $1 failed"; }
	kill $ticker 2>/dev/null || true
	echo "$bin"
}
APISERVER=$(build_kube kube-apiserver)
echo "$APISERVER"
KUBE_PROXY=$(build_kube kube-proxy) # after kube-apiserver: they share most of the build
echo "$KUBE_PROXY"

say "cleaning up a previous demo"
down
mkdir -p "$STATE"/{k8s,ovs1,ovs2,logs} "$STATE"/node-{1,2}/{cni-net.d,ipam}

# A free localhost TCP port.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		[ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }
	done
}
# start NAME CMD...: runs CMD in the background, logging, with a pidfile.
start() {
	local name=$1; shift
	setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
	echo $! >"$STATE/$name.pid"
}
wait_for() { # DESCRIPTION SECONDS COMMAND...
	local what=$1 secs=$2; shift 2
	for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	die "$what not ready after ${secs}s (logs in $STATE/logs)"
}
http_ok() { # HOST PORT PATH: a 200 over bash's /dev/tcp (no curl needed)
	exec 3<>"/dev/tcp/$1/$2" || return 1
	printf 'GET %s HTTP/1.0\r\n\r\n' "$3" >&3
	head -1 <&3 | grep -q ' 200 '
	local rc=$?
	exec 3>&-
	return $rc
}
http_get() { # HOST PORT PATH: the body of a GET over bash's /dev/tcp
	exec 3<>"/dev/tcp/$1/$2" || return 1
	printf 'GET %s HTTP/1.0\r\n\r\n' "$3" >&3
	sed '1,/^\r\{0,1\}$/d' <&3
	exec 3>&-
}

say "starting etcd and kube-apiserver"
K=$STATE/k8s
ETCD_PORT=$(free_port); PEER_PORT=$(free_port); API_PORT=$(free_port)
start etcd etcd --name=demo --data-dir="$K/etcd" \
	--listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
	--initial-cluster="demo=http://127.0.0.1:$PEER_PORT" --initial-cluster-state=new \
	--heartbeat-interval=10 --election-timeout=100 --logger=zap --log-outputs=stderr --log-level=warn
openssl genrsa -out "$K/sa.key" 2048 2>/dev/null
ADMIN_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
AGENT_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
PROXY_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
AGENT_USER=system:serviceaccount:ovs-netpol:ovs-netpol-agent
# system:kube-proxy: the bootstrap ClusterRoleBinding system:node-proxier
# already grants it what kube-proxy needs.
cat >"$K/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$AGENT_TOKEN,$AGENT_USER,$AGENT_USER,"system:serviceaccounts,system:serviceaccounts:ovs-netpol"
$PROXY_TOKEN,system:kube-proxy,system:kube-proxy
EOF
start kube-apiserver "$APISERVER" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
	--secure-port="$API_PORT" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
	--cert-dir="$K/certs" --service-cluster-ip-range=10.96.0.0/16 \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$K/sa.key" --service-account-signing-key-file="$K/sa.key" \
	--token-auth-file="$K/tokens.csv" --authorization-mode=RBAC --allow-privileged=true \
	--disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none --profiling=false
kubeconfig() { # FILE USER TOKEN
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
- name: "$2"
  user: {token: "$3"}
contexts:
- name: demo
  context: {cluster: demo, user: "$2"}
current-context: demo
EOF
}
export KUBECONFIG=$K/admin.kubeconfig
kubeconfig "$KUBECONFIG" admin "$ADMIN_TOKEN"
kubeconfig "$K/agent.kubeconfig" "$AGENT_USER" "$AGENT_TOKEN"
kubeconfig "$K/kube-proxy.kubeconfig" system:kube-proxy "$PROXY_TOKEN"
wait_for kube-apiserver 90 kubectl get --raw=/readyz
echo "kube-apiserver https://127.0.0.1:$API_PORT ready"
# The agent runs as its ServiceAccount, with the least-privilege RBAC of manifests/.
kubectl apply -f manifests/namespace.yaml -f manifests/rbac.yaml >/dev/null

say "the nodes: a router, and per node an underlay link, br-phy and its own Open vSwitch (userspace)"
ip netns add "$ROUTER"
ip -n "$ROUTER" link set lo up
ip netns exec "$ROUTER" sysctl -qw net.ipv4.ip_forward=1
# vsctl NODE ARGS...: ovs-vsctl against the node's database.
vsctl() { ovs-vsctl --db="unix:${O[$1]}/db.sock" --timeout=10 "${@:2}"; }
# ofctl NODE ARGS...: ovs-ofctl against the node's bridges (OVS_RUNDIR finds BRIDGE.mgmt).
ofctl() { OVS_RUNDIR=${O[$1]} ovs-ofctl -O OpenFlow15 "${@:2}"; }
for i in 1 2; do
	node=node-$i ns=${NS[node-$i]} o=${O[node-$i]}
	ovsdb-tool create "$o/conf.db" /usr/share/openvswitch/vswitch.ovsschema
	ovsdb-server "$o/conf.db" --remote="punix:$o/db.sock" --unixctl="$o/ovsdb.ctl" \
		--pidfile="$o/ovsdb-server.pid" --log-file="$o/ovsdb.log" -vconsole:off --detach 2>>"$STATE/logs/ovs.log" ||
		{ cat "$STATE/logs/ovs.log"; die "ovsdb-server of $node did not start"; }
	vsctl $node --no-wait init
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "$ns" env OVS_RUNDIR="$o" ovs-vswitchd "unix:$o/db.sock" \
		--unixctl="$o/vswitchd.ctl" --pidfile="$o/ovs-vswitchd.pid" --log-file="$o/vswitchd.log" -vconsole:off --detach \
		2>>"$STATE/logs/ovs.log" || { cat "$STATE/logs/ovs.log"; die "ovs-vswitchd of $node did not start"; }
	# The underlay: a veth to the router, held by br-phy (a plain NORMAL
	# bridge) whose LOCAL port has the node's address; ovs-vswitchd routes
	# and encapsulates the Geneve packets itself through it.
	ip link add ul0 netns "$ns" type veth peer name "r$i" netns "$ROUTER"
	ip -n "$ROUTER" addr add "172.30.$i.1/24" dev "r$i"
	ip -n "$ROUTER" link set "r$i" up
	ip -n "$ns" link set ul0 up
	vsctl $node -- add-br br-phy -- set Bridge br-phy datapath_type=netdev -- add-port br-phy ul0
	wait_for "br-phy of $node" 10 ip -n "$ns" link show br-phy
	ip -n "$ns" addr add "${UNDERLAY[$node]}/24" dev br-phy
	ip -n "$ns" link set br-phy up
	ip -n "$ns" route add default via "172.30.$i.1"
	# br-int made here only to turn TX checksum offload off on its tap before
	# the agent adopts it: userspace conntrack needs full checksums.
	vsctl $node -- add-br br-int -- set Bridge br-int datapath_type=netdev fail_mode=secure
	wait_for "br-int of $node" 10 test -S "$o/br-int.mgmt"
	for dev in ul0 br-phy br-int; do ip netns exec "$ns" ethtool -K $dev tx off >/dev/null; done
	ip netns exec "$ROUTER" ethtool -K "r$i" tx off >/dev/null
	printf '  %s: host namespace %-18s underlay %s/24 on br-phy, default via 172.30.%s.1; OVS in %s\n' \
		"$node" "$ns" "${UNDERLAY[$node]}" "$i" "$o"
done

say "the Node objects: spec.podCIDR (the node IPAM controller's) and the InternalIP (the kubelet's)"
for node in "${NODES[@]}"; do
	kubectl create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata: {name: $node, labels: {kubernetes.io/hostname: $node}}
spec: {podCIDR: ${PODCIDR[$node]}, podCIDRs: [${PODCIDR[$node]}]}
status:
  addresses: [{type: InternalIP, address: ${UNDERLAY[$node]}}, {type: Hostname, address: $node}]
EOF
done
kubectl get nodes -o custom-columns='NAME:.metadata.name,POD CIDR:.spec.podCIDR,INTERNAL IP:.status.addresses[0].address' | sed 's/^/  /'

say "starting the agents (--isolation v1.6), the same arguments on both nodes"
# Only --node-name differs, and what stands for each node's own machine
# (its OVS run dir, metrics port, /etc/cni/net.d, host namespace, audit log).
for node in "${NODES[@]}"; do
	METRICS[$node]=127.0.0.1:$(free_port)
	start "agent-$node" bin/ovs-netpol-agent --kubeconfig="$K/agent.kubeconfig" --node-name="$node" \
		--datapath-type=netdev --isolation=v1.6 --tunnel=geneve --audit-rate=20 --audit-burst=20 \
		--ovs-rundir="${O[$node]}" --metrics-addr="${METRICS[$node]}" --cni-conf-dir="$STATE/$node/cni-net.d" \
		--host-netns="/var/run/netns/${NS[$node]}" --audit-log="$STATE/logs/audit-$node.log"
done
for node in "${NODES[@]}"; do
	m=${METRICS[$node]}
	wait_for "the agent of $node" 60 http_ok "${m%:*}" "${m#*:}" /readyz
	wait_for "the CNI configuration of $node" 30 test -s "$STATE/$node/cni-net.d/10-ovs-netpol.conflist"
	echo "  agent of $node ready (/metrics, /readyz on $m)"
done
echo "  \$ ps -o args= -p \$(cat $STATE/agent-node-2.pid)"
ps -o args= -p "$(cat "$STATE/agent-node-2.pid")" | sed "s|$ROOT/||; s/^/    /"

say "what the agents set up: the overlay"
for node in "${NODES[@]}"; do
	ns=${NS[$node]}
	echo "  $node:"
	echo "    br-int (LOCAL):  $(ip -n "$ns" -o -4 addr show dev br-int | awk '$4 !~ /\/32$/ {print $4}' | head -1), mtu $(ip -n "$ns" -o link show dev br-int | grep -o 'mtu [0-9]*' | cut -d' ' -f2), MAC $(ip netns exec "$ns" cat /sys/class/net/br-int/address)"
	vsctl $node --format=csv --no-headings --columns=name,type,options,ofport find Interface type=geneve | sed 's/^/    Geneve port:     /'
	ip -n "$ns" route show proto 78 | sed 's/^/    host route:      /'
	ofctl $node dump-flows br-int --no-stats | grep -E 'tun_(src|dst)' | sed 's/^ *cookie=[^ ]* /    tunnel flow:     /'
done
echo "  the CNI configuration node-2's agent wrote ($STATE/node-2/cni-net.d/10-ovs-netpol.conflist):"
jq -c '.plugins[0] | {mtu, ipam: {ranges: .ipam.ranges}}' "$STATE/node-2/cni-net.d/10-ovs-netpol.conflist" | sed 's/^/    /'

say "starting kube-proxy (iptables mode) in each node's host namespace"
# The settings internal/k8stest/kubeproxy.go verified (see its comment): leave the
# conntrack sysctls, route_localnet and the OOM score alone; healthz and
# metrics on the node namespace's loopback.
for node in "${NODES[@]}"; do
	ns=${NS[$node]}
	# kube-apiserver listens on 127.0.0.1 of this namespace, which the node's
	# namespace cannot reach: forward the same port of its loopback to it.
	start "apiserver-forward-$node" bin/netns-forward "$ns" "127.0.0.1:$API_PORT" "127.0.0.1:$API_PORT"
	wait_for "the API server forwarder of $node" 10 grep -q listening "$STATE/logs/apiserver-forward-$node.log"
	cat >"$K/kube-proxy-$node.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $node
clientConnection: {kubeconfig: "$K/kube-proxy.kubeconfig"}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
bindAddressHardFail: true
detectLocalMode: ClusterCIDR
clusterCIDR: $CLUSTER_CIDR
nodePortAddresses: [primary]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
logging: {verbosity: 2}
EOF
	start "kube-proxy-$node" ip netns exec "$ns" "$KUBE_PROXY" --config="$K/kube-proxy-$node.yaml"
done
nat() { ip netns exec "${NS[$1]}" iptables-save -t nat; }
# wait_nat NODE WHAT SECONDS REGEXP: until the node's kube-proxy nat table has a line matching REGEXP.
wait_nat() {
	local node=$1 what=$2 secs=$3 re=$4
	for _ in $(seq $((secs * 10))); do
		kill -0 "$(cat "$STATE/kube-proxy-$node.pid")" 2>/dev/null ||
			die "kube-proxy of $node exited; the end of $STATE/logs/kube-proxy-$node.log:"$'\n'"$(tail -20 "$STATE/logs/kube-proxy-$node.log")"
		grep -q -- "$re" <<<"$(nat "$node" 2>/dev/null)" && return 0 # (not a pipe: pipefail and grep -q)
		sleep 0.1
	done
	die "$what not in the iptables rules of $node's kube-proxy after ${secs}s (logs in $STATE/logs)"
}
for node in "${NODES[@]}"; do
	# Its first full sync ends with KUBE-MARK-MASQ's rule.
	wait_nat "$node" "kube-proxy's first sync" 60 '^-A KUBE-MARK-MASQ '
	echo "  kube-proxy of $node synced (API through 127.0.0.1:$API_PORT in ${NS[$node]})"
done

say "creating the pods (Pod object, network namespace attached by the CNI plugin with its node's configuration, status IP from its result)"
kubectl create namespace myproject >/dev/null
kubectl label namespace myproject project=myproject >/dev/null
kubectl create namespace other >/dev/null
# cni_conf NODE: what a runtime hands the plugin from the list the node's
# agent wrote (libcni: the list's cniVersion and name in the plugin's
# object), plus what only this demo needs: the host end of the veth goes to
# the node's namespace, and host-local keeps its leases per node.
cni_conf() {
	jq -c --arg ns "/var/run/netns/${NS[$1]}" --arg dd "$STATE/$1/ipam" \
		'.plugins[0] + {cniVersion: .cniVersion, name: .name, hostNetNS: $ns} | .ipam.dataDir = $dd' \
		"$STATE/$1/cni-net.d/10-ovs-netpol.conflist"
}
declare -A IP NODE_OF
pod() { # NODE NAMESPACE NAME LABEL=VALUE [PORTS-YAML]
	local node=$1 ns=$2 name=$3 label=$4 ports=${5:-}
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {${label%=*}: ${label#*=}}}
spec:
  nodeName: $node
  automountServiceAccountToken: false
  containers:
  - name: $name
    image: netpol-agnhost
${ports}
EOF
	local uid netns=$PODNS_PREFIX$name cid
	uid=$(kubectl get pod -n "$ns" "$name" -o jsonpath='{.metadata.uid}')
	cid=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
	ip netns add "$netns"
	ip -n "$netns" link set lo up
	local result
	result=$(CNI_COMMAND=ADD CNI_CONTAINERID=$cid CNI_NETNS=/var/run/netns/$netns CNI_IFNAME=eth0 \
		CNI_PATH=/usr/lib/cni:$ROOT/bin \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name;K8S_POD_UID=$uid" \
		bin/ovs-netpol-cni <<<"$(cni_conf "$node")") || die "CNI ADD of $ns/$name failed: $result"
	echo "$cid $netns" >"$STATE/$node/$ns.$name.container"
	local addr
	addr=$(grep -o '"address": *"[0-9.]*/' <<<"$result" | grep -o '[0-9.]*/' | tr -d /)
	[ -n "$addr" ] || die "no address in the CNI result of $ns/$name: $result"
	IP[$ns/$name]=$addr
	NODE_OF[$ns/$name]=$node
	start "server-$name" ip netns exec "$netns" bin/netpol-agnhost serve --name "$ns/$name" --tcp 80,6379 --udp 80
	kubectl patch pod -n "$ns" "$name" --subresource=status --type=merge -p \
		"{\"status\":{\"phase\":\"Running\",\"podIP\":\"$addr\",\"podIPs\":[{\"ip\":\"$addr\"}]}}" >/dev/null
	printf '  %-18s %-7s %-13s netns %-16s mtu %s  %s\n' "$ns/$name" "$node" "$addr" "$netns" \
		"$(ip -n "$netns" -o link show eth0 | grep -o 'mtu [0-9]*' | cut -d' ' -f2)" "$label"
}
pod node-1 default db role=db "    ports: [{name: redis, containerPort: 6379}, {name: http, containerPort: 80}]"
pod node-1 default backend role=backend "    ports: [{containerPort: 80}]"
pod node-2 default frontend role=frontend
pod node-2 myproject client app=client
pod node-2 other stranger role=frontend
# Wait until each pod's node has its flows (port security).
for p in "${!IP[@]}"; do
	wait_for "flows of $p" 30 bash -c "OVS_RUNDIR=${O[${NODE_OF[$p]}]} ovs-ofctl -O OpenFlow15 dump-flows br-int | grep -q 'nw_src=${IP[$p]} '"
done
# One UDP exchange each way between the nodes (resent every 250 ms until
# answered): ovs-vswitchd drops a node's first tunnel packet while it
# resolves the underlay's next hop (ARP for the router), which would cost a
# first TCP connection its SYN, i.e. the probes' 1 s.
ip netns exec "${PODNS_PREFIX}frontend" bin/netpol-agnhost probe --timeout 5s "w=udp:${IP[default/db]}:80" >/dev/null
ip netns exec "${PODNS_PREFIX}db" bin/netpol-agnhost probe --timeout 5s "w=udp:${IP[default/frontend]}:80" >/dev/null

SOURCES=()
for p in default/db default/backend default/frontend myproject/client other/stranger; do
	SOURCES+=(--source "$p=$PODNS_PREFIX${p#*/}")
done
SOURCES+=(--source "node-1=${NS[node-1]}@${GW[node-1]}" --source "node-2=${NS[node-2]}@${GW[node-2]}")
matrix() {
	echo "  (rows: from, columns: to; '.' connected, 'X' blocked; real TCP connections, 1 s timeout;"
	echo "   node-1: db, backend; node-2: frontend, client, stranger)"
	bin/netpol-agnhost matrix "${SOURCES[@]}" \
		--target "db=${IP[default/db]}" --target "backend=${IP[default/backend]}" \
		--target "frontend=${IP[default/frontend]}" --target "client=${IP[myproject/client]}" \
		--target "stranger=${IP[other/stranger]}" --probe tcp/6379 --probe tcp/80 | sed 's/^/  /'
	echo "  db reached at its pod IP and through its Service (pods: balanced in their node's br-int; hosts: kube-proxy):"
	bin/netpol-agnhost matrix "${SOURCES[@]}" --target "db ($DB_IP)=$DB_IP" \
		--target "Service db ($DB_VIP)=$DB_VIP" --probe tcp/6379 | sed 's/^/  /'
}
flows() { for node in "${NODES[@]}"; do ofctl "$node" dump-flows br-int --no-stats | sort; done; }
# settle CMD...: runs CMD, then waits until the agents have changed br-int's
# flows and they stayed the same for 0.3 s (at most 10 s).
settle() {
	local before now last n=0 stable=0
	before=$(flows)
	"$@"
	last=$before
	while [ $n -lt 100 ]; do
		sleep 0.1; n=$((n + 1))
		now=$(flows)
		if [ "$now" != "$last" ]; then last=$now; stable=0; continue; fi
		[ "$now" != "$before" ] && stable=$((stable + 1))
		[ $stable -ge 3 ] && return 0
	done
	echo "  (the flows did not change within 10 s)"
}

say "the db Service ($DB_VIP:6379) and its EndpointSlice"
DB_IP=${IP[default/db]}
# The example's slice names db's address in pods.yaml; the slice applied is
# made from db's real address (the same unless IPAM gave db another one).
SLICE_IP=$(grep -oE 'addresses: \["[0-9.]+"\]' examples/seed/service.yaml | grep -oE '[0-9]+(\.[0-9]+){3}')
[ -n "$SLICE_IP" ] || die "no endpoint address in examples/seed/service.yaml"
if [ "$SLICE_IP" = "$DB_IP" ]; then
	echo "  \$ kubectl apply -f examples/seed/service.yaml"
	apply_service() { kubectl apply -f examples/seed/service.yaml; }
else
	echo "  \$ sed 's/\"$SLICE_IP\"/\"$DB_IP\"/' examples/seed/service.yaml | kubectl apply -f -   # db's address here"
	apply_service() { sed "s/\"${SLICE_IP//./\\.}\"/\"$DB_IP\"/" examples/seed/service.yaml | kubectl apply -f -; }
fi
settle apply_service | sed 's/^/  /'
for node in "${NODES[@]}"; do
	wait_for "the Service's flows on $node" 30 bash -c "OVS_RUNDIR=${O[$node]} ovs-ofctl -O OpenFlow15 dump-flows br-int table=25 | grep -q 'nw_dst=$DB_VIP,'"
	wait_nat "$node" "the db Service" 30 "DNAT --to-destination $DB_IP:6379"
done
echo "  node-2's br-int balances frontend's connections to it, then sends them to db on node-1 through the tunnel:"
ofctl node-2 dump-flows br-int table=25 --no-stats | grep "nw_dst=$DB_VIP," | sed 's/^ *cookie=[^ ]* /    /'
ofctl node-2 dump-groups br-int | grep group_id= | sed 's/^ */    /'
echo "  kube-proxy DNATs a host's own connections to it (iptables-save -t nat in ${NS[node-2]}):"
nat node-2 | grep -F 'default/db:redis' | sed 's/^/    /'
echo "  \$ ip netns exec ${PODNS_PREFIX}frontend bin/netpol-agnhost probe db=tcp:$DB_VIP:6379   # frontend on node-2"
ip netns exec "${PODNS_PREFIX}frontend" bin/netpol-agnhost probe "db=tcp:$DB_VIP:6379" | sed 's/^/    /'
echo "  \$ ip netns exec ${NS[node-1]} bin/netpol-agnhost probe --source ${GW[node-1]} db=tcp:$DB_VIP:6379   # node-1's host"
ip netns exec "${NS[node-1]}" bin/netpol-agnhost probe --source "${GW[node-1]}" "db=tcp:$DB_VIP:6379" | sed 's/^/    /'

say "1. no policy: everything is open, across the nodes too"
matrix

say "2. the documentation's command (isolates namespace default for ingress, except from its node):"
CMD='kubectl annotate ns default "net.beta.kubernetes.io/network-policy={\"ingress\": {\"isolation\": \"DefaultDeny\"}}"'
echo "  \$ $CMD"
settle eval "$CMD" | sed 's/^/  /'
matrix
echo "  Each node's host still reaches its own pods of default; the other node's host is not"
echo "  node-local for them, so it is isolated like any other source."

say "3. the documentation's policy (extensions/v1beta1, 'protocol: tcp'), converted and applied:"
echo "  \$ bin/ovs-netpol convert -f examples/seed/policy.yaml | kubectl apply -f -"
apply_policy() { bin/ovs-netpol convert -f examples/seed/policy.yaml 2>/dev/null | kubectl apply -f -; }
settle apply_policy | sed 's/^/  /'
matrix
echo "  db:6379 is open to the frontend (role=frontend in default) and to the client (namespace"
echo "  project=myproject), both on node-2, not to the backend (on db's node) nor to the stranger"
echo "  (role=frontend elsewhere); node-1 always reaches its pods. db's ingress is decided on node-1,"
echo "  whatever node the connection comes from."
echo "  Through the Service, the same verdicts: br-int balances a pod's connection to $DB_VIP:6379"
echo "  to db ($DB_IP:6379) before policy, so the policy judges db itself (the hosts: kube-proxy's DNAT)."

# np NODE CMD ARGS...: the CLI on a node (it reads the cluster through
# KUBECONFIG and the node's live bridge; the agent published its settings there).
np() { bin/ovs-netpol "$2" --ovs-rundir "${O[$1]}" "${@:3}"; }
say "why? ovs-netpol explain on node-1 (db's node): the policy rules that decide, and the packet traced through its br-int"
echo "  \$ ovs-netpol explain --ovs-rundir ${O[node-1]} --from default/frontend --to default/db --port 6379"
np node-1 explain --from default/frontend --to default/db --port 6379 | sed 's/^/    /'
echo "  \$ ovs-netpol explain --ovs-rundir ${O[node-1]} --from default/backend --to default/db --port 6379"
np node-1 explain --from default/backend --to default/db --port 6379 | sed 's/^/    /'

say "the pods on each br-int, and every connection checked against the live flows"
for node in "${NODES[@]}"; do
	echo "  \$ ovs-netpol pods --ovs-rundir ${O[$node]}   # $node"
	np "$node" pods | sed 's/^/    /'
done
for node in "${NODES[@]}"; do
	echo "  \$ ovs-netpol verify --ovs-rundir ${O[$node]}   # $node: model vs ofproto/trace for every local pod x peer x port"
	np "$node" verify >"$STATE/verify-$node.txt" && echo "    no mismatch ($(grep -c . "$STATE/verify-$node.txt") lines in $STATE/verify-$node.txt)" ||
		{ sed 's/^/    /' "$STATE/verify-$node.txt"; echo "  verify found mismatches on $node" >&2; exit 1; }
done

say "the policy's flows on node-1's br-int, each under the origin its cookie names, with counters"
echo "  \$ ovs-netpol flows --ovs-rundir ${O[node-1]} --policy default/test-network-policy"
np node-1 flows --policy default/test-network-policy | sed 's/^/    /'

say "who was denied? node-1's audit log (namespaces opt in; rate limited in the datapath by an OpenFlow meter)"
CMD='kubectl annotate ns default ovs-netpol.io/audit=deny'
echo "  \$ $CMD"
settle eval "$CMD" | sed 's/^/  /'
ip netns exec "${PODNS_PREFIX}backend" bin/netpol-agnhost probe "db=tcp:${IP[default/db]}:6379" "svc=tcp:$DB_VIP:6379" >/dev/null 2>&1 || true
ip netns exec "${PODNS_PREFIX}stranger" bin/netpol-agnhost probe "db=tcp:${IP[default/db]}:6379" >/dev/null 2>&1 || true
sleep 0.5
echo "  \$ tail -n 3 $STATE/logs/audit-node-1.log   # the stranger's attempts came from node-2 through the tunnel"
tail -n 3 "$STATE/logs/audit-node-1.log" | sed 's/^/    /'

M1=${METRICS[node-1]}
say "which rules are used? node-1's agent's per-rule and per-pod counters (/metrics on $M1)"
echo "  \$ curl -s http://$M1/metrics | grep -E '^ovs_netpol_(rule_allowed|pod_denied)_packets_total'"
http_get "${M1%:*}" "${M1#*:}" /metrics | grep -E '^ovs_netpol_(rule_allowed|pod_denied)_packets_total' | sed 's/^/    /'

O1=${O[node-1]} O2=${O[node-2]} NS1=${NS[node-1]} GW1=${GW[node-1]}
cat <<EOM

== the demo keeps running. Try:
   export KUBECONFIG=$KUBECONFIG
   kubectl get nodes -o wide; kubectl get pods -A -o wide; kubectl get networkpolicy -A
   bin/ovs-netpol flows --ovs-rundir $O1                      # node-1's flows by table, origin and counters
   bin/ovs-netpol flows --ovs-rundir $O2                      # node-2's (the tunnel to node-1: origin node/node-1)
   bin/ovs-netpol explain --ovs-rundir $O1 --from myproject/client --to default/db --port 6379
   bin/ovs-netpol verify --ovs-rundir $O2                     # every local connection: model vs ofproto/trace
   export OVS_RUNDIR=$O2                                      # node-2's switch for ovs-ofctl
   ovs-ofctl -O OpenFlow15 dump-flows br-int --names          # the same flows, raw (counters move)
   ovs-ofctl -O OpenFlow15 dump-flows br-int | grep tun_      # the tunnel flows: tun_src/tun_dst = node-1's InternalIP
   ovs-ofctl -O OpenFlow15 dump-groups br-int                 # the Services' load balancers
   ip -n ${NS[node-2]} route show proto 78                    # the agent's host route to node-1's podCIDR
   ip netns exec ${PODNS_PREFIX}frontend $ROOT/bin/netpol-agnhost probe db=tcp:${IP[default/db]}:6379 svc=tcp:$DB_VIP:6379
   ip netns exec ${PODNS_PREFIX}backend  $ROOT/bin/netpol-agnhost probe db=tcp:${IP[default/db]}:6379 svc=tcp:$DB_VIP:6379
   ip netns exec $NS1 $ROOT/bin/netpol-agnhost probe --source $GW1 svc=tcp:$DB_VIP:6379  # a host, via kube-proxy
   ip netns exec $NS1 iptables-save -t nat | grep default/db  # kube-proxy's rules on node-1's host
   kubectl delete networkpolicy -n default test-network-policy  # the agents apply every change
   less $STATE/logs/agent-node-1.log $STATE/logs/kube-proxy-node-1.log $STATE/logs/audit-node-1.log
   make demo-down                                              # removes everything
EOM
