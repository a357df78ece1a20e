# Sourced by ./run and scripts/walkthrough: installs Spotwright on the local
# cluster and runs its programs as local processes (the local overlay scales
# their Deployments to 0), each with a pid file that `e2e/cluster down`
# honours. Needs: $bin (the built binaries), $state (the cluster's state
# folder), the cluster's exports, and the functions k (kubectl) and say.

# Starts a program in the background and waits for its /readyz.
start_program() {
  local name=$1 readyz=$2; shift 2
  local pidfile=$state/pids/$name.pid
  stop_program "$name"
  setsid "$@" >"$state/logs/$name.log" 2>&1 < /dev/null &
  local pid=$!
  # "pid start-time", the format e2e/cluster down uses to stop it.
  echo "$pid $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $20 }')" >"$pidfile"
  for _ in $(seq 150); do curl -sf "$readyz" >/dev/null && return; sleep 0.2; done
  tail -20 "$state/logs/$name.log" >&2; exit 1
}

stop_program() {
  local pidfile=$state/pids/$1.pid
  if [[ -f $pidfile ]] && kill -0 "$(cut -d' ' -f1 "$pidfile")" 2>/dev/null; then
    kill "$(cut -d' ' -f1 "$pidfile")"; sleep 1
  fi
  rm -f "$pidfile"
}

install_spotwright() {
  say "installing Spotwright (manifests/overlays/local)"
  k apply --server-side --force-conflicts -k manifests/overlays/local >&2
  k wait --for=condition=Established --timeout=60s crd/nodepools.spotwright.io >&2
  say "issuing the webhook's certificate and caBundle (spotwright-certs ensure)"
  mkdir -p "$state/demo-webhook-tls" "$state/pids" "$state/logs"
  "$bin/spotwright-certs" ensure --once --ip 127.0.0.1 --write-dir "$state/demo-webhook-tls" >&2
}

start_programs() {
  say "starting spotwright-webhook on 127.0.0.1:18443 (metrics on :18080)"
  start_program demo-webhook http://127.0.0.1:18080/readyz \
    "$bin/spotwright-webhook" --listen 127.0.0.1:18443 --metrics-listen 127.0.0.1:18080 \
    --tls-cert-file "$state/demo-webhook-tls/tls.crt" --tls-key-file "$state/demo-webhook-tls/tls.key"
  say "starting spotwright-extender on 127.0.0.1:18888 (metrics on :18081)"
  start_program demo-extender http://127.0.0.1:18081/readyz \
    "$bin/spotwright-extender" --listen 127.0.0.1:18888 --metrics-listen 127.0.0.1:18081
  say "a NodeClass (eks@latest) and a Spot NodePool: manifests/examples"
  # e2e/cluster up made the network and the AMI parameters (under
  # $SPOTWRIGHT_EKS_AMI_SSM_PREFIX, which the provisioner reads from the environment).
  sed "s/<cluster-name>/$SPOTWRIGHT_CLUSTER_NAME/" manifests/examples/nodeclass.yaml | k apply -f - >&2
  k apply -f manifests/examples/nodepool-spot.yaml >&2
  say "starting spotwright-provisioner (metrics on 127.0.0.1:18082; moto has no Pricing API: the bundled snapshot prices)"
  start_program demo-provisioner http://127.0.0.1:18082/readyz \
    "$bin/spotwright-provisioner" --cluster-name "$SPOTWRIGHT_CLUSTER_NAME" --metrics-listen 127.0.0.1:18082 \
    --leader-elect false --pricing-api false
}

stop_programs() {
  local name
  for name in demo-provisioner demo-extender demo-webhook; do stop_program "$name"; done
}
