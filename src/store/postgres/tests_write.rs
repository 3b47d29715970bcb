//! The write side on PostgreSQL (`resources.rs`, `outbox.rs`, `inbound.rs`), against a real server: each test
//! in a fresh schema of the database `NAVET_TEST_DATABASE_URL` names, with the concurrent cases on two
//! connections (two nodes).
//!
//! When `NAVET_TEST_DATABASE_URL` is unset these tests return at once (there is no PostgreSQL to test
//! against); when it is set, an unreachable database fails them.

use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use super::{inbound, migrate, outbox, resources};
use crate::search::index::IndexRow;
use crate::store::inbound::{InboundMessage, ReceiverReceipt};
use crate::store::outbox::{
    AttemptOutcome, ClaimRequest, MessageStatus, NewMessage, OutboxFilter, Replay,
};
use crate::store::{NewVersion, StoreError};

/// A fresh schema, dropped when the test ends.
struct TestDb {
    /// The database's URL, and the URL whose connections use the test's schema.
    url: String,
    schema_url: String,
    schema: String,
}

impl TestDb {
    /// `None` only when `NAVET_TEST_DATABASE_URL` is unset (the test then has nothing to run against).
    fn new() -> Option<TestDb> {
        let url = std::env::var("NAVET_TEST_DATABASE_URL").ok()?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let schema_url = migrate::create_schema(&url, &schema)
            .expect("NAVET_TEST_DATABASE_URL is set, but PostgreSQL cannot be reached");
        let db = TestDb {
            url,
            schema_url,
            schema,
        };
        migrate::migrate(&mut db.connect()).expect("migrate");
        Some(db)
    }

    fn connect(&self) -> Client {
        Client::connect(&self.schema_url, NoTls).expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.url, NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

fn pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .expect("pid")
        .get(0)
}

/// Waits until backend `pid` waits for a lock (the other transaction holds what it needs).
fn wait_until_blocked(db: &TestDb, pid: i32) {
    let mut c = db.connect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: Option<String> = c
            .query_one(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .expect("pg_stat_activity")
            .get(0);
        if waiting.as_deref() == Some("Lock") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid} never waited for a lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn row(param: &str, value: &str) -> IndexRow {
    IndexRow {
        param: param.into(),
        system: Some("urn:s".into()),
        value: value.into(),
        lo: Some(1),
        hi: None,
    }
}

fn new_version(id: &str, version: i64) -> NewVersion {
    NewVersion {
        resource_type: "Patient".into(),
        id: id.into(),
        version,
        last_updated: format!("2024-01-01T00:00:0{version}.000Z"),
        last_updated_ms: version.saturating_mul(1_000),
        owner: "SE1".into(),
        deleted: false,
        json: Some(format!("{{\"v\":{version}}}")),
        index: vec![row("name", &format!("v{version}")), row("gender", "x")],
        protected: false,
    }
}

fn index_of(c: &mut Client, id: &str) -> Vec<(String, Option<String>, String)> {
    c.query(
        "SELECT param, system, value FROM search_index WHERE type = 'Patient' AND id = $1 \
         ORDER BY param, value",
        &[&id],
    )
    .expect("index")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn put_version_and_current_for_update_round_trip() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.connect();
    let mut tx = c.transaction().expect("tx");
    assert!(
        resources::current_for_update(&mut tx, "Patient", "p1")
            .expect("current")
            .is_none()
    );
    resources::put_version(&mut tx, new_version("p1", 1)).expect("v1");
    tx.commit().expect("commit");

    let mut tx = c.transaction().expect("tx");
    let v1 = resources::current_for_update(&mut tx, "Patient", "p1")
        .expect("current")
        .expect("v1 is there");
    assert_eq!(
        (
            v1.resource_type.as_str(),
            v1.id.as_str(),
            v1.version,
            v1.last_updated.as_str(),
            v1.owner.as_str(),
            v1.deleted,
            v1.json.as_deref(),
            v1.protected
        ),
        (
            "Patient",
            "p1",
            1,
            "2024-01-01T00:00:01.000Z",
            "SE1",
            false,
            Some("{\"v\":1}"),
            false
        )
    );
    let mut v2 = new_version("p1", 2);
    v2.protected = true;
    v2.owner = "SE2".into();
    resources::put_version(&mut tx, v2).expect("v2");
    // Not current + 1: a conflict, and the transaction stays usable (no SQL error aborted it).
    for wrong in [2, 4, 0, i64::MIN] {
        match resources::put_version(&mut tx, new_version("p1", wrong)) {
            Err(StoreError::VersionConflict(what)) => assert_eq!(what, "Patient/p1"),
            other => panic!("version {wrong}: {other:?}"),
        }
    }
    let v2 = resources::current_for_update(&mut tx, "Patient", "p1")
        .expect("current")
        .expect("v2");
    assert_eq!(
        (v2.version, v2.protected, v2.owner.as_str()),
        (2, true, "SE2")
    );
    tx.commit().expect("commit");

    // The index is the new version's only.
    assert_eq!(
        index_of(&mut c, "p1"),
        vec![
            ("gender".into(), Some("urn:s".into()), "x".into()),
            ("name".into(), Some("urn:s".into()), "v2".into()),
        ]
    );
    let mut deleted = new_version("p1", 3);
    deleted.deleted = true;
    deleted.json = None;
    deleted.index = Vec::new();
    let mut tx = c.transaction().expect("tx");
    resources::put_version(&mut tx, deleted).expect("v3");
    tx.commit().expect("commit");
    assert!(index_of(&mut c, "p1").is_empty());
    let current: (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT version, deleted, (SELECT count(*) FROM resource_versions WHERE id = 'p1') \
                 FROM resources_current WHERE type = 'Patient' AND id = 'p1'",
                &[],
            )
            .expect("current row");
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(current, (3, 1, 3));
}

#[test]
fn concurrent_creates_of_one_id_conflict() {
    let Some(db) = TestDb::new() else { return };
    let mut first = db.connect();
    let mut tx = first.transaction().expect("tx");
    resources::put_version(&mut tx, new_version("same", 1)).expect("first create");

    let mut second = db.connect();
    let second_pid = pid(&mut second);
    let other = std::thread::spawn(move || {
        let mut tx = second.transaction().expect("tx");
        assert!(
            resources::current_for_update(&mut tx, "Patient", "same")
                .expect("current")
                .is_none(),
            "the first create is not committed yet"
        );
        let result = resources::put_version(&mut tx, new_version("same", 1));
        // The transaction is still usable after the conflict.
        tx.query_one("SELECT 1", &[]).expect("usable");
        result
    });
    wait_until_blocked(&db, second_pid);
    tx.commit().expect("commit the first");
    match other.join().expect("thread") {
        Err(StoreError::VersionConflict(what)) => assert_eq!(what, "Patient/same"),
        other => panic!("the second create: {other:?}"),
    }
    let n: i64 = first
        .query_one(
            "SELECT count(*) FROM resource_versions WHERE id = 'same'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[test]
fn current_for_update_waits_for_a_concurrent_update_and_sees_it() {
    let Some(db) = TestDb::new() else { return };
    let mut first = db.connect();
    let mut tx = first.transaction().expect("tx");
    resources::put_version(&mut tx, new_version("p", 1)).expect("v1");
    tx.commit().expect("commit");

    let mut tx = first.transaction().expect("tx");
    let v1 = resources::current_for_update(&mut tx, "Patient", "p")
        .expect("current")
        .expect("v1");
    assert_eq!(v1.version, 1);
    resources::put_version(&mut tx, new_version("p", 2)).expect("v2");

    let mut second = db.connect();
    let second_pid = pid(&mut second);
    let other = std::thread::spawn(move || {
        let mut tx = second.transaction().expect("tx");
        let seen = resources::current_for_update(&mut tx, "Patient", "p");
        // Having seen version 2, it writes version 3 (what an If-Match update on another node does).
        resources::put_version(&mut tx, new_version("p", 3)).expect("v3");
        tx.commit().expect("commit");
        seen
    });
    wait_until_blocked(&db, second_pid);
    tx.commit().expect("commit v2");
    let seen = other
        .join()
        .expect("thread")
        .expect("current")
        .expect("the resource exists");
    assert_eq!((seen.version, seen.json.as_deref()), (2, Some("{\"v\":2}")));
}

#[test]
fn claim_unique_has_one_holder_across_connections() {
    let Some(db) = TestDb::new() else { return };
    let mut first = db.connect();
    let mut tx = first.transaction().expect("tx");
    assert_eq!(
        resources::claim_unique(&mut tx, "identifier", "k1", "Patient", "a").expect("claim"),
        None
    );
    let mut second = db.connect();
    let second_pid = pid(&mut second);
    let other = std::thread::spawn(move || {
        let mut tx = second.transaction().expect("tx");
        let holder = resources::claim_unique(&mut tx, "identifier", "k1", "Patient", "b");
        tx.commit().expect("commit");
        holder
    });
    wait_until_blocked(&db, second_pid);
    tx.commit().expect("commit");
    assert_eq!(
        other.join().expect("thread").expect("claim"),
        Some("a".to_owned())
    );

    // The holder claims again without a conflict; reassign and release move and free the key.
    let mut tx = first.transaction().expect("tx");
    assert_eq!(
        resources::claim_unique(&mut tx, "identifier", "k1", "Patient", "a").expect("claim"),
        None
    );
    resources::reassign_unique(&mut tx, "identifier", "k1", "Patient", "b").expect("reassign");
    assert_eq!(
        resources::claim_unique(&mut tx, "identifier", "k1", "Patient", "a").expect("claim"),
        Some("b".to_owned())
    );
    resources::release_unique(&mut tx, "identifier", "Patient", "b").expect("release");
    assert_eq!(
        resources::claim_unique(&mut tx, "identifier", "k1", "Patient", "a").expect("claim"),
        None
    );
    // Another scope is another key.
    assert_eq!(
        resources::claim_unique(&mut tx, "other", "k1", "Patient", "c").expect("claim"),
        None
    );
    tx.commit().expect("commit");
    let holders: Vec<(String, String)> = first
        .query("SELECT scope, id FROM unique_keys ORDER BY scope", &[])
        .expect("holders")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        holders,
        vec![
            ("identifier".into(), "a".into()),
            ("other".into(), "c".into())
        ]
    );
}

#[test]
fn remember_once_answers_true_once_until_it_expires() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.connect();
    let now = jiff::Timestamp::now().as_second();
    let mut tx = c.transaction().expect("tx");
    assert!(resources::remember_once(&mut tx, "jti", "a", now + 60).expect("first"));
    assert!(!resources::remember_once(&mut tx, "jti", "a", now + 60).expect("second"));
    assert!(resources::remember_once(&mut tx, "other", "a", now + 60).expect("other scope"));
    // An expired entry is forgotten.
    assert!(resources::remember_once(&mut tx, "jti", "old", now - 10).expect("expired"));
    assert!(resources::remember_once(&mut tx, "jti", "old", now + 60).expect("again"));
    assert!(!resources::remember_once(&mut tx, "jti", "old", now + 60).expect("remembered"));
    tx.commit().expect("commit");

    // Across connections: the second waits for the first, then answers false.
    let mut tx = c.transaction().expect("tx");
    assert!(resources::remember_once(&mut tx, "jti", "b", now + 60).expect("first"));
    let mut second = db.connect();
    let second_pid = pid(&mut second);
    let other = std::thread::spawn(move || {
        let mut tx = second.transaction().expect("tx");
        let seen = resources::remember_once(&mut tx, "jti", "b", now + 60);
        tx.commit().expect("commit");
        seen
    });
    wait_until_blocked(&db, second_pid);
    tx.commit().expect("commit");
    assert!(!other.join().expect("thread").expect("second"));
}

#[test]
fn settings_and_sharing_facts_are_replaced_as_sets() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.connect();
    let mut tx = c.transaction().expect("tx");
    assert_eq!(resources::setting(&mut tx, "k").expect("setting"), None);
    resources::set_setting(&mut tx, "k", "1").expect("set");
    resources::set_setting(&mut tx, "k", "2").expect("set");
    assert_eq!(
        resources::setting(&mut tx, "k").expect("setting"),
        Some("2".into())
    );

    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    resources::set_participants(&mut tx, "CarePlan", "c1", &s(&["b", "a", "a", "B"]))
        .expect("participants");
    resources::set_participants(&mut tx, "CarePlan", "c2", &s(&["z"])).expect("participants");
    assert_eq!(
        resources::participants_of(&mut tx, "CarePlan", "c1").expect("of"),
        s(&["B", "a", "b"]),
        "byte order, as SQLite"
    );
    resources::set_participants(&mut tx, "CarePlan", "c1", &s(&["b", "c"])).expect("again");
    assert_eq!(
        resources::participants_of(&mut tx, "CarePlan", "c1").expect("of"),
        s(&["b", "c"])
    );
    resources::set_participants(&mut tx, "CarePlan", "c1", &[]).expect("none");
    assert!(
        resources::participants_of(&mut tx, "CarePlan", "c1")
            .expect("of")
            .is_empty()
    );
    assert_eq!(
        resources::participants_of(&mut tx, "CarePlan", "c2").expect("of"),
        s(&["z"])
    );

    let rows = |tx: &mut postgres::Transaction<'_>, sql: &str| -> Vec<String> {
        tx.query(sql, &[])
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    resources::set_patient_links(&mut tx, "Encounter", "e", &s(&["Patient/1", "Patient/2"]))
        .expect("links");
    resources::set_patient_links(&mut tx, "Encounter", "e", &s(&["Patient/2", "Patient/3"]))
        .expect("links");
    assert_eq!(
        rows(
            &mut tx,
            "SELECT patient FROM patient_links WHERE id = 'e' ORDER BY patient"
        ),
        s(&["Patient/2", "Patient/3"])
    );

    resources::set_timeline(
        &mut tx,
        "Encounter",
        "e",
        &s(&["Patient/1", "Patient/2"]),
        5,
    )
    .expect("timeline");
    resources::set_timeline(
        &mut tx,
        "Encounter",
        "e",
        &s(&["Patient/2", "Patient/2"]),
        7,
    )
    .expect("timeline");
    assert_eq!(
        rows(
            &mut tx,
            "SELECT patient || '@' || t_ms FROM timeline WHERE id = 'e' ORDER BY 1"
        ),
        s(&["Patient/2@7"])
    );

    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    };
    resources::set_care_relations(
        &mut tx,
        "EpisodeOfCare",
        "x",
        &pairs(&[("P1", "H1"), ("P1", "H2"), ("P1", "H1")]),
    )
    .expect("relations");
    resources::set_care_relations(
        &mut tx,
        "EpisodeOfCare",
        "x",
        &pairs(&[("P1", "H2"), ("P2", "H1")]),
    )
    .expect("relations");
    assert_eq!(
        rows(
            &mut tx,
            "SELECT patient || '/' || hsa FROM care_relations WHERE id = 'x' ORDER BY 1"
        ),
        s(&["P1/H2", "P2/H1"])
    );

    let triples = |v: &[(&str, &str, &str)]| {
        v.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect::<Vec<_>>()
    };
    resources::set_consents(
        &mut tx,
        "Consent",
        "k",
        &triples(&[("P1", "deny", "H1"), ("P1", "permit", "H1")]),
    )
    .expect("consents");
    resources::set_consents(
        &mut tx,
        "Consent",
        "k",
        &triples(&[
            ("P1", "permit", "H1"),
            ("P1", "permit", "H1"),
            ("P2", "deny", "H3"),
        ]),
    )
    .expect("consents");
    assert_eq!(
        rows(
            &mut tx,
            "SELECT patient || ' ' || kind || ' ' || principal FROM consents WHERE id = 'k' ORDER BY 1"
        ),
        s(&["P1 permit H1", "P2 deny H3"])
    );
    resources::set_consents(&mut tx, "Consent", "k", &[]).expect("none");
    assert!(rows(&mut tx, "SELECT patient FROM consents").is_empty());
    tx.commit().expect("commit");
}

fn message(destination: &str, patient: Option<&str>, n: usize) -> NewMessage {
    let mut m = NewMessage::new(
        destination,
        patient.map(str::to_owned),
        "application/json",
        format!("{{\"n\":{n}}}"),
    );
    m.id = format!("{destination}-{}-{n}", patient.unwrap_or("none"));
    m.headers = vec![("X-N".into(), n.to_string())];
    m
}

fn claim_request(destination: &str, now_ms: i64, limit: usize) -> ClaimRequest {
    ClaimRequest {
        destination: destination.into(),
        now_ms,
        limit,
        lease_ms: 60_000,
        budget_ms: 3_600_000,
    }
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn outbox_claims_on_two_connections_are_disjoint_and_keep_the_order() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.connect();
    {
        let mut tx = c.transaction().expect("tx");
        for n in 0..2 {
            for p in 0..5 {
                outbox::enqueue(&mut tx, T0, &message("d", Some(&format!("P{p}")), n))
                    .expect("enqueue");
            }
        }
        outbox::enqueue(&mut tx, T0, &message("other", Some("P0"), 0)).expect("enqueue");
        tx.commit().expect("commit");
    }

    // Two claims at once (neither committed): the first holds two heads, the second gets the other heads and
    // no second row of any patient, without waiting.
    let mut second = db.connect();
    let mut tx1 = c.transaction().expect("tx");
    let mut tx2 = second.transaction().expect("tx");
    let a = outbox::claim(&mut tx1, &claim_request("d", T0, 2)).expect("claim 1");
    let b = outbox::claim(&mut tx2, &claim_request("d", T0, 10)).expect("claim 2");
    let ids = |claim: &crate::store::outbox::Claim| {
        claim.due.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), vec!["d-P0-0", "d-P1-0"]);
    assert_eq!(ids(&b), vec!["d-P2-0", "d-P3-0", "d-P4-0"]);
    assert!(a.expired.is_empty() && b.expired.is_empty());
    tx1.commit().expect("commit");
    tx2.commit().expect("commit");
    let first = &a.due[0];
    assert_eq!(
        (
            first.destination.as_str(),
            first.patient.as_deref(),
            first.payload.as_str(),
            first.headers.clone(),
            first.status,
            first.attempts,
            first.created_ms,
            first.budget_start_ms,
            first.next_attempt_ms
        ),
        (
            "d",
            Some("P0"),
            "{\"n\":0}",
            vec![("X-N".to_owned(), "0".to_owned())],
            MessageStatus::Pending,
            0,
            T0,
            T0,
            T0
        )
    );

    // Everything due is claimed (leases run); delivering a head makes the patient's next row due.
    let mut tx = c.transaction().expect("tx");
    assert!(
        outbox::claim(&mut tx, &claim_request("d", T0 + 1, 10))
            .expect("claim")
            .due
            .is_empty()
    );
    assert!(outbox::record(&mut tx, T0 + 1, "d-P3-0", &AttemptOutcome::Delivered).expect("record"));
    let next = outbox::claim(&mut tx, &claim_request("d", T0 + 2, 10)).expect("claim");
    assert_eq!(ids(&next), vec!["d-P3-1"]);
    // A lapsed lease makes the rows due again.
    let lapsed = outbox::claim(&mut tx, &claim_request("d", T0 + 60_000, 10)).expect("claim");
    assert_eq!(
        ids(&lapsed),
        vec!["d-P0-0", "d-P1-0", "d-P2-0", "d-P4-0"],
        "claimed at T0; d-P3-1 was claimed at T0 + 2"
    );
    tx.commit().expect("commit");
}

#[test]
fn outbox_workers_on_several_connections_claim_each_row_once_in_patient_order() {
    let Some(db) = TestDb::new() else { return };
    const PATIENTS: usize = 6;
    const PER_PATIENT: usize = 8;
    {
        let mut c = db.connect();
        let mut tx = c.transaction().expect("tx");
        for n in 0..PER_PATIENT {
            for p in 0..PATIENTS {
                outbox::enqueue(&mut tx, T0, &message("d", Some(&format!("P{p}")), n))
                    .expect("enqueue");
            }
        }
        tx.commit().expect("commit");
    }
    // Each worker claims, then records what it claimed as delivered in a second transaction, as the
    // outbox workers do; the order of deliveries is the order of the records' commits.
    let delivered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut c = db.connect();
            let delivered = delivered.clone();
            std::thread::spawn(move || {
                let mut claimed = Vec::new();
                let mut idle = 0;
                while idle < 20 {
                    let mut tx = c.transaction().expect("tx");
                    let claim = outbox::claim(&mut tx, &claim_request("d", T0, 2)).expect("claim");
                    tx.commit().expect("commit");
                    if claim.due.is_empty() {
                        idle += 1;
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    idle = 0;
                    for m in claim.due {
                        let mut tx = c.transaction().expect("tx");
                        assert!(
                            outbox::record(&mut tx, T0, &m.id, &AttemptOutcome::Delivered)
                                .expect("record")
                        );
                        // The record commits under the list's lock, so the list is the commit order.
                        let mut list = delivered.lock().expect("lock");
                        tx.commit().expect("commit");
                        list.push(m.id.clone());
                        claimed.push(m.id);
                    }
                }
                claimed
            })
        })
        .collect();
    let mut all: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "a row was claimed twice");
    assert_eq!(total, PATIENTS * PER_PATIENT, "every row was delivered");
    let delivered = delivered.lock().expect("lock").clone();
    for p in 0..PATIENTS {
        let of_patient: Vec<&String> = delivered
            .iter()
            .filter(|id| id.starts_with(&format!("d-P{p}-")))
            .collect();
        let want: Vec<String> = (0..PER_PATIENT).map(|n| format!("d-P{p}-{n}")).collect();
        assert_eq!(
            of_patient,
            want.iter().collect::<Vec<_>>(),
            "patient P{p}'s deliveries in order"
        );
    }
}

#[test]
fn outbox_record_replay_list_get_and_stats() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.connect();
    let mut tx = c.transaction().expect("tx");
    outbox::enqueue(&mut tx, T0, &message("d1", Some("P1"), 0)).expect("enqueue");
    outbox::enqueue(&mut tx, T0, &message("d1", Some("P2"), 0)).expect("enqueue");
    outbox::enqueue(&mut tx, T0 + 5, &message("d2", None, 0)).expect("enqueue");
    outbox::enqueue(&mut tx, T0, &message("d3", Some("P3"), 0)).expect("enqueue");
    let claim = outbox::claim(&mut tx, &claim_request("d1", T0, 10)).expect("claim");
    assert_eq!(claim.due.len(), 2);
    let retry = AttemptOutcome::Retry {
        error: "HTTP 503".into(),
        next_attempt_ms: T0 + 1_000,
    };
    assert!(outbox::record(&mut tx, T0 + 10, "d1-P1-0", &retry).expect("retry"));
    assert!(
        outbox::record(
            &mut tx,
            T0 + 10,
            "d1-P2-0",
            &AttemptOutcome::Dead {
                error: "HTTP 400".into()
            }
        )
        .expect("dead")
    );
    // No longer pending: nothing changes.
    assert!(
        !outbox::record(&mut tx, T0 + 11, "d1-P2-0", &AttemptOutcome::Delivered).expect("again")
    );
    assert!(
        !outbox::record(&mut tx, T0 + 11, "nope", &AttemptOutcome::Delivered).expect("unknown")
    );
    assert!(
        outbox::record(
            &mut tx,
            T0 + 12,
            "d3-P3-0",
            &AttemptOutcome::Dropped {
                reason: "not visible".into()
            }
        )
        .expect("dropped")
    );

    let p1 = outbox::get(&mut tx, "d1-P1-0")
        .expect("get")
        .expect("there");
    assert_eq!(
        (
            p1.status,
            p1.attempts,
            p1.last_error.as_deref(),
            p1.next_attempt_ms,
            p1.done_ms
        ),
        (
            MessageStatus::Pending,
            1,
            Some("HTTP 503"),
            T0 + 1_000,
            None
        )
    );
    let p2 = outbox::get(&mut tx, "d1-P2-0")
        .expect("get")
        .expect("there");
    assert_eq!(
        (p2.status, p2.attempts, p2.last_error.as_deref(), p2.done_ms),
        (MessageStatus::Dead, 1, Some("HTTP 400"), Some(T0 + 10))
    );
    let d2 = outbox::get(&mut tx, "d2-none-0")
        .expect("get")
        .expect("there");
    assert_eq!(d2.patient, None);
    assert!(outbox::get(&mut tx, "nope").expect("get").is_none());

    let stats = outbox::stats(&mut tx).expect("stats");
    let figures: Vec<_> = stats
        .iter()
        .map(|s| {
            (
                s.destination.as_str(),
                s.pending,
                s.dead,
                s.oldest_pending_ms,
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![("d1", 1, 1, Some(T0)), ("d2", 1, 0, Some(T0 + 5))]
    );

    let list = |tx: &mut postgres::Transaction<'_>, f: OutboxFilter| -> Vec<String> {
        outbox::list(tx, &f)
            .expect("list")
            .into_iter()
            .map(|m| m.id)
            .collect()
    };
    let all = OutboxFilter {
        status: None,
        destination: None,
        after_seq: 0,
        limit: 100,
    };
    assert_eq!(
        list(&mut tx, all.clone()),
        vec!["d1-P1-0", "d1-P2-0", "d2-none-0", "d3-P3-0"]
    );
    assert_eq!(
        list(
            &mut tx,
            OutboxFilter {
                status: Some(MessageStatus::Dead),
                ..all.clone()
            }
        ),
        vec!["d1-P2-0"]
    );
    assert_eq!(
        list(
            &mut tx,
            OutboxFilter {
                destination: Some("d2".into()),
                ..all.clone()
            }
        ),
        vec!["d2-none-0"]
    );
    assert_eq!(
        list(
            &mut tx,
            OutboxFilter {
                after_seq: p1.seq,
                limit: 2,
                ..all.clone()
            }
        ),
        vec!["d1-P2-0", "d2-none-0"]
    );

    // Replay one: pending again with a fresh budget.
    assert_eq!(
        outbox::replay(&mut tx, T0 + 100, &Replay::One("d1-P2-0".into())).expect("replay"),
        vec![("d1-P2-0".to_owned(), Some("P2".to_owned()))]
    );
    let p2 = outbox::get(&mut tx, "d1-P2-0")
        .expect("get")
        .expect("there");
    assert_eq!(
        (
            p2.status,
            p2.budget_start_ms,
            p2.next_attempt_ms,
            p2.done_ms
        ),
        (MessageStatus::Pending, T0 + 100, T0 + 100, None)
    );
    assert!(
        outbox::replay(&mut tx, T0 + 100, &Replay::One("d3-P3-0".into()))
            .expect("replay")
            .is_empty(),
        "a dropped message is not replayed"
    );

    // Past the budget, pending rows become dead letters at the next claim (not the claimed ones).
    let late = claim_request("d1", T0 + 3_600_050, 10);
    let claim = outbox::claim(&mut tx, &late).expect("claim");
    assert_eq!(claim.expired, vec!["d1-P1-0".to_owned()]);
    assert_eq!(
        claim.due.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["d1-P2-0"]
    );
    let p1 = outbox::get(&mut tx, "d1-P1-0")
        .expect("get")
        .expect("there");
    assert_eq!(p1.status, MessageStatus::Dead);
    assert_eq!(
        p1.last_error.as_deref(),
        Some("retry budget exhausted; last error: HTTP 503")
    );
    // Replay a destination: its dead letters, oldest first.
    assert!(
        outbox::record(
            &mut tx,
            T0,
            "d1-P2-0",
            &AttemptOutcome::Dead {
                error: "again".into()
            }
        )
        .expect("dead")
    );
    assert_eq!(
        outbox::replay(&mut tx, T0 + 200, &Replay::Destination("d1".into())).expect("replay"),
        vec![
            ("d1-P1-0".to_owned(), Some("P1".to_owned())),
            ("d1-P2-0".to_owned(), Some("P2".to_owned()))
        ]
    );
    // Extreme figures neither overflow nor fail.
    let extreme = ClaimRequest {
        destination: "d1".into(),
        now_ms: i64::MAX,
        limit: usize::MAX,
        lease_ms: i64::MAX,
        budget_ms: i64::MIN,
    };
    outbox::claim(&mut tx, &extreme).expect("claim with extreme figures");
    assert_eq!(outbox::release_claims(&mut tx).expect("release"), 0);
    tx.commit().expect("commit");
}

fn inbound_message(id: &str) -> InboundMessage {
    InboundMessage {
        format: "svpl".into(),
        sender: "SE1".into(),
        message_id: id.into(),
        kind: "SipBegaran".into(),
        received_ms: T0,
        body: vec![0, 159, 146, 150, b'<'],
        receipt: "<Kvittens/>".into(),
        patient: Some("Patient/1".into()),
        case_ref: Some("CarePlan/c".into()),
        parties: vec!["SE1".into(), "SE2".into()],
        created: vec!["CarePlan/c".into()],
        updated: Vec::new(),
    }
}

#[test]
fn inbound_messages_are_kept_once() {
    let Some(db) = TestDb::new() else { return };
    let mut c = db.connect();
    let mut tx = c.transaction().expect("tx");
    let m = inbound_message("m1");
    assert!(inbound::put(&mut tx, &m).expect("put"));
    let mut again = m.clone();
    again.receipt = "<Other/>".into();
    assert!(!inbound::put(&mut tx, &again).expect("put again"));
    assert_eq!(
        inbound::get(&mut tx, "svpl", "SE1", "m1").expect("get"),
        Some(m.clone())
    );
    assert_eq!(
        inbound::get(&mut tx, "svpl", "SE2", "m1").expect("get"),
        None
    );
    let mut other_sender = inbound_message("m1");
    other_sender.sender = "SE2".into();
    other_sender.case_ref = None;
    other_sender.patient = None;
    assert!(inbound::put(&mut tx, &other_sender).expect("put"));
    assert_eq!(
        inbound::by_id(&mut tx, "svpl", "m1").expect("by id"),
        vec![m.clone(), other_sender]
    );
    assert_eq!(
        inbound::by_case(&mut tx, "svpl", "CarePlan/c").expect("by case"),
        vec![m.clone()]
    );
    assert!(inbound::set_receipt(&mut tx, "svpl", "SE1", "m1", "<Answered/>").expect("receipt"));
    assert!(!inbound::set_receipt(&mut tx, "svpl", "SE1", "nope", "<A/>").expect("receipt"));
    assert_eq!(
        inbound::get(&mut tx, "svpl", "SE1", "m1")
            .expect("get")
            .expect("there")
            .receipt,
        "<Answered/>"
    );

    let pending = |receiver: &str| ReceiverReceipt {
        receiver: receiver.into(),
        receipt: None,
        answered_ms: None,
    };
    let answered = ReceiverReceipt {
        receiver: "SE9".into(),
        receipt: Some("<Kvittens/>".into()),
        answered_ms: Some(T0 + 1),
    };
    inbound::put_receiver_receipt(&mut tx, "svpl", "SE1", "m1", &pending("SE9")).expect("pending");
    inbound::put_receiver_receipt(&mut tx, "svpl", "SE1", "m1", &pending("SE10")).expect("pending");
    inbound::put_receiver_receipt(&mut tx, "svpl", "SE1", "m1", &answered).expect("answered");
    // A pending row never replaces an answer.
    inbound::put_receiver_receipt(&mut tx, "svpl", "SE1", "m1", &pending("SE9")).expect("pending");
    assert_eq!(
        inbound::receiver_receipts(&mut tx, "svpl", "SE1", "m1").expect("receipts"),
        vec![pending("SE10"), answered],
        "by receiver, in byte order"
    );
    tx.commit().expect("commit");

    // Across connections: the second put of one message waits for the first, then keeps nothing.
    let mut tx = c.transaction().expect("tx");
    assert!(inbound::put(&mut tx, &inbound_message("m2")).expect("put"));
    let mut second = db.connect();
    let second_pid = pid(&mut second);
    let other = std::thread::spawn(move || {
        let mut tx = second.transaction().expect("tx");
        let kept = inbound::put(&mut tx, &inbound_message("m2"));
        tx.commit().expect("commit");
        kept
    });
    wait_until_blocked(&db, second_pid);
    tx.commit().expect("commit");
    assert!(!other.join().expect("thread").expect("put"));
}
