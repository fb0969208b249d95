//! Lease tokens: an attempt whose lease another worker has taken over
//! changes nothing any more. Its journal's writes are dropped (and its
//! attempt told to stop), and its release and completion leave the queue
//! row to the new holder. Checked on both stores, then end to end with a
//! worker frozen (SIGSTOP) past its lease and woken after another worker
//! finished its run.

use super::cluster::{
    base, is_final, node_status, poll_run, requests_with, submit, Cluster, CHAIN,
};
use super::services::Postgres;
use crate::hosting::serve::{sse, KEY_A};
use crate::providers::fake::Fault;
use composer::engine::durable::StoredOutput;
use composer::engine::events::RunStatus;
use composer::store::postgres::{PgDatabase, PgQueue, PgStore};
use composer::store::{Database, Lease, NewRun, RunStore, SqliteQueue, SqliteStore, WorkQueue};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn output(text: &str) -> StoredOutput {
    StoredOutput {
        value: json!(text),
        extra: Vec::new(),
        mock: false,
        stats: Default::default(),
        cached: false,
        plugin: None,
    }
}

/// Two claims of one run (the first's lease ran out): only the second's
/// writes and queue changes take effect.
async fn only_the_newest_claim_counts(store: Arc<dyn RunStore>, queue: Arc<dyn WorkQueue>) {
    store
        .create_run(NewRun {
            id: "r1".into(),
            tenant: "a".into(),
            recipe: "chain".into(),
            recipe_path: None,
            inputs: json!({}),
            spec: json!({}),
            idempotency_key: None,
            status: RunStatus::Queued,
        })
        .await
        .unwrap();
    queue.enqueue("r1", "a").await.unwrap();
    let short = Duration::from_millis(1_000);
    let first = queue.claim("w1", short, Vec::new()).await.unwrap().unwrap();
    // The first worker stalls past its lease; a second one takes the run.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let second = queue
        .claim("w2", Duration::from_secs(30), Vec::new())
        .await
        .unwrap()
        .expect("the expired lease is claimable");
    assert_eq!(second.run_id, "r1");
    assert_ne!(first.token, second.token);

    let lost = CancellationToken::new();
    let stale = store
        .journal(
            "r1",
            HashMap::new(),
            Some(Lease {
                token: first.token,
                lost: lost.clone(),
            }),
        )
        .unwrap();
    stale.checkpoint("late#1".into(), output("late")).await;
    assert!(lost.is_cancelled(), "the stale attempt is told to stop");
    let current = store
        .journal(
            "r1",
            HashMap::new(),
            Some(Lease {
                token: second.token,
                lost: CancellationToken::new(),
            }),
        )
        .unwrap();
    current.checkpoint("fresh#1".into(), output("fresh")).await;
    let stored = store.checkpoints("r1").await.unwrap();
    assert!(stored.contains_key("fresh#1"), "{:?}", stored.keys());
    assert!(
        !stored.contains_key("late#1"),
        "a stale attempt's checkpoint was stored"
    );

    // Neither renewing, releasing nor completing with the old claim
    // touches the new holder's row.
    assert!(!queue.renew(&first, "w1", short).await.unwrap());
    assert!(!queue.release(&first).await.unwrap());
    assert!(!queue.complete(&first).await.unwrap());
    assert_eq!(
        queue.leased().await.unwrap(),
        vec![("a".to_string(), 1)],
        "the second claim still holds the run"
    );
    assert!(queue.renew(&second, "w2", short).await.unwrap());
    assert!(queue.complete(&second).await.unwrap());
    assert!(queue.leased().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_the_newest_claim_of_a_run_counts() {
    let dir = crate::support::temp_dir();
    let db = Arc::new(Database::open(&dir.path().join("composer.db")).unwrap());
    only_the_newest_claim_counts(
        Arc::new(SqliteStore::new(db.clone())),
        Arc::new(SqliteQueue::new(db)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_only_the_newest_claim_of_a_run_counts() {
    let postgres = Postgres::start();
    let db = PgDatabase::connect(&postgres.database(), 4).await.unwrap();
    only_the_newest_claim_counts(
        Arc::new(PgStore::new(db.clone())),
        Arc::new(PgQueue::new(db)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_past_its_lease_cannot_undo_the_run_another_worker_finished() {
    let mut c = Cluster::new("", "", &[("chain", CHAIN)]);
    c.fake.always("slow", Fault::Hang(Duration::from_secs(4)));
    let api = c.serve(false);
    let frozen = c.worker();
    let id = submit(base(&api), "chain", json!({})).await;
    poll_run(base(&api), &id, "at its second node", |r| {
        node_status(r, "first") == Some("completed") && node_status(r, "second") == Some("running")
    })
    .await;
    c.pause(&frozen);
    let _second_worker = c.worker();
    let run = poll_run(base(&api), &id, "finished", is_final).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let url = format!("{}/v1/runs/{id}/events", base(&api));
    let before = sse(&url, KEY_A, None).await;

    // Woken, the first worker's request for the second node is answered,
    // and its attempt goes on as far as it may.
    c.resume(&frozen);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(c.alive(&frozen));
    let run = poll_run(base(&api), &id, "still finished", is_final).await;
    assert_eq!(
        run["status"], "succeeded",
        "the late attempt changed the run: {run}"
    );
    for node in ["first", "second", "third"] {
        assert_eq!(node_status(&run, node), Some("completed"), "{run}");
    }
    assert_eq!(c.sql("SELECT count(*) FROM run_queue"), "0");
    let after = sse(&url, KEY_A, None).await;
    assert_eq!(after, before, "the late attempt wrote events");
    assert_eq!(
        requests_with(&c.fake, "third-step"),
        1,
        "the late attempt started the third node"
    );
    assert_eq!(requests_with(&c.fake, "first-step"), 1);
    assert_eq!(requests_with(&c.fake, "second-step"), 2);
}
