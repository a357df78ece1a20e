//! The generated cluster: nodes, pods, claims, pools, classes, DaemonSets and namespaces as an API server would return them.

#[allow(unused_imports)]
use super::*;

pub(crate) const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A name suffix of five characters, distinct for every `n` below 27^5 (the
/// API server's are random; these must not collide).
pub(crate) fn unique_suffix(n: usize) -> String {
    let mut x = (n as u64).wrapping_mul(7_654_321) % 27u64.pow(5);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % 27) as usize] as char;
            x /= 27;
            c
        })
        .collect()
}

/// A seed from a name (FNV-1a), for what is generated once per name.
pub(crate) fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic randomness (splitmix64): every run generates the same cluster.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(crate) fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }

    pub(crate) fn uid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// The alphabet of generated name suffixes (no vowels).
    pub(crate) fn suffix(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    /// A time in November 2026, as the API server writes it.
    pub(crate) fn time(&mut self) -> String {
        let (day, secs) = (1 + self.below(20), self.below(86_400));
        format!(
            "2026-11-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

pub(crate) struct InstanceType {
    pub(crate) name: &'static str,
    pub(crate) family: &'static str,
    pub(crate) size: &'static str,
    pub(crate) cpu: u32,
    pub(crate) memory_gib: u32,
    pub(crate) generation: u32,
    pub(crate) max_pods: u32,
}

pub(crate) const TYPES: [InstanceType; 8] = [
    InstanceType {
        name: "m6i.2xlarge",
        family: "m6i",
        size: "2xlarge",
        cpu: 8,
        memory_gib: 32,
        generation: 6,
        max_pods: 58,
    },
    InstanceType {
        name: "m6i.4xlarge",
        family: "m6i",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 64,
        generation: 6,
        max_pods: 234,
    },
    InstanceType {
        name: "m5.2xlarge",
        family: "m5",
        size: "2xlarge",
        cpu: 8,
        memory_gib: 32,
        generation: 5,
        max_pods: 58,
    },
    InstanceType {
        name: "c6i.4xlarge",
        family: "c6i",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 32,
        generation: 6,
        max_pods: 234,
    },
    InstanceType {
        name: "c5.4xlarge",
        family: "c5",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 32,
        generation: 5,
        max_pods: 234,
    },
    InstanceType {
        name: "r6i.2xlarge",
        family: "r6i",
        size: "2xlarge",
        cpu: 8,
        memory_gib: 64,
        generation: 6,
        max_pods: 58,
    },
    InstanceType {
        name: "m7i.4xlarge",
        family: "m7i",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 64,
        generation: 7,
        max_pods: 234,
    },
    InstanceType {
        name: "r5.4xlarge",
        family: "r5",
        size: "4xlarge",
        cpu: 16,
        memory_gib: 128,
        generation: 5,
        max_pods: 234,
    },
];

pub(crate) const ZONES: [(&str, &str); 3] = [
    ("us-east-1a", "use1-az1"),
    ("us-east-1b", "use1-az2"),
    ("us-east-1c", "use1-az4"),
];

/// The pools Spotwright's nodes belong to: (name, capacity type, NodeClass).
pub(crate) const POOLS: [(&str, &str, &str); 3] = [
    ("default", keys::SPOT, "default"),
    ("batch", keys::SPOT, "default"),
    ("steady", keys::ON_DEMAND, "al2023"),
];

pub(crate) const TEAMS: usize = 40;
pub(crate) const APP_NAMES: [&str; 12] = [
    "checkout",
    "cart",
    "catalog",
    "search",
    "payments",
    "ledger",
    "profile",
    "gateway",
    "notifier",
    "recommender",
    "inventory",
    "reports",
];
/// Workload pods per Deployment.
pub(crate) const REPLICAS: usize = 25;
/// The DaemonSets whose pods run on every node: (namespace, name, cpu, memory).
pub(crate) const NODE_DAEMONS: [(&str, &str, &str, &str); 2] = [
    ("kube-system", "kube-proxy", "100m", "64Mi"),
    ("kube-system", "aws-node", "25m", "128Mi"),
];

pub(crate) fn team(i: usize) -> String {
    format!("team-{i:02}")
}

/// Teams whose namespaces opted in to Spotwright's capacity.
pub(crate) fn opted_in(team_index: usize) -> bool {
    team_index.is_multiple_of(4)
}

pub(crate) fn node_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 16 + (i >> 16), (i >> 8) & 255, i & 255)
}

pub(crate) fn node_name(i: usize) -> String {
    format!("ip-{}.ec2.internal", node_ip(i).replace('.', "-"))
}

pub(crate) fn instance_id(i: usize) -> String {
    format!(
        "i-0{:016x}",
        (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 4
    )
}

pub(crate) fn provider_id(i: usize) -> String {
    format!("aws:///{}/{}", ZONES[i % 3].0, instance_id(i))
}

pub(crate) fn instance_type(i: usize) -> &'static InstanceType {
    &TYPES[i % TYPES.len()]
}

/// Nodes launched by Spotwright (they carry NodeClaims): the first tenth.
pub(crate) fn spotwright_pool(
    i: usize,
    claimed_nodes: usize,
) -> Option<(&'static str, &'static str, &'static str)> {
    (i < claimed_nodes).then(|| POOLS[i % POOLS.len()])
}

/// Images nodes have pulled: (digest name, tag name, size).
pub(crate) struct Images(Vec<(String, String, u64)>);

impl Images {
    pub(crate) fn new(rng: &mut Rng) -> Images {
        let mut images = Vec::new();
        for (repo, tag) in [
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/pause",
                "3.10",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy",
                "v1.36.3-minimal-eksbuild.2",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni",
                "v1.19.2-eksbuild.1",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni-init",
                "v1.19.2-eksbuild.1",
            ),
            (
                "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/aws-ebs-csi-driver",
                "v1.38.1",
            ),
            ("quay.io/prometheus/node-exporter", "v1.8.2"),
        ] {
            images.push(image(rng, repo, tag));
        }
        for app in 0..200 {
            let repo = format!(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}/{}",
                team(app % TEAMS),
                APP_NAMES[app % APP_NAMES.len()]
            );
            images.push(image(
                rng,
                &repo,
                &format!("v{}.{}.{}", 1 + app % 5, app % 17, app % 9),
            ));
        }
        Images(images)
    }

    pub(crate) fn app(&self, app: usize) -> &(String, String, u64) {
        let apps = &self.0[6..];
        &apps[app % apps.len()]
    }
}

pub(crate) fn image(rng: &mut Rng, repo: &str, tag: &str) -> (String, String, u64) {
    (
        format!("{repo}@sha256:{}", rng.hex(64)),
        format!("{repo}:{tag}"),
        20_000_000 + rng.next() % 400_000_000,
    )
}

pub(crate) fn managed(
    manager: &str,
    operation: &str,
    time: &str,
    subresource: Option<&str>,
    fields: Value,
) -> Value {
    let mut entry = json!({"manager": manager, "operation": operation, "apiVersion": "v1",
        "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields});
    if let Some(sub) = subresource {
        entry["subresource"] = json!(sub);
    }
    entry
}

pub(crate) fn node(i: usize, claimed_nodes: usize, images: &Images, rng: &mut Rng) -> Value {
    let t = instance_type(i);
    let (zone, zone_id) = ZONES[i % 3];
    let name = node_name(i);
    let ip = node_ip(i);
    let arch = if t.family.ends_with('g') {
        "arm64"
    } else {
        "amd64"
    };
    let mut labels = json!({
        "beta.kubernetes.io/arch": arch, "beta.kubernetes.io/instance-type": t.name,
        "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch, "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": t.name,
        "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": zone,
        "topology.k8s.aws/zone-id": zone_id, "type": "kwok",
    });
    let mut taints = Vec::new();
    match spotwright_pool(i, claimed_nodes) {
        Some((pool, capacity, _)) => {
            for (key, value) in [
                (keys::NODEPOOL_LABEL, pool.to_owned()),
                (keys::CAPACITY_TYPE_LABEL, capacity.to_owned()),
                (keys::INSTANCE_CATEGORY_LABEL, t.family[..1].to_owned()),
                (keys::INSTANCE_FAMILY_LABEL, t.family.to_owned()),
                (keys::INSTANCE_GENERATION_LABEL, t.generation.to_string()),
                (keys::INSTANCE_SIZE_LABEL, t.size.to_owned()),
                (keys::INSTANCE_CPU_LABEL, t.cpu.to_string()),
                (
                    keys::INSTANCE_MEMORY_LABEL,
                    (t.memory_gib * 1024).to_string(),
                ),
            ] {
                labels[key] = json!(value);
            }
            if capacity == keys::SPOT {
                taints.push(json!({"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}));
            }
        }
        None => {
            let group = format!("general-{}", i % 4);
            labels["eks.amazonaws.com/nodegroup"] = json!(group);
            labels["eks.amazonaws.com/capacityType"] = json!(keys::EKS_ON_DEMAND);
            labels["eks.amazonaws.com/nodegroup-image"] = json!("ami-0c1d2e3f4a5b6c7d8");
            if i.is_multiple_of(10) {
                taints.push(json!({"key": "dedicated", "value": "data", "effect": "NoSchedule"}));
            }
        }
    }
    let created = rng.time();
    let heartbeat = rng.time();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": created, "reason": reason, "message": message})
    };
    let memory_kib = u64::from(t.memory_gib) * 1024 * 1024 - 360_000;
    let node_images: Vec<Value> = (0..30)
        .map(|k| {
            let (digest, tag, size) = if k < 6 {
                &images.0[k]
            } else {
                images.app(rng.below(200))
            };
            json!({"names": [digest, tag], "sizeBytes": size})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": rng.uid(), "resourceVersion": (1_000_000 + i).to_string(),
            "creationTimestamp": created, "labels": labels,
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": ip,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "kwok.x-k8s.io/node": "fake",
            },
            "managedFields": [
                managed("kubelet", "Update", &created, None, json!({"f:metadata": {
                    "f:annotations": {".": {}, "f:alpha.kubernetes.io/provided-node-ip": {},
                        "f:volumes.kubernetes.io/controller-managed-attach-detach": {}},
                    "f:labels": {".": {}, "f:beta.kubernetes.io/arch": {}, "f:beta.kubernetes.io/os": {},
                        "f:kubernetes.io/arch": {}, "f:kubernetes.io/hostname": {}, "f:kubernetes.io/os": {},
                        "f:node.kubernetes.io/instance-type": {}, "f:topology.kubernetes.io/region": {},
                        "f:topology.kubernetes.io/zone": {}}},
                    "f:spec": {"f:providerID": {}}})),
                managed("kube-controller-manager", "Update", &created, None, json!({
                    "f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}},
                    "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, "v:\"10.244.0.0/24\"": {}}}})),
                managed("spotwright-provisioner", "Update", &created, None, json!({"f:metadata": {"f:labels": {
                    "f:spotwright.io/capacity-type": {}, "f:spotwright.io/instance-cpu": {},
                    "f:spotwright.io/instance-family": {}, "f:spotwright.io/instance-memory": {},
                    "f:spotwright.io/instance-size": {}, "f:spotwright.io/nodepool": {}}},
                    "f:spec": {"f:taints": {}}})),
                managed("kubelet", "Update", &heartbeat, Some("status"), json!({"f:status": {
                    "f:allocatable": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {}},
                    "f:capacity": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {}},
                    "f:conditions": {
                        "k:{\"type\":\"DiskPressure\"}": {"f:lastHeartbeatTime": {}},
                        "k:{\"type\":\"MemoryPressure\"}": {"f:lastHeartbeatTime": {}},
                        "k:{\"type\":\"PIDPressure\"}": {"f:lastHeartbeatTime": {}},
                        "k:{\"type\":\"Ready\"}": {"f:lastHeartbeatTime": {}, "f:lastTransitionTime": {},
                            "f:message": {}, "f:reason": {}, "f:status": {}}},
                    "f:images": {}, "f:nodeInfo": {"f:bootID": {}}}})),
            ],
        },
        "spec": {
            "providerID": provider_id(i),
            "podCIDR": format!("10.{}.{}.0/24", 100 + (i >> 8), i & 255),
            "podCIDRs": [format!("10.{}.{}.0/24", 100 + (i >> 8), i & 255)],
            "taints": taints,
        },
        "status": {
            "capacity": {"cpu": t.cpu.to_string(), "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": format!("{memory_kib}Ki"), "pods": t.max_pods.to_string()},
            "allocatable": {"cpu": format!("{}m", t.cpu * 1000 - 90), "ephemeral-storage": "95551679124",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": format!("{}Ki", memory_kib - 1_100_000),
                "pods": t.max_pods.to_string()},
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": rng.hex(32), "systemUUID": format!("ec2{}", &rng.uid()[3..]),
                "bootID": rng.uid(), "kernelVersion": "6.1.115-126.197.amzn2023.x86_64",
                "osImage": "Amazon Linux 2023.6.20241111", "containerRuntimeVersion": "containerd://1.7.23",
                "kubeletVersion": "v1.36.3-eks-7f9249a", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": arch,
            },
            "images": node_images,
            "runtimeHandlers": [
                {"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
                {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
            ],
            "features": {"supplementalGroupsPolicy": true},
        },
    })
}

/// What a pod is.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    /// A Deployment's replica bound to node `node`.
    Workload { app: usize, node: usize },
    /// A replica the scheduler could not place.
    Pending { app: usize },
    /// The pod of DaemonSet `daemon` (of [`NODE_DAEMONS`]) on node `node`.
    Daemon { daemon: usize, node: usize },
}

pub(crate) fn app_name(app: usize) -> String {
    format!("{}-{app}", APP_NAMES[app % APP_NAMES.len()])
}

/// The namespace of a Deployment; pending pods go to opted-in teams or name
/// Spotwright's scheduler (alternately), the way Spotwright finds them.
pub(crate) fn app_team(app: usize) -> usize {
    app % TEAMS
}

pub(crate) fn template_hash(app: usize) -> String {
    Rng(app as u64 ^ 0x5eed).suffix(10)
}

pub(crate) fn env(name: &str, value: Value) -> Value {
    let mut var = json!({"name": name});
    match value {
        Value::String(s) => var["value"] = json!(s),
        from => var["valueFrom"] = from,
    }
    var
}

pub(crate) fn app_container(app: usize, main: bool, images: &Images) -> Value {
    let name = app_name(app);
    let (_, tag, _) = images.app(app);
    let (cpu, memory) = [
        ("100m", "128Mi"),
        ("250m", "512Mi"),
        ("500m", "1Gi"),
        ("1", "2Gi"),
        ("2", "4Gi"),
    ][app % 5];
    if !main {
        return json!({
            "name": "envoy", "image": "envoyproxy/envoy:v1.31.0",
            "args": ["-c", "/etc/envoy/envoy.yaml", "--service-cluster", name, "--log-level", "warn"],
            "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}],
            "env": [env("ENVOY_UID", json!("0")), env("POD_IP", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}))],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy", "readOnly": true}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 15021, "scheme": "HTTP"}, "periodSeconds": 5,
                "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        });
    }
    json!({
        "name": name.clone(), "image": tag,
        "command": ["/app/server"],
        "args": ["--port=8080", "--metrics-port=9090", "--log-format=json", format!("--service={name}")],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [
            env("POD_NAME", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}})),
            env("POD_NAMESPACE", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}})),
            env("GOMAXPROCS", json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}})),
            env("FEATURE_FLAGS", json!("fast-checkout,new-cart,coupons-v2")),
            env("DATABASE_URL", json!({"secretKeyRef": {"name": format!("{name}-db"), "key": "url"}})),
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": true},
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
        ],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10,
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "timeoutSeconds": 1,
            "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    })
}

pub(crate) fn daemon_container(daemon: usize) -> Value {
    let (_, name, cpu, memory) = NODE_DAEMONS[daemon];
    let image = if daemon == 0 {
        "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy:v1.36.3-minimal-eksbuild.2"
    } else {
        "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1"
    };
    json!({
        "name": name, "image": image,
        "command": [format!("/usr/local/bin/{name}")],
        "args": ["--v=2", "--config=/var/lib/config/config.conf", "--hostname-override=$(NODE_NAME)"],
        "env": [
            env("NODE_NAME", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}})),
            env("AWS_VPC_K8S_CNI_LOGLEVEL", json!("DEBUG")),
            env("WARM_ENI_TARGET", json!("1")),
            env("ENABLE_PREFIX_DELEGATION", json!("false")),
            env("MY_POD_NAME", json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}})),
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}},
        "volumeMounts": [
            {"name": "varlog", "mountPath": "/var/log"},
            {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
        ],
        "livenessProbe": {"exec": {"command": ["/app/grpc-health-probe", "-addr=:50051", "-connect-timeout=5s"]},
            "initialDelaySeconds": 60, "timeoutSeconds": 10, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": true},
    })
}

pub(crate) fn kube_api_access() -> Value {
    json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

pub(crate) fn pod(k: usize, role: Role, images: &Images, rng: &mut Rng) -> Value {
    let created = rng.time();
    let started = rng.time();
    let (namespace, name, labels, owner, containers, volumes) = match role {
        Role::Workload { app, .. } | Role::Pending { app } => {
            let app_label = app_name(app);
            let hash = template_hash(app);
            let rs = format!("{app_label}-{hash}");
            let namespace = match role {
                Role::Pending { .. } if k % 2 == 1 => team(4 * (app % (TEAMS / 4))),
                _ => team(app_team(app)),
            };
            let mut containers = vec![app_container(app, true, images)];
            let mut volumes = vec![
                json!({"name": "config", "configMap": {"name": format!("{app_label}-config"), "defaultMode": 420}}),
                kube_api_access(),
            ];
            if app.is_multiple_of(3) {
                containers.push(app_container(app, false, images));
                volumes.push(json!({"name": "envoy-config", "configMap": {"name": "envoy", "defaultMode": 420}}));
            }
            (
                namespace,
                format!("{rs}-{}", unique_suffix(k)),
                json!({"app": app_label, "pod-template-hash": hash, "app.kubernetes.io/part-of": "shop",
                    "version": format!("v{}", app % 40)}),
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": rng.uid(),
                    "controller": true, "blockOwnerDeletion": true}),
                containers,
                volumes,
            )
        }
        Role::Daemon { daemon, .. } => {
            let (namespace, ds, _, _) = NODE_DAEMONS[daemon];
            (
                namespace.to_owned(),
                format!("{ds}-{}", unique_suffix(k)),
                json!({"k8s-app": ds, "controller-revision-hash": "7b9c5d8f6", "pod-template-generation": "3"}),
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds, "uid": rng.uid(),
                    "controller": true, "blockOwnerDeletion": true}),
                vec![daemon_container(daemon)],
                vec![
                    json!({"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}}),
                    json!({"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}),
                    kube_api_access(),
                ],
            )
        }
    };
    let mut tolerations = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
    ];
    let mut spec = json!({
        "volumes": volumes, "containers": containers,
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "serviceAccount": "default",
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": keys::DEFAULT_SCHEDULER_NAME, "priority": 0, "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority",
    });
    let mut annotations = json!({});
    match role {
        Role::Workload { app, .. } | Role::Pending { app } => {
            let app_label = app_name(app);
            let selector = json!({"matchLabels": {"app": app_label}});
            if app.is_multiple_of(2) {
                tolerations.push(json!({"key": keys::CAPACITY_TYPE_LABEL, "operator": "Equal", "value": keys::SPOT, "effect": "NoSchedule"}));
            }
            if app.is_multiple_of(4) {
                spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": keys::ZONE_LABEL,
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]);
            }
            if app.is_multiple_of(7) {
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": keys::HOSTNAME_LABEL, "labelSelector": selector}]}});
            } else if app % 10 == 1 {
                spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": keys::ARCH_LABEL, "operator": "In", "values": ["amd64"]},
                        {"key": keys::INSTANCE_FAMILY_LABEL, "operator": "In", "values": ["m6i", "m7i", "c6i"]}]}]}}});
            }
            annotations["prometheus.io/scrape"] = json!("true");
            annotations["prometheus.io/port"] = json!("9090");
            annotations["kubectl.kubernetes.io/restartedAt"] = json!(created);
            if k.is_multiple_of(10) {
                let applied = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"annotations": {}, "labels": labels, "name": name, "namespace": namespace},
                    "spec": {"containers": spec["containers"].clone(), "volumes": spec["volumes"].clone()}});
                annotations["kubectl.kubernetes.io/last-applied-configuration"] =
                    json!(format!("{applied}\n"));
            }
            if matches!(role, Role::Pending { .. }) && k.is_multiple_of(2) {
                spec["schedulerName"] = json!(keys::SCHEDULER_NAME);
            }
        }
        Role::Daemon { node, .. } => {
            tolerations = vec![json!({"operator": "Exists"})];
            spec["hostNetwork"] = json!(true);
            spec["priorityClassName"] = json!("system-node-critical");
            spec["priority"] = json!(2_000_001_000);
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node_name(node)]}]}]}}});
        }
    }
    spec["tolerations"] = json!(tolerations);
    let container_names: Vec<String> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": started});
    let status = match role {
        Role::Pending { .. } => json!({
            "phase": "Pending", "qosClass": "Burstable",
            "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": null,
                "lastTransitionTime": created, "reason": "Unschedulable",
                "message": "0/5000 nodes are available: 1200 Insufficient cpu, 800 Insufficient memory, 3000 node(s) didn't match pod topology spread constraints. preemption: 0/5000 nodes are available: 5000 No preemption victims found for incoming pod."}],
        }),
        Role::Workload { node, .. } | Role::Daemon { node, .. } => {
            spec["nodeName"] = json!(node_name(node));
            let pod_ip = format!("10.{}.{}.{}", 100 + (node >> 8), node & 255, 2 + k % 250);
            let host_ip = node_ip(node);
            let statuses: Vec<Value> = container_names
                .iter()
                .enumerate()
                .map(|(c, cname)| {
                    let image = spec["containers"][c]["image"].clone();
                    json!({"name": cname, "image": image, "imageID": format!("{}@sha256:{}", image.as_str().unwrap_or_default(), rng.hex(64)),
                        "containerID": format!("containerd://{}", rng.hex(64)), "ready": true, "restartCount": 0,
                        "started": true, "state": {"running": {"startedAt": started}}, "lastState": {},
                        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": true, "recursiveReadOnly": "Disabled"}]})
                })
                .collect();
            json!({
                "phase": "Running",
                "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                    condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
                "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
                "startTime": started, "containerStatuses": statuses, "qosClass": "Burstable",
            })
        }
    };
    let mut managed_fields = vec![managed(
        "kube-controller-manager",
        "Update",
        &created,
        None,
        json!({
        "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
            "f:ownerReferences": {".": {}, "k:{\"uid\":\"0d6c9e7a\"}": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:args": {}, "f:env": {}, "f:image": {},
            "f:imagePullPolicy": {}, "f:livenessProbe": {}, "f:name": {}, "f:ports": {}, "f:readinessProbe": {},
            "f:resources": {"f:limits": {}, "f:requests": {}}, "f:securityContext": {}, "f:volumeMounts": {}}},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
            "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:tolerations": {}, "f:volumes": {}}}),
    )];
    if !matches!(role, Role::Pending { .. }) {
        managed_fields.push(managed("kubelet", "Update", &started, Some("status"), json!({"f:status": {
            "f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                "k:{\"type\":\"PodReadyToStartContainers\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
            "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {},
            "f:podIPs": {".": {}, "k:{\"ip\":\"10.0.0.1\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}})));
    }
    let mut metadata = json!({
        "name": name, "generateName": name[..name.len() - 5].to_owned(), "namespace": namespace,
        "uid": rng.uid(), "resourceVersion": (2_000_000 + k).to_string(), "creationTimestamp": created,
        "labels": labels, "ownerReferences": [owner], "managedFields": managed_fields,
    });
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        metadata["annotations"] = annotations;
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
}

/// NodeClaim `i`; a registered one is node `i`'s, one in flight has an
/// instance no Node carries yet (`instance`).
pub(crate) fn claim(i: usize, instance: usize, registered: bool, rng: &mut Rng) -> Value {
    let (pool, capacity, class) = POOLS[i % POOLS.len()];
    let t = instance_type(i);
    let (zone, _) = ZONES[i % 3];
    let created = rng.time();
    let condition = |type_: &str, reason: &str| {
        json!({"type": type_, "status": "True", "reason": reason, "message": "",
            "lastTransitionTime": created, "observedGeneration": 1})
    };
    let mut conditions = vec![condition("Launched", "Launched")];
    let mut status = json!({"providerID": provider_id(instance), "instanceType": t.name, "zone": zone,
        "capacityType": capacity, "imageID": "ami-0a1b2c3d4e5f60718",
        "capacity": {"cpu": t.cpu.to_string(), "memory": format!("{}Gi", t.memory_gib), "pods": t.max_pods.to_string()},
        "allocatable": {"cpu": format!("{}m", t.cpu * 1000 - 90), "memory": format!("{}Mi", t.memory_gib * 1024 - 1100),
            "pods": t.max_pods.to_string()}});
    if registered {
        status["nodeName"] = json!(node_name(i));
        conditions.push(condition("Registered", "NodeRegistered"));
        conditions.push(condition("Initialized", "Initialized"));
    }
    status["conditions"] = json!(conditions);
    json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": format!("{pool}-{}", unique_suffix(i)), "uid": rng.uid(),
            "resourceVersion": (3_000_000 + i).to_string(), "generation": 1, "creationTimestamp": created,
            "labels": {keys::NODEPOOL_LABEL: pool, keys::CAPACITY_TYPE_LABEL: capacity,
                keys::INSTANCE_TYPE_LABEL: t.name, keys::ZONE_LABEL: zone},
            "annotations": {keys::NODEPOOL_HASH_ANNOTATION: "12816436412339426617",
                keys::NODECLASS_HASH_ANNOTATION: "4371829410265481630"},
            "finalizers": ["spotwright.io/termination"],
            "managedFields": [managed("spotwright-provisioner", "Update", &created, None,
                json!({"f:metadata": {"f:annotations": {}, "f:finalizers": {}, "f:labels": {}}, "f:spec": {}}))]},
        "spec": {
            "nodeClassRef": {"name": class},
            "requirements": [
                {"key": keys::INSTANCE_TYPE_LABEL, "operator": "In",
                    "values": TYPES.iter().map(|t| t.name).collect::<Vec<_>>(), "minValues": 5},
                {"key": keys::ZONE_LABEL, "operator": "In", "values": [zone]},
                {"key": keys::CAPACITY_TYPE_LABEL, "operator": "In", "values": [capacity]},
                {"key": keys::ARCH_LABEL, "operator": "In", "values": ["amd64"]},
                {"key": keys::NODEPOOL_LABEL, "operator": "In", "values": [pool]},
            ],
            "taints": if capacity == keys::SPOT {
                json!([{"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}])
            } else {
                json!([])
            },
            "resources": {"cpu": "6500m", "memory": "24Gi", "pods": "12"},
            "expireAfter": "720h",
        },
        "status": status,
    })
}

pub(crate) fn nodepool(i: usize) -> Value {
    let (name, capacity, class) = POOLS[i];
    json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
        "metadata": {"name": name, "uid": Rng(i as u64).uid(), "resourceVersion": "4000", "generation": 3,
            "creationTimestamp": "2026-10-01T08:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"spotwright.io/v1alpha1\",\"kind\":\"NodePool\"}\n"}},
        "spec": {
            "template": {"metadata": {"labels": {"team": "platform"}}, "spec": {
                "nodeClassRef": {"name": class},
                "requirements": [
                    {"key": keys::CAPACITY_TYPE_LABEL, "operator": "In", "values": [capacity]},
                    {"key": keys::INSTANCE_CATEGORY_LABEL, "operator": "In", "values": ["c", "m", "r"]},
                    {"key": keys::INSTANCE_GENERATION_LABEL, "operator": "Gt", "values": ["4"]},
                    {"key": keys::ARCH_LABEL, "operator": "In", "values": ["amd64"]},
                    {"key": keys::INSTANCE_TYPE_LABEL, "operator": "Exists", "minValues": 5},
                ],
                "taints": if capacity == keys::SPOT {
                    json!([{"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}])
                } else {
                    json!([])
                },
                "expireAfter": "720h"}},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "30s",
                "budgets": [{"nodes": "10%"}, {"nodes": "0", "schedule": "0 9 * * 1-5", "duration": "8h"}]},
            "limits": {"cpu": "20000", "memory": "80000Gi"},
            "weight": 10 * (3 - i as i32),
        },
        "status": {"nodes": 0, "resources": {"cpu": "0", "memory": "0"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                "lastTransitionTime": "2026-10-01T08:00:05Z"}]},
    })
}

pub(crate) fn nodeclass(name: &str) -> Value {
    json!({
        "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClass",
        "metadata": {"name": name, "uid": Rng(seed(name)).uid(), "resourceVersion": "4100", "generation": 1,
            "creationTimestamp": "2026-10-01T08:00:00Z"},
        "spec": {
            "amiSelector": {"ssmParameter": "/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"},
            "subnetSelector": [{"tags": {"karpenter.sh/discovery": "prod"}}],
            "securityGroupSelector": [{"tags": {"karpenter.sh/discovery": "prod"}}],
            "instanceProfile": "spotwright-node",
            "tags": {"team": "platform", "cost-center": "1234"},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "100Gi", "volumeType": "gp3", "encrypted": true}}],
        },
        "status": {
            "amis": [{"id": "ami-0a1b2c3d4e5f60718", "source": "/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"}],
            "subnets": ZONES.iter().enumerate().map(|(i, (zone, _))| json!({"id": format!("subnet-0{i}a1b2c3d4e5f6"), "zone": zone})).collect::<Vec<_>>(),
            "securityGroups": [{"id": "sg-0123456789abcdef0", "name": "eks-cluster-sg-prod"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Resolved", "message": "",
                "lastTransitionTime": "2026-10-01T08:00:03Z"}],
        },
    })
}

pub(crate) fn daemonset(namespace: &str, name: &str, daemon: usize, nodes: usize) -> Value {
    let container = if daemon < NODE_DAEMONS.len() {
        daemon_container(daemon)
    } else {
        json!({"name": name, "image": format!("registry.example.com/{name}:v1.8.2"),
            "args": ["--path.rootfs=/host"], "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}})
    };
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "uid": Rng(daemon as u64 + 99).uid(),
            "resourceVersion": "5000", "generation": 3, "creationTimestamp": "2026-10-01T08:00:00Z",
            "labels": {"k8s-app": name},
            "annotations": {"deprecated.daemonset.template.generation": "3"},
            "managedFields": [managed("eks", "Apply", "2026-10-01T08:00:00Z", None, json!({"f:spec": {"f:template": {}}}))]},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": name}},
            "template": {
                "metadata": {"labels": {"k8s-app": name}},
                "spec": {"containers": [container], "hostNetwork": true, "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}}]},
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}},
        },
        "status": {"currentNumberScheduled": nodes, "numberMisscheduled": 0, "desiredNumberScheduled": nodes,
            "numberReady": nodes, "observedGeneration": 3, "updatedNumberScheduled": nodes, "numberAvailable": nodes},
    })
}

pub(crate) fn namespace(name: &str, opted: bool) -> Value {
    let mut metadata = json!({"name": name, "uid": Rng(seed(name)).uid(), "resourceVersion": "300",
        "creationTimestamp": "2026-10-01T08:00:00Z", "labels": {"kubernetes.io/metadata.name": name},
        "managedFields": [managed("kubectl-create", "Update", "2026-10-01T08:00:00Z", None,
            json!({"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}}))]});
    if opted {
        metadata["annotations"] = json!({keys::CAPACITY_ANNOTATION: keys::SPOT});
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata,
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

// ---------------------------------------------------------------------------
// Recording.
