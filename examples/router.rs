//! A real UDP host for the ringfence engine: one socket, one engine, `std` only.
//!
//! ```text
//! cargo run --release --example router -- [--listen ADDR] [--config FILE] [--metrics ADDR] [--for SECS]
//! ```
//!
//! Without `--config` it routes every dialled number to 127.0.0.1:5080. It prints a
//! status line every second and a summary on Ctrl-C (or after `--for` seconds). With
//! `--metrics` it serves `GET /metrics` (Prometheus text), `GET /bypass` (the bypass
//! signal line for number insertion) and `GET /report` (this node's fleet report).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringfence::{Config, Engine, Event, Stats};

const DEFAULT_CONFIG: &str = r#"
[routing]
default_route = ["127.0.0.1:5080"]
"#;

const USAGE: &str = "\
usage: router [--listen ADDR] [--config FILE] [--metrics ADDR] [--for SECS] [--quiet]

  --listen ADDR   UDP address to listen on (default 127.0.0.1:5060)
  --config FILE   TOML configuration (default: route every number to 127.0.0.1:5080)
  --metrics ADDR  serve /metrics, /bypass and /report over HTTP on ADDR
  --for SECS      exit after SECS seconds with a summary (default: until Ctrl-C)
  --quiet         no per-second status line
  --help          this text";

struct Args {
    listen: SocketAddr,
    config: Option<String>,
    metrics: Option<SocketAddr>,
    run_for: Option<Duration>,
    quiet: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        listen: "127.0.0.1:5060".parse().expect("literal"),
        config: None,
        metrics: None,
        run_for: None,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--help" | "-h" => return Ok(None),
            "--listen" => {
                let v = value("--listen")?;
                args.listen = v.parse().map_err(|_| {
                    format!("--listen: {v:?} is not an address like 127.0.0.1:5060")
                })?;
            }
            "--config" => args.config = Some(value("--config")?),
            "--metrics" => {
                let v = value("--metrics")?;
                args.metrics = Some(v.parse().map_err(|_| {
                    format!("--metrics: {v:?} is not an address like 127.0.0.1:9090")
                })?);
            }
            "--for" => {
                let v = value("--for")?;
                let s: u64 = v
                    .parse()
                    .map_err(|_| format!("--for: {v:?} is not a number of seconds"))?;
                args.run_for = Some(Duration::from_secs(s));
            }
            "--quiet" => args.quiet = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

fn load_config(path: Option<&str>) -> Result<Config, String> {
    let (name, text) = match path {
        Some(p) => (
            p.to_owned(),
            std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
        ),
        None => ("(built-in default)".to_owned(), DEFAULT_CONFIG.to_owned()),
    };
    Config::from_toml(&text).map_err(|e| format!("{name}: {e}"))
}

fn status_line(elapsed: Duration, engine: &Engine, now: &Stats, before: &Stats) -> String {
    let rejected = now.responses_sent[3] + now.responses_sent[4] + now.responses_sent[5];
    let rejected_before =
        before.responses_sent[3] + before.responses_sent[4] + before.responses_sent[5];
    format!(
        "t={:>4}s active={:<5} calls/s={:<5} answered={:<7} rejected/s={:<5} absorbed={:<7} malformed={}",
        elapsed.as_secs(),
        engine.active_calls(),
        now.calls_started - before.calls_started,
        now.calls_answered,
        rejected - rejected_before,
        now.retransmissions_absorbed,
        now.malformed_total(),
    )
}

fn summary(s: &Stats, elapsed: Duration) {
    println!("--- summary after {:.1}s ---", elapsed.as_secs_f64());
    println!(
        "datagrams {}  requests {}  responses {}",
        s.datagrams, s.requests, s.responses
    );
    println!(
        "calls started {}  answered {}  rejected {}  cancelled {}  no answer {}  superseded {}  ended {}",
        s.calls_started,
        s.calls_answered,
        s.calls_rejected,
        s.calls_cancelled,
        s.calls_no_answer,
        s.calls_superseded,
        s.calls_ended
    );
    println!(
        "forwarded {}  failovers {}  retransmissions absorbed {}  malformed {}",
        s.invites_forwarded,
        s.failovers,
        s.retransmissions_absorbed,
        s.malformed_total()
    );
    let r = &s.responses_sent;
    println!(
        "responses sent 1xx {} 2xx {} 3xx {} 4xx {} 5xx {} 6xx {}",
        r[0], r[1], r[2], r[3], r[4], r[5]
    );
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Answers one HTTP request, if one is waiting: a tiny GET-only server on the router's
/// own loop (it never blocks for long: short timeouts, one request per connection).
fn serve_http(listener: &TcpListener, engine: &mut Engine, node: &str) {
    let Ok((mut conn, _)) = listener.accept() else {
        return;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    // A request may arrive in pieces: read until the blank line that ends its head.
    let mut req = [0u8; 1024];
    let mut n = 0;
    while n < req.len() && !req[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut req[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = String::from_utf8_lossy(&req[..n]);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let now = Instant::now();
    let (status, body) = match path {
        "/metrics" => {
            let mut text = String::new();
            let _ = engine.stats().write_prometheus(&mut text);
            ("200 OK", text)
        }
        "/bypass" => (
            "200 OK",
            engine.bypass_signal(now, wall_ms()).render() + "\n",
        ),
        "/report" => (
            "200 OK",
            engine.node_report(now, node, wall_ms()).render() + "\n",
        ),
        _ => (
            "404 Not Found",
            "try /metrics, /bypass or /report\n".to_owned(),
        ),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn run(args: Args) -> Result<(), String> {
    let config = load_config(args.config.as_deref())?;
    let socket = UdpSocket::bind(args.listen).map_err(|e| format!("bind {}: {e}", args.listen))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| e.to_string())?;
    }
    let metrics = match args.metrics {
        Some(addr) => {
            let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        None => None,
    };
    let start = Instant::now();
    let mut engine = Engine::new(config, start).map_err(|e| e.to_string())?;
    println!("ringfence router listening on {local} (Ctrl-C to stop)");
    if let Some(l) = &metrics {
        println!(
            "metrics on http://{}/metrics, bypass signal on /bypass",
            l.local_addr().map_err(|e| e.to_string())?
        );
    }
    let mut buf = vec![0u8; 65_535];
    let mut next_status = start + Duration::from_secs(1);
    let mut last = engine.stats();
    let mut route_requests = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if args.run_for.is_some_and(|d| now - start >= d) {
            break;
        }
        let wake = engine
            .poll_timeout()
            .map_or(next_status, |t| t.min(next_status));
        // Short waits keep Ctrl-C responsive.
        let wait = wake
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => engine.handle_datagram(Instant::now(), from, local, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => eprintln!("recv: {e}"),
        }
        engine.handle_timeout(Instant::now());
        while let Some(t) = engine.poll_transmit() {
            if let Err(e) = socket.send_to(t.payload, t.destination) {
                eprintln!("send to {}: {e}", t.destination);
            }
        }
        while let Some(event) = engine.poll_event() {
            // This host has no routing service: route requests run into the engine's
            // deadline and fall back to the last route that worked.
            if let Event::RouteRequest { .. } = event {
                route_requests += 1;
            }
        }
        if let Some(l) = &metrics {
            serve_http(l, &mut engine, &local.to_string());
        }
        if Instant::now() >= next_status {
            let stats = engine.stats();
            if !args.quiet {
                println!("{}", status_line(start.elapsed(), &engine, &stats, &last));
            }
            last = stats;
            next_status += Duration::from_secs(1);
        }
    }
    summary(&engine.stats(), start.elapsed());
    if route_requests > 0 {
        println!("route requests left to the engine's fallback: {route_requests}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(args)) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("router: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("router: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
