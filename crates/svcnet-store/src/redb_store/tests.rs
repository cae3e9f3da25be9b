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
    let page = s.list("/x/", None, Some(4)).await.unwrap();
    assert_eq!(page.items.len(), 4);
    assert!(page.more);
    let last = page.items.last().unwrap().key.clone();
    let rest = s.list("/x/", Some(&last), None).await.unwrap();
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
    assert_eq!(s.list("/c/", None, None).await.unwrap().items.len(), 200);
}
