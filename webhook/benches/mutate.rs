//! The pure mutation path, without network: decide on a parsed pod, and the
//! whole request-bytes to response-bytes path for a realistic Deployment pod.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spotwright_webhook::mutate::{decide, Settings};
use spotwright_webhook::pod::PodView;
use spotwright_webhook::review::answer;
use spotwright_webhook::view::StaticView;

const REVIEW: &[u8] = include_bytes!("../testdata/review-deployment-pod.json");

fn view() -> StaticView {
    StaticView::with_capacities(&[("team-spot", Some("spot")), ("plain", None)])
}

fn benches(c: &mut Criterion) {
    let view = view();
    let settings = Settings::default();
    let review: serde_json::Value = serde_json::from_slice(REVIEW).expect("testdata parses");
    let pod: PodView =
        serde_json::from_value(review["request"]["object"].clone()).expect("testdata holds a Pod");

    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide/spot", |b| {
        b.iter(|| decide("team-spot", std::hint::black_box(&pod), &view, &settings))
    });
    group.bench_function("decide/not-opted-in", |b| {
        b.iter(|| decide("plain", std::hint::black_box(&pod), &view, &settings))
    });
    group.bench_function("answer/spot-review-bytes", |b| {
        b.iter(|| answer(std::hint::black_box(REVIEW), &view, &settings).expect("answered"))
    });
    group.finish();
}

criterion_group!(name = mutate; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(mutate);
