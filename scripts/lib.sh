# Shared helpers for the scripts in this folder. Source it; do not run it.

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
# Installs Debian packages that are missing (one `apt-get update` per run).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing ${missing[*]}" >&2
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The ZooKeeper server comes from Debian's `zookeeper` package (3.8).
ensure_zookeeper() {
  ensure_packages zookeeper
  if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null; then
    echo "ZooKeeper 3.8 is needed: apt-get install -y zookeeper" >&2
    return 1
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_zookeeper DIR PORT: starts a standalone server in the background and
# waits for `ruok`; sets ZK_PID.
start_zookeeper() {
  local dir=$1 port=$2
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=500
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
4lw.commands.whitelist=ruok,srvr,stat
admin.enableServer=false
maxClientCnxns=0
CFG
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.log.dir="$dir" \
    -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1 &
  ZK_PID=$!
  for _ in $(seq 1 120); do
    if [ "$(python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"ruok"); print(s.recv(4).decode())
PY
)" = "imok" ]; then return 0; fi
    sleep 0.5
  done
  echo "ZooKeeper did not start; its log:" >&2
  tail -20 "$dir/zookeeper.log" >&2
  return 1
}
