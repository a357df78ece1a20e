//! The timeline as an SVG: Spotwright nodes per kubelet version above, the
//! workload's Running pods and its PDB's healthy count below.

use plotters::prelude::*;

use super::{summarize, Sample};

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `samples` into `path`; `marker` is when the upgrade finished, in
/// the samples' seconds.
pub fn draw(samples: &[Sample], marker: Option<u64>, path: &std::path::Path) -> Result<(), String> {
    let summary = summarize(samples);
    let x_end = summary.seconds.max(1);
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(320);
    let most_nodes = samples
        .iter()
        .flat_map(|s| s.nodes.values())
        .max()
        .copied()
        .unwrap_or(1);
    let mut nodes = ChartBuilder::on(&top)
        .caption("Spotwright nodes by kubelet version", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0u64..x_end, 0u64..most_nodes + 1)
        .map_err(|e| e.to_string())?;
    nodes
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("nodes")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, version) in summary.versions.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = samples
            .iter()
            .map(|s| (s.seconds, s.nodes.get(version).copied().unwrap_or(0)));
        nodes
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(version.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if let Some(at) = marker {
        let line = vec![(at, 0), (at, most_nodes + 1)];
        nodes
            .draw_series(LineSeries::new(line, BLACK.mix(0.4)))
            .map_err(|e| e.to_string())?
            .label("upgrade done")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    }
    nodes
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;

    let most_pods = samples.iter().map(|s| s.pods_running).max().unwrap_or(1);
    let mut pods = ChartBuilder::on(&bottom)
        .caption(
            "workload pods Running, and the PDB's healthy count",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0u64..x_end, 0u64..most_pods + 2)
        .map_err(|e| e.to_string())?;
    pods.configure_mesh()
        .x_desc("seconds")
        .y_desc("pods")
        .draw()
        .map_err(|e| e.to_string())?;
    let running = samples.iter().map(|s| (s.seconds, s.pods_running));
    pods.draw_series(LineSeries::new(running, COLORS[2].stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("Running")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[2]));
    let healthy = samples
        .iter()
        .filter_map(|s| Some((s.seconds, s.pdb_healthy?)));
    pods.draw_series(LineSeries::new(healthy, COLORS[3].stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("PDB healthy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[3]));
    pods.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_svg_names_every_version_and_both_counts() {
        let sample = |seconds, old, new, running| Sample {
            seconds,
            pods_running: running,
            pdb_healthy: Some(running),
            nodes: BTreeMap::from([("v1.35.4".to_owned(), old), ("v1.36.3".to_owned(), new)]),
        };
        let samples = [
            sample(0, 5, 0, 30),
            sample(10, 3, 2, 29),
            sample(20, 0, 5, 30),
        ];
        let path = std::env::temp_dir().join(format!("timeline-{}.svg", std::process::id()));
        draw(&samples, Some(4), &path).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for label in [
            "v1.35.4",
            "v1.36.3",
            "Running",
            "PDB healthy",
            "upgrade done",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
    }
}
