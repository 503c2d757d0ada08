//! The web UI's charts of the last hour, drawn on the server as inline SVG
//! with `plotters` (no script, no font files: text stays SVG `<text>`).
//! Each chart is 640 × 220 with a `viewBox`, so CSS `width:100%;height:auto`
//! scales it down to a phone; its root carries `role="img"` and an
//! `aria-label` that says what it shows and sums it up. An hour without
//! data draws a clean chart with a note; a drawing error gives a small
//! SVG with a message, never a panic.

use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::metrics::recent::{Minute, NodeMinute, OUTCOMES};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 220;
/// Height of the legend strip above the plot.
const LEGEND: u32 = 22;
const FONT: &str = "sans-serif";

const GREEN: RGBColor = RGBColor(46, 125, 50);
const ORANGE: RGBColor = RGBColor(239, 108, 0);
const RED: RGBColor = RGBColor(198, 40, 40);
const PURPLE: RGBColor = RGBColor(106, 27, 154);
const MAGENTA: RGBColor = RGBColor(173, 20, 87);
const BLUE: RGBColor = RGBColor(21, 101, 192);
const GREY: RGBColor = RGBColor(97, 97, 97);

/// The colour of each outcome, in the order of `OUTCOMES`.
const OUTCOME_COLOURS: [RGBColor; 5] = [GREEN, ORANGE, RED, PURPLE, MAGENTA];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Attempts per minute, stacked by outcome.
pub fn attempts_by_outcome(minutes: &[Minute]) -> String {
    let stacks: Vec<[u64; 5]> = minutes.iter().map(|m| m.attempts).collect();
    let total: u64 = stacks.iter().flatten().sum();
    let succeeded: u64 = stacks.iter().map(|s| s[0]).sum();
    let label = format!(
        "Attempts by outcome per minute, last hour: {total} attempts, {}",
        share(succeeded, total)
    );
    svg(&label, |area| {
        if total == 0 {
            return no_data(area, "no data in the last hour");
        }
        let legend: Vec<(&str, RGBColor)> = OUTCOMES.iter().copied().zip(OUTCOME_COLOURS).collect();
        stacked_bars(area, &legend, &stacks)
    })
}

/// p50 and p99 latency per minute, in milliseconds.
pub fn latency(minutes: &[Minute]) -> String {
    let p50: Vec<Option<f64>> = minutes.iter().map(|m| m.p50_ms).collect();
    let p99: Vec<Option<f64>> = minutes.iter().map(|m| m.p99_ms).collect();
    latency_chart(&p50, &p99)
}

/// Deliveries waiting in memory, at the end of each minute.
pub fn queue_depth(minutes: &[Minute]) -> String {
    let depth: Vec<f64> = minutes.iter().map(|m| m.queue_depth as f64).collect();
    let now = minutes.last().map_or(0, |m| m.queue_depth);
    let most = minutes.iter().map(|m| m.queue_depth).max().unwrap_or(0);
    let label = format!("Queue depth per minute, last hour: {now} now, at most {most}");
    svg(&label, |area| {
        if most == 0 {
            return no_data(area, "nothing queued in the last hour");
        }
        area_chart(area, "queue depth", BLUE, &depth)
    })
}

/// Events in against deliveries out (and given up) per minute, node-wide.
pub fn node_traffic(minutes: &[NodeMinute]) -> String {
    let events: Vec<Option<f64>> = minutes.iter().map(|m| Some(m.events_in as f64)).collect();
    let delivered: Vec<Option<f64>> = minutes.iter().map(|m| Some(m.delivered as f64)).collect();
    let dead: Vec<Option<f64>> = minutes.iter().map(|m| Some(m.dead as f64)).collect();
    let sum = |f: fn(&NodeMinute) -> u64| minutes.iter().map(f).sum::<u64>();
    let (events_in, out, gone) = (sum(|m| m.events_in), sum(|m| m.delivered), sum(|m| m.dead));
    let label = format!(
        "Events in and deliveries out per minute, last hour: {events_in} events in, {out} delivered, {gone} dead"
    );
    svg(&label, |area| {
        if events_in + out + gone == 0 {
            return no_data(area, "no data in the last hour");
        }
        let mut lines = vec![
            Line {
                label: "events in",
                colour: BLUE,
                values: &events,
            },
            Line {
                label: "delivered",
                colour: GREEN,
                values: &delivered,
            },
        ];
        if gone > 0 {
            lines.push(Line {
                label: "dead",
                colour: RED,
                values: &dead,
            });
        }
        line_chart(area, &lines, Scale::Count)
    })
}

/// The share of attempts that succeeded, per minute (a gap where none).
pub fn node_success_ratio(minutes: &[NodeMinute]) -> String {
    let ratio: Vec<Option<f64>> = minutes
        .iter()
        .map(|m| {
            let total: u64 = m.attempts.iter().sum();
            (total > 0).then(|| 100.0 * m.attempts[0] as f64 / total as f64)
        })
        .collect();
    let total: u64 = minutes.iter().flat_map(|m| m.attempts).sum();
    let succeeded: u64 = minutes.iter().map(|m| m.attempts[0]).sum();
    let label = format!(
        "Share of attempts that succeeded per minute, last hour: {}",
        share(succeeded, total)
    );
    svg(&label, |area| {
        if total == 0 {
            return no_data(area, "no data in the last hour");
        }
        let lines = [Line {
            label: "succeeded %",
            colour: GREEN,
            values: &ratio,
        }];
        line_chart(area, &lines, Scale::Percent)
    })
}

/// p99 and p50 latency over the hour, node-wide.
pub fn node_latency(minutes: &[NodeMinute]) -> String {
    let p50: Vec<Option<f64>> = minutes.iter().map(|m| m.p50_ms).collect();
    let p99: Vec<Option<f64>> = minutes.iter().map(|m| m.p99_ms).collect();
    latency_chart(&p50, &p99)
}

fn latency_chart(p50: &[Option<f64>], p99: &[Option<f64>]) -> String {
    let worst = p99
        .iter()
        .flatten()
        .copied()
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
    let label = match worst {
        Some(ms) => format!(
            "Latency p50 and p99 per minute, last hour: p99 at most {}",
            ms_text(ms)
        ),
        None => "Latency p50 and p99 per minute, last hour: no attempts".to_string(),
    };
    svg(&label, |area| {
        if worst.is_none() && p50.iter().all(Option::is_none) {
            return no_data(area, "no data in the last hour");
        }
        let lines = [
            Line {
                label: "p50",
                colour: BLUE,
                values: p50,
            },
            Line {
                label: "p99",
                colour: ORANGE,
                values: p99,
            },
        ];
        line_chart(area, &lines, Scale::Milliseconds)
    })
}

/// "97% succeeded", or "none" without attempts.
fn share(part: u64, total: u64) -> String {
    if total == 0 {
        return "none".to_string();
    }
    format!("{:.0}% succeeded", 100.0 * part as f64 / total as f64)
}

fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// Draws with `draw` and returns the SVG, labelled; a small SVG with a
/// message when plotters fails.
fn svg(label: &str, draw: impl FnOnce(&Area) -> Drawn) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let drawn = {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
    };
    match drawn {
        Ok(()) if out.starts_with("<svg ") => labelled(&out, label),
        Ok(()) => fallback(label, "chart unavailable"),
        Err(e) => {
            log::warn!("could not draw a chart ({label}): {e}");
            fallback(label, "chart unavailable")
        }
    }
}

/// Adds the role and the label to the root element.
fn labelled(svg: &str, label: &str) -> String {
    let rest = svg.strip_prefix("<svg ").unwrap_or(svg);
    format!("<svg role=\"img\" aria-label=\"{}\" {rest}", escape(label))
}

fn fallback(label: &str, message: &str) -> String {
    format!(
        "<svg role=\"img\" aria-label=\"{label}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\" stroke=\"#ccc\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"{FONT}\" \
         font-size=\"14\" fill=\"#555\">{}</text></svg>",
        WIDTH / 2,
        HEIGHT / 2,
        escape(message),
        label = escape(label),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An empty plot (the hour on its axis) with `note` in the middle.
fn no_data(area: &Area, note: &str) -> Drawn {
    let (_, plot) = area.split_vertically(LEGEND);
    frame(&plot, 60, 1.0, Scale::Count)?;
    let style = (FONT, 17)
        .into_font()
        .color(&GREY)
        .pos(Pos::new(HPos::Center, VPos::Center));
    let (w, h) = plot.dim_in_pixel();
    plot.draw(&Text::new(note, (w as i32 / 2, h as i32 / 2), style))
}

/// How a value axis reads.
#[derive(Clone, Copy)]
enum Scale {
    Count,
    Milliseconds,
    Percent,
}

impl Scale {
    fn text(self, v: f64) -> String {
        match self {
            // Whole counts only: a small axis would repeat a rounded label.
            Scale::Count if v.fract().abs() > 1e-9 => String::new(),
            Scale::Count if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
            Scale::Count => format!("{v:.0}"),
            Scale::Milliseconds => ms_text(v),
            Scale::Percent => format!("{v:.0}%"),
        }
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Axes for `n` minutes ending now (x: minutes ago) and values up to `top`.
fn frame<'a, 'b>(
    plot: &'a Area<'b>,
    n: usize,
    top: f64,
    scale: Scale,
) -> Result<Chart<'a, 'b>, DrawingAreaErrorKind<std::io::Error>> {
    let left = -(n.max(1) as f64) + 0.5;
    let mut chart = ChartBuilder::on(plot)
        .margin_right(12)
        .margin_top(4)
        .x_label_area_size(22)
        .y_label_area_size(56)
        .build_cartesian_2d(left..0.5, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(0)
        .bold_line_style(BLACK.mix(0.08))
        .axis_style(BLACK.mix(0.4))
        .x_labels(7)
        .y_labels(5)
        .label_style((FONT, 14).into_font().color(&GREY))
        .x_label_formatter(&|x| minutes_ago(*x))
        .y_label_formatter(&|y| scale.text(*y))
        .draw()?;
    Ok(chart)
}

fn minutes_ago(x: f64) -> String {
    let m = x.round() as i64;
    if m == 0 {
        "now".to_string()
    } else {
        format!("{m} min")
    }
}

/// The x of the i-th of `n` minutes (the last one is 0, now).
fn x_of(i: usize, n: usize) -> f64 {
    i as f64 - (n as f64 - 1.0)
}

/// A top for a value axis: a little above the highest value.
fn top_of(highest: f64) -> f64 {
    if highest.is_finite() && highest > 0.0 {
        highest * 1.12
    } else {
        1.0
    }
}

/// A row of coloured keys in the strip above the plot.
fn legend(area: &Area, keys: &[(&str, RGBColor)]) -> Drawn {
    let mut x = 60;
    for (label, colour) in keys {
        area.draw(&Rectangle::new([(x, 7), (x + 10, 17)], colour.filled()))?;
        let style = (FONT, 14)
            .into_font()
            .color(&BLACK.mix(0.8))
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.to_string(), (x + 14, 12), style))?;
        x += 14 + 8 * label.len() as i32 + 18;
    }
    Ok(())
}

fn stacked_bars(area: &Area, keys: &[(&str, RGBColor)], stacks: &[[u64; 5]]) -> Drawn {
    let (top, plot) = area.split_vertically(LEGEND);
    legend(&top, keys)?;
    let n = stacks.len();
    let highest = stacks
        .iter()
        .map(|s| s.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let mut chart = frame(&plot, n, top_of(highest as f64), Scale::Count)?;
    let bars = stacks.iter().enumerate().flat_map(|(i, stack)| {
        let x = x_of(i, n);
        let mut base = 0.0;
        stack
            .iter()
            .zip(keys)
            .filter(|(c, _)| **c > 0)
            .map(move |(count, (_, colour))| {
                let bottom = base;
                base += *count as f64;
                Rectangle::new([(x - 0.4, bottom), (x + 0.4, base)], colour.filled())
            })
    });
    chart.draw_series(bars)?;
    Ok(())
}

/// One line of a line chart; `None` leaves a gap.
struct Line<'a> {
    label: &'a str,
    colour: RGBColor,
    values: &'a [Option<f64>],
}

fn line_chart(area: &Area, lines: &[Line], scale: Scale) -> Drawn {
    let (top, plot) = area.split_vertically(LEGEND);
    let keys: Vec<(&str, RGBColor)> = lines.iter().map(|l| (l.label, l.colour)).collect();
    legend(&top, &keys)?;
    let n = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let highest = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let top = match scale {
        Scale::Percent => 105.0,
        _ => top_of(highest),
    };
    let mut chart = frame(&plot, n, top, scale)?;
    for line in lines {
        let style = line.colour.stroke_width(2);
        for run in runs(line.values) {
            let points: Vec<(f64, f64)> = run.iter().map(|&(i, v)| (x_of(i, n), v)).collect();
            if points.len() == 1 {
                chart.draw_series(
                    points
                        .iter()
                        .map(|p| Circle::new(*p, 2, line.colour.filled())),
                )?;
            } else {
                chart.draw_series(LineSeries::new(points, style))?;
            }
        }
    }
    Ok(())
}

/// The runs of consecutive finite values, with their indices.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => current.push((i, *v)),
            _ if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

fn area_chart(area: &Area, label: &str, colour: RGBColor, values: &[f64]) -> Drawn {
    let (top, plot) = area.split_vertically(LEGEND);
    legend(&top, &[(label, colour)])?;
    let n = values.len();
    let highest = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut chart = frame(&plot, n, top_of(highest), Scale::Count)?;
    let points = values
        .iter()
        .enumerate()
        .map(|(i, v)| (x_of(i, n), if v.is_finite() { *v } else { 0.0 }));
    chart.draw_series(
        AreaSeries::new(points, 0.0, colour.mix(0.2)).border_style(colour.stroke_width(2)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;

    fn start(i: usize) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(i as i64)
    }

    fn busy_minutes() -> Vec<Minute> {
        (0..60)
            .map(|i| {
                let quiet = (20..25).contains(&i);
                Minute {
                    start: start(i),
                    attempts: if quiet {
                        [0; 5]
                    } else {
                        [
                            50 + i as u64,
                            (i % 7) as u64,
                            (i % 11 == 0) as u64 * 4,
                            (i % 13 == 0) as u64,
                            (i % 17 == 0) as u64 * 2,
                        ]
                    },
                    p50_ms: (!quiet).then_some(20.0 + i as f64),
                    p99_ms: (!quiet).then_some(300.0 + 40.0 * (i % 9) as f64),
                    queue_depth: (i as u64 * 37) % 150,
                }
            })
            .collect()
    }

    fn empty_minutes() -> Vec<Minute> {
        (0..60)
            .map(|i| Minute {
                start: start(i),
                attempts: [0; 5],
                p50_ms: None,
                p99_ms: None,
                queue_depth: 0,
            })
            .collect()
    }

    fn node(minutes: &[Minute]) -> Vec<NodeMinute> {
        minutes
            .iter()
            .enumerate()
            .map(|(i, m)| NodeMinute {
                start: m.start,
                events_in: m.attempts.iter().sum::<u64>() * 2 / 3,
                delivered: m.attempts[0],
                dead: (i % 29 == 0 && m.attempts[0] > 0) as u64,
                attempts: m.attempts,
                p50_ms: m.p50_ms,
                p99_ms: m.p99_ms,
                queue_depth: m.queue_depth,
            })
            .collect()
    }

    fn all(minutes: &[Minute]) -> Vec<(&'static str, String)> {
        let nodes = node(minutes);
        vec![
            ("attempts_by_outcome", attempts_by_outcome(minutes)),
            ("latency", latency(minutes)),
            ("queue_depth", queue_depth(minutes)),
            ("node_traffic", node_traffic(&nodes)),
            ("node_success_ratio", node_success_ratio(&nodes)),
            ("node_latency", node_latency(&nodes)),
        ]
    }

    fn assert_sound(name: &str, svg: &str) {
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\""),
            "{name}: {}",
            &svg[..80.min(svg.len())]
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
        assert!(svg.contains("viewBox=\"0 0 640 220\""), "{name}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{name}");
        assert!(!svg.contains("<?xml"), "{name}");
        assert!(svg.contains("<text"), "{name}: text is SVG text");
    }

    #[test]
    fn every_chart_of_a_busy_hour_is_a_labelled_svg() {
        for (name, svg) in all(&busy_minutes()) {
            assert_sound(name, &svg);
            assert!(!svg.contains("no data in the last hour"), "{name}");
            assert!(svg.contains(">\nnow\n<"), "{name}: the x axis ends now");
        }
    }

    #[test]
    fn every_chart_of_an_empty_hour_says_so() {
        for (name, svg) in all(&empty_minutes()).into_iter().chain(all(&[])) {
            assert_sound(name, &svg);
            assert!(svg.contains("in the last hour"), "{name}: {svg}");
        }
    }

    #[test]
    fn a_stacked_bar_shows_each_outcome_in_its_colour() {
        let svg = attempts_by_outcome(&busy_minutes());
        assert!(svg.contains("aria-label=\"Attempts by outcome per minute"));
        for key in OUTCOMES {
            assert!(svg.contains(&format!(">\n{key}\n<")), "legend {key}");
        }
        assert!(
            svg.contains("#2E7D32") || svg.contains("rgb(46,125,50)") || svg.contains("#2e7d32"),
            "success is green"
        );
    }

    #[test]
    fn odd_values_never_make_nan_or_panic() {
        let mut minutes = busy_minutes();
        minutes[3].p99_ms = Some(f64::NAN);
        minutes[4].p50_ms = Some(f64::INFINITY);
        minutes[5].attempts = [u64::MAX / 8, 0, 0, 0, 0];
        minutes.truncate(1);
        for (name, svg) in all(&minutes) {
            assert_sound(name, &svg);
        }
        let mut minutes = busy_minutes();
        minutes[3].p99_ms = Some(f64::NAN);
        minutes[4].p50_ms = Some(f64::INFINITY);
        for (name, svg) in all(&minutes) {
            assert_sound(name, &svg);
        }
    }

    #[test]
    fn a_failed_drawing_gives_the_fallback() {
        let svg = fallback("a \"label\"", "chart unavailable");
        assert!(svg.starts_with("<svg role=\"img\" aria-label=\"a &quot;label&quot;\""));
        assert!(svg.contains(">chart unavailable</text>"));
    }

    #[test]
    fn gaps_split_a_line_into_runs() {
        let runs = runs(&[
            Some(1.0),
            None,
            Some(2.0),
            Some(f64::NAN),
            Some(3.0),
            Some(4.0),
        ]);
        assert_eq!(
            runs,
            vec![vec![(0, 1.0)], vec![(2, 2.0)], vec![(4, 3.0), (5, 4.0)]]
        );
    }
}
