//! The kit over TLS, end to end: the reference realtime server with a certificate from a private
//! CA, and the whole conformance suite run against it over `wss://` and `https://` (the HTTP
//! API, and the trusted server's own calls to it), trusting that CA the way `--ca-file` does. The
//! verdicts must equal those over plain `ws://`. A server whose CA is not trusted is refused.

mod common;

use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
use domvia_calls::conform::expected::Expected;
use domvia_calls::conform::verdict::diff_expected;
use domvia_calls::conform::{self, RunOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_servers_pass_over_wss_with_a_private_ca() {
    let (ca, cert, key) = common::tls::private_ca();
    domvia_calls::net::trust_ca_pem(ca.as_bytes(), "the test CA").unwrap();
    let embedded = Embedded::start(EmbeddedOptions {
        tls: Some((cert, key)),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    assert!(embedded.target.nodes[0].starts_with("wss://"));
    assert!(
        embedded
            .target
            .http_api
            .as_deref()
            .unwrap()
            .starts_with("https://")
    );
    let report = conform::run(
        embedded.target.clone(),
        &RunOptions::default(),
        Some(embedded.webhooks.clone()),
    )
    .await
    .unwrap();
    embedded.shutdown().await;
    let expected = Expected::parse(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("conformance/expected/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let changes = diff_expected(&expected.verdicts(), &report.verdicts());
    let detail: Vec<String> = report
        .cases
        .iter()
        .filter(|c| changes.iter().any(|x| x.case == c.id))
        .map(domvia_calls::conform::report::failure_text)
        .collect();
    assert!(
        changes.is_empty(),
        "over wss:// the verdicts differ from ws://: {changes:?}\n{}",
        detail.join("\n")
    );
}

#[tokio::test]
async fn a_server_whose_ca_is_not_trusted_is_refused() {
    // A CA this process never trusts: the handshake must fail, not fall back to plain text.
    let (_, cert, key) = common::tls::private_ca();
    let server = domvia_calls::server::start(domvia_calls::server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("wss://{}/app/domvia-key?protocol=7", server.addr());
    let Err(err) = domvia_calls::net::connect_websocket(&url).await else {
        panic!("an untrusted certificate is refused");
    };
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    server.shutdown().await;
}
