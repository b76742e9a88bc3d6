//! Replays the July 23 incident (`/work/shared/incident-report.txt`) in virtual time,
//! twice, and compares: once with ringfence's protections, once as a naive proxy.
//!
//! ```text
//! cargo run --release --example incident_replay -- [--short] [--seed N] [--svg PATH] [--csv PATH]
//! ```
//!
//! # The scenario (`ringfence::drill::replay::Scenario::incident`)
//!
//! A fleet of 6 nodes, each a real `Engine` behind a simulated CPU
//! (`drill::sim::SimNode`), configured for 100 calls/s each (600) but really good for
//! 80 each (480): a capacity regression only load feedback reveals. Three carriers
//! offer 340 distinct calls/s (Poisson; about 71% of the real capacity, 57% of the
//! configured one); 4% of calls dial numbers that ring and never answer, and
//! destinations refuse 2% of INVITEs with 503 (the engine fails over to a backup
//! destination). Every call is routed by the simulated routing service
//! (`AskHost::Always`). Calls ring 2 s and talk 30 s.
//!
//! * 9:00: the carriers switch, one after another, to re-attempting unanswered calls
//!   five times with new Call-IDs (`RetryProfile::aggressive`: also re-attempting a 503
//!   after 0.5 s whatever its Retry-After, and failing a 503 over down their node
//!   lists).
//! * 10:00: a deploy drains 2 of the 6 nodes (`Engine::drain`) for 5 minutes, leaving
//!   320 calls/s of real capacity for 340 of demand; carriers' 503 failover moves
//!   their traffic. Just before, the deploy tool asks the fleet's deploy budget
//!   (`Fleet::deploy_budget` / `may_drain`, 90% target utilisation) and prints the
//!   answer; the deploy goes ahead anyway, as the automated one did.
//! * 12:00-14:00: the routing service fails 30% of its requests.
//! * 15:00: the drained nodes come back; the replay runs until 17:00.
//! * Throughout: a `health::Fleet` reads every node's `node_report` each second; while
//!   its bypass is on, 22% of demand goes to businesses' own numbers instead (number
//!   insertion shows them), 5 s after the signal changes.
//!
//! The two runs differ only in the proxy. With protections: the default config (load
//! feedback from the host's CPU report, RED shedding, re-attempt dedup, retry budget,
//! breakers, 503 never relayed, routing-service fallback). Naive: no re-attempt dedup,
//! a hard cut-off at the configured rate (`shed_watermark` 1.0) and no load feedback,
//! failover without a budget, downstream 503 relayed, no Retry-After jitter. Same seeds.
//!
//! `--short` plays the same shape at a fifth of the scale (CI: seconds in a debug
//! build). The targets are printed as `TARGET <name>: PASS|FAIL (<numbers>)` lines;
//! with `--check` the exit status is 1 when one fails (2 for bad arguments). The
//! replay never reads a clock; this printer reads one only to report its own runtime.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringfence::drill::replay::{self, Outcome, Row, Scenario, Summary, clock};

const USAGE: &str = "\
usage: incident_replay [--short] [--seed N] [--svg PATH] [--csv PATH] [--check]

  --short      the same scenario at a fifth of the scale (fast enough for CI)
  --seed N     seed of every random draw (default 1)
  --svg PATH   where to write the goodput chart (default target/incident_replay.svg)
  --csv PATH   also write the per-second series of both runs as CSV
  --check      exit with status 1 when a target is missed
  --help       this text";

struct Args {
    short: bool,
    seed: u64,
    svg: String,
    csv: Option<String>,
    check: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        short: false,
        seed: 1,
        svg: "target/incident_replay.svg".into(),
        csv: None,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--help" | "-h" => return Ok(None),
            "--short" => args.short = true,
            "--check" => args.check = true,
            "--seed" => {
                let v = value("--seed")?;
                args.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: {v:?} is not a whole number"))?;
            }
            "--svg" => args.svg = value("--svg")?,
            "--csv" => args.csv = Some(value("--csv")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("incident_replay: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let s = if args.short {
        Scenario::short(args.seed)
    } else {
        Scenario::incident(args.seed)
    };
    println!("{}\n", s.describe());

    // Both runs at once, one per core. The epoch is only virtual time zero.
    let started = Instant::now();
    let epoch = started;
    let (with, naive) = std::thread::scope(|scope| {
        let with = scope.spawn(|| timed(|| replay::run(&s, true, epoch)));
        let naive = scope.spawn(|| timed(|| replay::run(&s, false, epoch)));
        (
            with.join().expect("the protected run"),
            naive.join().expect("the naive run"),
        )
    });
    let wall = started.elapsed();
    let ((with, with_time), (naive, naive_time)) = (with, naive);

    println!("deploy budget asked at {}:", clock(s.deploy_at).trim());
    println!(
        "  with protections (measured capacity): {}",
        with.deploy.describe()
    );
    println!(
        "  naive (configured capacity only):     {}",
        naive.deploy.describe()
    );
    println!();
    print!("{}", table(&s, &with, &naive));
    println!();
    print!("{}", summary(&s, &with, &naive));
    println!();

    let checks = replay::checks(&s, &with);
    for c in &checks {
        println!(
            "TARGET {}: {} ({})",
            c.name,
            if c.pass { "PASS" } else { "FAIL" },
            c.detail
        );
    }
    let failed = checks.iter().filter(|c| !c.pass).count();

    match write_file(&args.svg, &svg(&s, &with, &naive)) {
        Ok(()) => println!("chart: {}", args.svg),
        Err(e) => eprintln!("incident_replay: writing {}: {e}", args.svg),
    }
    if let Some(path) = &args.csv {
        match write_file(path, &csv(&with, &naive)) {
            Ok(()) => println!("per-second series: {path}"),
            Err(e) => eprintln!("incident_replay: writing {path}: {e}"),
        }
    }
    println!(
        "runtime: {:.1} s wall (protected run {:.1} s, naive run {:.1} s, in parallel)",
        wall.as_secs_f64(),
        with_time.as_secs_f64(),
        naive_time.as_secs_f64()
    );
    if failed > 0 {
        println!("{failed} target(s) missed");
    }
    if failed > 0 && args.check {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn write_file(path: &str, text: &str) -> std::io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

fn bypass_cell(r: &Row) -> String {
    match r.bypass_secs {
        0 => "-".into(),
        n if n as u64 == r.len.as_secs() => "on".into(),
        n => format!("{n}s"),
    }
}

/// The side-by-side table, one row per minute (per 12 s in the short replay).
fn table(s: &Scenario, with: &Outcome, naive: &Outcome) -> String {
    let mut t = String::new();
    let run_cols = "offered goodput  srv% rejected retries bypass";
    let _ = writeln!(
        t,
        "{:>5} {:>8} | {:<47}| {:<47}",
        "", "", "with ringfence's protections", "naive proxy"
    );
    let _ = writeln!(
        t,
        "{:>5} {:>8} | {run_cols}  | {run_cols}",
        "time", "capacity"
    );
    for (a, b) in with.rows.iter().zip(&naive.rows) {
        let cells = |r: &Row| {
            format!(
                "{:>7.1} {:>7.1} {:>5.1} {:>8.1} {:>7.1} {:>6}",
                r.offered_rate(),
                r.goodput(),
                r.goodput_share() * 100.0,
                r.rejected_rate(),
                r.retry_rate(),
                bypass_cell(r)
            )
        };
        let _ = writeln!(
            t,
            "{} {:>8.0} | {}  | {}",
            clock(a.start),
            a.capacity_rate(),
            cells(a),
            cells(b)
        );
    }
    let _ = writeln!(
        t,
        "per second: offered = distinct calls, goodput = answered calls (by when offered), srv% = goodput / min(answerable demand, real capacity),\n\
         rejected = 5xx finals carriers got, retries = attempts beyond one per call (re-attempts and 503 failovers), bypass = fleet bypass on (s); events: {}",
        [
            format!("storm {}", clock(s.storm_at).trim()),
            format!(
                "deploy {}-{}",
                clock(s.deploy_at).trim(),
                clock(s.deploy_end()).trim()
            ),
            format!(
                "routing errors {}-{}",
                clock(s.routing_errors.0).trim(),
                clock(s.routing_errors.1).trim()
            ),
        ]
        .join(", ")
    );
    t
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn summary(s: &Scenario, with: &Outcome, naive: &Outcome) -> String {
    let (a, b) = (Summary::of(s, with), Summary::of(s, naive));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "summary (servable = min(answerable demand, real serving capacity); from the storm at {} to {}):",
        clock(s.storm_at).trim(),
        clock(s.duration).trim()
    );
    let line = |name: &str, x: &Summary, o: &Outcome| {
        let tot = &o.totals;
        format!(
            "  {name:<17} answered {} of servable ({} during the deploy, {} after it), worst minute {} at {}; {} servable calls lost; \
             peak re-attempts {:.0}/s, longest CPU wait {:.1} s, mean setup in the deploy {:.2} s; \
             admitted {}, refused {:?}, re-attempts suppressed {}, routed without the routing service {}, datagrams dropped {}",
            pct(x.share),
            pct(x.deploy_share),
            pct(x.after_share),
            pct(x.worst_minute.1),
            clock(x.worst_minute.0).trim(),
            x.lost,
            x.peak_retries,
            x.peak_wait.as_secs_f64(),
            x.deploy_setup.as_secs_f64(),
            tot.admitted,
            tot.refused,
            tot.suppressed,
            tot.routing_fallbacks,
            tot.dropped,
        )
    };
    let _ = writeln!(t, "{}", line("with protections:", &a, with));
    let _ = writeln!(t, "{}", line("naive:", &b, naive));
    let _ = writeln!(
        t,
        "NAIVE collapse: {} of servable calls answered from the storm on ({} with protections); {} during the deploy, {} in the worst minute; \
         after the deploy it stays at {} (nodes stay saturated: CPU waits up to {:.0} s); {} more calls lost than with protections",
        pct(b.share),
        pct(a.share),
        pct(b.deploy_share),
        pct(b.worst_minute.1),
        pct(b.after_share),
        b.peak_wait.as_secs_f64(),
        b.lost.saturating_sub(a.lost),
    );
    t
}

fn csv(with: &Outcome, naive: &Outcome) -> String {
    let mut t = String::from(
        "second,run,offered,answerable,answered,attempts,rejected,bypass,bypass_effective,capacity,fleet_capacity,fleet_demand,queue_wait_ms\n",
    );
    for (name, o) in [("protected", with), ("naive", naive)] {
        for (i, x) in o.seconds.iter().enumerate() {
            let _ = writeln!(
                t,
                "{i},{name},{},{},{},{},{},{},{},{:.0},{:.1},{:.1},{}",
                x.offered,
                x.answerable,
                x.answered,
                x.attempts,
                x.rejected,
                u8::from(x.bypass),
                u8::from(x.bypass_effective),
                x.capacity,
                x.fleet_capacity,
                x.fleet_demand,
                x.queue_wait.as_millis()
            );
        }
    }
    t
}

/// Centred moving average over `w` seconds.
fn smooth(v: &[f64], w: usize) -> Vec<f64> {
    let h = w / 2;
    (0..v.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(h), (i + h + 1).min(v.len()));
            v[a..b].iter().sum::<f64>() / (b - a).max(1) as f64
        })
        .collect()
}

/// Goodput over time for both runs, with offered demand, real capacity, the bypass and
/// the scenario's events. Hand-rolled SVG.
fn svg(s: &Scenario, with: &Outcome, naive: &Outcome) -> String {
    let (w, h) = (1100.0, 520.0);
    let (left, right, top, bottom) = (110.0, 20.0, 50.0, 110.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let secs = with.seconds.len().max(1) as f64;
    let peak = s.capacity(0).max(s.demand_cps);
    let ymax = (peak * 1.15 / 50.0).ceil() * 50.0;
    let x = |t: f64| left + pw * t / secs;
    let y = |v: f64| top + ph * (1.0 - (v / ymax).clamp(0.0, 1.0));
    let window = if secs > 600.0 { 10 } else { 5 };
    let series = |o: &Outcome, f: fn(&replay::Second) -> f64| {
        smooth(&o.seconds.iter().map(f).collect::<Vec<_>>(), window)
    };
    let path = |v: &[f64]| {
        let mut d = String::new();
        for (i, v) in v.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(i as f64 + 0.5),
                y(*v)
            );
        }
        d
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Incident replay ({}, seed {}): answered calls per second, with ringfence's protections and as a naive proxy</text>"#,
        s.name, s.seed
    );
    // Event bands: deploy and routing errors.
    let bands = [
        (
            s.deploy_at,
            s.deploy_end(),
            "#f3f3f3",
            format!("deploy: {} of {} nodes drained", s.drain.len(), s.nodes),
        ),
        (
            s.routing_errors.0,
            s.routing_errors.1,
            "#e8e8e8",
            "routing service errors".to_owned(),
        ),
    ];
    for (a, b, fill, _) in &bands {
        let (xa, xb) = (x(a.as_secs_f64()), x(b.as_secs_f64()));
        let _ = writeln!(
            o,
            r#"<rect x="{xa:.1}" y="{top}" width="{:.1}" height="{ph}" fill="{fill}"/>"#,
            xb - xa
        );
    }
    for (row, (a, _, _, label)) in bands.iter().enumerate() {
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" fill="#555">{label}</text>"##,
            x(a.as_secs_f64()) + 4.0,
            top + 14.0 + row as f64 * 14.0
        );
    }
    let sx = x(s.storm_at.as_secs_f64());
    let _ = writeln!(
        o,
        r##"<line x1="{sx:.1}" y1="{top}" x2="{sx:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="3,3"/><text x="{:.1}" y="{:.1}" fill="#555" text-anchor="end">retry storm</text>"##,
        top + ph,
        sx - 4.0,
        top + 14.0
    );
    // Bypass bars under the plot.
    for (k, (out, color, name)) in [
        (with, "#1f5fbf", "bypass, protected"),
        (naive, "#c0392b", "bypass, naive"),
    ]
    .into_iter()
    .enumerate()
    {
        let yb = top + ph + 30.0 + k as f64 * 14.0;
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10" fill="{color}">{name}</text>"#,
            left - 4.0,
            yb + 9.0
        );
        let mut i = 0;
        let v = &out.seconds;
        while i < v.len() {
            if v[i].bypass {
                let j = (i..v.len()).find(|&j| !v[j].bypass).unwrap_or(v.len());
                let _ = writeln!(
                    o,
                    r#"<rect x="{:.1}" y="{yb:.1}" width="{:.1}" height="10" fill="{color}" opacity="0.6"/>"#,
                    x(i as f64),
                    x(j as f64) - x(i as f64)
                );
                i = j;
            } else {
                i += 1;
            }
        }
    }
    // Axes and grid.
    let step = if ymax > 300.0 { 100.0 } else { 20.0 };
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let tick = if secs > 600.0 { 60 } else { 30 };
    for t in (0..=secs as u64).step_by(tick) {
        let xx = x(t as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + ph,
            top + ph + 5.0,
            top + ph + 18.0,
            clock(Duration::from_secs(t)).trim()
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/><text x="50" y="{:.1}" transform="rotate(-90 50 {:.1})" text-anchor="middle">calls per second ({window}-s average)</text>"##,
        top + ph / 2.0,
        top + ph / 2.0
    );
    // Series.
    let capacity: Vec<f64> = with.seconds.iter().map(|x| x.capacity).collect();
    let lines = [
        (
            path(&capacity),
            "#000",
            "1.5",
            "6,4",
            "real serving capacity",
        ),
        (
            path(&series(with, |x| x.offered as f64)),
            "#7fa7e0",
            "1.2",
            "",
            "offered demand (protected)",
        ),
        (
            path(&series(naive, |x| x.offered as f64)),
            "#e39a92",
            "1.2",
            "4,3",
            "offered demand (naive)",
        ),
        (
            path(&series(with, |x| x.answered as f64)),
            "#1f5fbf",
            "2.5",
            "",
            "goodput with protections",
        ),
        (
            path(&series(naive, |x| x.answered as f64)),
            "#c0392b",
            "2.5",
            "",
            "goodput naive",
        ),
    ];
    for (i, (d, color, width, dash, name)) in lines.iter().enumerate() {
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            o,
            r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>"#
        );
        let lx = left + (i % 3) as f64 * 300.0;
        let ly = top + ph + 76.0 + (i / 3) as f64 * 16.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="{width}"{dash}/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    o.push_str("</svg>\n");
    o
}
