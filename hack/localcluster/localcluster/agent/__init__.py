"""The node agent: registers one Node and runs the pods bound to it as local processes.

Each pod gets its own network namespace and IP on the cluster bridge; each container its own
mount/PID/UTS/IPC namespaces with the pod's volumes at their mountPaths (see launcher.py).
Probes, restarts with back-off, preStop, SIGTERM, grace period, SIGKILL and pod status
follow the kubelet's behaviour closely enough for Deployments, ReplicaSets, Jobs and
EndpointSlices to behave as on a real cluster. Images are not pulled: commands run from the host.

One room per thing a kubelet owns, so a behaviour is found in one file:

- nodeagent.py   the agent: watches this node's pods, one worker each; events; shutdown
- pods.py        pod lifecycle: what runs when, restarts and back-off, phase, conditions, status
- containers.py  the pod's sandbox (network namespace) and its containers' processes
- probes.py      startup, readiness and liveness probes; preStop handlers
- volumes.py     volumes as host directories, and the provisioner of the `local` StorageClass
- env.py         a container's environment (env, envFrom, valueFrom, $(VAR) expansion)
- dns.py         a pod's resolv.conf (dnsPolicy, dnsConfig, --cluster-dns, --cluster-domain)
- node.py        Node registration, status and lease heartbeat
- kubeletapi.py  the kubelet's HTTPS log API that `kubectl logs` reaches through the API server
"""

from localcluster.agent.nodeagent import NodeAgent

__all__ = ["NodeAgent"]
