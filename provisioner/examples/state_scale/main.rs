//! Scale benchmark of the provisioner's cluster state ([`ClusterState`]).
//!
//! Generates a cluster the way an API server would return it (EKS/KWOK-like
//! Nodes with their status, images and managed fields; Deployment and
//! DaemonSet pods with full specs and statuses, about 2% of them pending;
//! NodeClaims, NodePools, NodeClasses, DaemonSets and Namespaces), records it
//! as a watch stream (one `{"type":"ADDED","object":…}` line per event, one
//! file per kind, in a temp dir), then replays the files through
//! `ClusterState::start`: `Init`, one `InitApply` per line, `InitDone`, each
//! object parsed only when the reflector asks for it, as a paginated list
//! would deliver it. Objects are generated and written one at a time, so
//! after the sync only the state holds them.
//!
//! Measures: VmRSS and VmHWM (from `/proc/self/status`) and the live heap (a
//! thin counter around the system allocator, one relaxed atomic add per
//! allocation) before generating, once the state is synced, after the timed
//! rebuilds and after the `problem` calls; the time of a full snapshot
//! rebuild (`Snapshot::build(state.lists())`) and of the solver's input
//! (`Snapshot::problem`); per kind, the heap its objects take untrimmed and
//! trimmed, and where a trimmed pod's and node's bytes go, measured in a
//! child process that holds the same recording without a state (so its
//! figures don't disturb this process's).
//!
//! Prints a Markdown table, then one JSON line (what `bench/state/run` reads).
//!
//! ```text
//! cargo run --release -p spotwright-provisioner --example state_scale -- \
//!     [--nodes 5000] [--pods 50000] [--rounds 30] [--problem-rounds 10]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::core::WatchEvent;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use spotwright_api::{keys, NodeClaim, NodeClass, NodePool};
use spotwright_provisioner::model::pod::{CachedPod, PodShape};
use spotwright_provisioner::state::{trim, ClusterState, Feed, Feeds, PodStore, Snapshot};

mod cluster;
mod measure;
mod record;

use cluster::*;
use measure::*;
use record::*;

/// The temp dir of the recording, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.hold_untrimmed {
        return hold_untrimmed(dir);
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let before = memory();

    let dir = TempDir(
        std::env::temp_dir().join(format!("spotwright-state-scale-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let started = Instant::now();
    let (sizes, bytes) = record(&dir.0, args.nodes, args.pods)?;
    let generate_s = started.elapsed().as_secs_f64();
    let after_generating = memory();

    let untrimmed = if args.no_untrimmed {
        Value::Null
    } else {
        measure_untrimmed(&dir.0)?
    };

    let started = Instant::now();
    let state = ClusterState::start(feeds(&dir.0)?);
    tokio::time::timeout(Duration::from_secs(600), state.ready())
        .await
        .context("the state did not sync within 10 minutes")?;
    let sync_s = started.elapsed().as_secs_f64();
    let lists = state.lists();
    let held = [
        lists.pods.len(),
        lists.nodes.len(),
        lists.claims.len(),
        lists.nodepools.len(),
        lists.nodeclasses.len(),
        lists.daemonsets.len(),
        lists.namespaces.len(),
    ];
    drop(lists);
    let expected = [
        sizes.pods,
        sizes.nodes,
        sizes.claims,
        sizes.nodepools,
        sizes.nodeclasses,
        sizes.daemonsets,
        sizes.namespaces,
    ];
    if held != expected {
        bail!("the state holds {held:?} objects per kind, the recording has {expected:?}");
    }
    let objects: usize = held.iter().sum();
    let synced = memory();

    // One untimed rebuild, then the timed ones; each snapshot is dropped
    // outside the timing (the state replaces the previous one the same way).
    drop(std::hint::black_box(Snapshot::build(state.lists())));
    let mut builds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let t = Instant::now();
        let snapshot = std::hint::black_box(Snapshot::build(state.lists()));
        builds.push(t.elapsed());
        drop(snapshot);
    }
    // The lists alone: the part of a rebuild spent copying out of the stores.
    let mut lists = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let t = Instant::now();
        let copied = std::hint::black_box(state.lists());
        lists.push(t.elapsed());
        drop(copied);
    }
    let after_builds = memory();
    let snapshot = state.snapshot();
    let problem = snapshot.problem(keys::SCHEDULER_NAME, &[]);
    let (problem_pods, problem_nodes, problem_pools) = (
        problem.pods.len(),
        problem.nodes.len(),
        problem.nodepools.len(),
    );
    let unreadable = problem.unreadable.len();
    drop(problem);
    let mut problems = Vec::with_capacity(args.problem_rounds);
    for _ in 0..args.problem_rounds {
        let t = Instant::now();
        let problem = std::hint::black_box(snapshot.problem(keys::SCHEDULER_NAME, &[]));
        problems.push(t.elapsed());
        drop(problem);
    }
    drop(snapshot);
    let after = memory();
    let build = spread(&builds);
    let lists = spread(&lists);
    let problem = spread(&problems);

    let json_mib: Vec<f64> = bytes.iter().map(|b| round1(*b as f64 / MIB)).collect();
    let mut kinds = serde_json::Map::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let mut entry = json!({"objects": held[i], "json_mib": json_mib[i]});
        if let Some(child) = untrimmed["kinds"][kind].as_object() {
            for (key, value) in child {
                entry[key] = value.clone();
            }
        }
        kinds.insert((*kind).to_owned(), entry);
    }
    let summary = json!({
        "nodes": sizes.nodes, "pods": sizes.pods, "objects": objects,
        "generate_s": round1(generate_s), "sync_s": round1(sync_s),
        "before": before, "after_generating": after_generating, "synced": synced, "after_builds": after_builds, "at_end": after,
        "state_heap_mib": round1(synced.heap_mib - before.heap_mib),
        "build_ms": build, "lists_ms": lists, "build_rounds": args.rounds,
        "problem_ms": problem, "problem_rounds": args.problem_rounds,
        "problem": {"pending_pods": problem_pods, "nodes": problem_nodes, "nodepools": problem_pools, "unreadable": unreadable},
        "untrimmed": untrimmed["untrimmed"].clone(),
        "trimmed_bytes_per_object": untrimmed["trimmed_bytes_per_object"].clone(),
        "kinds": kinds,
    });

    let ms = |s: &Spread| {
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2}",
            s.min, s.median, s.p90, s.max
        )
    };
    let mib = |m: &Memory| {
        format!(
            "{:.1} MiB ({:.1} MiB peak; heap {:.1} MiB in {:.2} M allocations)",
            m.rss_mib,
            m.hwm_mib,
            m.heap_mib,
            m.heap_blocks_k / 1e3
        )
    };
    println!(
        "## Cluster state at scale: {} nodes, {} pods",
        thousands(sizes.nodes),
        thousands(sizes.pods)
    );
    println!();
    println!("| measure | result |");
    println!("| --- | --- |");
    println!(
        "| objects in the state | {} ({} pods, {} nodes, {} NodeClaims, {} NodePools, {} NodeClasses, {} DaemonSets, {} Namespaces) |",
        thousands(objects),
        thousands(held[0]),
        thousands(held[1]),
        thousands(held[2]),
        held[3],
        held[4],
        held[5],
        held[6]
    );
    println!(
        "| recording | {:.1} MiB of JSON lines, generated in {generate_s:.1} s; replayed in {sync_s:.1} s |",
        bytes.iter().sum::<u64>() as f64 / MIB
    );
    println!("| RSS before generating | {} |", mib(&before));
    println!(
        "| RSS once synced (only the state holds objects) | {} |",
        mib(&synced)
    );
    println!("| RSS after the timed rebuilds | {} |", mib(&after_builds));
    println!("| RSS after the `problem` calls too | {} |", mib(&after));
    println!(
        "| heap held by the state | {:.1} MiB |",
        synced.heap_mib - before.heap_mib
    );
    if let Some(rss) = untrimmed["untrimmed"]["rss_mib"].as_f64() {
        println!(
            "| untrimmed objects alone (child process, no state) | {rss:.1} MiB RSS, heap {:.1} MiB |",
            untrimmed["untrimmed"]["heap_mib"].as_f64().unwrap_or_default()
        );
    }
    println!(
        "| `Snapshot::build(state.lists())`, {} rounds, ms min / median / p90 / max | {} |",
        args.rounds,
        ms(&build)
    );
    println!(
        "| of which `state.lists()` alone, ms min / median / p90 / max | {} |",
        ms(&lists)
    );
    println!(
        "| `snapshot.problem(..)`, {} rounds, ms min / median / p90 / max | {} ({} pending pods, {} nodes, {} pools) |",
        args.problem_rounds,
        ms(&problem),
        problem_pods,
        problem_nodes,
        problem_pools
    );
    println!();
    println!("| kind | objects | JSON MiB | heap untrimmed MiB | heap trimmed MiB |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, kind) in KINDS.iter().enumerate() {
        let entry = &kinds[*kind];
        let figure = |key: &str| {
            entry[key]
                .as_f64()
                .map_or("–".to_owned(), |v| format!("{v:.1}"))
        };
        println!(
            "| {kind} | {} | {:.1} | {} | {} |",
            thousands(held[i]),
            json_mib[i],
            figure("untrimmed_heap_mib"),
            figure("trimmed_heap_mib")
        );
    }
    if let Some(parts) = untrimmed["trimmed_bytes_per_object"].as_object() {
        for (kind, parts) in parts {
            let Some(parts) = parts.as_object() else {
                continue;
            };
            println!();
            println!("| a trimmed {kind} object, by part | bytes |");
            println!("| --- | ---: |");
            for (part, bytes) in parts {
                println!(
                    "| {part} | {} |",
                    thousands(bytes.as_f64().unwrap_or_default() as usize)
                );
            }
            let total: f64 = parts.values().filter_map(Value::as_f64).sum();
            println!("| total | {} |", thousands(total as usize));
        }
    }
    println!();
    println!("{summary}");
    Ok(())
}
