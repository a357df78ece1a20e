//! One `solve()` over Karpenter's scheduling-benchmark workload (see
//! `spotwright_solver::workload`) at 1,000 to 20,000 pods. For the figures
//! that go side by side with Karpenter's (pods/s, nodes, $/h, lower bound),
//! run `cargo run --release -p spotwright-solver --example solve_report`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spotwright_solver::solve;
use spotwright_solver::workload::karpenter_benchmark;

fn karpenter_workload(c: &mut Criterion) {
    let mut group = c.benchmark_group("solve/karpenter-diverse-400-types");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for pods in [1_000usize, 5_000, 10_000, 20_000] {
        let workload = karpenter_benchmark(pods);
        group.throughput(Throughput::Elements(pods as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(pods),
            &workload,
            |b, workload| {
                let input = workload.input();
                b.iter(|| black_box(solve(black_box(&input))));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, karpenter_workload);
criterion_main!(benches);
