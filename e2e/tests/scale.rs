//! The scale benchmark's workload (`bench/scale/run`) at 200 pods, checked
//! for correctness only: Karpenter's 30 "wide deployments" (cpu/memory
//! mixes, zone spread, hostname anti-affinity and spread) created at once
//! in an opted-in namespace all run, every pod on a Spot node Spotwright
//! launched, and after scaling to zero no NodeClaim, node or EC2 instance
//! of the pool is left. Speed is measured by the benchmark, not here.

use std::time::{Duration, Instant};

use serde_json::json;
use spotwright_e2e::harness::env;
use spotwright_e2e::harness::extender::Extender;
use spotwright_e2e::harness::provisioner::{ec2, Provisioner};
use spotwright_e2e::scale::run::{
    no_launched_nodes, pool_instance_count, scale_to_zero, scale_up, System,
};
use spotwright_e2e::scale::workload::wide_deployments;

mod pools;

use pools::*;

const PODS: u32 = 200;

#[tokio::test]
async fn two_hundred_mixed_pods_run_on_spot_and_leave_nothing_at_zero() {
    let began = Instant::now();
    let env = env();
    let client = env.client().await;
    let _extender = Extender::start(env, "scale").await;
    let scenario = scenario(
        env,
        &client,
        "scale",
        spot_amd64(json!([
            {"key": "spotwright.io/instance-category", "operator": "In", "values": ["c", "m", "r"]},
            {"key": "node.kubernetes.io/instance-type", "operator": "Exists", "minValues": MIN_TYPES}
        ])),
        {
            let mut spec = when_empty("0s", "100%");
            spec["limits"] = json!({"cpu": "4000"});
            spec
        },
    )
    .await;
    let (pool, namespace) = (scenario.pool.clone(), scenario.namespace.clone());
    let provisioner = Provisioner::start(env, "scale", MOTO, &[]).await;
    let shapes = wide_deployments(PODS);
    assert_eq!(shapes.iter().map(|s| s.replicas).sum::<u32>(), PODS);

    let up = scale_up(
        &client,
        System::Spotwright,
        &pool,
        &namespace,
        &shapes,
        Duration::from_secs(300),
    )
    .await;
    let outcome = match up {
        Ok(up) if up.running != up.pods => Err(format!(
            "{} of {} pods Running after 300 s",
            up.running, up.pods
        )),
        Ok(up) => {
            eprintln!(
                "{} pods Running after {:?}s on {} nodes ({:?})",
                up.pods,
                up.seconds_to_all_running,
                up.nodes.len(),
                up.pod_seconds
            );
            assert!(
                up.misplaced.is_empty(),
                "pods not on a Spot node of the pool: {:?}",
                up.misplaced
            );
            assert!(!up.nodes.is_empty() && up.nodes.iter().all(|n| n.capacity_type == "spot"));
            let ec2 = ec2().await;
            let gone = scale_to_zero(
                &client,
                &namespace,
                &shapes,
                Duration::from_secs(180),
                || {
                    let (client, ec2, pool) = (client.clone(), ec2.clone(), pool.clone());
                    async move {
                        pool_instance_count(&ec2, &pool).await == Ok(0)
                            && pool_claims(&client, &pool).await.is_empty()
                            && no_launched_nodes(&client, System::Spotwright, &pool).await
                    }
                },
            )
            .await;
            gone.map(|seconds| eprintln!("nothing left {seconds:.1}s after scaling to zero"))
        }
        Err(failed) => Err(failed),
    };
    cleanup(env, &client, &pool, &namespace).await;
    drop(provisioner);
    if let Err(failed) = outcome {
        panic!("{failed}");
    }
    eprintln!("done after {:?}", began.elapsed());
}
