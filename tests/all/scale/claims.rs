//! The order claims take queued runs in, on both stores: the tenant with
//! the fewest leased runs first, its oldest run first, tenants at their cap
//! passed over; and a deep queue is claimed in the same order.

use super::services::Postgres;
use composer::store::postgres::{PgDatabase, PgQueue};
use composer::store::{Database, SqliteQueue, WorkQueue};
use std::sync::Arc;
use std::time::Duration;

async fn claims_are_fair_across_tenants(queue: Arc<dyn WorkQueue>) {
    // A burst of one tenant, then two runs of another, then a third's.
    for i in 0..500 {
        queue
            .enqueue(&format!("burst-{i:03}"), "burst")
            .await
            .unwrap();
    }
    for i in 0..2 {
        queue.enqueue(&format!("quiet-{i}"), "quiet").await.unwrap();
    }
    queue.enqueue("late-0", "late").await.unwrap();
    let lease = Duration::from_secs(60);
    let mut order = Vec::new();
    for _ in 0..6 {
        let claim = queue.claim("w", lease, Vec::new()).await.unwrap().unwrap();
        order.push(claim.run_id);
    }
    assert_eq!(
        order,
        [
            // Nobody leases anything: the oldest run overall.
            "burst-000",
            // Then the tenants with nothing leased, oldest first.
            "quiet-0",
            "late-0",
            // One leased each: the oldest waiting run.
            "burst-001",
            // quiet has one leased, burst two: quiet.
            "quiet-1",
            // Only burst has runs left.
            "burst-002",
        ]
    );
    // A tenant at its cap is passed over.
    assert!(queue
        .claim("w", lease, vec!["burst".to_string()])
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        queue.depth().await.unwrap(),
        vec![("burst".to_string(), 497)]
    );
    let mut leased = queue.leased().await.unwrap();
    leased.sort();
    assert_eq!(
        leased,
        vec![
            ("burst".to_string(), 3),
            ("late".to_string(), 1),
            ("quiet".to_string(), 2)
        ]
    );
    // Released runs come back in their place: the oldest again.
    let next = queue.claim("w", lease, Vec::new()).await.unwrap().unwrap();
    assert_eq!(next.run_id, "burst-003");
    assert!(queue.release(&next).await.unwrap());
    let again = queue.claim("w", lease, Vec::new()).await.unwrap().unwrap();
    assert_eq!(again.run_id, "burst-003");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_claims_are_fair_across_tenants() {
    let dir = crate::support::temp_dir();
    let db = Arc::new(Database::open(&dir.path().join("composer.db")).unwrap());
    claims_are_fair_across_tenants(Arc::new(SqliteQueue::new(db))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_are_fair_across_tenants() {
    let postgres = Postgres::start();
    let db = PgDatabase::connect(&postgres.database(), 4).await.unwrap();
    claims_are_fair_across_tenants(Arc::new(PgQueue::new(db))).await;
}
