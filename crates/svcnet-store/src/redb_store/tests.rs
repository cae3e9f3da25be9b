use super::*;
use futures::StreamExt;

fn open(dir: &tempfile::TempDir, history: u64) -> RedbStore {
    RedbStore::open(
        &dir.path().join("db.redb"),
        RedbStoreConfig {
            history,
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn create_update_delete_with_preconditions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 1000);
    let a = s
        .put("/a", Bytes::from("1"), Precondition::MustNotExist)
        .await
        .unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    assert!(matches!(
        s.put("/a", Bytes::from("x"), Precondition::MustNotExist)
            .await,
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        s.put("/a", Bytes::from("x"), Precondition::ModRevision(7))
            .await,
        Err(Error::Conflict { current: 1 })
    ));
    let b = s
        .put("/a", Bytes::from("2"), Precondition::ModRevision(1))
        .await
        .unwrap();
    assert_eq!((b.create_revision, b.mod_revision), (1, 2));
    assert!(matches!(
        s.delete("/missing", Precondition::None).await,
        Err(Error::NotFound)
    ));
    let d = s.delete("/a", Precondition::None).await.unwrap();
    assert_eq!(d.mod_revision, 3);
    assert_eq!(d.value, Bytes::from("2"));
    assert_eq!(s.get("/a").await.unwrap(), None);
    assert_eq!(s.revision().await.unwrap(), 3);
}

#[tokio::test]
async fn list_pages_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 1000);
    for i in 0..10 {
        s.put(&format!("/x/{i:02}"), Bytes::from("v"), Precondition::None)
            .await
            .unwrap();
    }
    s.put("/y/0", Bytes::from("v"), Precondition::None)
        .await
        .unwrap();
    let page = s.list("/x/", None, Some(4), None).await.unwrap();
    assert_eq!(page.items.len(), 4);
    assert!(page.more);
    let last = page.items.last().unwrap().key.clone();
    let rest = s.list("/x/", Some(&last), None, None).await.unwrap();
    assert_eq!(rest.items.len(), 6);
    assert!(!rest.more);
    assert_eq!(rest.items[0].key, "/x/04");
    assert_eq!(rest.revision, 11);
}

#[tokio::test]
async fn watch_replays_then_follows_and_compaction_expires() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 1000);
    for i in 0..5 {
        s.put(&format!("/w/{i}"), Bytes::from("v"), Precondition::None)
            .await
            .unwrap();
    }
    let mut w = s.watch("/w/", 2).await.unwrap();
    for want in 3..=5 {
        assert_eq!(w.next().await.unwrap().unwrap().kv.mod_revision, want);
    }
    s.put("/other", Bytes::from("v"), Precondition::None)
        .await
        .unwrap();
    s.delete("/w/0", Precondition::None).await.unwrap();
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!((ev.kind, ev.kv.mod_revision), (EventType::Delete, 7));
    s.compact(4).await.unwrap();
    assert!(matches!(
        s.watch("/w/", 3).await,
        Err(Error::Compacted {
            requested: 3,
            compacted: 4
        })
    ));
    assert!(s.watch("/w/", 4).await.is_ok());
}

#[tokio::test]
async fn history_is_bounded_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 10);
    for i in 0..40 {
        s.put(&format!("/k/{i}"), Bytes::from("v"), Precondition::None)
            .await
            .unwrap();
    }
    let compacted = s.compacted_revision().await.unwrap();
    assert!(compacted >= 20, "compacted {compacted}");
    assert!(s.watch("/k/", 1).await.is_err());
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir, 1000);
        s.put("/p", Bytes::from("keep"), Precondition::None)
            .await
            .unwrap();
    }
    let s = open(&dir, 1000);
    assert_eq!(
        s.get("/p").await.unwrap().unwrap().value,
        Bytes::from("keep")
    );
    assert_eq!(s.revision().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_grouped_and_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir, 100_000));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put(
                    &format!("/c/{i:03}"),
                    Bytes::from("v"),
                    Precondition::MustNotExist,
                )
                .await
                .unwrap()
                .mod_revision
            })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), 200);
    assert_eq!(
        s.list("/c/", None, None, None).await.unwrap().items.len(),
        200
    );
}

/// Every list at an earlier revision returns the keys as they were then, whatever was
/// created, changed or deleted since (the model: a map replayed up to that revision).
#[tokio::test]
async fn lists_read_at_past_revisions() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 10_000);
    let mut states: Vec<BTreeMap<String, (String, u64)>> = vec![BTreeMap::new()];
    let mut model: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    for step in 0..400 {
        let key = format!("/p/{:02}", next() % 30);
        if next() % 4 == 0 && model.contains_key(&key) {
            s.delete(&key, Precondition::None).await.unwrap();
            model.remove(&key);
        } else {
            let v = format!("v{step}");
            let kv = s
                .put(&key, Bytes::from(v.clone()), Precondition::None)
                .await
                .unwrap();
            model.insert(key, (v, kv.mod_revision));
        }
        states.push(model.clone());
        if step % 7 == 0 {
            // Noise outside the prefix.
            s.put("/q/x", Bytes::from("n"), Precondition::None)
                .await
                .unwrap();
            states.push(model.clone());
        }
    }
    let head = s.revision().await.unwrap();
    assert_eq!(states.len() as u64, head + 1);
    for rev in [1, 2, 50, 51, 200, head - 1, head] {
        let want: Vec<(String, String, u64)> = states[rev as usize]
            .iter()
            .map(|(k, (v, m))| (k.clone(), v.clone(), *m))
            .collect();
        let got = s.list("/p/", None, None, Some(rev)).await.unwrap();
        assert_eq!(got.revision, rev);
        let got: Vec<(String, String, u64)> = got
            .items
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    String::from_utf8(kv.value.to_vec()).unwrap(),
                    kv.mod_revision,
                )
            })
            .collect();
        assert_eq!(got, want, "at revision {rev}");
        // The same in pages of 4, each read at the revision.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s
                .list("/p/", after.as_deref(), Some(4), Some(rev))
                .await
                .unwrap();
            paged.extend(page.items.iter().map(|kv| kv.key.clone()));
            if !page.more {
                break;
            }
            after = page.items.last().map(|kv| kv.key.clone());
        }
        assert_eq!(paged, want.iter().map(|w| w.0.clone()).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn past_reads_beyond_the_history_or_the_head_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 1000);
    for i in 0..5 {
        s.put(&format!("/a/{i}"), Bytes::from("v"), Precondition::None)
            .await
            .unwrap();
    }
    s.compact(3).await.unwrap();
    assert!(matches!(
        s.list("/a/", None, None, Some(2)).await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(
        s.list("/a/", None, None, Some(3))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(matches!(
        s.list("/a/", None, None, Some(9)).await,
        Err(Error::FutureRevision {
            requested: 9,
            current: 5
        })
    ));
}

#[tokio::test]
async fn close_finishes_accepted_writes_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(&dir, 1000));
    let writes: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put(&format!("/w/{i}"), Bytes::from("v"), Precondition::None)
                    .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    s.close().await.unwrap();
    let mut acked = 0;
    for w in writes {
        match w.await.unwrap() {
            Ok(_) => acked += 1,
            Err(Error::Closed) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(matches!(
        s.put("/late", Bytes::from("v"), Precondition::None).await,
        Err(Error::Closed)
    ));
    assert_eq!(
        s.list("/w/", None, None, None).await.unwrap().items.len(),
        acked
    );
    s.close().await.unwrap();
    drop(s);
    let reopened = open(&dir, 1000);
    assert_eq!(
        reopened
            .list("/w/", None, None, None)
            .await
            .unwrap()
            .items
            .len(),
        acked
    );
}

/// A store written with the older event encoding keeps its objects and drops its history.
#[tokio::test]
async fn history_of_an_older_format_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir, 1000);
        for i in 0..3 {
            s.put(&format!("/o/{i}"), Bytes::from("v"), Precondition::None)
                .await
                .unwrap();
        }
        let txn = s.shared.db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 1).unwrap();
        txn.commit().unwrap();
    }
    let s = open(&dir, 1000);
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
    assert!(matches!(
        s.watch("/o/", 1).await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(
        s.list("/o/", None, None, None).await.unwrap().items.len(),
        3
    );
    s.put("/o/3", Bytes::from("v"), Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        s.list("/o/", None, None, Some(3))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}
