//! The carrier drill over real UDP: a simulated carrier (with a retry profile) offers
//! calls to a SIP target, and a simulated destination answers the calls the target
//! forwards. Run it against the router example, or any SIP proxy, on loopback:
//!
//! ```text
//! cargo run --release --example router                      # terminal 1
//! cargo run --release --example drill -- --cps 50 --for 10  # terminal 2
//! cargo run --release --example drill -- --find --floor 200 # scheduled capacity check
//! ```
//!
//! The router example's default route (`examples/router.toml`) is 127.0.0.1:5080, where
//! the drill's destination listens. A live line goes to stderr once a second; a summary
//! table to stdout at the end. With `--find`, the capacity finder ramps the offered rate
//! in steps and reports the highest rate the target sustained; the exit status is 1
//! when that is below `--floor` (or, without `--find`, when fewer than `--min-success`
//! of the calls were answered), 2 for bad arguments.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringfence::drill::{
    Actor, CapacityFinder, Carrier, CarrierConfig, CarrierStats, Destination, DestinationMix,
    FinderConfig, Next, RetryProfile, StepResult,
};

const USAGE: &str = "\
usage: drill [options]

  --target ADDR       SIP target the carrier calls (default 127.0.0.1:5060)
  --local ADDR        the carrier's own address (default 127.0.0.1:0)
  --destination ADDR  where the simulated destination listens (default 127.0.0.1:5080);
                      'none' when the target routes elsewhere
  --profile NAME      retry profile: polite, standard, aggressive (default standard)
  --cps R             calls per second offered (default 10)
  --for S             seconds to offer calls (default 10)
  --hold S            talk time of answered calls (default 1)
  --answer-after S    ringing before the destination answers (default 0.2)
  --busy X, --no-answer X, --unavailable X
                      shares of calls the destination refuses busy, lets ring, or
                      answers 503 (default 0 each; the rest are answered)
  --min-success X     exit 1 when fewer than this share of calls are answered
  --find              find the highest sustainable rate instead (see --start, --step,
                      --max, --floor)
  --start R           first rate the finder tries (default 10)
  --step S            seconds per finder step (default 5)
  --max R             highest rate the finder offers (default 2000)
  --floor R           with --find: exit 1 when the sustainable rate is below R
  --help              this text";

struct Args {
    target: SocketAddr,
    local: SocketAddr,
    destination: Option<SocketAddr>,
    profile: RetryProfile,
    cps: f64,
    duration: Duration,
    hold: Duration,
    mix: DestinationMix,
    min_success: Option<f64>,
    find: bool,
    start: f64,
    step: Duration,
    max: f64,
    floor: Option<f64>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        target: "127.0.0.1:5060".parse().unwrap(),
        local: "127.0.0.1:0".parse().unwrap(),
        destination: Some("127.0.0.1:5080".parse().unwrap()),
        profile: RetryProfile::standard(),
        cps: 10.0,
        duration: Duration::from_secs(10),
        hold: Duration::from_secs(1),
        mix: DestinationMix {
            answer_after: Duration::from_millis(200),
            ..DestinationMix::default()
        },
        min_success: None,
        find: false,
        start: 10.0,
        step: Duration::from_secs(5),
        max: 2000.0,
        floor: None,
    };
    let mut refused = 0.0;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let addr = |v: String, f: &str| {
            v.parse::<SocketAddr>()
                .map_err(|_| format!("{f}: {v:?} is not an address like 127.0.0.1:5060"))
        };
        let num = |v: String, f: &str| match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(format!("{f}: {v:?} is not a non-negative number")),
        };
        let share = |v: String, f: &str| {
            num(v, f).and_then(|x| {
                if x <= 1.0 {
                    Ok(x)
                } else {
                    Err(format!("{f}: {x} is not a share between 0 and 1"))
                }
            })
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--target" => a.target = addr(value()?, "--target")?,
            "--local" => a.local = addr(value()?, "--local")?,
            "--destination" => {
                let v = value()?;
                a.destination = if v == "none" {
                    None
                } else {
                    Some(addr(v, "--destination")?)
                };
            }
            "--profile" => {
                let v = value()?;
                a.profile = RetryProfile::named(&v).ok_or_else(|| {
                    format!("--profile: {v:?} is not one of polite, standard, aggressive")
                })?;
            }
            "--cps" => a.cps = num(value()?, "--cps")?,
            "--for" => a.duration = Duration::from_secs_f64(num(value()?, "--for")?),
            "--hold" => a.hold = Duration::from_secs_f64(num(value()?, "--hold")?),
            "--answer-after" => {
                a.mix.answer_after = Duration::from_secs_f64(num(value()?, "--answer-after")?)
            }
            "--busy" => a.mix.busy = share(value()?, "--busy")?,
            "--no-answer" => a.mix.no_answer = share(value()?, "--no-answer")?,
            "--unavailable" => a.mix.unavailable = share(value()?, "--unavailable")?,
            "--min-success" => a.min_success = Some(share(value()?, "--min-success")?),
            "--find" => a.find = true,
            "--start" => a.start = num(value()?, "--start")?,
            "--step" => a.step = Duration::from_secs_f64(num(value()?, "--step")?),
            "--max" => a.max = num(value()?, "--max")?,
            "--floor" => a.floor = Some(num(value()?, "--floor")?),
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
        refused = a.mix.busy + a.mix.no_answer + a.mix.unavailable;
    }
    if refused > 1.0 {
        return Err(format!(
            "--busy + --no-answer + --unavailable is {refused}, more than 1"
        ));
    }
    a.mix.answer = 1.0 - refused;
    if a.cps <= 0.0 || a.start <= 0.0 {
        return Err("--cps and --start must be above 0".into());
    }
    Ok(Some(a))
}

/// The carrier and the destination on their sockets, driven by the wall clock.
struct Drill {
    carrier: Carrier,
    carrier_sock: UdpSocket,
    dest: Option<(Destination, UdpSocket)>,
    buf: Vec<u8>,
}

impl Drill {
    fn new(a: &Args) -> Result<Drill, String> {
        let carrier_sock =
            UdpSocket::bind(a.local).map_err(|e| format!("bind {}: {e}", a.local))?;
        let local = carrier_sock.local_addr().map_err(|e| e.to_string())?;
        carrier_sock
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let dest = match a.destination {
            Some(addr) => {
                let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                let d =
                    Destination::new(s.local_addr().map_err(|e| e.to_string())?, a.mix.clone(), 7);
                Some((d, s))
            }
            None => None,
        };
        let carrier = Carrier::new(CarrierConfig {
            local,
            targets: vec![a.target],
            profile: a.profile.clone(),
            dialled: (0..100).map(|n| format!("+1800555{n:04}")).collect(),
            hold: a.hold,
            seed: 1,
        });
        Ok(Drill {
            carrier,
            carrier_sock,
            dest,
            buf: vec![0; 65_535],
        })
    }

    /// Runs until `until`: receives, runs timers, sends; sleeps at most 1 ms at a time.
    fn run_until(&mut self, until: Instant) {
        loop {
            let now = Instant::now();
            pump(&mut self.carrier, &self.carrier_sock, &mut self.buf, now);
            if let Some((d, s)) = &mut self.dest {
                pump(d, s, &mut self.buf, now);
            }
            if now >= until {
                return;
            }
            let next = [
                self.carrier.poll_timeout(),
                self.dest.as_mut().and_then(|(d, _)| d.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .fold(until, Instant::min);
            std::thread::sleep(
                next.saturating_duration_since(now)
                    .min(Duration::from_millis(1)),
            );
        }
    }

    /// Offers calls at `cps` for `length`, printing a live line each second; returns
    /// the calls offered and the setup times of those answered (waiting up to 10 s
    /// after the last offer for calls still ringing).
    fn offer(&mut self, cps: f64, length: Duration, label: &str) -> (u64, Vec<Duration>) {
        let start = Instant::now();
        let before = self.carrier.stats().calls;
        let _ = self.carrier.take_setup_times();
        let mut setups = Vec::new();
        let mut offered = 0u64;
        let total = (cps * length.as_secs_f64()).round() as u64;
        let gap = Duration::from_secs_f64(1.0 / cps);
        let mut next_line = start + Duration::from_secs(1);
        let deadline = start + length + Duration::from_secs(10);
        loop {
            let now = Instant::now();
            while offered < total && start + gap * offered as u32 <= now {
                self.carrier.start_call(now);
                offered += 1;
            }
            let settled = offered == total && self.carrier.calls_in_progress() == 0;
            if settled || now >= deadline {
                break;
            }
            if now >= next_line {
                setups.extend(self.carrier.take_setup_times());
                live_line(
                    label,
                    now - start,
                    offered,
                    setups.len(),
                    self.carrier.stats(),
                );
                next_line += Duration::from_secs(1);
            }
            let next_call = if offered < total {
                start + gap * offered as u32
            } else {
                now + Duration::from_millis(50)
            };
            self.run_until(next_call.min(next_line));
        }
        setups.extend(self.carrier.take_setup_times());
        live_line(
            label,
            start.elapsed(),
            offered,
            setups.len(),
            self.carrier.stats(),
        );
        eprintln!();
        (self.carrier.stats().calls - before, setups)
    }
}

/// Feeds an actor what its socket received, runs its timers and sends what it wants.
fn pump(actor: &mut impl Actor, sock: &UdpSocket, buf: &mut [u8], now: Instant) {
    loop {
        match sock.recv_from(buf) {
            Ok((n, from)) => actor.handle_datagram(now, from, &buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // ICMP port unreachable surfaces as ConnectionRefused on Linux: the target
            // is not up (yet); the carrier's own timers deal with it.
            Err(_) => break,
        }
    }
    if actor.poll_timeout().is_some_and(|t| t <= now) {
        actor.handle_timeout(now);
    }
    while let Some(out) = actor.poll_transmit() {
        let _ = sock.send_to(&out.bytes, out.to);
    }
}

fn live_line(label: &str, t: Duration, offered: u64, answered: usize, s: &CarrierStats) {
    eprint!(
        "\r{label} [{:>4.0}s] offered {offered:>6}  answered {answered:>6}  503s {:>5}  \
         retransmissions {:>5}  in progress {:>4}   ",
        t.as_secs_f64(),
        s.got_503,
        s.retransmissions,
        s.calls.saturating_sub(s.answered + s.busy + s.failed),
    );
    let _ = std::io::stderr().flush();
}

fn summary(a: &Args, s: &CarrierStats) {
    let pct = |n: u64| 100.0 * n as f64 / s.calls.max(1) as f64;
    println!("profile {} -> {}", a.profile.name, a.target);
    println!("  calls offered       {:>8}", s.calls);
    println!(
        "  attempts            {:>8}  ({:.2} per call)",
        s.attempts,
        s.attempts as f64 / s.calls.max(1) as f64
    );
    println!("  retransmissions     {:>8}", s.retransmissions);
    println!(
        "  answered            {:>8}  {:5.1}%",
        s.answered,
        pct(s.answered)
    );
    println!("  busy                {:>8}  {:5.1}%", s.busy, pct(s.busy));
    println!(
        "  failed              {:>8}  {:5.1}%",
        s.failed,
        pct(s.failed)
    );
    println!("  503s received       {:>8}", s.got_503);
    println!(
        "  setup mean / max    {:>8.1} ms / {:.1} ms",
        s.setup_mean().as_secs_f64() * 1e3,
        s.setup_max.as_secs_f64() * 1e3
    );
}

fn run(a: Args) -> Result<ExitCode, String> {
    let mut drill = Drill::new(&a)?;
    if !a.find {
        let (offered, setups) = drill.offer(a.cps, a.duration, "drill");
        summary(&a, drill.carrier.stats());
        let share = setups.len() as f64 / offered.max(1) as f64;
        if let Some(min) = a.min_success
            && share < min
        {
            println!(
                "FAIL: {:.1}% answered, below {:.1}%",
                share * 100.0,
                min * 100.0
            );
            return Ok(ExitCode::from(1));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut finder = CapacityFinder::new(FinderConfig {
        start_cps: a.start,
        step: a.step,
        max_cps: a.max,
        ..FinderConfig::default()
    });
    println!(
        "{:>10} {:>8} {:>8} {:>9} {:>10}  verdict",
        "rate/s", "offered", "answered", "success", "p95 setup"
    );
    let report = loop {
        let rate = finder.current();
        let (offered, setups) = drill.offer(rate, finder.config().step, &format!("{rate:>7.1}/s"));
        let step = StepResult::new(rate, offered, setups);
        let ok = finder.sustained(&step);
        println!(
            "{:>10.1} {:>8} {:>8} {:>8.1}% {:>8.0}ms  {}",
            rate,
            step.offered,
            step.answered,
            step.success() * 100.0,
            step.p95_setup.as_secs_f64() * 1e3,
            if ok { "sustained" } else { "not sustained" }
        );
        match finder.observe(step) {
            Next::Try(_) => {
                // Let the target settle between steps (calls end, limits recover).
                drill.run_until(Instant::now() + Duration::from_secs(2));
            }
            Next::Done(r) => break r,
        }
    };
    summary(&a, drill.carrier.stats());
    println!("sustainable rate: {:.1} calls/s", report.sustainable_cps);
    if let Some(floor) = a.floor
        && report.sustainable_cps < floor
    {
        println!("FAIL: below the expected floor of {floor:.1} calls/s");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(a)) => match run(a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("drill: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("drill: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
