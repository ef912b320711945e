//! Line plots as SVG: x categorical (evenly spaced, the union of the
//! series' x values), y in milliseconds on a log scale.

use std::fmt::Write as _;

/// One line.
pub struct Series {
    pub name: String,
    pub points: Vec<(usize, f64)>,
    pub dashed: bool,
    /// Index into the palette (series of one action share a colour).
    pub color: usize,
}

/// A plot: title, x axis label, lines, and an optional horizontal line
/// (value, label) such as a target.
pub struct Plot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub series: &'a [Series],
    pub hline: Option<(f64, &'a str)>,
}

const COLORS: [&str; 13] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39",
];
const W: f64 = 860.0;
const H: f64 = 480.0;
const PAD: f64 = 60.0;
const LEGEND: f64 = 290.0;

struct Frame {
    xs: Vec<usize>,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn new(p: &Plot) -> Frame {
        let ys = || {
            p.series
                .iter()
                .flat_map(|s| s.points.iter().map(|x| x.1))
                .chain(p.hline.map(|h| h.0))
                .filter(|y| y.is_finite() && *y > 0.0)
        };
        let lo = ys().fold(f64::INFINITY, f64::min).min(1.0).log10().floor();
        let hi = ys().fold(0.0_f64, f64::max).max(10.0).log10().ceil();
        let mut xs: Vec<usize> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|x| x.0))
            .collect();
        xs.sort_unstable();
        xs.dedup();
        Frame { xs, lo, hi }
    }

    fn plot_w(&self) -> f64 {
        W - 2.0 * PAD - LEGEND
    }

    fn x(&self, value: usize) -> f64 {
        let i = self.xs.iter().position(|x| *x == value).unwrap_or(0);
        PAD + self.plot_w() * i as f64 / (self.xs.len().max(2) - 1) as f64
    }

    fn y(&self, v: f64) -> f64 {
        H - PAD - (H - 2.0 * PAD) * (v.log10() - self.lo) / (self.hi - self.lo)
    }
}

/// The plot as an SVG document.
pub fn render(p: &Plot) -> String {
    let f = Frame::new(p);
    let mut out = String::new();
    let _ = writeln!(out, "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='12'>");
    let _ = writeln!(out, "<rect width='100%' height='100%' fill='white'/>");
    let _ = writeln!(
        out,
        "<text x='{PAD}' y='26' font-size='15'>{}</text>",
        escape(p.title)
    );
    axes(&mut out, &f, p.x_label);
    if let Some((v, label)) = p.hline {
        let (x0, x1, y) = (PAD, PAD + f.plot_w(), f.y(v));
        let _ = writeln!(out, "<line x1='{x0}' y1='{y:.1}' x2='{x1}' y2='{y:.1}' stroke='#d62728' stroke-dasharray='2,3'/>\n<text x='{:.1}' y='{:.1}' fill='#d62728' text-anchor='end'>{}</text>", x1, y - 4.0, escape(label));
    }
    for (j, s) in p.series.iter().enumerate() {
        line(&mut out, &f, s, j);
    }
    out.push_str("</svg>\n");
    out
}

fn axes(out: &mut String, f: &Frame, x_label: &str) {
    let (x0, y0, x1) = (PAD, H - PAD, PAD + f.plot_w());
    let _ = writeln!(
        out,
        "<line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y0}' stroke='black'/>"
    );
    let _ = writeln!(
        out,
        "<line x1='{x0}' y1='{PAD}' x2='{x0}' y2='{y0}' stroke='black'/>"
    );
    let _ = writeln!(
        out,
        "<text x='{}' y='{}' text-anchor='middle'>{}</text>",
        PAD + f.plot_w() / 2.0,
        H - 18.0,
        escape(x_label)
    );
    let _ = writeln!(out, "<text x='16' y='{}' transform='rotate(-90 16 {})' text-anchor='middle'>ms (log scale)</text>", H / 2.0, H / 2.0);
    for x in &f.xs {
        let _ = writeln!(
            out,
            "<text x='{:.1}' y='{}' text-anchor='middle'>{x}</text>",
            f.x(*x),
            y0 + 18.0
        );
    }
    for decade in (f.lo as i32)..=(f.hi as i32) {
        let v = 10f64.powi(decade);
        let y = f.y(v);
        let _ = writeln!(out, "<line x1='{x0}' y1='{y:.1}' x2='{x1}' y2='{y:.1}' stroke='#ddd'/>\n<text x='{}' y='{:.1}' text-anchor='end'>{v}</text>", PAD - 6.0, y + 4.0);
    }
}

fn line(out: &mut String, f: &Frame, s: &Series, j: usize) {
    let color = COLORS[s.color % COLORS.len()];
    let dash = if s.dashed {
        " stroke-dasharray='6,4'"
    } else {
        ""
    };
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| p.1.is_finite() && p.1 > 0.0)
        .map(|p| (f.x(p.0), f.y(p.1)))
        .collect();
    let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        "<polyline fill='none' stroke='{color}' stroke-width='2'{dash} points='{}'/>",
        path.join(" ")
    );
    for (x, y) in &pts {
        let _ = writeln!(
            out,
            "<circle cx='{x:.1}' cy='{y:.1}' r='3' fill='{color}'/>"
        );
    }
    let (lx, ly) = (PAD + f.plot_w() + 16.0, PAD + 16.0 * j as f64);
    let _ = writeln!(out, "<line x1='{lx}' y1='{ly}' x2='{}' y2='{ly}' stroke='{color}' stroke-width='3'{dash}/>\n<text x='{}' y='{}'>{}</text>", lx + 22.0, lx + 28.0, ly + 4.0, escape(&s.name));
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
    fn svg_is_well_formed_enough() {
        let series = [
            Series {
                name: "a".into(),
                points: vec![(10, 1.0), (100, 2.0)],
                dashed: false,
                color: 0,
            },
            Series {
                name: "b <x>".into(),
                points: vec![(10, f64::NAN), (1000, 3.0)],
                dashed: true,
                color: 1,
            },
        ];
        let out = render(&Plot {
            title: "t & u",
            x_label: "projects",
            series: &series,
            hline: Some((2.0, "target")),
        });
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert!(out.contains("t &amp; u") && out.contains("b &lt;x&gt;"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains(">1000</text>") && out.contains("stroke-dasharray='6,4'"));
    }
}
