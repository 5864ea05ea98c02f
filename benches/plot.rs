//! Draws the load generator's JSON results as PNG charts.
//!
//! `cargo bench -p preau-benches --bench plot [-- RESULTS_DIR]` (default `benches/results`)
//! reads every `*.json` under `RESULTS_DIR` (recursively: `raw/`,
//! `10k-xeon/raw/`, `sweep/raw/`…, but not `compare*/`) and writes
//! into `RESULTS_DIR`:
//!
//! - `revision-latency.png`: p50 and p99 latency (ms, log scale) versus
//!   delivered events per second, one line per target and run (every step
//!   of a sweep is a point), with the 50 ms p99 limit;
//! - `idle-rss.png`: server RSS (MiB) versus idle connections, one line per
//!   target (the RSS before the first connection is the point at 0).
//!
//! Labels use a TrueType font read at run time (`PLOT_FONT`, or DejaVu Sans
//! / Liberation Sans from the usual system folders); without one the charts
//! are drawn without text and the program says so.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::Value;

type Res<T> = Result<T, Box<dyn Error>>;

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn main() -> Res<()> {
    preau_benches::cd_to_repository_root();
    // `cargo bench` passes `--bench`; the only positional argument is the folder.
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "benches/results".to_owned());
    let dir = PathBuf::from(dir);
    let labels = load_font();
    if !labels {
        eprintln!("plot: no TrueType font found (set PLOT_FONT): drawing without text");
    }
    let mut files = Vec::new();
    collect_json(&dir, &mut files)?;
    files.sort();
    let mut results = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if value.get("scenario").is_none() {
            continue;
        }
        let run = run_name(&dir, &path);
        results.push((run, value));
    }
    let revision = plot_revision(&dir.join("revision-latency.png"), &results, labels)?;
    let idle = plot_idle(&dir.join("idle-rss.png"), &results, labels)?;
    eprintln!(
        "plot: {} revision series, {} idle series from {} result files in {}",
        revision,
        idle,
        results.len(),
        dir.display()
    );
    Ok(())
}

fn load_font() -> bool {
    let mut candidates: Vec<String> = std::env::var("PLOT_FONT").into_iter().collect();
    candidates.extend(FONT_PATHS.iter().map(|p| (*p).to_owned()));
    for path in candidates {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // The font lives as long as the program; plotters wants 'static bytes.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            return true;
        }
    }
    false
}

/// Skips the `compare*` folders: dozens of single-load rounds that would
/// bury the sweeps' lines.
fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Res<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let compare = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("compare"));
        if path.is_dir() && !compare {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// `raw` for `DIR/raw/x.json`, `sweep` for `DIR/sweep/raw/x.json`, …
fn run_name(dir: &Path, path: &Path) -> String {
    let parent = path.parent().unwrap_or(dir);
    let rel = parent.strip_prefix(dir).unwrap_or(parent);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "raw")
        .collect();
    parts.join("/")
}

fn target_color(target: &str) -> RGBColor {
    match target {
        "preau" => RGBColor(31, 119, 180),
        "bare" => RGBColor(44, 160, 44),
        "socketio" => RGBColor(214, 39, 40),
        _ => RGBColor(100, 100, 100),
    }
}

/// One line per (run, target): the target's color for the main run, a
/// lighter shade for `rerun`, a color of its own for any other run (sweeps).
fn series_style(run: &str, target: &str, runs: &[String]) -> (RGBColor, f64) {
    const OTHERS: [RGBColor; 5] = [
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    match run {
        "" => (target_color(target), 1.0),
        "rerun" => (target_color(target), 0.6),
        _ => {
            let index = runs
                .iter()
                .filter(|r| !r.is_empty() && r.as_str() != "rerun")
                .position(|r| r == run)
                .unwrap_or(0);
            (OTHERS[index % OTHERS.len()], 0.9)
        }
    }
}

fn label(run: &str, target: &str) -> String {
    if run.is_empty() {
        target.to_owned()
    } else {
        format!("{target} ({run})")
    }
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for key in path {
        v = v.get(*key)?;
    }
    v.as_f64()
}

struct Line {
    run: String,
    target: String,
    points: Vec<(f64, f64, f64)>,
}

fn plot_revision(out: &Path, results: &[(String, Value)], labels: bool) -> Res<usize> {
    let mut lines = Vec::new();
    for (run, value) in results {
        if value["scenario"] != "revision" {
            continue;
        }
        let target = value["target"].as_str().unwrap_or("?").to_owned();
        let steps = value["result"]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut points: Vec<(f64, f64, f64)> = steps
            .iter()
            .filter_map(|s| {
                Some((
                    f(s, &["deliveries_per_s"])?,
                    f(s, &["latency", "p50_ms"])?,
                    f(s, &["latency", "p99_ms"])?,
                ))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !points.is_empty() {
            lines.push(Line {
                run: run.clone(),
                target,
                points,
            });
        }
    }
    if lines.is_empty() {
        return Ok(0);
    }
    let runs = distinct_runs(&lines);
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        * 1.1;
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.2))
        .fold(60.0, f64::max)
        * 1.5;
    let y_min = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(0.01, 1.0)
        * 0.5;

    let root = BitMapBackend::new(out, (1100, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if labels {
        builder
            .caption(
                "revision: latency vs delivered rate (p99 solid, p50 thin with dots)",
                ("sans-serif", 22),
            )
            .x_label_area_size(45)
            .y_label_area_size(65);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut chart = builder.build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("deliveries per second")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .y_label_formatter(&|y| format!("{y}"));
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;

    // The 50 ms p99 limit.
    chart.draw_series(LineSeries::new(
        [(0.0, 50.0), (x_max, 50.0)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    for line in &lines {
        let (color, alpha) = series_style(&line.run, &line.target, &runs);
        let p99 = color.mix(alpha).stroke_width(3);
        let p50 = color.mix(alpha).stroke_width(1);
        let drawn =
            chart.draw_series(LineSeries::new(line.points.iter().map(|p| (p.0, p.2)), p99))?;
        if labels {
            drawn
                .label(format!("{} p99", label(&line.run, &line.target)))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], p99));
        }
        chart.draw_series(
            line.points
                .iter()
                .map(|p| Circle::new((p.0, p.2), 4, color.mix(alpha).filled())),
        )?;
        chart.draw_series(LineSeries::new(line.points.iter().map(|p| (p.0, p.1)), p50))?;
        chart.draw_series(
            line.points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 2, color.mix(alpha).filled())),
        )?;
    }
    if labels {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 15))
            .draw()?;
    }
    root.present()?;
    Ok(lines.len())
}

fn distinct_runs(lines: &[Line]) -> Vec<String> {
    let mut runs: Vec<String> = Vec::new();
    for line in lines {
        if !runs.contains(&line.run) {
            runs.push(line.run.clone());
        }
    }
    runs.sort_by_key(|r| (!r.is_empty(), r.clone()));
    runs
}

fn plot_idle(out: &Path, results: &[(String, Value)], labels: bool) -> Res<usize> {
    // target → connections → RSS MiB (several runs at one size: the last read).
    let mut by_target: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for (_, value) in results {
        if value["scenario"] != "idle" {
            continue;
        }
        let target = value["target"].as_str().unwrap_or("?").to_owned();
        let r = &value["result"];
        let (Some(conns), Some(rss)) = (f(r, &["setup", "connected"]), f(r, &["server_rss_mib"]))
        else {
            continue;
        };
        let points = by_target.entry(target).or_default();
        points.insert(conns as u64, rss);
        if let Some(base) = f(r, &["server_rss_baseline_mib"]) {
            points.entry(0).or_insert(base);
        }
    }
    if by_target.is_empty() {
        return Ok(0);
    }
    let x_max = by_target
        .values()
        .flat_map(|p| p.keys().copied())
        .max()
        .unwrap_or(1) as f64
        * 1.05;
    let y_max = by_target
        .values()
        .flat_map(|p| p.values().copied())
        .fold(1.0, f64::max)
        * 1.15;

    let root = BitMapBackend::new(out, (1000, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if labels {
        builder
            .caption(
                "idle: server RSS vs connections (rooms of 30)",
                ("sans-serif", 22),
            )
            .x_label_area_size(45)
            .y_label_area_size(65);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut chart = builder.build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("idle connections")
            .y_desc("server RSS (MiB)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"));
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;
    for (target, points) in &by_target {
        let color = target_color(target);
        let style = color.stroke_width(3);
        let drawn = chart.draw_series(LineSeries::new(
            points.iter().map(|(c, rss)| (*c as f64, *rss)),
            style,
        ))?;
        if labels {
            let per_conn = per_connection_kib(points);
            drawn
                .label(match per_conn {
                    Some(kib) => {
                        format!("{target}: {kib:.1} KiB per connection at the largest run")
                    }
                    None => target.clone(),
                })
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart.draw_series(
            points
                .iter()
                .map(|(c, rss)| Circle::new((*c as f64, *rss), 5, color.filled())),
        )?;
    }
    if labels {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 15))
            .draw()?;
    }
    root.present()?;
    Ok(by_target.len())
}

/// (RSS at the largest run − RSS at 0) ÷ connections, in KiB.
fn per_connection_kib(points: &BTreeMap<u64, f64>) -> Option<f64> {
    let base = points.get(&0)?;
    let (&conns, rss) = points.iter().next_back()?;
    (conns > 0).then(|| (rss - base) * 1024.0 / conns as f64)
}
