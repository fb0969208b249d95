//! `ResultCache` itself: the memory layer in front of SQLite, a memory-only
//! cache, failures that are not kept, modes, clear, and database files that
//! cannot be used.

use super::Env;
use composer::cache::{CacheMode, CacheSettings, ResultCache};
use composer::store::Database;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `get_or_compute(key)` whose computation counts into `calls` and
/// answers `value`.
async fn get(
    cache: &ResultCache,
    key: &str,
    mode: CacheMode,
    calls: &AtomicUsize,
    value: Value,
) -> (Value, bool) {
    let got = cache
        .get_or_compute(key, "test", None, mode, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(value)
        })
        .await
        .unwrap();
    // Writes to SQLite are batched; a run flushes them before it ends, and
    // so does each call here, since the tests look at the file directly.
    cache.flush().await;
    got
}

#[tokio::test]
async fn memory_first_then_sqlite_then_compute() {
    let env = Env::new();
    let calls = AtomicUsize::new(0);
    let cache = env.cache();
    assert_eq!(
        get(&cache, "k", CacheMode::Use, &calls, json!(1)).await,
        (json!(1), false)
    );
    assert_eq!(
        get(&cache, "k", CacheMode::Use, &calls, json!(2)).await,
        (json!(1), true)
    );
    // Remove the row: the memory layer alone still answers.
    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute("DELETE FROM cache", [])
        .unwrap();
    assert_eq!(
        get(&cache, "k", CacheMode::Use, &calls, json!(3)).await,
        (json!(1), true)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A new cache (new process): SQLite answers what memory does not hold.
    get(&cache, "s", CacheMode::Use, &calls, json!("stored")).await;
    let fresh = env.cache();
    assert_eq!(
        get(&fresh, "s", CacheMode::Use, &calls, json!("recomputed")).await,
        (json!("stored"), true)
    );
    // ... and computes what neither holds.
    assert_eq!(
        get(&fresh, "k", CacheMode::Use, &calls, json!(4)).await,
        (json!(4), false)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(fresh.counters().hits, 1);
    assert_eq!(fresh.counters().misses, 1);
}

#[tokio::test]
async fn a_cache_without_a_database_keeps_results_in_memory_only() {
    let env = Env::new();
    let calls = AtomicUsize::new(0);
    let cache = ResultCache::new(&env.settings(), None).unwrap();
    get(&cache, "k", CacheMode::Use, &calls, json!(1)).await;
    assert!(get(&cache, "k", CacheMode::Use, &calls, json!(2)).await.1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!env.db.exists());
    assert_eq!(cache.stats().unwrap(), Vec::new());
    assert_eq!(cache.prune().unwrap(), 0);
    let tmp = env.root.join("x.wav");
    std::fs::write(&tmp, b"audio").unwrap();
    assert_eq!(
        cache.put_blob(&tmp),
        None,
        "no blob folder without a database"
    );
}

#[tokio::test]
async fn failures_are_not_kept() {
    let env = Env::new();
    let cache = env.cache();
    let calls = AtomicUsize::new(0);
    let failing = cache
        .get_or_compute("k", "test", None, CacheMode::Use, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Value, _>("provider down".to_string())
        })
        .await;
    assert_eq!(failing, Err("provider down".to_string()));
    assert_eq!(env.entry_count(), 0);
    assert_eq!(
        get(&cache, "k", CacheMode::Use, &calls, json!("ok")).await,
        (json!("ok"), false)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn modes_off_and_refresh() {
    let env = Env::new();
    let cache = env.cache();
    let calls = AtomicUsize::new(0);
    get(&cache, "k", CacheMode::Use, &calls, json!("old")).await;
    assert_eq!(
        get(&cache, "k", CacheMode::Off, &calls, json!("off")).await,
        (json!("off"), false)
    );
    assert_eq!(
        get(&cache, "k", CacheMode::Use, &calls, json!("x")).await.0,
        json!("old"),
        "Off wrote"
    );
    assert_eq!(
        get(&cache, "k", CacheMode::Refresh, &calls, json!("new")).await,
        (json!("new"), false)
    );
    for c in [&cache, &env.cache()] {
        assert_eq!(
            get(c, "k", CacheMode::Use, &calls, json!("x")).await,
            (json!("new"), true)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_calls_under_refresh_make_one_call() {
    let env = Env::new();
    let cache = env.cache();
    let calls = AtomicUsize::new(0);
    get(&cache, "k", CacheMode::Use, &calls, json!("old")).await;
    // 50 identical map items under `--refresh`, all at once: one call.
    let counted = &calls;
    let refreshed = futures::future::join_all((0..50).map(|i| {
        cache.get_or_compute("k", "test", None, CacheMode::Refresh, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Ok::<_, String>(json!(format!("new {i}")))
            }
        })
    }))
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one call before, one now");
    let values: Vec<Value> = refreshed.into_iter().map(|r| r.unwrap().0).collect();
    assert!(values.iter().all(|v| v == &values[0]), "{values:?}");
    assert_ne!(values[0], json!("old"));
    // A later identical call of the same refreshing run shares it too.
    let again = get(&cache, "k", CacheMode::Refresh, &calls, json!("newer")).await;
    assert_eq!(again, (values[0].clone(), true));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn clear_removes_entries_and_blobs() {
    let env = Env::new();
    let cache = env.cache();
    let calls = AtomicUsize::new(0);
    get(&cache, "a", CacheMode::Use, &calls, json!(1)).await;
    get(&cache, "b", CacheMode::Use, &calls, json!(2)).await;
    let audio = env.root.join("voice.wav");
    std::fs::write(&audio, b"RIFF....WAVE").unwrap();
    let blob = cache.put_blob(&audio).unwrap();
    assert!(blob.ends_with(".wav"));
    let stored = env.db.parent().unwrap().join("blobs").join(&blob);
    assert!(stored.is_file());

    assert_eq!(cache.clear().await.unwrap(), 2);
    assert_eq!(env.entry_count(), 0);
    assert!(!stored.exists());
    assert_eq!(
        get(&cache, "a", CacheMode::Use, &calls, json!(3)).await,
        (json!(3), false),
        "clear left the memory layer"
    );
}

#[tokio::test]
async fn prune_removes_blobs_no_entry_names() {
    let env = Env::new();
    let cache = env.cache();
    let write = |name: &str, bytes: &[u8]| {
        let p = env.root.join(name);
        std::fs::write(&p, bytes).unwrap();
        cache.put_blob(&p).unwrap()
    };
    let kept = write("kept.wav", b"kept audio");
    let orphan = write("orphan.wav", b"orphan audio");
    cache
        .get_or_compute(
            "speech",
            "text_to_speech_task",
            None,
            CacheMode::Use,
            || async { Ok::<_, String>(json!({"path": "/x/kept.wav", "blob": kept})) },
        )
        .await
        .unwrap();
    assert_eq!(cache.prune().unwrap(), 0);
    let blobs = env.db.parent().unwrap().join("blobs");
    assert_eq!(super::files_in(&blobs), vec![kept]);
    assert!(!blobs.join(orphan).exists());
}

#[test]
fn a_corrupted_database_file_is_an_error_not_a_panic() {
    let env = Env::new();
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    std::fs::write(&env.db, vec![0x5a; 8192]).unwrap();
    let error = match Database::open(&env.db) {
        Ok(_) => panic!("a file of garbage opened as a database"),
        Err(e) => e,
    };
    assert!(error.to_string().contains("composer.db"), "{error}");
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        vec![0x5a; 8192],
        "the broken file was changed"
    );
}

#[test]
fn a_database_path_under_a_file_is_an_error() {
    let env = Env::new();
    let file = env.root.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    assert!(Database::open(&file.join("composer.db")).is_err());
}

#[test]
fn a_bad_default_ttl_is_refused() {
    let settings = CacheSettings {
        ttl: "soon".into(),
        ..CacheSettings::default()
    };
    let error = match ResultCache::new(&settings, None) {
        Ok(_) => panic!("ttl `soon` accepted"),
        Err(e) => e,
    };
    assert!(error.contains("cache.ttl"), "{error}");
}

#[test]
fn a_locked_database_is_an_error_after_the_busy_timeout() {
    // Another connection holds an exclusive lock (`cli` checks the binary's
    // warning when another process holds it).
    let env = Env::new();
    let _lock = super::cli::lock_database(&env.db);
    let started = std::time::Instant::now();
    let opened = Database::open(&env.db);
    assert!(opened.is_err(), "a locked database opened");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_fresh_database_opened_by_many_at_once_opens_for_all() {
    // A server and CLI runs may create the same file together; each adds
    // the columns of later releases, and only one may do it.
    for _ in 0..5 {
        let env = Env::new();
        let path = env.db.clone();
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Database::open(&path).map(|_| ()))
            })
            .collect();
        for opener in openers {
            let opened = opener.join().expect("the opener thread");
            assert!(opened.is_ok(), "{}", opened.unwrap_err());
        }
    }
}
