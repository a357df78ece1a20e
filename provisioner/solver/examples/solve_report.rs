//! Pods/s, nodes and $/h of the solver on Karpenter's benchmark workload,
//! with a lower bound on cost, to set beside `bench/karpenter/RESULTS.md`.
//!
//! Run: `cargo run --release -p spotwright-solver --example solve_report`.
//! When Karpenter's exact pods were dumped (`DUMP_WORKLOAD=1
//! bench/karpenter/run`, into `$KARPENTER_WORKLOAD_DIR` or
//! `~/.cache/spotwright/karpenter/workload-<size>.jsonl`), those pods are
//! solved; otherwise `workload::karpenter_diverse_pods` generates them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use spotwright_solver::model::{PendingPod, SpreadConstraint};
use spotwright_solver::solve;
use spotwright_solver::workload::{blank_pod, cost_lower_bound, karpenter_benchmark, match_label};

fn dump_dir() -> Option<PathBuf> {
    std::env::var_os("KARPENTER_WORKLOAD_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/spotwright/karpenter"))
        })
}

/// The single `key: value` of a dumped `matchLabels`.
fn only_label(value: &Value) -> Option<(String, String)> {
    let (k, v) = value.as_object()?.iter().next()?;
    Some((k.clone(), v.as_str()?.to_string()))
}

fn dumped_pod(index: usize, line: &str) -> Option<PendingPod> {
    let v: Value = serde_json::from_str(line).ok()?;
    let mut pod = blank_pod(index, v["cpu_m"].as_u64()?, v["memory_mi"].as_u64()?);
    for (k, l) in v["labels"].as_object()? {
        pod.labels.insert(k.clone(), l.as_str()?.to_string());
    }
    let class = v["class"].as_str()?;
    if let Some(key) = class.strip_prefix("spread:") {
        let (k, l) = only_label(&v["spread_match"])?;
        pod.topology_spread.push(SpreadConstraint {
            topology_key: key.to_string(),
            max_skew: 1,
            hard: true,
            selector: match_label(&k, &l),
        });
    } else if class.starts_with("affinity:") {
        let (k, l) = only_label(&v["affinity_match"])?;
        pod.zone_affinity.push(match_label(&k, &l));
    } else if class.starts_with("anti-affinity:") {
        let (k, l) = only_label(&v["anti_affinity_match"])?;
        pod.hostname_anti_affinity.push(match_label(&k, &l));
    }
    Some(pod)
}

fn dumped_pods(size: usize) -> Option<Vec<PendingPod>> {
    let text = std::fs::read_to_string(dump_dir()?.join(format!("workload-{size}.jsonl"))).ok()?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| dumped_pod(i, l))
        .collect::<Option<Vec<_>>>()
        .filter(|pods| pods.len() == size)
}

fn main() {
    println!(
        "| pods | source | runs | median solve | pods/s | new nodes | unschedulable | plan $/h | lower bound $/h | plan / bound |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for size in [1_000usize, 5_000, 10_000, 20_000] {
        let mut workload = karpenter_benchmark(size);
        let source = match dumped_pods(size) {
            Some(pods) => {
                workload.pods = pods;
                "Karpenter's dump"
            }
            None => "generated",
        };
        let input = workload.input();
        let runs = if size >= 10_000 { 7 } else { 11 };
        let mut times: Vec<Duration> = Vec::with_capacity(runs);
        let mut plan = solve(&input);
        for _ in 0..runs {
            let start = Instant::now();
            plan = solve(&input);
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[runs / 2];
        let cost: f64 = plan.new_nodes.iter().map(|n| n.price).sum();
        let bound = cost_lower_bound(&workload.pods, &workload.instance_types);
        println!(
            "| {size} | {source} | {runs} | {:.1} ms | {:.0} | {} | {} | {:.2} | {:.2} | {:.3} |",
            median.as_secs_f64() * 1000.0,
            size as f64 / median.as_secs_f64(),
            plan.new_nodes.len(),
            plan.unschedulable.len(),
            cost,
            bound,
            cost / bound
        );
    }
}
