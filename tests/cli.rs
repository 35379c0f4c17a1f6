//! The command-line tool end to end: exit codes of the checks, the embedded vectors, and the
//! signature helper against Pusher's published example.
#![cfg(feature = "cli")]

use std::fs;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("domvia-calls-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn schemas_check_passes_on_the_repository_and_fails_on_drift() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let ok = bin()
        .args(["schemas", "check", "--dir"])
        .arg(format!("{repo}/schemas"))
        .output()
        .unwrap();
    assert!(ok.status.success());

    let dir = temp_dir("schemas");
    let written = bin()
        .args(["schemas", "write", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(written.status.success());
    let check = || {
        bin()
            .args(["schemas", "check", "--dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    assert!(check().status.success());
    let file = dir.join("call.offer.json");
    let edited = fs::read_to_string(&file)
        .unwrap()
        .replace("\"sdp\"", "\"sdp2\"");
    fs::write(&file, edited).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("call.offer.json"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn embedded_vectors_are_the_committed_ones() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let embedded = bin().arg("vectors").output().unwrap();
    let on_disk = bin()
        .args(["vectors", "--dir"])
        .arg(format!("{repo}/conformance/vectors"))
        .output()
        .unwrap();
    assert!(embedded.status.success() && on_disk.status.success());
    assert_eq!(
        String::from_utf8_lossy(&embedded.stdout),
        String::from_utf8_lossy(&on_disk.stdout),
        "a vector file was added or changed without updating EMBEDDED_VECTORS"
    );
}

#[test]
fn the_default_command_is_the_conformance_suite_and_check_the_self_check() {
    let out = bin().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Diagnostics on standard error, results on standard output.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("testing the embedded reference servers"),
        "{err}"
    );
    let results = String::from_utf8_lossy(&out.stdout);
    assert!(results.contains(" pass"), "{results}");
    assert!(results.contains(" cases in "), "{results}");
    let out = bin().arg("check").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("check: ok"));
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = bin().args(["check", "--root", repo]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn vector_failures_give_exit_code_one() {
    let dir = temp_dir("vectors");
    fs::write(
        dir.join("bad.json"),
        r#"{"groups":[{"op":"parse_channel_name","cases":[{"id":"x","name":"private-call.a.b.c","error":"channel.scope.empty"}]}]}"#,
    )
    .unwrap();
    let out = bin().args(["vectors", "--dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL bad.json/parse_channel_name/x"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sign_reproduces_and_verifies_pusher_presence_example() {
    let out = bin()
        .args([
            "sign",
            "presence",
            "--key",
            "278d425bdf160c739803",
            "--socket-id",
            "1234.1234",
            "--channel",
            "presence-foobar",
            "--channel-data",
            r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#,
            "--verify",
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c",
        ])
        .env("DOMVIA_APP_SECRET", "7ad3773142a6692b25b8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("verify:         OK"));
    assert!(
        !stdout.contains("7ad3773142a6692b25b8"),
        "the secret must not be printed"
    );
}

#[test]
fn sign_reports_a_mismatch_with_its_code() {
    let out = bin()
        .args([
            "sign",
            "private",
            "--key",
            "k",
            "--secret",
            "s",
            "--socket-id",
            "1.2",
            "--channel",
            "private-call.room.a.b",
            "--verify",
            "k:00",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[signature.mismatch]"));
}

#[test]
fn sign_http_round_trips_through_verify() {
    let signed = bin()
        .args([
            "sign",
            "http",
            "--key",
            "k",
            "--secret",
            "s",
            "--path",
            "/apps/1/events",
            "--body",
            "{}",
            "--timestamp",
            "1000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&signed.stdout);
    let query = stdout
        .lines()
        .find_map(|l| l.strip_prefix("query:"))
        .unwrap()
        .trim()
        .to_owned();
    let verify = |now: &str| {
        bin()
            .args([
                "sign",
                "http",
                "--key",
                "k",
                "--secret",
                "s",
                "--path",
                "/apps/1/events",
                "--body",
                "{}",
                "--verify-query",
                &query,
                "--now",
                now,
            ])
            .output()
            .unwrap()
            .status
    };
    assert!(verify("1100").success());
    assert_eq!(verify("1601").code(), Some(1));
}

#[test]
fn bad_usage_exits_two() {
    let out = bin()
        .args([
            "sign",
            "private",
            "--key",
            "k",
            "--secret",
            "s",
            "--socket-id",
            "nope",
            "--channel",
            "c",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("socket_id"));
}

#[cfg(all(feature = "media", feature = "trusted"))]
#[test]
fn call_with_no_flags_makes_a_real_call_and_shows_the_record() {
    let out = bin()
        .args(["call", "--seconds", "0"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "alice ICE connected",
        "alice DTLS up: media can flow",
        "alice data channel open (SCTP up)",
        "bob   first RTP packet",
        "echo:ping",
        "\"end_reason\": \"hangup\"",
        "\"accepted_by\": \"bob\"",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

/// `serve` on ephemeral ports with `extra` flags; returns the process and the realtime and trusted
/// addresses it printed.
#[cfg(feature = "trusted")]
fn spawn_serve(data: &std::path::Path, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut args: Vec<std::ffi::OsString> = [
        "--bind",
        "127.0.0.1:0",
        "--trusted-bind",
        "127.0.0.1:0",
        "--data-dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(data.into());
    args.extend(extra.iter().map(Into::into));
    let (serve, addrs, _) = serve_with(&args);
    (serve, addrs)
}

/// `serve ARGS` (role both); returns the process, the addresses it listens on, and its banner up
/// to the last line (the `conform` command that tests it).
#[cfg(feature = "trusted")]
fn serve_with(args: &[std::ffi::OsString]) -> (std::process::Child, Vec<String>, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut serve = bin()
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let (mut addrs, mut banner) = (Vec::new(), Vec::new());
    loop {
        let line = lines.next().expect("serve prints its banner").unwrap();
        if let Some((_, a)) = line.split_once(" server listening on ") {
            addrs.push(a.trim().to_owned());
        }
        banner.push(line.clone());
        if line.contains("domvia-calls conform") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (serve, addrs, banner)
}

/// A plain HTTP/1.0 GET; returns the status code and the body.
#[cfg(feature = "trusted")]
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[cfg(feature = "trusted")]
#[test]
fn serve_serves_the_demo_page_with_the_configured_pusher_js() {
    let data = temp_dir("serve-demo");
    let bundle = data.join("pusher.min.js");
    fs::write(&bundle, "/* a pusher-js build */").unwrap();
    let (mut serve, addrs) = spawn_serve(
        &data,
        &[
            "--pusher-js",
            bundle.to_str().unwrap(),
            "--public-realtime-url",
            "http://calls.example.test:7001",
        ],
    );
    let trusted = &addrs[1];
    // The bare address leads to the demo page.
    let (status, _) = http_get(trusted, "/");
    assert_eq!(status, 303);
    let (status, page) = http_get(trusted, "/demo/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>domvia-calls demo</title>") && page.contains("/demo/call.js"));
    let (status, script) = http_get(trusted, "/demo/call.js");
    assert_eq!(status, 200);
    assert!(script.contains("window.domvia"));
    assert_eq!(
        http_get(trusted, "/demo/pusher.min.js"),
        (200, "/* a pusher-js build */".to_owned())
    );
    let (status, config) = http_get(trusted, "/demo/config");
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["realtime"],
        serde_json::json!({"host": "calls.example.test", "port": 7001, "key": "domvia-key", "tls": false})
    );
    serve.kill().unwrap();
    serve.wait().unwrap();

    // Without pusher-js the page still loads, and the bundle's 404 says how to get it.
    fs::remove_file(&bundle).unwrap();
    let (mut serve, addrs) = spawn_serve(&data, &["--pusher-js", bundle.to_str().unwrap()]);
    let (status, body) = http_get(&addrs[1], "/demo/pusher.min.js");
    assert_eq!(status, 404);
    assert!(body.contains("cannot read pusher-js"), "{body}");
    serve.kill().unwrap();
    serve.wait().unwrap();
    fs::remove_dir_all(data).unwrap();
}

#[cfg(all(feature = "media", feature = "trusted"))]
#[test]
fn call_joins_a_deployment_as_either_party() {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Stdio};

    let data = temp_dir("call-join");
    let (mut serve, addrs) = spawn_serve(&data, &[]);
    let party = |user: &str, extra: &[&str]| -> Child {
        bin()
            .args([
                "call",
                "--realtime-url",
                &format!("ws://{}/app/domvia-key", addrs[0]),
            ])
            .args(["--trusted-url", &format!("http://{}", addrs[1])])
            .args([
                "--token",
                &format!("{user}-token"),
                "--user",
                user,
                "--seconds",
                "0",
            ])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut bob = party("bob", &[]);
    let mut bob_out = BufReader::new(bob.stdout.take().unwrap()).lines();
    let ready = bob_out.next().unwrap().unwrap();
    assert!(ready.contains("inbox open"), "{ready}");
    let alice = party("alice", &["--to", "bob"]).wait_with_output().unwrap();
    let alice_out = String::from_utf8_lossy(&alice.stdout);
    assert!(
        alice.status.success(),
        "{alice_out}{}",
        String::from_utf8_lossy(&alice.stderr)
    );
    assert!(alice_out.contains("media up"), "{alice_out}");
    let bob_rest: Vec<String> = bob_out.map(|l| l.unwrap()).collect();
    assert!(bob.wait().unwrap().success());
    assert!(
        bob_rest.iter().any(|l| l.contains("media up")),
        "{bob_rest:?}"
    );
    serve.kill().unwrap();
    serve.wait().unwrap();
    fs::remove_dir_all(data).unwrap();
}

#[test]
fn conform_lists_cases_with_their_requirements() {
    let out = bin().args(["conform", "--list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("client_events.no-echo "))
        .expect("the no-echo case is listed");
    assert!(line.contains("TRN-031") && line.contains("must"), "{line}");
    assert!(text.lines().count() > 80);
}

#[test]
fn conform_writes_reports_and_catches_a_stale_known_failing_list() {
    let dir = temp_dir("conform");
    let out = bin()
        .args([
            "conform",
            "--only",
            "connection",
            "--only",
            "authorization.private-*",
        ])
        .arg("--report-json")
        .arg(dir.join("r.json"))
        .arg("--junit")
        .arg(dir.join("r.xml"))
        .arg("--html")
        .arg(dir.join("r.html"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.iter().all(|c| {
        let id = c["id"].as_str().unwrap();
        id.starts_with("connection.") || id.starts_with("authorization.private-")
    }));
    assert!(
        cases
            .iter()
            .any(|c| c["id"] == "connection.ping-pong" && c["verdict"] == "pass")
    );
    let xml = fs::read_to_string(dir.join("r.xml")).unwrap();
    assert!(xml.contains("<testsuite name=\"connection\""), "{xml}");
    let html = fs::read_to_string(dir.join("r.html")).unwrap();
    assert!(html.contains("connection.ping-pong") && html.starts_with("<!doctype html>"));

    // A listed case that passes is `fixed`, which fails the run so stale lists are noticed.
    fs::write(
        dir.join("known"),
        "connection.ping-pong # pretend it was broken\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "conform",
            "--only",
            "connection.ping-pong",
            "--known-failing",
        ])
        .arg(dir.join("known"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fixed"));

    // An expected-results file that disagrees fails the run and names the case.
    fs::write(
        dir.join("expected.json"),
        r#"{"connection.ping-pong": "fail"}"#,
    )
    .unwrap();
    let out = bin()
        .args(["conform", "--only", "connection.ping-pong", "--expected"])
        .arg(dir.join("expected.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("connection.ping-pong was fail and is now pass")
    );
}

#[test]
fn serve_refuses_development_secrets_on_a_reachable_address() {
    let dir = std::env::temp_dir().join(format!("domvia-cli-devsecrets-{}", std::process::id()));
    let out = bin()
        .args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--trusted-bind",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("development app secret") && err.contains("--allow-dev-secrets"),
        "{err}"
    );
    // On loopback only, the development setup starts as before (covered by the other serve
    // tests); nothing was created for the refused one.
    assert!(!dir.join("calls.db").exists());
}

/// The first hour: `serve` prints the `conform` command that tests it; that command passes as
/// printed, and each wrong setting stops the run at the preflight with one message naming the
/// setting to fix (exit 2) instead of failing dozens of cases.
#[cfg(feature = "conform")]
#[test]
fn serve_prints_a_conform_command_that_passes_and_wrong_settings_are_named() {
    let data = temp_dir("first-hour");
    let args: Vec<std::ffi::OsString> = vec![
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--trusted-bind".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data.clone().into(),
    ];
    let (mut serve, _, banner) = serve_with(&args);
    let command = banner.last().unwrap().clone();
    let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    let (env, rest) = words.split_first().unwrap();
    let (var, secret) = env.split_once('=').unwrap();
    assert_eq!(var, "DOMVIA_CONFORM_SECRET");
    assert_eq!(rest[0], "domvia-calls");
    let args = &rest[1..];
    let run = |args: &[String], secret: &str| {
        bin()
            .args(args)
            .env("DOMVIA_CONFORM_SECRET", secret)
            .output()
            .unwrap()
    };
    let passed = run(args, secret);
    let stdout = String::from_utf8_lossy(&passed.stdout);
    assert!(
        passed.status.success(),
        "the printed command passes:\n{stdout}\n{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    assert!(stdout.contains(" pass "), "results go to stdout:\n{stdout}");

    let with = |flag: &str, value: &str| -> Vec<String> {
        let mut a = args.to_vec();
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = value.to_owned();
        a
    };
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut misconfigured = vec![
        (with("--key", "not-the-key"), secret.to_owned(), "--key"),
        (
            args.to_vec(),
            "not-the-secret".to_owned(),
            "DOMVIA_CONFORM_SECRET",
        ),
        (
            with("--target", &format!("ws://127.0.0.1:{closed_port}")),
            secret.to_owned(),
            "--target",
        ),
        (
            with("--app-id", "not-the-app"),
            secret.to_owned(),
            "--app-id",
        ),
        (
            with("--user", "alice=not-her-token"),
            secret.to_owned(),
            "--user alice=TOKEN",
        ),
    ];
    let mut webhooks = args.to_vec();
    webhooks.extend(["--webhook-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    misconfigured.push((webhooks, secret.to_owned(), "webhook URL"));
    for (args, secret, named) in misconfigured {
        let out = run(&args, &secret);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{named}: {stderr}");
        assert!(
            stderr.contains("preflight:") && stderr.contains(named),
            "the message names {named}:\n{stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("fail"),
            "no case ran"
        );
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = fs::remove_dir_all(&data);
}

/// The example configurations work as their comments say: `serve --config examples/serve.toml`
/// starts both servers (two realtime addresses), and `conform --config` with
/// `examples/conform.toml` and `examples/conform-cluster.toml` passes against them. Ports and
/// paths are moved to free ones and a temporary directory; nothing else is changed.
#[cfg(feature = "conform")]
#[test]
fn example_configs_start_the_servers_and_test_them() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = temp_dir("examples");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let (rt, rt2, tr) = (free(), free(), free());
    let moved = |name: &str| {
        let text = fs::read_to_string(repo.join("examples").join(name))
            .unwrap()
            .replace("127.0.0.1:6001", &format!("127.0.0.1:{rt}"))
            .replace("127.0.0.1:6002", &format!("127.0.0.1:{rt2}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{tr}"))
            .replace("\"domvia-data\"", &format!("{:?}", dir.join("data")))
            .replace(
                "\"examples/users.toml\"",
                &format!("{:?}", repo.join("examples/users.toml")),
            );
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let secret = "replace-with-a-long-random-secret";
    let (mut serve, _, _) = serve_with(&["--config".into(), moved("serve.toml").into()]);
    for (config, only) in [
        (
            "conform.toml",
            &["connection", "authorization", "trusted.auth.*"][..],
        ),
        ("conform-cluster.toml", &["cluster"][..]),
    ] {
        let out = bin()
            .args(["conform", "--config"])
            .arg(moved(config))
            .args(only.iter().flat_map(|o| ["--only", o]))
            .env("DOMVIA_CONFORM_SECRET", secret)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{config}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" pass "), "{config} ran cases:\n{stdout}");
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_client_role_cases_are_listed_and_an_empty_selection_is_refused() {
    let out = bin()
        .args(["conform", "--list", "--client", "rust"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(listed.contains("client.glare.yields"), "{listed}");
    assert!(!listed.contains("connection.established"), "{listed}");
    let out = bin()
        .args(["conform", "--client", "rust", "--only", "client.glare.*x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no client-role case matches") && stderr.contains("--list --client rust"),
        "{stderr}"
    );
}
