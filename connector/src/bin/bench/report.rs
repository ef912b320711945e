//! Figures and their presentation: samples, machine facts, the SVG plot.

use std::fmt::Write as _;

/// Latency samples of one action, with its statement and round-trip counts.
#[derive(Default, Clone)]
pub struct Sample {
    pub ms: Vec<f64>,
    pub statements: u64,
    pub round_trips: u64,
}

impl Sample {
    /// The `p`th percentile (nearest rank) in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i]
    }

    pub fn p50(&self) -> f64 {
        self.pct(50.0)
    }

    /// Statements per call.
    pub fn statements_per_call(&self) -> f64 {
        self.statements as f64 / self.ms.len().max(1) as f64
    }

    /// Client round trips per call.
    pub fn round_trips_per_call(&self) -> f64 {
        self.round_trips as f64 / self.ms.len().max(1) as f64
    }
}

/// Peak resident set size of this process (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmHWM:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Current resident set size of this process (`VmRSS`), in MiB.
pub fn rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmRSS:").map_or(f64::NAN, |kb| kb / 1024.0)
}

fn proc_kib(file: &str, key: &str) -> Option<f64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// "N cores (model), M GiB".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = proc_kib("/proc/meminfo", "MemTotal:").map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({model}), {mem:.0} GiB memory")
}

/// A line plot: one polyline per series, x = project count (categorical,
/// evenly spaced), y = milliseconds on a log scale (one gridline per decade).
pub fn svg(title: &str, series: &[(String, Vec<(usize, f64)>)]) -> String {
    let (w, h, pad, legend) = (760.0, 440.0, 60.0, 230.0);
    let ys = || {
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.1))
            .filter(|y| y.is_finite() && *y > 0.0)
    };
    let lo = ys().fold(f64::INFINITY, f64::min).min(1.0).log10().floor();
    let hi = ys().fold(0.0_f64, f64::max).max(10.0).log10().ceil();
    let xs: Vec<usize> = series
        .first()
        .map(|s| s.1.iter().map(|p| p.0).collect())
        .unwrap_or_default();
    let plot_w = w - 2.0 * pad - legend;
    let xpos = |i: usize| pad + plot_w * i as f64 / (xs.len().max(2) - 1) as f64;
    let ypos = |y: f64| h - pad - (h - 2.0 * pad) * (y.log10() - lo) / (hi - lo);
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>"
    );
    let _ = writeln!(out, "<rect width='100%' height='100%' fill='white'/>");
    let _ = writeln!(
        out,
        "<text x='{pad}' y='26' font-size='15'>{}</text>",
        escape(title)
    );
    let (x0, y0, x1) = (pad, h - pad, pad + plot_w);
    let _ = writeln!(
        out,
        "<line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y0}' stroke='black'/>"
    );
    let _ = writeln!(
        out,
        "<line x1='{x0}' y1='{pad}' x2='{x0}' y2='{y0}' stroke='black'/>"
    );
    let _ = writeln!(
        out,
        "<text x='{}' y='{}' text-anchor='middle'>provisioned projects</text>",
        pad + plot_w / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        out,
        "<text x='16' y='{}' transform='rotate(-90 16 {})' text-anchor='middle'>ms (log scale)</text>",
        h / 2.0,
        h / 2.0
    );
    for (i, x) in xs.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x='{:.1}' y='{}' text-anchor='middle'>{x}</text>",
            xpos(i),
            y0 + 18.0
        );
    }
    for decade in (lo as i32)..=(hi as i32) {
        let y = 10f64.powi(decade);
        let _ = writeln!(
            out,
            "<line x1='{x0}' y1='{:.1}' x2='{x1}' y2='{:.1}' stroke='#ddd'/>\n<text x='{}' y='{:.1}' text-anchor='end'>{y}</text>",
            ypos(y),
            ypos(y),
            pad - 6.0,
            ypos(y) + 4.0
        );
    }
    for (j, (name, points)) in series.iter().enumerate() {
        let color = colors[j % colors.len()];
        let path: Vec<String> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.1.is_finite() && p.1 > 0.0)
            .map(|(i, p)| format!("{:.1},{:.1}", xpos(i), ypos(p.1)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>",
            path.join(" ")
        );
        for pt in &path {
            let (cx, cy) = pt.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, "<circle cx='{cx}' cy='{cy}' r='3' fill='{color}'/>");
        }
        let ly = pad + 18.0 * j as f64;
        let _ = writeln!(
            out,
            "<line x1='{}' y1='{ly}' x2='{}' y2='{ly}' stroke='{color}' stroke-width='3'/>\n<text x='{}' y='{}'>{}</text>",
            x1 + 16.0,
            x1 + 34.0,
            x1 + 40.0,
            ly + 4.0,
            escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Sample {
            ms: (1..=100).map(f64::from).collect(),
            ..Sample::default()
        };
        assert_eq!(s.pct(0.0), 1.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert!((s.p50() - 50.0).abs() <= 1.0);
        assert!(Sample::default().p50().is_nan());
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let out = svg(
            "t <x>",
            &[
                ("a".into(), vec![(10, 1.0), (100, 2.0)]),
                ("b".into(), vec![(10, f64::NAN), (100, 3.0)]),
            ],
        );
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert!(out.contains("t &lt;x&gt;"));
        assert_eq!(out.matches("<polyline").count(), 2);
    }
}
