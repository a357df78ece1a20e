//! The scale workload: the 30 "wide deployments" of Karpenter's own
//! performance suite (`test/suites/performance/wide_deployments_test.go`,
//! sigs.k8s.io/karpenter v1.15.0), with their replica counts scaled to any
//! total. Every Deployment spreads over zones (maxSkew 1, DoNotSchedule);
//! the first three also have required hostname anti-affinity, the next
//! three a hostname spread (maxSkew 1, DoNotSchedule).

use serde_json::{json, Value};

/// Requests of the 30 Deployments, as in Karpenter's suite.
const CPU: [&str; 30] = [
    "240m", "450m", "650m", "900m", "1400m", "1900m", "2400m", "2800m", "3300m", "3700m", //
    "2300m", "900m", "1300m", "2800m", "1800m", "1850m", "3300m", "3800m", "225m", "450m", //
    "700m", "900m", "1300m", "1800m", "2400m", "2800m", "3400m", "3800m", "3300m", "2800m",
];
const MEMORY: [&str; 30] = [
    "300Mi", "400Mi", "700Mi", "1Gi", "2Gi", "4Gi", "8Gi", "4Gi", "16Gi", "10Gi", //
    "64Gi", "30Gi", "32Gi", "32Gi", "30Gi", "20Gi", "30Gi", "300Mi", "500Mi", "750Mi", //
    "1Gi", "2Gi", "4Gi", "8Gi", "16Gi", "32Gi", "28Gi", "64Gi", "13Gi", "24Gi",
];
/// Karpenter's replica counts for its 1,000-pod run: the weights here.
const WEIGHT: [u32; 30] = [
    35, 35, 35, 35, 35, 35, 35, 35, 35, 35, //
    35, 35, 35, 35, 35, 35, 35, 35, 35, 35, //
    30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
];
const ZONE: &str = "topology.kubernetes.io/zone";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// One Deployment of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub name: String,
    pub cpu: &'static str,
    pub memory: &'static str,
    pub replicas: u32,
    /// Required pod anti-affinity on the hostname: one pod per node.
    pub anti_affinity: bool,
    /// A hostname topology spread (maxSkew 1), besides the zone spread.
    pub hostname_spread: bool,
}

/// The 30 Deployments with `total` pods between them, each Deployment's
/// share in Karpenter's proportions (largest remainders, so the sum is exact).
pub fn wide_deployments(total: u32) -> Vec<Shape> {
    let weight_sum: u32 = WEIGHT.iter().sum();
    let mut replicas: Vec<u32> = WEIGHT.iter().map(|w| total * w / weight_sum).collect();
    let mut remainders: Vec<(u32, usize)> = WEIGHT
        .iter()
        .enumerate()
        .map(|(i, w)| ((total * w) % weight_sum, i))
        .collect();
    // Largest remainder first; the lower index wins a tie, so it is deterministic.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let short = total - replicas.iter().sum::<u32>();
    for (_, i) in remainders.into_iter().take(short as usize) {
        replicas[i] += 1;
    }
    (0..30)
        .map(|i| Shape {
            name: format!("wide-deployment-{}", i + 1),
            cpu: CPU[i],
            memory: MEMORY[i],
            replicas: replicas[i],
            anti_affinity: i < 3,
            hostname_spread: (3..6).contains(&i),
        })
        .collect()
}

fn spread(key: &str, app: &str) -> Value {
    json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": app}}})
}

/// The Deployment of `shape` in `namespace`, pause containers with its
/// requests, scaled to `replicas`.
pub fn deployment(shape: &Shape, namespace: &str, replicas: u32) -> Value {
    let app = shape.name.as_str();
    let mut spreads = vec![spread(ZONE, app)];
    if shape.hostname_spread {
        spreads.push(spread(HOSTNAME, app));
    }
    let mut pod_spec = json!({
        "topologySpreadConstraints": spreads,
        // A pod on a node that goes is gone at once: scale-to-zero measures
        // the capacity coming down, not a grace period of a pause container.
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": shape.cpu, "memory": shape.memory}}}]
    });
    if shape.anti_affinity {
        pod_spec["affinity"] = json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": HOSTNAME, "labelSelector": {"matchLabels": {"app": app}}}]}});
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace, "labels": {"spotwright.io/scale": "true"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app, "spotwright.io/scale": "true"}},
                "spec": pod_spec}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karpenters_thousand_is_its_own_counts() {
        let shapes = wide_deployments(1000);
        let replicas: Vec<u32> = shapes.iter().map(|s| s.replicas).collect();
        assert_eq!(replicas, WEIGHT);
        assert_eq!(shapes[0].cpu, "240m");
        assert_eq!(shapes[29].memory, "24Gi");
        let anti: Vec<usize> = (0..30).filter(|&i| shapes[i].anti_affinity).collect();
        let spread: Vec<usize> = (0..30).filter(|&i| shapes[i].hostname_spread).collect();
        assert_eq!((anti, spread), (vec![0, 1, 2], vec![3, 4, 5]));
    }

    #[test]
    fn any_total_is_met_exactly_in_proportion() {
        for total in [0, 1, 29, 30, 200, 999, 1001, 5000, 12345] {
            let shapes = wide_deployments(total);
            assert_eq!(shapes.iter().map(|s| s.replicas).sum::<u32>(), total);
            for (shape, weight) in shapes.iter().zip(WEIGHT) {
                let exact = f64::from(total * weight) / 1000.0;
                assert!(
                    (f64::from(shape.replicas) - exact).abs() < 1.0,
                    "{total}: {} has {} for {exact}",
                    shape.name,
                    shape.replicas
                );
            }
        }
    }

    #[test]
    fn the_manifest_carries_the_shape() {
        let shapes = wide_deployments(200);
        let anti = deployment(&shapes[0], "ns", 7);
        assert_eq!(anti["spec"]["replicas"], 7);
        assert_eq!(anti["metadata"]["namespace"], "ns");
        let pod = &anti["spec"]["template"]["spec"];
        assert_eq!(
            pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
                ["topologyKey"],
            HOSTNAME
        );
        assert_eq!(
            pod["topologySpreadConstraints"].as_array().map(Vec::len),
            Some(1)
        );
        let spread = deployment(&shapes[4], "ns", 7);
        let pod = &spread["spec"]["template"]["spec"];
        assert!(pod["affinity"].is_null());
        assert_eq!(pod["topologySpreadConstraints"][1]["topologyKey"], HOSTNAME);
        assert_eq!(
            pod["containers"][0]["resources"]["requests"]["cpu"],
            shapes[4].cpu
        );
    }
}
