#!/usr/bin/env bash
# The seed example (the Kubernetes 1.6 NetworkPolicy documentation) live, with
# real traffic, on this machine:
#
#   etcd + kube-apiserver (built from k8s.io/kubernetes, cached)
#   a private userspace Open vSwitch (ovs-vswitchd in network namespace
#   ovs-netpol-demo, where br-int's LOCAL port is the node's host, 10.244.1.1)
#   the ovs-netpol agent of node-1 (--isolation v1.6)
#   kube-proxy (iptables mode, built like kube-apiserver, cached) in the
#   node's host namespace, as on a real node; it reaches the API server
#   through e2e/cmd/netns-forward
#   pods made as a runtime makes them: a Pod object, a network namespace
#   (demo-NAME) attached by the ovs-netpol CNI plugin with host-local IPAM,
#   the pod IP from the CNI result; each runs a small TCP/UDP server
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
NETNS=ovs-netpol-demo            # the switch's (node's host) network namespace
PODNS_PREFIX=demo-               # pod network namespaces
NODE=node-1
GW=10.244.1.1                    # the node's address on br-int (--node-ip)
SUBNET=10.244.1.0/24
CLUSTER_CIDR=10.244.0.0/16       # kube-proxy's clusterCIDR (detectLocalMode)
SERVICE_CIDR=10.96.0.0/16        # kube-apiserver's --service-cluster-ip-range
DB_VIP=10.96.0.10                # the db Service's cluster IP (examples/seed/service.yaml)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

down() {
	if [ -d "$STATE" ]; then
		# Every process the demo started left a pidfile.
		for p in "$STATE"/*.pid "$STATE"/ovs/*.pid; do
			[ -f "$p" ] || continue
			pid=$(cat "$p" 2>/dev/null || true)
			[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
		done
		for p in "$STATE"/*.pid "$STATE"/ovs/*.pid; do
			[ -f "$p" ] || continue
			pid=$(cat "$p" 2>/dev/null || true)
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
		done
	fi
	# Pod namespaces (their veths go with them), then the switch's.
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case "$ns" in "$PODNS_PREFIX"*|"$NETNS") ip netns delete "$ns" 2>/dev/null || true ;; esac
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
if ! command -v openssl >/dev/null; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl
fi

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
mkdir -p "$STATE"/{k8s,ovs,cni,logs}

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

say "starting Open vSwitch (userspace) in $STATE/ovs, ovs-vswitchd in network namespace $NETNS"
O=$STATE/ovs
export OVS_RUNDIR=$O
ovsdb-tool create "$O/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$O/conf.db" --remote="punix:$O/db.sock" --unixctl="$O/ovsdb.ctl" \
	--pidfile="$O/ovsdb-server.pid" --log-file="$O/ovsdb.log" -vconsole:off --detach 2>>"$STATE/logs/ovs.log" ||
	{ cat "$STATE/logs/ovs.log"; die "ovsdb-server did not start"; }
VSCTL="ovs-vsctl --db=unix:$O/db.sock --timeout=10"
$VSCTL --no-wait init
ip netns add "$NETNS"
ip netns exec "$NETNS" env OVS_RUNDIR="$O" ovs-vswitchd "unix:$O/db.sock" \
	--unixctl="$O/vswitchd.ctl" --pidfile="$O/ovs-vswitchd.pid" --log-file="$O/vswitchd.log" -vconsole:off --detach \
	2>>"$STATE/logs/ovs.log" || { cat "$STATE/logs/ovs.log"; die "ovs-vswitchd did not start"; }
$VSCTL -- add-br br-int -- set Bridge br-int datapath_type=netdev fail_mode=secure
wait_for br-int 10 test -S "$O/br-int.mgmt"
# The node's host: br-int's LOCAL port in the switch's namespace.
ip -n "$NETNS" addr add "$GW/24" dev br-int
ip -n "$NETNS" link set br-int up
ip -n "$NETNS" link set lo up
ip netns exec "$NETNS" ethtool -K br-int tx off >/dev/null # userspace conntrack needs full checksums
# The host's connections to a ClusterIP need a route covering it (a real
# node's default route does), or they fail before kube-proxy's iptables DNAT.
ip -n "$NETNS" route add "$SERVICE_CIDR" dev br-int

say "starting the agent of $NODE (--isolation v1.6)"
METRICS=127.0.0.1:$(free_port)
start agent bin/ovs-netpol-agent --kubeconfig="$K/agent.kubeconfig" --node-name="$NODE" \
	--ovs-rundir="$O" --datapath-type=netdev --isolation=v1.6 --node-ip="$GW" --metrics-addr="$METRICS" \
	--audit-log="$STATE/logs/audit.log" --audit-rate=20 --audit-burst=20
wait_for "the agent" 60 http_ok "${METRICS%:*}" "${METRICS#*:}" /readyz
echo "agent ready (/metrics, /readyz on $METRICS)"

say "starting kube-proxy (iptables mode) in $NETNS, the node's host"
# Without a kubelet, kube-proxy finds its node's address in a Node object
# (created with its status), or waits 30 s and assumes 127.0.0.1.
kubectl create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata: {name: $NODE, labels: {kubernetes.io/hostname: $NODE}}
status:
  addresses: [{type: InternalIP, address: $GW}, {type: Hostname, address: $NODE}]
EOF
# kube-apiserver listens on 127.0.0.1 of this namespace, which the node's
# namespace cannot reach: forward the same port of its loopback to it.
start apiserver-forward bin/netns-forward "$NETNS" "127.0.0.1:$API_PORT" "127.0.0.1:$API_PORT"
wait_for "the API server forwarder" 10 grep -q listening "$STATE/logs/apiserver-forward.log"
# The settings pkg/k8stest/kubeproxy.go verified (see its comment): leave the
# conntrack sysctls, route_localnet and the OOM score alone; healthz and
# metrics on the node namespace's loopback.
cat >"$K/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE
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
start kube-proxy ip netns exec "$NETNS" "$KUBE_PROXY" --config="$K/kube-proxy.yaml"
nat() { ip netns exec "$NETNS" iptables-save -t nat; }
# wait_nat WHAT SECONDS REGEXP: until kube-proxy's nat table has a line matching REGEXP.
wait_nat() {
	local what=$1 secs=$2 re=$3
	for _ in $(seq $((secs * 10))); do
		kill -0 "$(cat "$STATE/kube-proxy.pid")" 2>/dev/null ||
			die "kube-proxy exited; the end of $STATE/logs/kube-proxy.log:"$'\n'"$(tail -20 "$STATE/logs/kube-proxy.log")"
		grep -q -- "$re" <<<"$(nat 2>/dev/null)" && return 0 # (not a pipe: pipefail and grep -q)
		sleep 0.1
	done
	die "$what not in kube-proxy's iptables rules after ${secs}s (logs in $STATE/logs)"
}
# Its first full sync ends with KUBE-MARK-MASQ's rule.
wait_nat "kube-proxy's first sync" 60 '^-A KUBE-MARK-MASQ '
echo "kube-proxy synced (Node $NODE with InternalIP $GW; API through 127.0.0.1:$API_PORT in $NETNS)"

say "creating the pods (Pod object, network namespace attached by the CNI plugin, status IP from its result)"
kubectl create namespace myproject >/dev/null
kubectl label namespace myproject project=myproject >/dev/null
kubectl create namespace other >/dev/null
CNI_CONF=$(cat <<EOF
{"cniVersion": "1.0.0", "name": "demo", "type": "ovs-netpol-cni", "bridge": "br-int",
 "ovsdb": "unix:$O/db.sock", "datapathType": "netdev", "hostNetNS": "/var/run/netns/$NETNS",
 "ipam": {"type": "host-local", "subnet": "$SUBNET", "rangeStart": "10.244.1.10",
          "gateway": "$GW", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni"}}
EOF
)
declare -A IP
pod() { # NAMESPACE NAME LABEL=VALUE [PORTS-YAML]
	local ns=$1 name=$2 label=$3 ports=${4:-}
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {${label%=*}: ${label#*=}}}
spec:
  nodeName: $NODE
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
		bin/ovs-netpol-cni <<<"$CNI_CONF") || die "CNI ADD of $ns/$name failed: $result"
	echo "$cid $netns" >"$STATE/cni/$ns.$name.container"
	local addr
	addr=$(grep -o '"address": *"[0-9.]*/' <<<"$result" | grep -o '[0-9.]*/' | tr -d /)
	[ -n "$addr" ] || die "no address in the CNI result of $ns/$name: $result"
	IP[$ns/$name]=$addr
	start "server-$name" ip netns exec "$netns" bin/netpol-agnhost serve --name "$ns/$name" --tcp 80,6379 --udp 80
	kubectl patch pod -n "$ns" "$name" --subresource=status --type=merge -p \
		"{\"status\":{\"phase\":\"Running\",\"podIP\":\"$addr\",\"podIPs\":[{\"ip\":\"$addr\"}]}}" >/dev/null
	printf '  %-18s %-15s netns %-16s %s\n' "$ns/$name" "$addr" "$netns" "$label"
}
pod default db role=db "    ports: [{name: redis, containerPort: 6379}, {name: http, containerPort: 80}]"
pod default frontend role=frontend
pod default backend role=backend "    ports: [{containerPort: 80}]"
pod myproject client app=client
pod other stranger role=frontend
# Wait until the agent has flows for every pod (port security).
for p in "${!IP[@]}"; do
	wait_for "flows of $p" 30 bash -c "ovs-ofctl -O OpenFlow15 dump-flows br-int | grep -q 'nw_src=${IP[$p]} '"
done

SOURCES=()
for p in default/db default/frontend default/backend myproject/client other/stranger; do
	SOURCES+=(--source "$p=$PODNS_PREFIX${p#*/}")
done
SOURCES+=(--source "node-1=$NETNS@$GW")
matrix() {
	echo "  (rows: from, columns: to; '.' connected, 'X' blocked; real TCP connections, 1 s timeout)"
	bin/netpol-agnhost matrix "${SOURCES[@]}" \
		--target "db=${IP[default/db]}" --target "frontend=${IP[default/frontend]}" \
		--target "backend=${IP[default/backend]}" --target "client=${IP[myproject/client]}" \
		--target "stranger=${IP[other/stranger]}" --probe tcp/6379 --probe tcp/80 | sed 's/^/  /'
	echo "  db reached at its pod IP and through its Service (pods: balanced in br-int; node-1: kube-proxy):"
	bin/netpol-agnhost matrix "${SOURCES[@]}" --target "db ($DB_IP)=$DB_IP" \
		--target "Service db ($DB_VIP)=$DB_VIP" --probe tcp/6379 | sed 's/^/  /'
}
flows() { ovs-ofctl -O OpenFlow15 dump-flows br-int --no-stats | sort; }
# settle CMD...: runs CMD, then waits until the agent has changed br-int's
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
wait_for "the Service's flows" 30 bash -c "ovs-ofctl -O OpenFlow15 dump-flows br-int table=25 | grep -q 'nw_dst=$DB_VIP,'"
wait_nat "the db Service" 30 "DNAT --to-destination $DB_IP:6379"
echo "  br-int balances the pods' connections to it (ovs-ofctl dump-flows br-int table=25; dump-groups br-int):"
ovs-ofctl -O OpenFlow15 dump-flows br-int table=25 --no-stats | grep "nw_dst=$DB_VIP," | sed 's/^ *cookie=[^ ]* /    /'
ovs-ofctl -O OpenFlow15 dump-groups br-int | grep group_id= | sed 's/^ */    /'
echo "  kube-proxy DNATs the node's host's own connections to it (iptables-save -t nat in $NETNS):"
nat | grep -F 'default/db:redis' | sed 's/^/    /'
echo "  \$ ip netns exec ${PODNS_PREFIX}frontend bin/netpol-agnhost probe db=tcp:$DB_VIP:6379"
ip netns exec "${PODNS_PREFIX}frontend" bin/netpol-agnhost probe "db=tcp:$DB_VIP:6379" | sed 's/^/    /'
echo "  \$ ip netns exec $NETNS bin/netpol-agnhost probe --source $GW db=tcp:$DB_VIP:6379"
ip netns exec "$NETNS" bin/netpol-agnhost probe --source "$GW" "db=tcp:$DB_VIP:6379" | sed 's/^/    /'

say "1. no policy: everything is open"
matrix

say "2. the documentation's command (isolates namespace default for ingress, except from its node):"
CMD='kubectl annotate ns default "net.beta.kubernetes.io/network-policy={\"ingress\": {\"isolation\": \"DefaultDeny\"}}"'
echo "  \$ $CMD"
settle eval "$CMD" | sed 's/^/  /'
matrix

say "3. the documentation's policy (extensions/v1beta1, 'protocol: tcp'), converted and applied:"
echo "  \$ bin/ovs-netpol convert -f examples/seed/policy.yaml | kubectl apply -f -"
apply_policy() { bin/ovs-netpol convert -f examples/seed/policy.yaml 2>/dev/null | kubectl apply -f -; }
settle apply_policy | sed 's/^/  /'
matrix
echo "  db:6379 is open to the frontend (role=frontend in default) and to the client (namespace"
echo "  project=myproject), not to the backend nor to the stranger (role=frontend elsewhere);"
echo "  the node always reaches its pods."
echo "  Through the Service, the same verdicts: br-int balances a pod's connection to $DB_VIP:6379"
echo "  to db ($DB_IP:6379) before policy, so the policy judges db itself (the host: kube-proxy's DNAT)."

# The CLI reads the cluster (KUBECONFIG) and the live bridge; the agent published its settings there.
np() { bin/ovs-netpol "$1" --ovs-rundir "$O" "${@:2}"; }
say "why? ovs-netpol explain: the policy rules that decide, and the same packet traced through br-int"
echo "  \$ ovs-netpol explain --from default/frontend --to default/db --port 6379"
np explain --from default/frontend --to default/db --port 6379 | sed 's/^/    /'
echo "  \$ ovs-netpol explain --from default/backend --to default/db --port 6379"
np explain --from default/backend --to default/db --port 6379 | sed 's/^/    /'

say "the pods on br-int, and every connection checked against the live flows"
echo "  \$ ovs-netpol pods"
np pods | sed 's/^/    /'
echo "  \$ ovs-netpol verify   (model vs ofproto/trace for every local pod x peer x port)"
np verify >"$STATE/verify.txt" && echo "    no mismatch ($(grep -c . "$STATE/verify.txt") lines in $STATE/verify.txt)" ||
	{ sed 's/^/    /' "$STATE/verify.txt"; echo "  verify found mismatches" >&2; exit 1; }

say "the policy's flows on br-int, each under the origin its cookie names, with counters"
echo "  \$ ovs-netpol flows --policy default/test-network-policy"
np flows --policy default/test-network-policy | sed 's/^/    /'

say "who was denied? the audit log (namespaces opt in; rate limited in the datapath by an OpenFlow meter)"
CMD='kubectl annotate ns default ovs-netpol.io/audit=deny'
echo "  \$ $CMD"
settle eval "$CMD" | sed 's/^/  /'
ip netns exec "${PODNS_PREFIX}backend" bin/netpol-agnhost probe "db=tcp:${IP[default/db]}:6379" "svc=tcp:$DB_VIP:6379" >/dev/null 2>&1 || true
ip netns exec "${PODNS_PREFIX}stranger" bin/netpol-agnhost probe "db=tcp:${IP[default/db]}:6379" >/dev/null 2>&1 || true
sleep 0.5
echo "  \$ tail -n 3 $STATE/logs/audit.log"
tail -n 3 "$STATE/logs/audit.log" | sed 's/^/    /'

say "which rules are used? the agent's per-rule and per-pod counters (/metrics on $METRICS)"
echo "  \$ curl -s http://$METRICS/metrics | grep -E '^ovs_netpol_(rule_allowed|pod_denied)_packets_total'"
http_get "${METRICS%:*}" "${METRICS#*:}" /metrics | grep -E '^ovs_netpol_(rule_allowed|pod_denied)_packets_total' | sed 's/^/    /'

cat <<EOM

== the demo keeps running. Try:
   export KUBECONFIG=$KUBECONFIG
   kubectl get pods -A -o wide; kubectl get networkpolicy -A
   export OVS_RUNDIR=$O
   bin/ovs-netpol flows --ovs-rundir $O                       # the agent's flows by table, origin and counters
   bin/ovs-netpol explain --ovs-rundir $O --from myproject/client --to default/db --port 6379
   bin/ovs-netpol verify --ovs-rundir $O                      # every local connection: model vs ofproto/trace
   ovs-ofctl -O OpenFlow15 dump-flows br-int --names          # the same flows, raw (counters move)
   ovs-ofctl -O OpenFlow15 dump-groups br-int                 # the Services' load balancers
   ovs-ofctl -O OpenFlow15 dump-flows br-int table=25 --names # the db Service's flow: $DB_VIP:6379 -> group
   ip netns exec ${PODNS_PREFIX}frontend $ROOT/bin/netpol-agnhost probe db=tcp:${IP[default/db]}:6379 svc=tcp:$DB_VIP:6379
   ip netns exec ${PODNS_PREFIX}backend  $ROOT/bin/netpol-agnhost probe db=tcp:${IP[default/db]}:6379 svc=tcp:$DB_VIP:6379
   ip netns exec $NETNS $ROOT/bin/netpol-agnhost probe --source $GW svc=tcp:$DB_VIP:6379  # the host, via kube-proxy
   ip netns exec $NETNS iptables-save -t nat | grep default/db  # kube-proxy's rules on the node's host
   kubectl delete networkpolicy -n default test-network-policy  # the agent applies every change
   less $STATE/logs/agent.log $STATE/logs/kube-proxy.log $STATE/logs/audit.log
   make demo-down                                              # removes everything
EOM
