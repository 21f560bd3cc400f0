# shellcheck shell=bash
# Globals set here (LAB_ID, LAB_FWX_STATUS, ...) are read by the sourcing script.
# shellcheck disable=SC2034
# lib.sh holds the helpers that scripts/e2e and scripts/demo share: a
# per-run set of network namespaces and interface names, background processes
# that are always stopped, and the lab topology around `fwx run`:
#
#   netns client            netns gw (fwx runs here)          netns server
#   10.0.0.2/24 ── TUN_IN ── fwx 10.0.0.1 | 198.51.100.1 ── TUN_OUT ── 198.51.100.2/24
#   default via 10.0.0.1                                                198.51.100.3/32
#                                                   (10.0.0.0/24 via 198.51.100.1)
#
# With LAB_IPV6=1 (set before lab_up) the lab is dual stack: the same, plus
# fd00::2/64 on the client (default via fd00::1), fwx fd00::1 and
# 2001:db8:100::1, the server 2001:db8:100::2/64 and ::3/128 (fd00::/64 via
# fwx). IPv6 is off otherwise, so nothing a script did not ask for reaches
# fwx.
#
# fwx creates both TUN devices in the gw namespace; lab_up moves each into its
# peer's namespace and configures it there, as the contract of `fwx run`
# expects. The server namespace routes 10.0.0.0/24 to fwx so that unsolicited
# inbound packets really reach fwx (and are dropped there) instead of failing
# locally with "network unreachable".
#
# Source it, call lab_init, then lab_up; everything lab_init or later calls
# create is removed by the EXIT trap, and only that.

# Go, and the admin tools (ip, sysctl, nginx) even when PATH lacks sbin.
export PATH="/usr/local/go/bin:${PATH}:/usr/local/sbin:/usr/sbin:/sbin"

# Addresses of the lab. Callers read these.
readonly LAB_CLIENT_ADDR=10.0.0.2
readonly LAB_IN_ADDR=10.0.0.1
readonly LAB_SERVER_ADDR=198.51.100.2
readonly LAB_SERVER_ADDR2=198.51.100.3
readonly LAB_OUT_ADDR=198.51.100.1
# The lab's IPv6 addresses (LAB_IPV6=1).
readonly LAB_CLIENT_ADDR6=fd00::2
readonly LAB_IN_ADDR6=fd00::1
readonly LAB_SERVER_ADDR6=2001:db8:100::2
readonly LAB_SERVER_ADDR6_2=2001:db8:100::3
readonly LAB_OUT_ADDR6=2001:db8:100::1
LAB_IPV6=${LAB_IPV6:-0}

LAB_PIDS=()   # background processes this run started
LAB_NETNS=()  # namespaces this run created
LAB_FWX_PID=""
LAB_KEEP_WORK=${LAB_KEEP_WORK:-0}

# lab_repo_root prints the repository root (the parent of scripts/).
lab_repo_root() {
	cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}

# lab_python prints the Debian python3 (scripts/deps installs it); a pyenv or
# venv python earlier in PATH would work too but starts slower in a netns.
lab_python() {
	if [[ -x /usr/bin/python3 ]]; then
		echo /usr/bin/python3
	else
		command -v python3
	fi
}

# lab_init picks this run's names, makes the work directory and installs the
# cleanup trap. Interface names stay within IFNAMSIZ-1 = 15 characters.
lab_init() {
	local id
	id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	LAB_ID=$id
	NS_CLIENT="fwx-client-$id"
	NS_SERVER="fwx-server-$id"
	NS_GW="fwx-gw-$id"
	TUN_IN="fwxi-$id"
	TUN_OUT="fwxo-$id"
	LAB_WORK=$(mktemp -d "/tmp/fwx-lab.$id.XXXXXX")
	trap lab_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# lab_cleanup stops the processes and deletes the namespaces this run made.
# It runs from the EXIT trap and must never fail.
lab_cleanup() {
	local pid ns i
	set +e
	for pid in "${LAB_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${LAB_PIDS[@]}"; do
		for ((i = 0; i < 30; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	LAB_PIDS=()
	for ns in "${LAB_NETNS[@]}"; do
		ip netns delete "$ns" 2>/dev/null
	done
	LAB_NETNS=()
	if [[ -n ${LAB_WORK:-} && -d $LAB_WORK ]]; then
		if [[ $LAB_KEEP_WORK == 1 ]]; then
			echo "lab: kept logs in $LAB_WORK" >&2
		else
			rm -rf "$LAB_WORK"
		fi
	fi
}

# lab_log prints a step of a script.
lab_log() {
	printf '==> %s\n' "$*"
}

# lab_die prints an error and exits; the trap cleans up.
lab_die() {
	printf 'lab: %s\n' "$*" >&2
	exit 1
}

# lab_need_root exits 0 with a SKIP line when not root.
lab_need_root() {
	if ((EUID != 0)); then
		echo "SKIP: $1 needs root (network namespaces)"
		exit 0
	fi
}

# lab_netns_add NAME creates a namespace with lo up and IPv6 off (so router
# solicitations and the like do not reach fwx or clutter its log), or with
# LAB_IPV6=1 as lab_netns_add6 does.
lab_netns_add() {
	local ns=$1
	if ((LAB_IPV6)); then
		lab_netns_add6 "$ns"
		return
	fi
	ip netns add "$ns"
	LAB_NETNS+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
}

# lab_netns_add6 NAME creates a dual-stack namespace with lo up: IPv6 on,
# but no router solicitations, router advertisements taken or duplicate
# address detection (a TUN has no neighbours; addresses are usable at once).
lab_netns_add6() {
	local ns=$1
	ip netns add "$ns"
	LAB_NETNS+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 \
		net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.all.accept_ra=0 \
		net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.router_solicitations=0 \
		net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

# lab_bg NS LOGFILE CMD... runs CMD in namespace NS in the background, output
# to LOGFILE, and records its PID for cleanup. `ip netns exec` execs CMD, so
# the recorded PID is CMD itself. The PID is left in LAB_LAST_PID.
lab_bg() {
	local ns=$1 log=$2
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
	LAB_LAST_PID=$!
	LAB_PIDS+=("$LAB_LAST_PID")
}

# lab_forget PID drops PID from the cleanup list (after the caller waited).
lab_forget() {
	local pid=$1 p keep=()
	for p in "${LAB_PIDS[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	LAB_PIDS=("${keep[@]}")
}

# lab_wait_link NS DEV SECONDS [PID] waits until DEV exists in NS. It fails
# early when PID (the process expected to create DEV) has exited.
lab_wait_link() {
	local ns=$1 dev=$2 secs=$3 pid=${4:-} i
	for ((i = 0; i < secs * 20; i++)); do
		if ip -n "$ns" link show dev "$dev" >/dev/null 2>&1; then
			return 0
		fi
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.05
	done
	return 1
}

# lab_link_gone NS DEV succeeds when DEV does not exist in NS.
lab_link_gone() {
	! ip -n "$1" link show dev "$2" >/dev/null 2>&1
}

# lab_build_fwx builds fwx into the work directory and sets FWX_BIN. A
# FWX_BIN already set in the environment (a prebuilt fwx) is used as is.
lab_build_fwx() {
	if [[ -n ${FWX_BIN:-} ]]; then
		[[ -x $FWX_BIN ]] || lab_die "FWX_BIN=$FWX_BIN is not executable"
		return 0
	fi
	FWX_BIN="$LAB_WORK/fwx"
	(cd "$(lab_repo_root)" && go build -o "$FWX_BIN" ./cmd/fwx)
}

# lab_start_fwx ARGS... starts `fwx run` in the gw namespace with the lab's
# devices and addresses plus ARGS, stdout to $LAB_FWX_STDOUT (default
# $LAB_WORK/fwx.stdout; a FIFO, say) and stderr to $LAB_WORK/fwx.stderr,
# and waits for both TUN devices to appear.
lab_start_fwx() {
	local six=()
	if ((LAB_IPV6)); then
		six=(--in-addr "$LAB_IN_ADDR6/64" --out-addr "$LAB_OUT_ADDR6/64")
	fi
	ip netns exec "$NS_GW" "$FWX_BIN" run \
		--in-tun "$TUN_IN" --in-addr "$LAB_IN_ADDR/24" \
		--out-tun "$TUN_OUT" --out-addr "$LAB_OUT_ADDR/24" "${six[@]}" \
		"$@" >"${LAB_FWX_STDOUT:-$LAB_WORK/fwx.stdout}" 2>"$LAB_WORK/fwx.stderr" </dev/null &
	LAB_FWX_PID=$!
	LAB_PIDS+=("$LAB_FWX_PID")
	local dev
	for dev in "$TUN_IN" "$TUN_OUT"; do
		if ! lab_wait_link "$NS_GW" "$dev" 10 "$LAB_FWX_PID"; then
			cat "$LAB_WORK/fwx.stderr" >&2
			lab_die "fwx did not create $dev (see stderr above)"
		fi
	done
	# The devices exist from TUNSETIFF on; give fwx a moment to finish
	# setting them up (MTU, offloads, netlink) in its own namespace before
	# they move away.
	sleep 0.3
	kill -0 "$LAB_FWX_PID" 2>/dev/null || {
		cat "$LAB_WORK/fwx.stderr" >&2
		lab_die "fwx exited right after creating its devices"
	}
}

# lab_stop_fwx sends SIGTERM to fwx, waits up to 10 s and sets
# LAB_FWX_STATUS to its exit status (or "timeout").
lab_stop_fwx() {
	local i
	kill -TERM "$LAB_FWX_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$LAB_FWX_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$LAB_FWX_PID" 2>/dev/null; then
		LAB_FWX_STATUS=timeout
		return
	fi
	LAB_FWX_STATUS=0
	wait "$LAB_FWX_PID" || LAB_FWX_STATUS=$?
	lab_forget "$LAB_FWX_PID"
}

# lab_attach DEV NS moves DEV from the gw namespace into NS, turns IPv6 off
# on it (unless LAB_IPV6=1) and brings it up.
lab_attach() {
	local dev=$1 ns=$2 off=1
	((LAB_IPV6)) && off=0
	ip -n "$NS_GW" link set dev "$dev" netns "$ns"
	lab_wait_link "$ns" "$dev" 5 || lab_die "$dev did not arrive in $ns"
	ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=$off" || true
	ip -n "$ns" link set dev "$dev" up
}

# lab_up creates the namespaces, starts fwx with ARGS and wires its devices:
# the client gets 10.0.0.2/24 and a default route via fwx, the server gets
# 198.51.100.2/24 and 198.51.100.3/32 and a route to the inside via fwx.
lab_up() {
	lab_netns_add "$NS_GW"
	lab_netns_add "$NS_CLIENT"
	lab_netns_add "$NS_SERVER"
	lab_start_fwx "$@"
	lab_wire
}

# lab_wire moves the TUN devices a just-started fwx made to the client and
# the server and configures them there, as lab_up does; after an fwx of
# lab_up stopped, lab_start_fwx ARGS and lab_wire start another.
lab_wire() {
	lab_attach "$TUN_IN" "$NS_CLIENT"
	ip -n "$NS_CLIENT" addr add "$LAB_CLIENT_ADDR/24" dev "$TUN_IN"
	ip -n "$NS_CLIENT" route add default via "$LAB_IN_ADDR" dev "$TUN_IN"

	lab_attach "$TUN_OUT" "$NS_SERVER"
	ip -n "$NS_SERVER" addr add "$LAB_SERVER_ADDR/24" dev "$TUN_OUT"
	ip -n "$NS_SERVER" addr add "$LAB_SERVER_ADDR2/32" dev "$TUN_OUT"
	ip -n "$NS_SERVER" route add 10.0.0.0/24 via "$LAB_OUT_ADDR" dev "$TUN_OUT"
	if ((LAB_IPV6)); then
		ip -n "$NS_CLIENT" addr add "$LAB_CLIENT_ADDR6/64" dev "$TUN_IN" nodad
		ip -n "$NS_CLIENT" -6 route add default via "$LAB_IN_ADDR6" dev "$TUN_IN"
		ip -n "$NS_SERVER" addr add "$LAB_SERVER_ADDR6/64" dev "$TUN_OUT" nodad
		# Deprecated (preferred_lft 0): never picked as a source address
		# (RFC 6724 rule 3), as 198.51.100.3/32 is never picked for IPv4;
		# a server on :: answers from ::2.
		ip -n "$NS_SERVER" addr add "$LAB_SERVER_ADDR6_2/128" dev "$TUN_OUT" nodad preferred_lft 0
		ip -n "$NS_SERVER" -6 route add fd00::/64 via "$LAB_OUT_ADDR6" dev "$TUN_OUT"
	fi
}

# lab_nginx NS NAME ADDR:PORT... starts an nginx in NS serving
# $LAB_WORK/NAME/www on each ADDR:PORT, logging "remote_addr server_port
# request status" lines to $LAB_WORK/NAME/access.log. It waits until the
# first address accepts connections.
lab_nginx() {
	local ns=$1 name=$2
	shift 2
	local dir="$LAB_WORK/$name" listen="" a
	mkdir -p "$dir/www" "$dir/tmp"
	for a in "$@"; do
		listen+="    listen $a;"$'\n'
	done
	cat >"$dir/nginx.conf" <<-EOF
		daemon off;
		master_process on;
		worker_processes 1;
		user root;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections 64; }
		http {
		    access_log off;
		    client_body_temp_path $dir/tmp/body;
		    proxy_temp_path $dir/tmp/proxy;
		    fastcgi_temp_path $dir/tmp/fastcgi;
		    uwsgi_temp_path $dir/tmp/uwsgi;
		    scgi_temp_path $dir/tmp/scgi;
		    log_format lab '\$remote_addr \$server_port "\$request" \$status';
		    types { text/plain txt; application/octet-stream bin; }
		    server {
		$listen
		        root $dir/www;
		        access_log $dir/access.log lab;
		    }
		}
	EOF
	lab_bg "$ns" "$dir/nginx.out" nginx -p "$dir" -c "$dir/nginx.conf"
	local pid=$LAB_LAST_PID first=${1} i
	for ((i = 0; i < 100; i++)); do
		if ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/${first%:*}/${first##*:}" 2>/dev/null; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	cat "$dir/nginx.out" "$dir/error.log" >&2 2>/dev/null || true
	lab_die "nginx $name did not start on $first"
}

# lab_wait_port NS ADDR PORT waits until a TCP listener accepts on ADDR:PORT.
lab_wait_port() {
	local ns=$1 addr=$2 port=$3 i
	for ((i = 0; i < 100; i++)); do
		if ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# lab_wait_listen NS ADDR PORT waits until a TCP socket listens on
# ADDR:PORT in NS, without connecting to it: for servers that take every
# connection for a client, such as iperf3 -s, which runs lab_wait_port's
# probe as a test and resets a real client that comes while it is busy.
lab_wait_listen() {
	local ns=$1 addr=$2 port=$3 i
	[[ $addr == *:* ]] && addr="[$addr]"
	for ((i = 0; i < 100; i++)); do
		if [[ -n $(ip netns exec "$ns" ss -Hltn "src $addr:$port") ]]; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# --- host mode (scripts/e2e-host) ----------------------------------------------

# lab_veth NS1 DEV1 CIDR1 NS2 DEV2 CIDR2 links NS1 and NS2 with a veth pair,
# DEV1 in NS1 and DEV2 in NS2, each addressed and up, IPv6 off unless
# LAB_IPV6=1.
lab_veth() {
	local off=1
	((LAB_IPV6)) && off=0
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
	ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=$off"
	ip netns exec "$4" sysctl -qw "net.ipv6.conf.$5.disable_ipv6=$off"
	ip -n "$1" addr add "$3" dev "$2"
	ip -n "$4" addr add "$6" dev "$5"
	ip -n "$1" link set "$2" up
	ip -n "$4" link set "$5" up
}

# lab_unprivileged UID GID sets LAB_UNPRIV to the command prefix that runs
# a program without any privilege: as UID:GID with no supplementary
# groups, every capability set empty (bounding set included) and
# no_new_privs, so it cannot gain one back. Where /dev/net/tun is not mode
# 0666, as udev's default rule makes it on a desktop, the program gets a
# mount namespace of its own whose /dev/net holds a 0666 tun node (the
# same device, 10:200): machines without udev leave it 0600, which no
# unprivileged program may open. The exec chain (unshare, bash, setpriv)
# keeps the PID of the prefixed command the program's own.
lab_unprivileged() {
	local uid=$1 gid=$2 devnet=0
	[[ $(stat -c %a /dev/net/tun 2>/dev/null) == 666 ]] || devnet=1
	LAB_UNPRIV=(unshare --mount --propagation private /bin/bash -c '
		set -e
		devnet=$1 uid=$2 gid=$3
		shift 3
		if ((devnet)); then
			mount -t tmpfs -o mode=0755,size=16k fwx-lab-devnet /dev/net
			mknod -m 0666 /dev/net/tun c 10 200
		fi
		exec setpriv --reuid="$uid" --regid="$gid" --clear-groups \
			--inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs "$@"
	' lab-unprivileged "$devnet" "$uid" "$gid")
}

# lab_bg_unprivileged NS LOGFILE UID GID CMD... is lab_bg for a process that
# must run without any privilege (lab_unprivileged).
lab_bg_unprivileged() {
	local ns=$1 log=$2
	lab_unprivileged "$3" "$4"
	shift 4
	lab_bg "$ns" "$log" "${LAB_UNPRIV[@]}" "$@"
}

# lab_wait_grep FILE REGEX SECONDS [PID] waits until a line of FILE matches
# the extended REGEX. It fails early when PID has exited.
lab_wait_grep() {
	local file=$1 re=$2 secs=$3 pid=${4:-} i
	for ((i = 0; i < secs * 20; i++)); do
		grep -qE -- "$re" "$file" 2>/dev/null && return 0
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			grep -qE -- "$re" "$file" 2>/dev/null
			return
		fi
		sleep 0.05
	done
	return 1
}

# lab_descendants PID prints the PIDs of PID's descendants (servers that
# fork per session).
lab_descendants() {
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		echo "$c"
		lab_descendants "$c"
	done
}

# lab_stop_tree PID stops PID (one this run started) and its descendants:
# SIGTERM, up to 3 s, then SIGKILL; then drops PID from the cleanup list.
lab_stop_tree() {
	local pid=$1 kids i
	kids=$(lab_descendants "$pid")
	# shellcheck disable=SC2086 # a list of PIDs
	kill -TERM "$pid" $kids 2>/dev/null || true
	for ((i = 0; i < 30; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL "$pid" $kids 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	lab_forget "$pid"
}
