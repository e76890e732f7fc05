#!/usr/bin/env bash
# The headroom scenario on kind, for users with Docker (our CI has no Docker
# engine and runs the same scenario on the loopback control plane instead:
# e2e/tests/extender_scheduling.rs and metrics_adapter.rs).
#   e2e/kind/run.sh            # create the cluster, build+load images, apply, check
#   e2e/kind/run.sh delete     # remove the cluster
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
name=headroom
if [ "${1:-}" = delete ]; then exec kind delete cluster --name "$name"; fi

sed "s|__REPO__|$(pwd)|" e2e/kind/kind-config.yaml > /tmp/headroom-kind-config.yaml
kind create cluster --name "$name" --config /tmp/headroom-kind-config.yaml
docker build -f extender/Dockerfile -t headroom-extender:0.1.0 .
docker build -f metrics-adapter/Dockerfile -t headroom-metrics-adapter:0.1.0 .
kind load docker-image --name "$name" headroom-extender:0.1.0 headroom-metrics-adapter:0.1.0

# The kind workers are named headroom-worker, -worker2, -worker3: cap the
# FreeIPA stand-in by label instead of by name.
kubectl apply -k manifests/base
kubectl apply -k manifests/overlays/kubeadm-hostnetwork
kubectl -n headroom create configmap headroom-extender-policy-kind --dry-run=client -o yaml \
  --from-literal=policy.yaml="$(cat <<'POLICY'
defaultEstimate: {cpu: "1", memory: 512Mi}
caps:
- nodeLabels: {lab.headroom.dev/freeipa: "true"}
  cpuPercent: 40
  mode: hard
  reason: FreeIPA host
POLICY
)" | kubectl apply -f -
kubectl -n headroom patch daemonset headroom-extender --type=json -p \
  '[{"op":"replace","path":"/spec/template/spec/volumes/0/configMap/name","value":"headroom-extender-policy-kind"}]'
scripts/adapter-cert
kubectl -n headroom rollout status daemonset/headroom-extender --timeout=180s
kubectl -n headroom rollout status deployment/headroom-metrics-adapter --timeout=180s
kubectl wait --for=condition=Available apiservice/v1beta2.custom.metrics.k8s.io --timeout=120s

# The scenario: notebook-like pods placed by the default scheduler (which now
# calls the extender); the FreeIPA node must stay under its cap.
kubectl create namespace jhub --dry-run=client -o yaml | kubectl apply -f -
for i in $(seq -w 1 12); do
  kubectl -n jhub run "jupyter-user$i" --image=registry.k8s.io/pause:3.10 \
    --labels=component=singleuser-server \
    --annotations=hub.jupyter.org/username="user$i" \
    --overrides='{"spec":{"containers":[{"name":"notebook","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"memory":"256Mi"}}}]}}'
done
kubectl -n jhub wait --for=condition=Ready pod -l component=singleuser-server --timeout=180s
freeipa=$(kubectl get nodes -l lab.headroom.dev/freeipa=true -o name | cut -d/ -f2)
on_freeipa=$(kubectl -n jhub get pods -o wide --no-headers | awk -v n="$freeipa" '$7==n' | wc -l)
echo "pods on the FreeIPA node ($freeipa): $on_freeipa (cap 40% CPU at a 1-core estimate each)"
kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_running_servers"
echo
