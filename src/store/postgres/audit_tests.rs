//! Tests of the access log on PostgreSQL (`audit.rs`): chains, two nodes appending at once, tampering,
//! search and pages, the full queue, export and import. They need `NAVET_TEST_DATABASE_URL`.

use super::*;
use crate::audit::{Action, AuditRecord};
use postgres::NoTls;

/// A fresh schema of the test database, migrated, dropped at the end. `None` only when
/// `NAVET_TEST_DATABASE_URL` is unset (these tests need PostgreSQL and then do nothing); when it is set, an
/// unreachable database fails the test.
struct TestDb {
    base: String,
    url: String,
    schema: String,
}

impl TestDb {
    fn new() -> Option<TestDb> {
        let base = std::env::var("NAVET_TEST_DATABASE_URL").ok()?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let url = super::super::migrate::create_schema(&base, &schema)
            .expect("NAVET_TEST_DATABASE_URL is set, but PostgreSQL cannot be reached");
        let db = TestDb { base, url, schema };
        let mut conn = db.pool().get().expect("a connection");
        super::super::migrate::migrate(&mut conn).expect("migrate");
        Some(db)
    }

    /// A node's pool (small: several tests and helpers share the server).
    fn pool(&self) -> super::super::Pool {
        let config: postgres::Config = self.url.parse().expect("url");
        r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(0))
            .build(r2d2_postgres::PostgresConnectionManager::new(config, NoTls))
            .expect("pool")
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, NoTls).expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.base, NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

fn read(patient: Option<&str>, request: &str) -> Encoded {
    let mut r = AuditRecord::new(Action::Read, "read", request);
    if let Some(p) = patient {
        r.add_patient(format!("Patient/{p}"));
    }
    Encoded::of(&r)
}

fn create(patient: &str, request: &str) -> Encoded {
    let mut r = AuditRecord::new(Action::Create, "create", request);
    r.add_patient(format!("Patient/{patient}"));
    Encoded::of(&r)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sequence numbers and times of a chain, in seq order.
fn chain_rows(c: &mut postgres::Client, chain: &str) -> Vec<(i64, i64)> {
    c.query(
        "SELECT seq, t_us FROM audit_log WHERE chain = $1 ORDER BY seq",
        &[&chain],
    )
    .expect("rows")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn open(db: &TestDb, dir: &Path) -> AccessLog {
    AccessLog::open(&db.pool(), dir, Duration::from_secs(3600)).expect("open the access log")
}

#[test]
fn change_records_commit_and_roll_back_with_their_transaction() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.client();
    for (i, commit) in [true, false, true, true].into_iter().enumerate() {
        let mut tx = c.transaction().unwrap();
        append_change(&mut tx, &create("p1", &format!("req-{i}"))).unwrap();
        if commit {
            tx.commit().unwrap();
        } else {
            tx.rollback().unwrap();
        }
    }
    let rows = chain_rows(&mut c, "c");
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "no gap"
    );
    assert!(rows.windows(2).all(|w| w[0].1 < w[1].1));
    assert!(rows.iter().all(|r| r.1 % 2 == 0), "change times are even");
    let dir = tempfile::tempdir().unwrap();
    let log = open(&db, dir.path());
    let v = log.verify(&mut c, dir.path()).unwrap();
    assert_eq!((v.records, v.first_broken), (3, None));
    log.close();
}

#[test]
fn two_nodes_append_one_access_chain_that_verifies() {
    let Some(db) = TestDb::new() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = Arc::new(open(&db, dir_a.path()));
    let node_b = Arc::new(open(&db, dir_b.path()));
    const PER_NODE: usize = 300;
    const CHANGES: usize = 40;
    // Writes on both nodes meanwhile: each its own transaction, holding the change head until it commits.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let mut c = db.client();
            std::thread::spawn(move || {
                for i in 0..CHANGES / 2 {
                    let mut tx = c.transaction().unwrap();
                    append_change(&mut tx, &create("p1", &format!("w{w}-{i}"))).unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..PER_NODE {
            for (name, node) in [("a", &node_a), ("b", &node_b)] {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let _expected = crate::audit::Expected::start();
                    node.append(read(Some("p2"), &format!("{name}-{i}"))).await
                }));
            }
            if i == PER_NODE / 2 {
                // A checkpoint from each node mid-way, while both append.
                let (a, b) = (node_a.clone(), node_b.clone());
                tokio::task::spawn_blocking(move || {
                    assert!(a.checkpoint().unwrap());
                    b.checkpoint().unwrap();
                })
                .await
                .unwrap();
            }
        }
        for t in tasks {
            t.await.unwrap().expect("appended");
        }
    });
    for w in writers {
        w.join().unwrap();
    }
    let mut c = db.client();
    let access = chain_rows(&mut c, "a");
    assert_eq!(
        access.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=i64::try_from(2 * PER_NODE).unwrap()).collect::<Vec<_>>(),
        "one chain 1..n"
    );
    assert!(access.windows(2).all(|w| w[0].1 < w[1].1), "times increase");
    assert!(access.iter().all(|r| r.1 % 2 == 1), "access times are odd");
    assert_eq!(chain_rows(&mut c, "c").len(), CHANGES);
    // The last checkpoints, one per node (the second has nothing new to sign).
    node_a.close();
    node_b.close();
    let v = node_a.verify(&mut c, dir_a.path()).unwrap();
    assert_eq!(v.first_broken, None, "{v:?}");
    assert_eq!(v.records, u64::try_from(2 * PER_NODE + CHANGES).unwrap());
    assert!(v.checkpoints >= 3, "{v:?}");

    // Trusting only listed keys: node b's checkpoints then break the log, until its key is listed.
    let trusted = dir_a.path().join(TRUSTED_KEYS_FILE);
    std::fs::write(&trusted, "# no other node\n").unwrap();
    let v = node_a.verify(&mut c, dir_a.path()).unwrap();
    let broken = v.first_broken.expect("an untrusted key");
    assert_eq!(broken.id, "checkpoints");
    assert!(broken.reason.contains("neither this node's"), "{broken:?}");
    let key_b = CheckpointKey::load_or_generate(dir_b.path())
        .unwrap()
        .public();
    std::fs::write(
        &trusted,
        format!("# node b\n{}\n", crate::audit::chain::hex(&key_b)),
    )
    .unwrap();
    let v = node_a.verify(&mut c, dir_a.path()).unwrap();
    assert_eq!(v.first_broken, None, "{v:?}");
}

#[test]
fn the_log_is_append_only_and_verify_names_the_first_changed_record() {
    let Some(db) = TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = open(&db, dir.path());
    let rt = runtime();
    rt.block_on(async {
        for i in 0..6 {
            log.append(read(Some("p1"), &format!("r{i}")))
                .await
                .unwrap();
        }
    });
    assert!(log.checkpoint().unwrap());
    assert!(!log.checkpoint().unwrap(), "nothing new to sign");
    let mut c = db.client();
    for sql in [
        "UPDATE audit_log SET outcome = 4 WHERE chain = 'a' AND seq = 3",
        "DELETE FROM audit_log WHERE chain = 'a' AND seq = 6",
        "TRUNCATE audit_log",
        "DELETE FROM audit_key",
        "UPDATE audit_checkpoint SET line = ''",
    ] {
        let e = c.batch_execute(sql).expect_err(sql);
        let message = e.as_db_error().map(|d| d.message().to_owned());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("append-only")),
            "{sql}: {e:?}"
        );
    }
    let v = log.verify(&mut c, dir.path()).unwrap();
    assert_eq!((v.records, v.checkpoints, v.first_broken), (6, 1, None));

    // A role that bypasses triggers (replication mode, superuser) changes record 3.
    c.batch_execute(
        "SET session_replication_role = replica; \
         UPDATE audit_log SET record = record || '\\x00'::bytea WHERE chain = 'a' AND seq = 3; \
         SET session_replication_role = DEFAULT;",
    )
    .unwrap();
    let v = log.verify(&mut c, dir.path()).unwrap();
    let broken = v.first_broken.expect("broken");
    assert_eq!((broken.id.as_str(), broken.seq), ("a-3", 3), "{broken:?}");
    assert!(broken.reason.contains("does not match its hash"));
    log.close();
    // Start-up refuses to serve on it.
    let Err(e) = AccessLog::open(&db.pool(), dir.path(), Duration::from_secs(3600)) else {
        panic!("opened a broken log")
    };
    assert!(e.to_string().contains("AuditEvent/a-3"), "{e}");
    // And on a database whose append-only trigger was dropped.
    c.batch_execute("DROP TRIGGER audit_key_append_only ON audit_key")
        .unwrap();
    let Err(e) = AccessLog::open(&db.pool(), dir.path(), Duration::from_secs(3600)) else {
        panic!("opened without the trigger")
    };
    assert!(e.to_string().contains("audit_key_append_only"), "{e}");
}

#[test]
fn records_removed_from_the_end_are_found_before_any_checkpoint_covers_them() {
    let Some(db) = TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = open(&db, dir.path());
    runtime().block_on(async {
        for i in 0..4 {
            log.append(read(None, &format!("r{i}"))).await.unwrap();
        }
    });
    let mut c = db.client();
    c.batch_execute(
        "SET session_replication_role = replica; \
         DELETE FROM audit_log WHERE chain = 'a' AND seq = 4; \
         SET session_replication_role = DEFAULT;",
    )
    .unwrap();
    let v = log.verify(&mut c, dir.path()).unwrap();
    let broken = v.first_broken.expect("broken");
    assert_eq!(broken.id, "a-4", "{broken:?}");
    assert!(broken.reason.contains("removed"), "{broken:?}");
    log.close();
}

#[test]
fn search_by_patient_and_pages_merge_both_chains_in_recorded_order() {
    let Some(db) = TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = open(&db, dir.path());
    let mut c = db.client();
    let rt = runtime();
    // a-1 (p1), c-1 (p1), a-2 (p2), a-3 (none), c-2 (p1), a-4 (p1)
    let mut append = |what: &str| {
        if let Some(p) = what.strip_prefix("c:") {
            let mut tx = c.transaction().unwrap();
            append_change(&mut tx, &create(p, "w")).unwrap();
            tx.commit().unwrap();
        } else {
            let p = what.strip_prefix("a:").filter(|p| !p.is_empty());
            rt.block_on(log.append(read(p, "r"))).unwrap();
        }
    };
    for what in ["a:p1", "c:p1", "a:p2", "a:", "c:p1", "a:p1"] {
        append(what);
    }
    let ids = |page: &AuditPage| page.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let p1 = AuditQuery {
        key_groups: vec![vec!["p|Patient/p1".into()]],
        ..Default::default()
    };
    let all = search(&mut c, &p1, 0, 10, true).unwrap();
    assert_eq!(ids(&all), ["a-1", "c-1", "c-2", "a-4"]);
    assert_eq!((all.has_more, all.total), (false, Some(4)));
    assert!(
        all.events
            .windows(2)
            .all(|w| w[0].recorded_us < w[1].recorded_us)
    );
    assert!(all.events.iter().all(|e| e.patients == ["Patient/p1"]));
    let first = search(&mut c, &p1, 0, 2, true).unwrap();
    assert_eq!(ids(&first), ["a-1", "c-1"]);
    assert_eq!((first.has_more, first.total), (true, Some(4)));
    let second = search(&mut c, &p1, 2, 2, false).unwrap();
    assert_eq!(ids(&second), ["c-2", "a-4"]);
    assert_eq!((second.has_more, second.total), (false, None));
    let newest = AuditQuery {
        newest_first: true,
        ..p1.clone()
    };
    assert_eq!(
        ids(&search(&mut c, &newest, 0, 3, false).unwrap()),
        ["a-4", "c-2", "c-1"]
    );
    // Other filters: either patient, writes only, ids of both chains, a time window.
    let either = AuditQuery {
        key_groups: vec![vec!["p|Patient/p1".into(), "p|Patient/p2".into()]],
        actions: Some(vec![b'R']),
        ..Default::default()
    };
    assert_eq!(
        ids(&search(&mut c, &either, 0, 10, false).unwrap()),
        ["a-1", "a-2", "a-4"]
    );
    let by_id = AuditQuery {
        ids: Some(vec![(Chain::Change, 2), (Chain::Access, 3)]),
        ..Default::default()
    };
    assert_eq!(
        ids(&search(&mut c, &by_id, 0, 10, true).unwrap()),
        ["a-3", "c-2"]
    );
    let window = AuditQuery {
        from_us: Some(all.events[1].recorded_us),
        to_us: Some(all.events[3].recorded_us),
        ..Default::default()
    };
    assert_eq!(
        ids(&search(&mut c, &window, 0, 10, true).unwrap()),
        ["c-1", "a-2", "a-3", "c-2"]
    );
    let nothing = AuditQuery {
        key_groups: vec![vec![]],
        ..Default::default()
    };
    assert_eq!(
        search(&mut c, &nothing, 0, 10, true).unwrap().total,
        Some(0)
    );
    // The patient's log, and the export's pages: every record once, in recorded order.
    let for_p1 = for_patient(&mut c, "Patient/p1").unwrap();
    assert_eq!(for_p1.len(), 4);
    assert!(for_p1[0].contains("\"a-1\""), "{}", for_p1[0]);
    let page1 = page(&mut c, 0, i64::MAX, 0, 4).unwrap();
    assert_eq!(page1.len(), 4);
    let after = page1.last().unwrap().0;
    let page2 = page(&mut c, 0, i64::MAX, after, 4).unwrap();
    assert_eq!(page2.len(), 2);
    let times: Vec<i64> = page1.iter().chain(&page2).map(|(t, _)| *t).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    assert!(page1[1].1.contains("change:1:"), "{}", page1[1].1);
    log.close();
}

#[test]
fn a_full_queue_is_refused_and_every_accepted_record_commits() {
    let Some(db) = TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&db, dir.path()));
    // Another node holds the access head: the appender waits, its queue fills.
    let mut holder = db.client();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("SELECT 1 FROM audit_head WHERE chain = 'a' FOR UPDATE")
        .unwrap();
    let rt = runtime();
    let tasks: Vec<_> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..(QUEUE + MAX_BATCH + 100) {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(read(None, &format!("q{i}"))).await
            }));
        }
        // Let every task send before the head is released.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tasks
    });
    tx.rollback().unwrap();
    let results: Vec<_> = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Busy)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(busy > 0, "some records were refused");
    assert_eq!(ok + busy, results.len(), "no other error");
    let mut c = db.client();
    assert_eq!(chain_rows(&mut c, "a").len(), ok);
    log.close();
}

#[test]
fn an_exported_log_imports_into_another_database_and_its_chains_continue() {
    let Some(db) = TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = open(&db, dir.path());
    let mut c = db.client();
    let rt = runtime();
    for i in 0..3 {
        rt.block_on(log.append(read(Some("p1"), &format!("r{i}"))))
            .unwrap();
        let mut tx = c.transaction().unwrap();
        append_change(&mut tx, &create("p1", &format!("w{i}"))).unwrap();
        tx.commit().unwrap();
    }
    log.close();
    let mut dumped = Vec::new();
    super::super::dump::export(&db.url, &mut dumped).unwrap();
    let text = String::from_utf8(dumped.clone()).unwrap();
    for table in [
        "access.audit_log",
        "change.audit_log",
        "access.audit_key",
        "access.audit_checkpoint",
    ] {
        assert!(text.contains(table), "{table} in {text}");
    }

    let other = TestDb::new().expect("the same database");
    super::super::dump::import(&other.url, &mut dumped.as_slice()).unwrap();
    // Into a log that holds records: refused.
    assert!(super::super::dump::import(&other.url, &mut dumped.as_slice()).is_err());
    // The same node's data directory (its key and checkpoint file) verifies the imported log, and appends
    // continue both chains.
    let moved = open(&other, dir.path());
    rt.block_on(moved.append(read(Some("p1"), "after")))
        .unwrap();
    let mut oc = other.client();
    let mut tx = oc.transaction().unwrap();
    append_change(&mut tx, &create("p1", "after")).unwrap();
    tx.commit().unwrap();
    assert_eq!(chain_rows(&mut oc, "a").len(), 4);
    assert_eq!(chain_rows(&mut oc, "c").len(), 4);
    let v = moved.verify(&mut oc, dir.path()).unwrap();
    assert_eq!((v.records, &v.first_broken), (8, &None), "{v:?}");
    assert_eq!(
        for_patient(&mut oc, "Patient/p1").unwrap()[..6],
        for_patient(&mut c, "Patient/p1").unwrap()[..]
    );
    moved.close();
}

/// How many access records per second one node's appender commits (requests in flight marked as such, as
/// the HTTP layer does). Run: `cargo test --lib appender_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement"]
fn appender_throughput() {
    let Some(db) = TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&db, dir.path()));
    let rt = runtime();
    for (clients, records) in [(1usize, 2_000usize), (64, 20_000)] {
        let started = std::time::Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..clients {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..records / clients {
                        // Counted while "handled", until the record is handed over (as the HTTP layer).
                        let expected = crate::audit::Expected::start();
                        let record = read(Some("p1"), &format!("{w}-{i}"));
                        let append = log.append(record);
                        drop(expected);
                        append.await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let elapsed = started.elapsed();
        let n = records / clients * clients;
        println!(
            "{n} access records from {clients} concurrent requester(s) in {elapsed:?}: {:.0} records/s",
            n as f64 / elapsed.as_secs_f64()
        );
    }
    log.close();
}
