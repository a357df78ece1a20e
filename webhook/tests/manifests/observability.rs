//! manifests/observability: every ServiceMonitor selects a Service the base
//! renders (by labels really on it, in its namespace) and scrapes a port
//! that Service names; every base Service with a `metrics` port has one;
//! the dashboard ships as the ConfigMap Grafana's sidecar loads.

use serde_json::Value;

use crate::render::{base, items, kind, label, manifests_dir, obj_name, observability};
use crate::{EXTENDER, NS, PROVISIONER, WEBHOOK};

const DASHBOARD: &str = "spotwright-dashboard.json";

fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("")
}

fn service_monitors() -> Vec<&'static Value> {
    observability()
        .objects
        .iter()
        .filter(|o| kind(o) == "ServiceMonitor")
        .collect()
}

/// Whether every `matchLabels` pair is among the object's labels.
fn selects(match_labels: &serde_json::Map<String, Value>, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn port_names(service: &Value) -> Vec<&str> {
    items(&service["spec"]["ports"])
        .filter_map(|p| p["name"].as_str())
        .collect()
}

#[test]
fn each_service_monitor_selects_a_base_service_and_one_of_its_ports() {
    let monitors = service_monitors();
    let names: Vec<&str> = monitors.iter().map(|m| obj_name(m)).collect();
    assert_eq!(names.len(), 3, "three ServiceMonitors: {names:?}");
    let services = base().all("Service");
    for monitor in monitors {
        let what = label(monitor);
        assert_eq!(
            monitor["apiVersion"], "monitoring.coreos.com/v1",
            "{what}: the Prometheus Operator's v1 API"
        );
        assert_eq!(namespace(monitor), NS, "{what}: in {NS}");
        let selector = &monitor["spec"]["selector"];
        assert!(
            selector.get("matchExpressions").is_none(),
            "{what}: select by matchLabels (this test checks no expressions)"
        );
        let match_labels = selector["matchLabels"]
            .as_object()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| panic!("{what}: an empty selector selects every Service"));
        // The namespaces it looks in: its own unless namespaceSelector says.
        let namespaces: Vec<&str> =
            match monitor["spec"]["namespaceSelector"]["matchNames"].as_array() {
                Some(names) => names.iter().filter_map(Value::as_str).collect(),
                None => vec![namespace(monitor)],
            };
        let matched: Vec<&&Value> = services
            .iter()
            .filter(|s| namespaces.contains(&namespace(s)) && selects(match_labels, s))
            .collect();
        assert_eq!(
            matched.len(),
            1,
            "{what}: matchLabels {match_labels:?} in {namespaces:?} select exactly one base Service, got {:?}",
            matched.iter().map(|s| label(s)).collect::<Vec<_>>()
        );
        let service = matched[0];
        assert_eq!(
            obj_name(service),
            obj_name(monitor),
            "{what}: named after the Service it scrapes"
        );
        let endpoints: Vec<&Value> = items(&monitor["spec"]["endpoints"]).collect();
        assert!(!endpoints.is_empty(), "{what}: no endpoints");
        for endpoint in endpoints {
            let port = endpoint["port"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: endpoints name their port: {endpoint}"));
            assert!(
                port_names(service).contains(&port),
                "{what}: port {port:?} is not a port of {}: {:?}",
                label(service),
                port_names(service)
            );
            assert_eq!(endpoint["path"], "/metrics", "{what}: scrapes /metrics");
        }
    }
}

#[test]
fn every_base_service_with_a_metrics_port_is_monitored() {
    let monitored: Vec<&str> = service_monitors().iter().map(|m| obj_name(m)).collect();
    let with_metrics: Vec<&str> = base()
        .all("Service")
        .into_iter()
        .filter(|s| port_names(s).contains(&"metrics"))
        .map(obj_name)
        .collect();
    assert_eq!(
        with_metrics.len(),
        3,
        "webhook, extender, provisioner: {with_metrics:?}"
    );
    for name in [WEBHOOK, EXTENDER, PROVISIONER] {
        assert!(with_metrics.contains(&name), "{name} has a metrics port");
    }
    for name in with_metrics {
        assert!(
            monitored.contains(&name),
            "Service/{name} has a metrics port and no ServiceMonitor: {monitored:?}"
        );
    }
}

#[test]
fn the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar() {
    let r = observability();
    let map = r.get("ConfigMap", "spotwright-dashboard");
    assert_eq!(namespace(map), NS);
    assert_eq!(
        map["metadata"]["labels"]["grafana_dashboard"], "1",
        "the label kube-prometheus-stack's Grafana sidecar watches"
    );
    let shipped = map["data"][DASHBOARD]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap/spotwright-dashboard has no {DASHBOARD}"));
    let file = std::fs::read_to_string(manifests_dir().join("observability").join(DASHBOARD))
        .expect("the dashboard file");
    assert_eq!(shipped, file, "the ConfigMap holds the file as it is");
    let dashboard: Value = serde_json::from_str(&file).expect("the dashboard is JSON");
    let variables: Vec<&Value> = items(&dashboard["templating"]["list"]).collect();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable: {variables:?}"
    );
    let mut panels: Vec<&Value> = items(&dashboard["panels"]).collect();
    let mut queried = 0;
    while let Some(panel) = panels.pop() {
        panels.extend(items(&panel["panels"]));
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or("");
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title:?} uses the datasource variable"
        );
        let targets: Vec<&Value> = items(&panel["targets"]).collect();
        assert!(!targets.is_empty(), "panel {title:?} queries nothing");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title:?}");
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title:?}: a PromQL expr"
            );
            queried += 1;
        }
    }
    assert!(queried > 10, "{queried} expressions");
}
