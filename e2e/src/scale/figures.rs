//! The scale benchmark's arithmetic, over plain data: quantiles of
//! per-pod times, Prometheus histograms read from two scrapes of the text
//! format, and API requests counted from the API server's audit log.

use std::collections::BTreeMap;

use serde::Serialize;

/// p50, p90 and the maximum of a set of seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    pub count: usize,
}

/// Nearest-rank quantiles; all zero for no samples.
pub fn quantiles(samples: &[f64]) -> Quantiles {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let rank = |q: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    Quantiles {
        p50: rank(0.5),
        p90: rank(0.9),
        max: sorted.last().copied().unwrap_or(0.0),
        count: sorted.len(),
    }
}

/// One histogram's cumulative buckets (`le` → count), summed over every
/// series of `metric` whose labels contain each of `matching` (`key="value"`).
pub fn histogram_buckets(text: &str, metric: &str, matching: &[&str]) -> BTreeMap<Le, f64> {
    let prefix = format!("{metric}_bucket{{");
    let mut buckets = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !matching.iter().all(|m| labels.contains(m)) {
            continue;
        }
        let (Some(le), Ok(count)) = (label(labels, "le"), value.trim().parse::<f64>()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(le) => le,
                Err(_) => continue,
            }
        };
        *buckets.entry(Le(le)).or_insert(0.0) += count;
    }
    buckets
}

/// A bucket bound, ordered (bounds are never NaN: they parsed as numbers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Le(pub f64);

impl Eq for Le {}

impl PartialOrd for Le {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Le {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The value of label `key` in `a="1",b="2"` (whole names only: `le`
/// is not the tail of `profile`).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let wanted = format!("{key}=\"");
    let start = labels
        .match_indices(&wanted)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || labels[..at].ends_with(','))?
        + wanted.len();
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// The observations between two scrapes: `after` less `before`, per bucket.
pub fn bucket_delta(before: &BTreeMap<Le, f64>, after: &BTreeMap<Le, f64>) -> BTreeMap<Le, f64> {
    after
        .iter()
        .map(|(le, count)| (*le, count - before.get(le).copied().unwrap_or(0.0)))
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated inside the bucket
/// the rank falls in, as PromQL's `histogram_quantile` does; `None` when
/// nothing was observed.
pub fn histogram_quantile(q: f64, buckets: &BTreeMap<Le, f64>) -> Option<f64> {
    let total = *buckets.get(&Le(f64::INFINITY))?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, count) in buckets {
        if *count >= rank {
            if le.0.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            if in_bucket <= 0.0 {
                return Some(le.0);
            }
            return Some(lower.0 + (le.0 - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (le.0, *count);
    }
    None
}

/// The `_sum` of every series of `metric` whose labels contain each of
/// `matching` (a histogram's total of observed values).
pub fn histogram_sum(text: &str, metric: &str, matching: &[&str]) -> f64 {
    let plain = format!("{metric}_sum ");
    let labelled = format!("{metric}_sum{{");
    text.lines()
        .filter_map(|line| {
            let (labels, value) = match line.strip_prefix(&plain) {
                Some(value) => ("", value),
                None => line.strip_prefix(&labelled)?.rsplit_once("} ")?,
            };
            matching
                .iter()
                .all(|m| labels.contains(m))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// How many observations the buckets hold.
pub fn histogram_count(buckets: &BTreeMap<Le, f64>) -> f64 {
    buckets.get(&Le(f64::INFINITY)).copied().unwrap_or(0.0)
}

/// API requests by client and verb from audit-log lines (JSON, one event a
/// line; `ResponseComplete` events only, so a request counts once). The
/// client is the user agent up to its first `/` (`karpenter-kwok`,
/// `spotwright-provisioner`, `kube-scheduler`), or `(none)`.
pub fn requests_by_client(audit_lines: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for line in audit_lines.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["stage"] != "ResponseComplete" {
            continue;
        }
        let agent = event["userAgent"].as_str().unwrap_or_default();
        let client = agent.split('/').next().filter(|c| !c.is_empty());
        let verb = event["verb"].as_str().unwrap_or("unknown");
        *counts
            .entry(client.unwrap_or("(none)").to_owned())
            .or_default()
            .entry(verb.to_owned())
            .or_default() += 1;
    }
    counts
}

/// How far apart (seconds) two node creations may be and still be of one
/// wave: a pass's nodes register within about 2 s, a later pass's come 4 s
/// or more after (batch window, launch, registration).
pub const WAVE_GAP_SECONDS: i64 = 5;

/// How many nodes were created more than `gap` seconds after the first:
/// those of later passes, for pods the first did not place (or placed on
/// room the scheduler gave to others). Nodes without a creation time are
/// not counted.
pub fn after_first_wave(created: &[Option<i64>], gap: i64) -> usize {
    let Some(first) = created.iter().flatten().min() else {
        return 0;
    };
    created
        .iter()
        .flatten()
        .filter(|at| **at > first.saturating_add(gap))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        let q = quantiles(&samples);
        assert_eq!((q.p50, q.p90, q.max, q.count), (5.0, 9.0, 10.0, 10));
        assert_eq!(quantiles(&[]), Quantiles::default());
        assert_eq!(quantiles(&[3.0, f64::NAN]).count, 1);
    }

    const BEFORE: &str = r#"
# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="a.spotwright.io",operation="CREATE",le="0.005"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="a.spotwright.io",operation="CREATE",le="0.025"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="a.spotwright.io",operation="CREATE",le="+Inf"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other",operation="CREATE",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other",operation="CREATE",le="+Inf"} 7
"#;
    const AFTER: &str = r#"
apiserver_admission_webhook_admission_duration_seconds_bucket{name="a.spotwright.io",operation="CREATE",le="0.005"} 51
apiserver_admission_webhook_admission_duration_seconds_bucket{name="a.spotwright.io",operation="CREATE",le="0.025"} 101
apiserver_admission_webhook_admission_duration_seconds_bucket{name="a.spotwright.io",operation="CREATE",le="+Inf"} 101
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other",operation="CREATE",le="+Inf"} 9
"#;
    const METRIC: &str = "apiserver_admission_webhook_admission_duration_seconds";

    #[test]
    fn a_histogram_between_two_scrapes() {
        let matching = ["name=\"a.spotwright.io\""];
        let before = histogram_buckets(BEFORE, METRIC, &matching);
        let after = histogram_buckets(AFTER, METRIC, &matching);
        let delta = bucket_delta(&before, &after);
        assert_eq!(histogram_count(&delta), 100.0);
        // 50 in (0, 5 ms], 50 in (5, 25 ms]: the median is the first bucket's top.
        assert_eq!(histogram_quantile(0.5, &delta), Some(0.005));
        let p75 = histogram_quantile(0.75, &delta).unwrap_or_default();
        assert!((p75 - 0.015).abs() < 1e-9, "{p75}");
        assert_eq!(histogram_quantile(0.5, &BTreeMap::new()), None);
        let sums = "m_sum{name=\"a.spotwright.io\"} 0.25\nm_sum{name=\"other\"} 9\nm_count 3\n";
        assert_eq!(histogram_sum(sums, "m", &["spotwright"]), 0.25);
        assert_eq!(histogram_sum("m_sum 1.5\n", "m", &[]), 1.5);
        // Unfiltered, the other webhook's series add in.
        assert_eq!(
            histogram_count(&histogram_buckets(AFTER, METRIC, &[])),
            110.0
        );
    }

    #[test]
    fn a_label_is_found_by_its_whole_name() {
        let labels = r#"profile="spotwright-scheduler",result="scheduled",le="0.004""#;
        assert_eq!(label(labels, "le"), Some("0.004"));
        assert_eq!(label(labels, "profile"), Some("spotwright-scheduler"));
        assert_eq!(label(labels, "file"), None);
        let text = format!("m_bucket{{{labels}}} 3\nm_bucket{{profile=\"x\",le=\"+Inf\"}} 5\n");
        assert_eq!(histogram_count(&histogram_buckets(&text, "m", &[])), 5.0);
    }

    #[test]
    fn a_rank_past_the_last_bound_is_the_last_bound() {
        let text = "m_bucket{le=\"1\"} 1\nm_bucket{le=\"+Inf\"} 4\n";
        assert_eq!(
            histogram_quantile(0.9, &histogram_buckets(text, "m", &[])),
            Some(1.0)
        );
    }

    #[test]
    fn requests_count_once_per_client_and_verb() {
        let log = [
            r#"{"stage":"ResponseComplete","verb":"create","userAgent":"spotwright-provisioner/0.1.0"}"#,
            r#"{"stage":"ResponseStarted","verb":"watch","userAgent":"spotwright-provisioner/0.1.0"}"#,
            r#"{"stage":"ResponseComplete","verb":"create","userAgent":"spotwright-provisioner/0.1.0"}"#,
            r#"{"stage":"ResponseComplete","verb":"patch","userAgent":"karpenter-kwok/v0.0.0 (linux/amd64)"}"#,
            r#"{"stage":"ResponseComplete","verb":"get"}"#,
            "not json",
        ]
        .join("\n");
        let counts = requests_by_client(&log);
        assert_eq!(counts["spotwright-provisioner"]["create"], 2);
        assert!(!counts["spotwright-provisioner"].contains_key("watch"));
        assert_eq!(counts["karpenter-kwok"]["patch"], 1);
        assert_eq!(counts["(none)"]["get"], 1);
    }

    #[test]
    fn nodes_after_the_first_wave_are_those_created_past_the_gap() {
        let created = [Some(100), Some(102), Some(105), Some(106), None, Some(118)];
        assert_eq!(after_first_wave(&created, WAVE_GAP_SECONDS), 2);
        assert_eq!(after_first_wave(&created, 0), 4);
        assert_eq!(after_first_wave(&[None, None], WAVE_GAP_SECONDS), 0);
        assert_eq!(after_first_wave(&[], WAVE_GAP_SECONDS), 0);
    }
}
