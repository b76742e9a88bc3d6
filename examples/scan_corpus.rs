//! The wire layer's job on real input: scan every `*.sip` file under `tests/fixtures`
//! (or the directories given as arguments), print what was extracted from each, then
//! time `scan`, `scan_keys` and rsip 0.4's parse on the carrier corpus.
//!
//! ```text
//! cargo run --release --example scan_corpus [DIR...]
//! ```
//!
//! The timings are a quick in-process look (median of several batches measured with
//! `std::time::Instant`); `cargo bench --bench wire` is the careful measurement.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringfence::wire::{self, Datagram, Limits, Message};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(root.join("tests/fixtures"));
    }
    let mut files = Vec::new();
    for dir in &dirs {
        collect(dir, &mut files);
    }
    files.sort();
    if files.is_empty() {
        eprintln!("no *.sip files under {dirs:?}");
        std::process::exit(1);
    }

    let fixtures = root.join("tests/fixtures");
    let display = |p: &Path| p.strip_prefix(&fixtures).unwrap_or(p).display().to_string();
    let width = files.iter().map(|p| display(p).len()).max().unwrap_or(0);
    let limits = Limits::default();
    let (mut ok, mut failed, mut keepalive) = (0, 0, 0);
    println!("== {} messages\n", files.len());
    for path in &files {
        let name = display(path);
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                println!("{name:<width$} unreadable: {e}");
                failed += 1;
                continue;
            }
        };
        match wire::parse_datagram(&bytes, &limits) {
            Ok(Datagram::Message(m)) => {
                ok += 1;
                println!("{name:<width$} {}", summary(&m));
            }
            Ok(Datagram::KeepAlive) => {
                keepalive += 1;
                println!("{name:<width$} keep-alive");
            }
            Err(e) => {
                failed += 1;
                println!(
                    "{name:<width$} ERROR {e} -> {} {}",
                    e.kind.status(),
                    e.kind.reason_phrase()
                );
            }
        }
    }
    println!("\n{ok} scanned, {failed} rejected, {keepalive} keep-alive\n");

    speed_table(&root.join("tests/fixtures/corpus"), &limits);
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("cannot read {}", dir.display());
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "sip") {
            out.push(path);
        }
    }
}

fn text(b: Option<&[u8]>) -> String {
    match b {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => "-".to_owned(),
    }
}

/// One line: kind, method or status, top Via branch, Call-ID, CSeq, tags, numbers.
fn summary(m: &Message<'_>) -> String {
    let kind = match (m.method(), m.status()) {
        (Some(method), _) => format!("request  {method}"),
        (None, Some(code)) => format!("response {code}"),
        (None, None) => unreachable!("a message is a request or a response"),
    };
    let cseq = m.cseq();
    // The dialled number: the Request-URI's user on a request, To's on a response.
    let dialled = m.request_user().or(m.to().user);
    format!(
        "{kind:<17} branch={} call-id={} cseq={} {} from-tag={} to-tag={} dialled={} calling={} vias={} body={}B",
        text(m.branch()),
        text(Some(m.call_id())),
        cseq.number,
        cseq.method,
        text(m.from_tag()),
        text(m.to_tag()),
        text(dialled),
        text(m.calling()),
        m.via_count(),
        m.body().len(),
    )
}

/// Median nanoseconds per call of `f`, over batches sized to take ~20 ms each.
fn ns_per_call(mut f: impl FnMut()) -> f64 {
    // Warm up and size a batch.
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed() > Duration::from_millis(20) {
            break;
        }
        n *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn speed_table(corpus: &Path, limits: &Limits) {
    let mut files = Vec::new();
    collect(corpus, &mut files);
    files.sort();
    println!("== speed (median ns per call, this machine, in-process)\n");
    println!(
        "{:<14} {:>6} {:>9} {:>10} {:>11} {:>12} {:>12}",
        "message", "bytes", "scan", "scan_keys", "rsip parse", "rsip/scan", "rsip/keys"
    );
    for path in &files {
        let bytes = std::fs::read(path).expect("readable");
        let name = path.file_name().unwrap().to_string_lossy();
        if wire::scan(&bytes, limits).is_err() || rsip::SipMessage::try_from(&bytes[..]).is_err() {
            println!("{name:<14} (skipped: not parsed by both)");
            continue;
        }
        let scan = ns_per_call(|| {
            black_box(wire::scan(black_box(&bytes), limits).is_ok());
        });
        let keys = ns_per_call(|| {
            black_box(wire::scan_keys(black_box(&bytes), limits).is_ok());
        });
        let rsip = ns_per_call(|| {
            black_box(rsip::SipMessage::try_from(black_box(&bytes[..])).is_ok());
        });
        println!(
            "{name:<14} {:>6} {scan:>9.0} {keys:>10.0} {rsip:>11.0} {:>11.1}x {:>11.1}x",
            bytes.len(),
            rsip / scan,
            rsip / keys
        );
    }
}
