//! A rollout's timeline, as `./run walkthrough` records and draws it: one
//! sample a second of the Spotwright nodes per kubelet version, the
//! workload's Running pods and its PodDisruptionBudget's healthy count.
//! Samples are plain text lines, parsed and summarized here; the SVG is
//! drawn in [`plot`].

pub mod plot;

use std::collections::BTreeMap;

/// One sample: seconds since the recording began, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub seconds: u64,
    pub pods_running: u64,
    /// `None` when the PDB had no status yet.
    pub pdb_healthy: Option<u64>,
    /// Spotwright nodes by kubelet version.
    pub nodes: BTreeMap<String, u64>,
}

impl Sample {
    /// `<seconds> <running> <healthy|-> <version>=<n>,...`
    pub fn to_line(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|(v, n)| format!("{v}={n}")).collect();
        let healthy = self
            .pdb_healthy
            .map_or_else(|| "-".to_owned(), |h| h.to_string());
        format!(
            "{} {} {} {}",
            self.seconds,
            self.pods_running,
            healthy,
            nodes.join(",")
        )
    }

    pub fn parse(line: &str) -> Result<Sample, String> {
        let bad = |why: &str| format!("{line:?}: {why}");
        let mut fields = line.split_whitespace();
        let mut number = |name: &str| -> Result<u64, String> {
            fields
                .next()
                .ok_or_else(|| bad(&format!("no {name}")))?
                .parse()
                .map_err(|_| bad(&format!("{name} is not a number")))
        };
        let seconds = number("seconds")?;
        let pods_running = number("running pods")?;
        let healthy = fields.next().ok_or_else(|| bad("no PDB count"))?;
        let pdb_healthy = match healthy {
            "-" => None,
            n => Some(n.parse().map_err(|_| bad("PDB count is not a number"))?),
        };
        let mut nodes = BTreeMap::new();
        for pair in fields
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (version, count) = pair
                .split_once('=')
                .ok_or_else(|| bad("node count is not version=n"))?;
            let count = count
                .parse()
                .map_err(|_| bad("node count is not a number"))?;
            nodes.insert(version.to_owned(), count);
        }
        Ok(Sample {
            seconds,
            pods_running,
            pdb_healthy,
            nodes,
        })
    }
}

/// What a recording says in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub samples: usize,
    pub seconds: u64,
    pub lowest_pdb_healthy: Option<u64>,
    pub lowest_pods_running: Option<u64>,
    pub versions: Vec<String>,
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let mut versions: Vec<String> = samples
        .iter()
        .flat_map(|s| s.nodes.keys().cloned())
        .collect();
    versions.sort();
    versions.dedup();
    Summary {
        samples: samples.len(),
        seconds: samples.last().map_or(0, |s| s.seconds),
        lowest_pdb_healthy: samples.iter().filter_map(|s| s.pdb_healthy).min(),
        lowest_pods_running: samples.iter().map(|s| s.pods_running).min(),
        versions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_and_summarize() {
        let samples = [
            Sample {
                seconds: 0,
                pods_running: 30,
                pdb_healthy: Some(30),
                nodes: BTreeMap::from([("v1.35.4".to_owned(), 5)]),
            },
            Sample {
                seconds: 7,
                pods_running: 29,
                pdb_healthy: Some(29),
                nodes: BTreeMap::from([("v1.35.4".to_owned(), 4), ("v1.36.3".to_owned(), 2)]),
            },
            Sample {
                seconds: 9,
                pods_running: 30,
                pdb_healthy: None,
                nodes: BTreeMap::new(),
            },
        ];
        for sample in &samples {
            assert_eq!(Sample::parse(&sample.to_line()).as_ref(), Ok(sample));
        }
        let summary = summarize(&samples);
        assert_eq!(summary.lowest_pdb_healthy, Some(29));
        assert_eq!(summary.lowest_pods_running, Some(29));
        assert_eq!(summary.versions, ["v1.35.4", "v1.36.3"]);
        assert_eq!(summary.seconds, 9);
        for bad in ["", "1", "x 2 3", "1 2 x", "1 2 3 v1=x", "1 2 3 v1"] {
            assert!(Sample::parse(bad).is_err(), "{bad:?}");
        }
    }
}
