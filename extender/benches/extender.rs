//! Both verbs without network, against a synthetic index of 5,000 nodes and
//! 50,000 pods, with 5,000 `NodeNames` per call: request bytes to reply
//! bytes, and the pure decisions alone.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spotwright_extender::answer::{self, Settings};
use spotwright_extender::filter;
use spotwright_extender::fixtures::{args_with_names, hold_room, pod_json, synthetic, NOW};
use spotwright_extender::score::{self, Candidate};

const NODES: usize = 5_000;
const PODS: usize = 50_000;

fn benches(c: &mut Criterion) {
    let cluster = synthetic(NODES, PODS, 42);
    let settings = Settings::default();
    let body = args_with_names(&cluster.names);

    let mut group = c.benchmark_group("extender-5000-nodes");
    group.throughput(Throughput::Elements(1));
    group.bench_function("filter/request-bytes-to-reply", |b| {
        b.iter(|| {
            answer::filter(std::hint::black_box(&body), &cluster.index, &settings, NOW)
                .expect("answered")
        })
    });
    let bursting = synthetic(NODES, PODS, 42);
    hold_room(&bursting, 20);
    group.bench_function(
        "filter/request-bytes-to-reply, 5% of nodes holding room",
        |b| {
            b.iter(|| {
                answer::filter(std::hint::black_box(&body), &bursting.index, &settings, NOW)
                    .expect("answered")
            })
        },
    );
    drop(bursting);
    group.bench_function("prioritize/request-bytes-to-reply", |b| {
        b.iter(|| {
            answer::prioritize(std::hint::black_box(&body), &cluster.index, &settings, NOW)
                .expect("answered")
        })
    });

    // The decisions alone, over facts already read from the index.
    let read = cluster.index.read();
    let pools = read.interruptions_since(NOW - 3600);
    let facts: Vec<_> = cluster
        .names
        .iter()
        .map(|n| {
            let view = read.node(n);
            (n.as_str(), view.facts.cloned(), view.claim.cloned())
        })
        .collect();
    let candidates: Vec<Candidate> = cluster
        .names
        .iter()
        .map(|n| {
            let view = read.node(n);
            Candidate::new(
                view.basis.as_ref(),
                view.requested,
                pools.get(view.pool),
                NOW,
            )
        })
        .collect();
    drop(read);
    group.bench_function("filter/check-only", |b| {
        b.iter(|| {
            filter::partition(facts.iter().map(|(n, node, claim)| {
                (
                    *n,
                    node.as_ref().and_then(|f| filter::check(f, claim.as_ref())),
                )
            }))
        })
    });
    let pod = answer::pod_demand(&serde_json::value::to_raw_value(&pod_json()).expect("pod"))
        .expect("pod demand");
    group.bench_function("prioritize/score-only", |b| {
        b.iter(|| {
            score::prioritize(
                &settings.weights,
                &pod,
                std::hint::black_box(&candidates).iter().cloned(),
            )
        })
    });
    group.finish();
}

criterion_group!(name = extender; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(extender);
