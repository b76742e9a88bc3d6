//! The C ABI from C, under sanitizers.
//!
//! * `tests/c/abi_test.c` (every function in `include/ringfence.h`) is compiled with
//!   `-std=c11 -Wall -Wextra -Werror -pedantic` and ASan + UBSan against the static
//!   library this very test build produced, then run with LeakSanitizer: it must pass
//!   and leak nothing. Where LeakSanitizer cannot run (it needs ptrace, which some
//!   sandboxes forbid) the test says so and runs the program under
//!   `valgrind --leak-check=full --error-exitcode=1` instead.
//! * `examples/c/router.c` is compiled with the same flags; `--help` exits 0, an unknown
//!   flag exits 2, a bad config names the line, and one call goes through it over UDP on
//!   127.0.0.1 and its `--metrics` HTTP side answers, before SIGINT makes it print its
//!   summary and exit 0.
//!
//! A C compiler is required: without `cc` (or `$CC`) the test fails, it does not skip.
//! `RINGFENCE_LEAK_CHECK=valgrind` forces the valgrind path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const WARNINGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"];
const SANITIZERS: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];
/// What the Rust static library needs from the system (`--print native-static-libs`).
const NATIVE_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// Writes to the real stderr, past the test harness's capture, so the log of a passing
/// run still says which leak checker ran.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "c_abi: {msg}");
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_abi");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

fn cc() -> String {
    std::env::var("CC")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cc".into())
}

/// Fails (never skips) when there is no C compiler.
fn require_cc() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| match Command::new(cc()).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{} --version` failed ({}): the C ABI tests need a working C compiler",
            cc(),
            o.status
        ),
        Err(e) => panic!(
            "no C compiler: could not run `{}` ({e}). The C ABI tests need one: install gcc \
             (Debian: apt-get install gcc) or set CC",
            cc()
        ),
    });
}

/// The profile directory this test binary was built into: `<target>/<profile>/deps/c_abi-…`
/// → `<target>/<profile>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test binary is in a directory");
    assert_eq!(
        deps.file_name().and_then(|n| n.to_str()),
        Some("deps"),
        "unexpected test binary location {}",
        exe.display()
    );
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// The static library of this build. `cargo test` compiles the library with every crate
/// type in Cargo.toml (rlib, staticlib, cdylib) for the integration tests, into
/// `<target>/<profile>/deps/` (without the hash suffix, because of the cdylib), but
/// does not copy them up to `<target>/<profile>/` as `cargo build` does. So the archive
/// built for this very test run is `deps/libringfence.a`. Should it be missing (another
/// cargo), it is built with `cargo build --lib` into the same target directory.
fn staticlib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = profile_dir();
        let fresh = dir.join("deps").join("libringfence.a");
        if fresh.is_file() {
            return fresh;
        }
        let lib = dir.join("libringfence.a");
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        // <target>/<profile>, or <target>/<triple>/<profile> when cross-building.
        let mut target_dir = dir
            .parent()
            .expect("profile dir has a parent")
            .to_path_buf();
        let mut triple = None;
        if !target_dir.join("CACHEDIR.TAG").exists()
            && target_dir
                .parent()
                .is_some_and(|p| p.join("CACHEDIR.TAG").exists())
        {
            triple = target_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned);
            target_dir = target_dir.parent().expect("checked").to_path_buf();
        }
        note(&format!(
            "{} is missing (this cargo did not build the staticlib for the tests): \
             building {} with cargo build --lib",
            fresh.display(),
            lib.display()
        ));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "--lib"])
            .env("CARGO_TARGET_DIR", &target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        if let Some(t) = triple {
            cmd.args(["--target", &t]);
        }
        let status = cmd.status().expect("run cargo build --lib");
        assert!(status.success(), "cargo build --lib failed: {status}");
        assert!(
            lib.is_file(),
            "cargo build --lib did not produce {}",
            lib.display()
        );
        lib
    })
}

fn show(o: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Compiles one C file against the static library.
fn compile(src: &str, out_name: &str, sanitize: bool) -> PathBuf {
    require_cc();
    let out = work_dir().join(out_name);
    let mut cmd = Command::new(cc());
    cmd.args(WARNINGS).args(["-g", "-O1"]);
    if sanitize {
        cmd.args(SANITIZERS);
    }
    cmd.arg("-I")
        .arg(root().join("include"))
        .arg(root().join(src))
        .arg(staticlib())
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&out);
    let o = cmd.output().expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {src} failed (warnings are errors):\n{}",
        show(&o)
    );
    out
}

const LSAN_FATAL: &[&str] = &[
    "LeakSanitizer has encountered a fatal error",
    "LeakSanitizer does not work under ptrace",
];

fn lsan_cannot_run(stderr: &str) -> bool {
    LSAN_FATAL.iter().any(|m| stderr.contains(m))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeakChecker {
    LeakSanitizer,
    Valgrind,
}

/// LeakSanitizer if it works here: a small program that leaks on purpose must get a
/// leak report. If LSan dies instead (ptrace not allowed) or says nothing, valgrind.
fn leak_checker() -> LeakChecker {
    static CHOICE: OnceLock<LeakChecker> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        if std::env::var("RINGFENCE_LEAK_CHECK").as_deref() == Ok("valgrind") {
            note("RINGFENCE_LEAK_CHECK=valgrind: using valgrind");
            return LeakChecker::Valgrind;
        }
        require_cc();
        let dir = work_dir();
        let src = dir.join("lsan_canary.c");
        std::fs::write(
            &src,
            "#include <stdlib.h>\n\
             static void *volatile sink;\n\
             int main(void) { sink = malloc(33); sink = 0; return 0; }\n",
        )
        .expect("write the canary");
        let exe = dir.join("lsan_canary");
        let o = Command::new(cc())
            .args(["-g", "-fsanitize=address"])
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("run the C compiler");
        assert!(
            o.status.success(),
            "the C compiler cannot build with -fsanitize=address (Debian: gcc brings \
             libasan; clang needs libclang-rt-dev):\n{}",
            show(&o)
        );
        let o = Command::new(&exe)
            .env("ASAN_OPTIONS", "detect_leaks=1")
            .output()
            .expect("run the canary");
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("ERROR: LeakSanitizer: detected memory leaks") {
            LeakChecker::LeakSanitizer
        } else {
            let why = if lsan_cannot_run(&err) {
                "LeakSanitizer cannot run here (it needs ptrace)"
            } else {
                "LeakSanitizer did not report a deliberate leak"
            };
            note(&format!(
                "{why}; falling back to valgrind. LSan said:\n{}",
                err.trim()
            ));
            LeakChecker::Valgrind
        }
    })
}

fn valgrind(exe: &Path) -> Output {
    match Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--error-exitcode=1",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--show-leak-kinds=definite,indirect,possible",
        ])
        .arg(exe)
        .env("RUST_BACKTRACE", "0")
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!(
            "LeakSanitizer cannot run here and valgrind is not available ({e}): \
             install valgrind (Debian: apt-get install valgrind)"
        ),
    }
}

#[test]
fn abi_test_c_passes_under_sanitizers_without_leaks() {
    let checker = leak_checker();
    let out = match checker {
        LeakChecker::LeakSanitizer => {
            let exe = compile("tests/c/abi_test.c", "abi_test", true);
            let o = Command::new(&exe)
                .env(
                    "ASAN_OPTIONS",
                    "detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1",
                )
                .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
                .env("RUST_BACKTRACE", "0")
                .output()
                .expect("run abi_test");
            if lsan_cannot_run(&String::from_utf8_lossy(&o.stderr)) {
                note("LeakSanitizer failed on abi_test; falling back to valgrind");
                valgrind(&compile("tests/c/abi_test.c", "abi_test_plain", false))
            } else {
                note("abi_test ran with ASan + UBSan + LeakSanitizer");
                o
            }
        }
        LeakChecker::Valgrind => {
            let exe = compile("tests/c/abi_test.c", "abi_test_plain", false);
            note("abi_test ran under valgrind --leak-check=full");
            valgrind(&exe)
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "abi_test failed:\n{}", show(&out));
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("abi_test: ") && last.ends_with(" passed, 0 failed"),
        "abi_test did not finish:\n{}",
        show(&out)
    );
    for bad in [
        "LeakSanitizer",
        "AddressSanitizer",
        "runtime error:",
        "definitely lost: ",
    ] {
        if bad == "definitely lost: " {
            // valgrind prints "definitely lost: 0 bytes in 0 blocks" on a clean run.
            for line in stderr.lines().filter(|l| l.contains(bad)) {
                assert!(
                    line.contains("lost: 0 bytes"),
                    "valgrind found leaks:\n{}",
                    show(&out)
                );
            }
            continue;
        }
        assert!(
            !stderr.contains(bad),
            "sanitizer report ({bad}):\n{}",
            show(&out)
        );
    }
    // The forced panic printed its message and the program carried on.
    assert!(
        stderr.contains("ringfence_selftest_panic"),
        "expected the selftest panic message on stderr:\n{}",
        show(&out)
    );
    note(last);
}

// ----- the C router ---------------------------------------------------------------

fn router() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile("examples/c/router.c", "router", true))
}

fn asan_env(cmd: &mut Command) -> &mut Command {
    let leaks = u8::from(leak_checker() == LeakChecker::LeakSanitizer);
    cmd.env(
        "ASAN_OPTIONS",
        format!("detect_leaks={leaks}:halt_on_error=1"),
    )
    .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
}

fn run_router(args: &[&str]) -> Output {
    asan_env(&mut Command::new(router()))
        .args(args)
        .output()
        .expect("run the C router")
}

fn no_sanitizer_report(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    for bad in ["Sanitizer", "runtime error:"] {
        assert!(!err.contains(bad), "sanitizer report:\n{}", show(o));
    }
}

#[test]
fn c_router_builds_clean_and_handles_its_flags() {
    let help = run_router(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", show(&help));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--config",
        "--for",
        "--metrics",
        "--quiet",
        "--help",
    ] {
        assert!(text.contains(flag), "usage lacks {flag}:\n{}", show(&help));
    }
    no_sanitizer_report(&help);

    let bogus = run_router(&["--bogus"]);
    assert_eq!(bogus.status.code(), Some(2), "{}", show(&bogus));
    let err = String::from_utf8_lossy(&bogus.stderr);
    assert!(
        err.contains("unknown argument \"--bogus\""),
        "{}",
        show(&bogus)
    );
    assert!(err.contains("usage: router"), "{}", show(&bogus));
    no_sanitizer_report(&bogus);

    for args in [
        &["--listen"][..],
        &["--listen", "localhost:5060"],
        &["--for", "soon"],
        &["--metrics", "nowhere"],
    ] {
        let o = run_router(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
    }

    // A bad config: exit 1 with the ABI's message naming the line.
    let cfg = work_dir().join("bad_router.toml");
    std::fs::write(&cfg, "seed = 1\n\n[routing]\ndefault_route = [\"nope\"]\n").unwrap();
    let o = run_router(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("default_route") && err.contains("line 4"),
        "{}",
        show(&o)
    );
    no_sanitizer_report(&o);

    let o = run_router(&["--config", "/nonexistent/ringfence.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

/// Kills the router if the test fails before it exits.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        assert!(
            Instant::now() < end,
            "the router did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn recv_text(sock: &UdpSocket, what: &str) -> String {
    let mut buf = [0u8; 65535];
    let (n, _) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receives until a message starting with `prefix` (skipping e.g. 100 Trying).
fn recv_starting(sock: &UdpSocket, prefix: &str) -> String {
    for _ in 0..10 {
        let m = recv_text(sock, prefix);
        if m.starts_with(prefix) {
            return m;
        }
    }
    panic!("no message starting with {prefix:?}");
}

/// A response to `req` as a UAS builds it: Via, From, To (+tag), Call-ID, CSeq and
/// Record-Route copied.
fn response(req: &str, status: &str, contact: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" | "record-route" => {
                out += line;
                out += "\r\n";
            }
            "to" | "t" => {
                out += line;
                if !line.contains(";tag=") {
                    out += ";tag=callee-1";
                }
                out += "\r\n";
            }
            _ => {}
        }
    }
    out += &format!("Contact: <sip:callee@{contact}>\r\nContent-Length: 0\r\n\r\n");
    out
}

/// One GET over a fresh connection; the whole response (the router closes it).
fn http_get(addr: &str, path: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to --metrics");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // One write: `write!` on an unbuffered stream sends each piece separately.
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp)
        .expect("read the HTTP response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    assert_eq!(body.len(), len, "Content-Length matches the body:\n{resp}");
    resp
}

#[test]
fn c_router_routes_a_call_over_loopback_and_exits_on_sigint() {
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&callee, &caller] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let callee_addr = callee.local_addr().unwrap();
    let caller_addr = caller.local_addr().unwrap();
    let cfg = work_dir().join("loopback_router.toml");
    std::fs::write(
        &cfg,
        format!("seed = 1\n\n[routing]\ndefault_route = [\"{callee_addr}\"]\n"),
    )
    .unwrap();

    let child = asan_env(&mut Command::new(router()))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--for",
            "30",
            "--quiet",
            "--metrics",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the C router");
    let mut child = Reaper(Some(child));
    let c = child.0.as_mut().unwrap();
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // "ringfence router listening on 127.0.0.1:PORT (Ctrl-C to stop)"
    let router_addr = first
        .strip_prefix("ringfence router listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    // "metrics on http://127.0.0.1:PORT/metrics, bypass signal on /bypass"
    let metrics_addr = second
        .strip_prefix("metrics on http://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("unexpected second line {second:?}"))
        .to_owned();
    first += &second;

    // OPTIONS: answered by the engine itself.
    let opt = format!(
        "OPTIONS sip:{router_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {caller_addr};branch=z9hG4bKopt1\r\n\
         From: <sip:probe@{caller_addr}>;tag=p1\r\nTo: <sip:{router_addr}>\r\n\
         Call-ID: opt1@c-abi\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(opt.as_bytes(), &router_addr).unwrap();
    assert!(recv_text(&caller, "the OPTIONS answer").starts_with("SIP/2.0 200 "));

    // INVITE → forwarded to the callee → 200 relayed back to the caller.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let inv = format!(
        "INVITE sip:+18005550199@{router_addr} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {caller_addr};branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n\
         From: <sip:+14155550123@{caller_addr}>;tag=c1\r\nTo: <sip:+18005550199@{router_addr}>\r\n\
         Call-ID: inv1@c-abi\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{caller_addr}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    caller.send_to(inv.as_bytes(), &router_addr).unwrap();
    let fwd = recv_starting(&callee, "INVITE ");
    assert!(
        fwd.starts_with(&format!(
            "INVITE sip:+18005550199@{callee_addr} SIP/2.0\r\n"
        )),
        "{fwd}"
    );
    assert!(
        fwd.contains(&format!("Record-Route: <sip:{router_addr};lr>")),
        "{fwd}"
    );
    assert!(fwd.ends_with(sdp), "body forwarded untouched:\n{fwd}");
    let ok = response(&fwd, "200 OK", &callee_addr.to_string());
    callee.send_to(ok.as_bytes(), &router_addr).unwrap();
    let up = recv_starting(&caller, "SIP/2.0 200 ");
    assert!(up.contains("branch=z9hG4bKinv1"), "{up}");
    assert_eq!(
        up.lines().filter(|l| l.starts_with("Via:")).count(),
        1,
        "the router's Via popped:\n{up}"
    );

    // The HTTP side: Prometheus text, the bypass signal, the node report, 404.
    let metrics = http_get(&metrics_addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(
        metrics.contains("\nringfence_calls_total{outcome=\"answered\"} 1\n"),
        "{metrics}"
    );
    let bypass = http_get(&metrics_addr, "/bypass");
    assert!(
        bypass.contains("\r\n\r\nv=1 state=healthy bypass=0 "),
        "{bypass}"
    );
    let report = http_get(&metrics_addr, "/report");
    assert!(
        report.contains(&format!("\r\n\r\nv=1 node={router_addr} ")),
        "{report}"
    );
    assert!(http_get(&metrics_addr, "/nope").starts_with("HTTP/1.1 404 "));

    // SIGINT: summary, exit 0, no leak report. (The shell's builtin kill: /bin/kill is
    // in procps, which a minimal Debian lacks.)
    let k = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", c.id())])
        .status()
        .expect("run sh");
    assert!(k.success(), "kill -INT failed: {k}");
    let status = wait_exit(c, Duration::from_secs(10));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    child.0 = None;
    let log = format!("exit: {status}\n--- stdout\n{first}{rest}\n--- stderr\n{err}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(rest.contains("--- summary after "), "{log}");
    assert!(
        rest.contains("calls started 1  answered 1  rejected 0"),
        "{log}"
    );
    assert!(
        rest.contains("datagrams 3  requests 2  responses 1"),
        "{log}"
    );
    // Read from ringfence_stats (no longer scraped from the Prometheus text).
    assert!(
        rest.contains("  no answer 0  superseded 0  ended 0\n"),
        "{log}"
    );
    assert!(rest.contains("forwarded 1  failovers 0  "), "{log}");
    assert!(
        rest.contains("responses sent 1xx 1 2xx 2 3xx 0 4xx 0 5xx 0 6xx 0\n"),
        "{log}"
    );
    for bad in ["Sanitizer", "runtime error:"] {
        assert!(!err.contains(bad), "sanitizer report:\n{log}");
    }
}
