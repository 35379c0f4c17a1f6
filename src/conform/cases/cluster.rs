//! Delivery across the nodes of one cluster: a client on one node must reach subscribers on
//! every other node, and presence must count users across nodes.

use serde_json::json;

use super::{Case, case, marker};
use crate::conform::wire::{Conn, Ctx, PROMPT, Step, decode_data, ensure};

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "cluster.client-event-across-nodes",
            Cluster,
            Must,
            ["TRN-030", "TRN-031"],
            [Cluster, AppSecret],
            "A client event sent on one node reaches a subscriber on every other node, and not the sender",
            across_nodes
        ),
        case!(
            "cluster.presence-across-nodes",
            Cluster,
            Must,
            ["TRN-021", "TRN-022"],
            [Cluster, AppSecret, Presence],
            "Presence members on different nodes see each other once",
            presence_across_nodes
        ),
    ]
}

async fn across_nodes(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("private-", "cluster");
    let mut sender = Conn::connect_node(&ctx, "node0", 0).await?;
    sender.subscribe(&channel, None).await?;
    let mut others = Vec::new();
    for node in 1..ctx.target.nodes.len() {
        let mut c = Conn::connect_node(&ctx, &format!("node{node}"), node).await?;
        c.subscribe(&channel, None).await?;
        others.push(c);
    }
    sender
        .trigger(&channel, "client-conform", &marker(40))
        .await?;
    for c in &mut others {
        let f = c
            .wait_for("the event from node 0", PROMPT, |f| {
                f["event"] == "client-conform" && f["channel"] == channel.as_str()
            })
            .await?;
        ensure(
            decode_data(&f["data"]) == marker(40),
            "the event arrives unchanged on every node",
            marker(40).to_string(),
            f.to_string(),
        )?;
    }
    let before = sender.fence().await?;
    ensure(
        !before.iter().any(|f| f["event"] == "client-conform"),
        "the sender does not get its event back from another node",
        "nothing",
        format!("{before:?}"),
    )?;
    Ok(Some(format!("{} nodes", ctx.target.nodes.len())))
}

async fn presence_across_nodes(ctx: Ctx) -> Step<Option<String>> {
    let channel = ctx.unique("presence-", "cluster");
    let mut a = Conn::connect_node(&ctx, "node0", 0).await?;
    a.subscribe(&channel, Some(("conform-alice", json!({}))))
        .await?;
    let mut b = Conn::connect_node(&ctx, "node1", 1).await?;
    let data = b
        .subscribe(&channel, Some(("conform-bob", json!({}))))
        .await?;
    ensure(
        data["presence"]["count"] == 2,
        "a member on another node is listed",
        "count 2",
        data.to_string(),
    )?;
    a.wait_for("member_added from the other node", PROMPT, |f| {
        f["event"] == "pusher_internal:member_added" && f["channel"] == channel.as_str()
    })
    .await?;
    Ok(None)
}
