#!/usr/bin/env bash
# cluster.sh start DIR | stop DIR: a 3-node NATS JetStream cluster on 127.0.0.1 (client ports
# 14222-14224, routes 16222-16224, monitoring 18222-18224), each server with its store and
# pid file in DIR; start returns once JetStream has a meta leader. Used by compare-nats.sh.
set -euo pipefail
cmd=$1; dir=$2
if [ "$cmd" = stop ]; then
  for p in $(cat "$dir"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  sleep 1; exit 0
fi
mkdir -p "$dir"
for i in 1 2 3; do
  cat > "$dir/n$i.conf" <<C
server_name: n$i
listen: 127.0.0.1:$((14221+i))
http: 127.0.0.1:$((18221+i))
jetstream { store_dir: "$dir/store$i" }
cluster {
  name: peer
  listen: 127.0.0.1:$((16221+i))
  routes: [nats-route://127.0.0.1:16222, nats-route://127.0.0.1:16223, nats-route://127.0.0.1:16224]
}
C
  nats-server -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 &
  echo $! > "$dir/n$i.pid"
done
for t in $(seq 100); do
  if curl -s http://127.0.0.1:18222/jsz 2>/dev/null | grep -q '"leader"'; then exit 0; fi
  sleep 0.2
done
echo "no JetStream meta leader after 20 s" >&2; exit 1
