//! Proof that the kit catches real defects: the whole suite runs against the reference realtime
//! server with one deliberate defect at a time, and the case written for that rule must be among
//! the cases that do not pass. Prints the detection table.

use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
use domvia_calls::conform::{self, Level, RunOptions, Selection, Verdict};
use domvia_calls::realtime::Defect;
use std::io::Write as _;

/// The case that must catch each defect.
fn catcher(d: Defect) -> &'static str {
    match d {
        Defect::EchoToSender => "client_events.no-echo",
        Defect::SkipSignatureCheck => "authorization.private-bad-signature",
        Defect::AcceptOtherSocketSignature => "authorization.other-socket",
        Defect::RelayOnPublicChannels => "client_events.public-channel-refused",
        Defect::IgnoreRateLimit => "limits.client-event-rate",
        Defect::DropPresenceUserId => "presence.user-id-added",
        Defect::MemberEventsPerConnection => "presence.member-added-once-per-user",
        Defect::ReserializePayload => "client_events.byte-exact",
        Defect::CloseOnMalformedJson => "connection.survives-malformed-frame",
        Defect::NoPong => "connection.ping-pong",
        Defect::DeliverAfterUnsubscribe => "client_events.unsubscribe-stops-delivery",
        Defect::IgnoreHttpTimestamp => "http_api.stale-timestamp",
        Defect::IgnoreEventSizeLimit => "limits.event-data-size",
        Defect::BadWebhookSignature => "webhooks.signed",
        Defect::NodeLocalHubs => "cluster.client-event-across-nodes",
        Defect::SubscriptionErrorAsPusherError => "authorization.private-no-auth",
        Defect::NeverCloseSlowConsumer => "limits.slow-consumer",
        _ => unreachable!("every defect has a catcher"),
    }
}

/// Runs the suite against the reference server with defect `d`; returns whether the catcher
/// found it and the row of the detection table.
async fn run_with(d: Defect, opts: &RunOptions) -> (bool, String) {
    let embedded = Embedded::start(EmbeddedOptions {
        defect: Some(d),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    let report = conform::run(
        embedded.target.clone(),
        opts,
        Some(embedded.webhooks.clone()),
    )
    .await
    .unwrap();
    embedded.shutdown().await;
    let found: Vec<String> = report
        .cases
        .iter()
        .filter(|c| c.verdict.found_a_problem())
        .map(|c| format!("{} ({})", c.id, c.verdict))
        .collect();
    // Caught means the verdict the catcher's level gives a broken rule: `fail` for a MUST case,
    // `non_strict` for a SHOULD one; never `errored` (the kit could not tell).
    let caught = report.cases.iter().any(|c| {
        c.id == catcher(d)
            && match c.level {
                Level::Must => c.verdict == Verdict::Fail,
                Level::Should => c.verdict == Verdict::NonStrict,
                Level::Info => false,
            }
    });
    let row = format!(
        "{:<30} {:<6} {} of {} cases: {}",
        d.name(),
        if caught { "caught" } else { "MISSED" },
        found.len(),
        report.cases.len(),
        found.join(", ")
    );
    (caught, row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deliberate_defect_is_caught_by_its_case() {
    // Every area a realtime defect can show in, except those whose inputs are many and slow to
    // time out against a broken server (hostile input, WebRTC, the trusted server's flows); the
    // self-test runs those against the correct server.
    let opts = RunOptions {
        selection: Selection {
            skip: vec!["hostile".into(), "webrtc".into(), "trusted".into()],
            ..Selection::default()
        },
        ..RunOptions::default()
    };
    let mut results = Vec::new();
    // A few variants at a time: each has its own servers on its own ports.
    for group in Defect::ALL.chunks(4) {
        let runs = group.iter().map(|d| run_with(*d, &opts));
        let done = futures_util::future::join_all(runs).await;
        // Progress, past the harness's capture: the whole table takes minutes, and a plain
        // `cargo test` would otherwise say nothing all that time.
        for (_, row) in &done {
            let _ = writeln!(std::io::stderr(), "defects: {row}");
        }
        results.extend(done);
    }
    let caught = results.iter().filter(|(c, _)| *c).count();
    println!(
        "defect detection: {caught} of {} defects caught by their case",
        Defect::ALL.len()
    );
    for (_, row) in &results {
        println!("{row}");
    }
    let missed: Vec<&String> = results.iter().filter(|(c, _)| !c).map(|(_, r)| r).collect();
    assert!(
        missed.is_empty(),
        "defects not caught by their case:\n{missed:#?}"
    );
}

/// The reference client passes every client-role case through its driver, and each deliberate
/// client defect is caught by the case written for its rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_passes_the_client_role_cases_and_each_client_defect_is_caught() {
    use domvia_calls::client_defect::ClientDefect;
    use domvia_calls::conform::client_role::{self, ClientRoleOptions};
    let base = ClientRoleOptions {
        command: vec![
            env!("CARGO_BIN_EXE_domvia-calls").to_owned(),
            "drive".to_owned(),
        ],
        label: None,
        only: Vec::new(),
        env: Vec::new(),
    };
    let clean = client_role::run(&base).await.unwrap();
    let not_passing: Vec<_> = clean
        .cases
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| (c.id.clone(), c.verdict, c.failure.clone(), c.reason.clone()))
        .collect();
    assert!(clean.cases.len() >= 8);
    assert!(not_passing.is_empty(), "{not_passing:#?}");
    for (defect, case) in [
        (ClientDefect::NoPacing, "client.pacing.announced-rate"),
        (ClientDefect::DropRateRefused, "client.rate-refusal.resent"),
        (
            ClientDefect::ReconnectAfterFinalCode,
            "client.reconnect.4001-never",
        ),
        (ClientDefect::ReusePartyId, "client.party-id.fresh"),
        (ClientDefect::ActOnOtherCall, "client.ignore.other-call"),
        (
            ClientDefect::TrustUnverifiedUser,
            "client.ignore.unverified-user",
        ),
        (
            ClientDefect::EndCandidatesTwice,
            "client.candidates.end-once",
        ),
        (ClientDefect::AcceptDowngrade, "client.ignore.downgrade"),
        (ClientDefect::IgnoreGlare, "client.glare.yields"),
        (ClientDefect::AlwaysYieldGlare, "client.glare.keeps"),
    ] {
        let opts = ClientRoleOptions {
            only: vec![case.to_owned()],
            env: vec![("DOMVIA_CLIENT_DEFECT".to_owned(), defect.name().to_owned())],
            ..base.clone()
        };
        let report = client_role::run(&opts).await.unwrap();
        let verdict = report
            .cases
            .iter()
            .find(|c| c.id == case)
            .map(|c| c.verdict);
        assert_eq!(
            verdict,
            Some(Verdict::Fail),
            "{} is caught by {case}",
            defect.name()
        );
    }
}
