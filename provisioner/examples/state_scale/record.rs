//! The recorded watch stream: written one object at a time, replayed into the state, and the per-kind sizes.

#[allow(unused_imports)]
use super::*;

/// How many objects of each kind the cluster has.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub(crate) nodes: usize,
    pub(crate) pods: usize,
    pub(crate) claims: usize,
    pub(crate) nodepools: usize,
    pub(crate) nodeclasses: usize,
    pub(crate) daemonsets: usize,
    pub(crate) namespaces: usize,
}

pub(crate) const KINDS: [&str; 7] = [
    "pods",
    "nodes",
    "claims",
    "nodepools",
    "nodeclasses",
    "daemonsets",
    "namespaces",
];

/// Writes one watch event per line, checking the first object of each role
/// against its type: a field the type does not know would silently shrink
/// the benchmark.
pub(crate) struct Recorder {
    pub(crate) out: BufWriter<File>,
    pub(crate) bytes: u64,
    pub(crate) count: usize,
}

impl Recorder {
    pub(crate) fn create(path: &Path) -> anyhow::Result<Recorder> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Recorder {
            out: BufWriter::with_capacity(1 << 20, file),
            bytes: 0,
            count: 0,
        })
    }

    pub(crate) fn add(&mut self, object: Value) -> anyhow::Result<()> {
        let line = serde_json::to_vec(&json!({"type": "ADDED", "object": object}))?;
        self.out.write_all(&line)?;
        self.out.write_all(b"\n")?;
        self.bytes += line.len() as u64 + 1;
        self.count += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> anyhow::Result<(usize, u64)> {
        self.out.flush()?;
        Ok((self.count, self.bytes))
    }
}

/// Every path of `original` that is missing or different after a round trip
/// through `K`.
pub(crate) fn lost_fields<K: DeserializeOwned + Serialize>(
    original: &Value,
) -> anyhow::Result<Vec<String>> {
    fn walk(path: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    match b.get(key) {
                        Some(other) => walk(format!("{path}.{key}"), value, other, out),
                        // Nulls and empty lists/maps are what serializers leave out.
                        None if value.is_null()
                            || value.as_array().is_some_and(Vec::is_empty)
                            || value.as_object().is_some_and(|o| o.is_empty()) => {}
                        None => out.push(format!("{path}.{key}")),
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(format!("{path}[{i}]"), x, y, out);
                }
            }
            _ if a == b => {}
            _ => out.push(format!("{path}: {a} became {b}")),
        }
    }
    let typed: K = serde_json::from_value(original.clone())?;
    let back = serde_json::to_value(&typed)?;
    let mut lost = Vec::new();
    walk(String::new(), original, &back, &mut lost);
    Ok(lost)
}

pub(crate) fn check<K: DeserializeOwned + Serialize>(
    what: &str,
    object: &Value,
) -> anyhow::Result<()> {
    let lost = lost_fields::<K>(object)?;
    if !lost.is_empty() {
        bail!("generated {what} has fields its type drops: {lost:?}");
    }
    Ok(())
}

/// Generates the cluster into `dir`, one file per kind; returns the bytes
/// written per kind, in [`KINDS`] order.
pub(crate) fn record(dir: &Path, nodes: usize, pods: usize) -> anyhow::Result<(Sizes, [u64; 7])> {
    let mut rng = Rng(42);
    let images = Images::new(&mut rng);
    let claims = nodes / 10;
    // A few claims are launched but their Node has not registered yet.
    let in_flight = claims / 50;
    let claimed_nodes = claims - in_flight;
    let mut bytes = [0u64; 7];

    let mut out = Recorder::create(&dir.join("nodes.jsonl"))?;
    for i in 0..nodes {
        let object = node(i, claimed_nodes, &images, &mut rng);
        if i == 0 || i == claimed_nodes {
            check::<Node>("node", &object)?;
        }
        out.add(object)?;
    }
    let (node_count, b) = out.finish()?;
    bytes[1] = b;

    let pending = pods / 50;
    let bound = pods - pending;
    let daemon_pods = if nodes == 0 {
        0
    } else {
        bound.min(NODE_DAEMONS.len() * nodes)
    };
    let mut out = Recorder::create(&dir.join("pods.jsonl"))?;
    for k in 0..pods {
        let role = if k < daemon_pods {
            Role::Daemon {
                daemon: k / nodes,
                node: k % nodes,
            }
        } else if k < bound {
            let w = k - daemon_pods;
            Role::Workload {
                app: w / REPLICAS,
                node: (w * 7 + w / nodes.max(1)) % nodes.max(1),
            }
        } else {
            Role::Pending {
                app: (k - bound) / 5,
            }
        };
        let object = pod(k, role, &images, &mut rng);
        if k == 0 || k == daemon_pods || k == bound || k == bound + 1 || k % 10_000 == 0 {
            check::<Pod>("pod", &object)?;
        }
        out.add(object)?;
    }
    let (pod_count, b) = out.finish()?;
    bytes[0] = b;

    let mut out = Recorder::create(&dir.join("claims.jsonl"))?;
    for i in 0..claims {
        let registered = i < claimed_nodes;
        let instance = if registered { i } else { nodes + i };
        let object = claim(i, instance, registered, &mut rng);
        if i == 0 {
            check::<NodeClaim>("NodeClaim", &object)?;
        }
        out.add(object)?;
    }
    let (claim_count, b) = out.finish()?;
    bytes[2] = b;

    let mut out = Recorder::create(&dir.join("nodepools.jsonl"))?;
    for i in 0..POOLS.len() {
        let object = nodepool(i);
        check::<NodePool>("NodePool", &object)?;
        out.add(object)?;
    }
    let (pool_count, b) = out.finish()?;
    bytes[3] = b;

    let mut out = Recorder::create(&dir.join("nodeclasses.jsonl"))?;
    for name in ["default", "al2023"] {
        let object = nodeclass(name);
        check::<NodeClass>("NodeClass", &object)?;
        out.add(object)?;
    }
    let (class_count, b) = out.finish()?;
    bytes[4] = b;

    let mut out = Recorder::create(&dir.join("daemonsets.jsonl"))?;
    let mut daemonsets: Vec<(&str, &str)> = NODE_DAEMONS.iter().map(|d| (d.0, d.1)).collect();
    daemonsets.extend([
        ("kube-system", "ebs-csi-node"),
        ("monitoring", "node-exporter"),
    ]);
    for (i, (ns, name)) in daemonsets.into_iter().enumerate() {
        let object = daemonset(ns, name, i, nodes);
        check::<DaemonSet>("DaemonSet", &object)?;
        out.add(object)?;
    }
    let (ds_count, b) = out.finish()?;
    bytes[5] = b;

    let mut out = Recorder::create(&dir.join("namespaces.jsonl"))?;
    for name in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "monitoring",
        keys::SYSTEM_NAMESPACE,
    ] {
        out.add(namespace(name, false))?;
    }
    for t in 0..TEAMS {
        let object = namespace(&team(t), opted_in(t));
        if t == 0 {
            check::<Namespace>("Namespace", &object)?;
        }
        out.add(object)?;
    }
    let (ns_count, b) = out.finish()?;
    bytes[6] = b;

    Ok((
        Sizes {
            nodes: node_count,
            pods: pod_count,
            claims: claim_count,
            nodepools: pool_count,
            nodeclasses: class_count,
            daemonsets: ds_count,
            namespaces: ns_count,
        },
        bytes,
    ))
}

// ---------------------------------------------------------------------------
// Replaying.

pub(crate) fn parse_line<K: DeserializeOwned>(path: &Path, number: usize, line: &str) -> K {
    match serde_json::from_str::<WatchEvent<K>>(line) {
        Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => object,
        Ok(other) => panic!("{}:{number}: unexpected {other:?}", path.display()),
        Err(err) => panic!("{}:{number}: {err}", path.display()),
    }
}

/// A recorded watch: `Init`, one `InitApply` per line of `path` (parsed when
/// the reflector asks for it), `InitDone`, then silence, as a watch that
/// has listed everything and sees no change.
pub(crate) fn replay<K>(path: PathBuf) -> anyhow::Result<Feed<K>>
where
    K: DeserializeOwned + Send + 'static,
{
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let lines = tokio::io::BufReader::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let objects = stream::unfold(
        (tokio::io::AsyncBufReadExt::lines(lines), 0usize),
        move |(mut lines, number)| {
            let path = path.clone();
            async move {
                let line = lines
                    .next_line()
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()))?;
                let object = parse_line(&path, number + 1, &line);
                Some((Ok(watcher::Event::InitApply(object)), (lines, number + 1)))
            }
        },
    );
    Ok(stream::iter([Ok(watcher::Event::Init)])
        .chain(objects)
        .chain(stream::iter([Ok(watcher::Event::InitDone)]))
        .chain(stream::pending())
        .boxed())
}

pub(crate) fn feeds(dir: &Path) -> anyhow::Result<Feeds> {
    Ok(Feeds {
        pods: replay(dir.join("pods.jsonl"))?,
        nodes: replay(dir.join("nodes.jsonl"))?,
        claims: replay(dir.join("claims.jsonl"))?,
        nodepools: replay(dir.join("nodepools.jsonl"))?,
        nodeclasses: replay(dir.join("nodeclasses.jsonl"))?,
        daemonsets: replay(dir.join("daemonsets.jsonl"))?,
        replicasets: nothing(),
        namespaces: replay(dir.join("namespaces.jsonl"))?,
        volume_claims: nothing(),
        volumes: nothing(),
        storage_classes: nothing(),
    })
}

/// A feed of a kind the recording does not hold: listed, empty.
fn nothing<K: Send + 'static>() -> Feed<K> {
    stream::iter([Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)])
        .chain(stream::pending())
        .boxed()
}

// ---------------------------------------------------------------------------
// The untrimmed comparison (a child process).

/// Loads `file` untrimmed, as a store would hold it (`Arc` of a clone);
/// returns the objects and the heap they take.
pub(crate) fn load<K: DeserializeOwned + Clone>(file: &Path) -> anyhow::Result<(Vec<Arc<K>>, f64)> {
    let before = heap_mib();
    let reader = std::io::BufReader::new(
        File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut objects = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let object: K = parse_line(file, i + 1, &line?);
        objects.push(Arc::new(object.clone()));
    }
    objects.shrink_to_fit();
    Ok((objects, heap_mib() - before))
}

/// Trims `objects` in place as the state does (trim, then the store's clone);
/// returns the heap freed.
pub(crate) fn trim_all<K: Clone>(objects: &mut [Arc<K>], trim: fn(&mut K)) -> f64 {
    let before = heap_mib();
    for object in objects.iter_mut() {
        let mut copy = (**object).clone();
        trim(&mut copy);
        *object = Arc::new(copy.clone());
    }
    before - heap_mib()
}

/// Heap bytes a clone of `value` allocates (its own inline size excluded).
pub(crate) fn heap_bytes<T: Clone>(value: &T) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    let copy = value.clone();
    let bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    drop(copy);
    bytes
}

/// Where a held object's bytes go: part, average bytes per object.
pub(crate) fn average<K>(
    objects: &[Arc<K>],
    parts: impl Fn(&K) -> Vec<(&'static str, usize)>,
) -> serde_json::Map<String, Value> {
    let mut sums: Vec<(&'static str, f64)> = Vec::new();
    for object in objects {
        for (i, (name, bytes)) in parts(object).into_iter().enumerate() {
            match sums.get_mut(i) {
                Some(slot) => slot.1 += bytes as f64,
                None => sums.push((name, bytes as f64)),
            }
        }
    }
    let n = objects.len().max(1) as f64;
    sums.into_iter()
        .map(|(name, sum)| (name.to_owned(), json!((sum / n).round())))
        .collect()
}

/// Turns `pods` into the state's compact pods the way the state does
/// (shapes interned); returns the store and the heap freed.
pub(crate) fn compact_pods(pods: Vec<Arc<Pod>>) -> (PodStore, f64) {
    let before = heap_mib();
    let store = PodStore::default();
    store.apply(watcher::Event::Init);
    for pod in pods {
        store.apply(watcher::Event::InitApply((*pod).clone()));
    }
    store.apply(watcher::Event::InitDone);
    (store, before - heap_mib())
}

/// A shape's bytes: its struct and `Arc`, and what its fields hold
/// (`heap_bytes` would not count what sits behind its inner `Arc`s).
fn shape_bytes(shape: &PodShape) -> usize {
    let arcs = 2 * 16 + std::mem::size_of::<BTreeMap<String, String>>();
    std::mem::size_of::<PodShape>()
        + 16
        + arcs
        + shape.namespace.len()
        + heap_bytes(&*shape.labels)
        + heap_bytes(&shape.scheduler_name)
        + heap_bytes(&shape.requests)
        + heap_bytes(&shape.placement)
}

/// Where a compact pod's bytes go; its shape's share is the shapes' heap
/// over the pods that share them.
pub(crate) fn cached_pod_parts(store: &PodStore) -> serde_json::Map<String, Value> {
    let pods = store.state();
    let mut shapes: HashMap<*const PodShape, usize> = HashMap::new();
    for pod in &pods {
        let shape: &PodShape = &pod.shape;
        shapes
            .entry(shape as *const PodShape)
            .or_insert_with(|| shape_bytes(shape));
    }
    let shared = shapes.values().sum::<usize>() / pods.len().max(1);
    let mut parts = average(&pods, |pod: &CachedPod| {
        vec![
            (
                "CachedPod struct and Arc",
                std::mem::size_of::<CachedPod>() + 16,
            ),
            (
                "name, uid, node name",
                heap_bytes(&pod.name) + heap_bytes(&pod.uid) + heap_bytes(&pod.node_name),
            ),
            (
                "the store's key and slot",
                heap_bytes(&pod.uid) + std::mem::size_of::<(String, Arc<CachedPod>)>(),
            ),
        ]
    });
    parts.insert(
        format!("its share of the {} shapes", shapes.len()),
        json!(shared),
    );
    parts
}

pub(crate) fn node_parts(node: &Node) -> Vec<(&'static str, usize)> {
    let m = &node.metadata;
    let (labels, annotations) = (heap_bytes(&m.labels), heap_bytes(&m.annotations));
    let status = node.status.as_ref();
    let conditions = status.map_or(0, |s| heap_bytes(&s.conditions));
    let resources = status.map_or(0, |s| heap_bytes(&s.capacity) + heap_bytes(&s.allocatable));
    vec![
        ("Node struct and Arc", std::mem::size_of::<Node>() + 16),
        ("metadata.labels", labels),
        ("metadata.annotations", annotations),
        (
            "metadata, other",
            heap_bytes(m).saturating_sub(labels + annotations),
        ),
        ("spec", heap_bytes(&node.spec)),
        ("status.conditions", conditions),
        ("status.capacity, allocatable", resources),
        (
            "status, other",
            heap_bytes(&node.status).saturating_sub(conditions + resources),
        ),
    ]
}

/// The child: holds the recording untrimmed, reports, trims, reports.
pub(crate) fn hold_untrimmed(dir: &Path) -> anyhow::Result<()> {
    let (pods, pods_mib) = load::<Pod>(&dir.join("pods.jsonl"))?;
    let (mut nodes, nodes_mib) = load::<Node>(&dir.join("nodes.jsonl"))?;
    let (mut claims, claims_mib) = load::<NodeClaim>(&dir.join("claims.jsonl"))?;
    let (mut pools, pools_mib) = load::<NodePool>(&dir.join("nodepools.jsonl"))?;
    let (mut classes, classes_mib) = load::<NodeClass>(&dir.join("nodeclasses.jsonl"))?;
    let (mut daemonsets, ds_mib) = load::<DaemonSet>(&dir.join("daemonsets.jsonl"))?;
    let (mut namespaces, ns_mib) = load::<Namespace>(&dir.join("namespaces.jsonl"))?;
    let untrimmed = memory();
    let untrimmed_mib = [
        pods_mib,
        nodes_mib,
        claims_mib,
        pools_mib,
        classes_mib,
        ds_mib,
        ns_mib,
    ];
    let (pods, pods_saved_mib) = compact_pods(pods);
    let saved_mib = [
        pods_saved_mib,
        trim_all(&mut nodes, trim::node),
        trim_all(&mut claims, trim::common),
        trim_all(&mut pools, trim::common),
        trim_all(&mut classes, trim::common),
        trim_all(&mut daemonsets, trim::daemonset),
        trim_all(&mut namespaces, trim::namespace),
    ];
    let kinds: serde_json::Map<String, Value> = KINDS
        .iter()
        .zip(untrimmed_mib.iter().zip(saved_mib))
        .map(|(kind, (untrimmed, saved))| {
            (
                (*kind).to_owned(),
                json!({"untrimmed_heap_mib": round1(*untrimmed), "trimmed_heap_mib": round1(untrimmed - saved)}),
            )
        })
        .collect();
    let parts = json!({"pods": cached_pod_parts(&pods), "nodes": average(&nodes, node_parts)});
    println!(
        "{}",
        json!({"untrimmed": untrimmed, "kinds": kinds, "trimmed_bytes_per_object": parts})
    );
    Ok(())
}

pub(crate) fn measure_untrimmed(dir: &Path) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("finding this program")?;
    let output = std::process::Command::new(exe)
        .arg("--hold-untrimmed")
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the untrimmed child")?;
    if !output.status.success() {
        bail!("the untrimmed child failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading the child's report {line:?}"))
}

// ---------------------------------------------------------------------------
