//! The PostgreSQL reads against SQLite's, differentially: one data set written with the same SQL into a fresh
//! SQLite database and a fresh PostgreSQL schema, then every read, search, history and timeline query asked
//! of both as several actors, and the answers compared whole (and some checked against what they must be).
//!
//! These tests need PostgreSQL: they run when `NAVET_TEST_DATABASE_URL` is set (as the integration suites do)
//! and return at once, passing, only when it is unset. Set but unreachable is a failure.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{migrate, reads, sql};
use crate::fhir::visibility::Visibility;
use crate::search::index::index_resource;
use crate::search::params::SearchParams;
use crate::search::query::{PageKey, SearchQuery, parse_query};
use crate::store::arg::Arg;
use crate::store::schema::SQLITE_SCHEMA;
use crate::store::{Actor, HistoryQuery, read_sql, search_sql};
use crate::timeline::{TimelineKey, TimelineQuery};

/// 2026-09-21T…: the fixtures' write times are offsets from it.
const T: i64 = 1_790_000_000_000;

/// One data set in both backends, and the PostgreSQL schema to drop afterwards.
struct Db {
    lite: rusqlite::Connection,
    pg: postgres::Client,
    base_url: String,
    schema: String,
    params: SearchParams,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.base_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// The two empty stores, or `None` when `NAVET_TEST_DATABASE_URL` is unset (the only case that skips).
fn database() -> Option<Db> {
    let base_url = std::env::var("NAVET_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let url = migrate::create_schema(&base_url, &schema)
        .unwrap_or_else(|e| panic!("NAVET_TEST_DATABASE_URL is set but unusable: {e}"));
    let mut pg = postgres::Client::connect(&url, postgres::NoTls).expect("connect to PostgreSQL");
    migrate::migrate(&mut pg).expect("migrate");
    let lite = rusqlite::Connection::open_in_memory().expect("SQLite");
    lite.execute_batch(SQLITE_SCHEMA).expect("SQLite schema");
    Some(Db {
        lite,
        pg,
        base_url,
        schema,
        params: SearchParams::embedded(),
    })
}

impl Db {
    /// Runs one statement (`?` placeholders) on both.
    fn exec(&mut self, statement: &str, args: Vec<Arg>) {
        self.lite
            .execute(statement, rusqlite::params_from_iter(args.iter()))
            .unwrap_or_else(|e| panic!("SQLite: {statement}: {e}"));
        sql::execute(&mut self.pg, statement, &args)
            .unwrap_or_else(|e| panic!("PostgreSQL: {statement}: {e}"));
    }

    /// Version `version` of (ty, id), written at `T + at` by `owner`, becomes current, with its index rows
    /// (none for a deletion, `json` None).
    fn put(
        &mut self,
        ty: &str,
        id: &str,
        version: i64,
        owner: &str,
        at: i64,
        json: Option<&Value>,
    ) {
        let lu_ms = T + at;
        let text = json.map(Value::to_string);
        let deleted = i64::from(json.is_none());
        self.exec(
            "INSERT INTO resource_versions (type, id, version, last_updated, lu_ms, owner, deleted, json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                ty.into(),
                id.into(),
                version.into(),
                crate::store::sqlite::format_instant(lu_ms).into(),
                lu_ms.into(),
                owner.into(),
                deleted.into(),
                text.map_or(Arg::Null, Arg::Text),
            ],
        );
        self.exec(
            "DELETE FROM resources_current WHERE type = ? AND id = ?",
            vec![ty.into(), id.into()],
        );
        self.exec(
            "INSERT INTO resources_current (type, id, version, deleted, owner, lu_ms, protected) \
             VALUES (?, ?, ?, ?, ?, ?, 0)",
            vec![
                ty.into(),
                id.into(),
                version.into(),
                deleted.into(),
                owner.into(),
                lu_ms.into(),
            ],
        );
        self.exec(
            "DELETE FROM search_index WHERE type = ? AND id = ?",
            vec![ty.into(), id.into()],
        );
        let rows = json.map_or_else(Vec::new, |j| index_resource(&self.params, ty, j));
        for row in rows {
            let opt = |v: Option<i64>| v.map_or(Arg::Null, Arg::Integer);
            self.exec(
                "INSERT INTO search_index (type, id, param, system, value, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?)",
                vec![
                    ty.into(),
                    id.into(),
                    row.param.into(),
                    row.system.map_or(Arg::Null, Arg::Text),
                    row.value.into(),
                    opt(row.lo),
                    opt(row.hi),
                ],
            );
        }
    }

    fn fact(&mut self, table: &str, values: &[&str]) {
        let columns = match table {
            "participants" => "type, id, hsa",
            "patient_links" => "type, id, patient",
            "care_relations" => "type, id, patient, hsa",
            "consents" => "type, id, patient, kind, principal",
            other => panic!("no table {other}"),
        };
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES ({})",
            search_sql::placeholders(values.len())
        );
        self.exec(&sql, values.iter().map(|v| Arg::from(*v)).collect());
    }

    fn timeline(&mut self, patient: &str, t_ms: i64, ty: &str, id: &str) {
        self.exec(
            "INSERT INTO timeline (patient, t_ms, type, id) VALUES (?, ?, ?, ?)",
            vec![patient.into(), t_ms.into(), ty.into(), id.into()],
        );
    }

    fn query(&self, ty: &str, pairs: &[(&str, &str)]) -> SearchQuery {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_query(&self.params, ty, &pairs, false)
            .unwrap_or_else(|e| panic!("{ty}?{pairs:?}: {e:?}"))
    }
}

fn ms(date: &str) -> i64 {
    date.parse::<jiff::Timestamp>()
        .expect("an instant")
        .as_millisecond()
}

fn observation(subject: &str, code: &str, display: &str, when: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": subject},
        "performer": [{"reference": "Organization/org1"}],
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "u", "system": "http://unitsofmeasure.org", "code": "u"}
    })
}

/// The data set: three patients (one with two versions, ids of mixed case and punctuation so the id order
/// is tested), an organization, observations seen by SE-A as owner, participant, through sammanhållen
/// dokumentation, or not at all (another patient, a blocked owner), a deleted one, a task, the timeline.
fn populate(db: &mut Db) {
    let p1 = |family: &str| {
        json!({"resourceType": "Patient", "gender": "female", "birthDate": "1950-01-02",
               "meta": {"profile": ["http://example.org/fhir/StructureDefinition/patient"]},
               "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": "195001021234"}],
               "name": [{"family": family, "given": ["Anna"]}]})
    };
    db.put("Patient", "p1", 1, "SE-A", 0, Some(&p1("Anders")));
    db.put(
        "Organization",
        "org1",
        1,
        "SE-C",
        5,
        Some(&json!({"resourceType": "Organization", "name": "Vårdcentralen"})),
    );
    db.put("Patient", "p1", 2, "SE-A", 10, Some(&p1("Andersson")));
    let obs6 = observation("Patient/p1", "8867-4", "Heart rate", "2025-12-01", 80.0);
    db.put("Observation", "obs-6", 1, "SE-A", 15, Some(&obs6));
    db.put(
        "Patient",
        "P-2",
        1,
        "SE-B",
        20,
        Some(&json!({"resourceType": "Patient", "gender": "male",
        "birthDate": "1962-05-05", "name": [{"family": "Anderberg", "given": ["Bo"]}]})),
    );
    db.put(
        "Patient",
        "p.3",
        1,
        "SE-A",
        20,
        Some(&json!({"resourceType": "Patient", "gender": "female",
        "name": [{"family": "Åkesson", "given": ["Cecilia"]}]})),
    );
    let obs = [
        (
            "obs-1",
            "Patient/p1",
            "8867-4",
            "Heart rate",
            "2026-01-10",
            72.0,
            "SE-A",
            30,
        ),
        (
            "obs-2",
            "Patient/p1",
            "8480-6",
            "Systolic blood pressure",
            "2025-06-01",
            140.0,
            "SE-B",
            40,
        ),
        (
            "obs-3",
            "Patient/P-2",
            "8867-4",
            "Heart rate",
            "2026-03-01",
            60.0,
            "SE-B",
            50,
        ),
        (
            "Obs-4",
            "Patient/p1",
            "8867-4",
            "Heart rate",
            "2026-02-01",
            65.0,
            "SE-C",
            60,
        ),
        (
            "obs-5",
            "Patient/p1",
            "8480-6",
            "Systolic blood pressure",
            "2026-01-20",
            120.0,
            "SE-D",
            70,
        ),
    ];
    for (id, subject, code, display, when, value, owner, at) in obs {
        db.put(
            "Observation",
            id,
            1,
            owner,
            at,
            Some(&observation(subject, code, display, when, value)),
        );
        db.fact("patient_links", &["Observation", id, subject]);
        db.timeline(subject, ms(&format!("{when}T00:00:00Z")), "Observation", id);
    }
    // obs-2 is SE-B's, with SE-A taking part.
    db.fact("participants", &["Observation", "obs-2", "SE-A"]);
    // obs-6 was deleted; its facts stay (the timeline query must leave it out itself).
    db.put("Observation", "obs-6", 2, "SE-A", 80, None);
    db.fact("patient_links", &["Observation", "obs-6", "Patient/p1"]);
    db.timeline(
        "Patient/p1",
        ms("2025-12-01T00:00:00Z"),
        "Observation",
        "obs-6",
    );
    // A task about both patients: SE-A has a care relationship with p1 through it.
    db.put(
        "Task",
        "task-1",
        1,
        "SE-B",
        35,
        Some(&json!({"resourceType": "Task", "status": "in-progress",
        "intent": "order", "for": {"reference": "Patient/p1"}, "authoredOn": "2026-01-05"})),
    );
    db.fact("patient_links", &["Task", "task-1", "Patient/p1"]);
    db.fact("patient_links", &["Task", "task-1", "Patient/P-2"]);
    db.fact("participants", &["Task", "task-1", "SE-A"]);
    db.fact("care_relations", &["Task", "task-1", "Patient/p1", "SE-A"]);
    db.timeline("Patient/p1", ms("2026-01-05T00:00:00Z"), "Task", "task-1");
    for p in ["p1", "P-2", "p.3"] {
        let r = format!("Patient/{p}");
        db.fact("patient_links", &["Patient", p, &r]);
    }
    // p1 permits everyone, and blocks SE-D's records.
    db.fact("consents", &["Consent", "c1", "Patient/p1", "permit", "*"]);
    db.fact(
        "consents",
        &["Consent", "c2", "Patient/p1", "block", "SE-D"],
    );
}

fn care(sees: &[&str], emergency: bool) -> Actor {
    Actor {
        principal: Arc::from(sees.first().copied().unwrap_or("SE-X")),
        client_id: Some(Arc::from("client")),
        user: None,
        visibility: Visibility::Care {
            sees: sees.iter().map(|s| (*s).to_owned()).collect(),
            emergency,
        },
        population_register: false,
    }
}

fn actors() -> Vec<(&'static str, Actor)> {
    let mut auditor = care(&["SE-AUD"], false);
    auditor.visibility = Visibility::Auditor { reads_log: true };
    vec![
        ("system", Actor::system()),
        ("SE-A", care(&["SE-A", "SE-A-unit"], false)),
        ("SE-A in an emergency", care(&["SE-A"], true)),
        ("nobody", care(&[], false)),
        ("auditor", auditor),
    ]
}

fn ids(versions: &[crate::store::StoredVersion]) -> Vec<String> {
    versions.iter().map(|v| v.id.clone()).collect()
}

/// `query` on both backends as `actor`: the same page, or a panic saying how they differ.
fn search_both(
    db: &mut Db,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    offset: usize,
    count: usize,
) -> crate::store::SearchPage {
    let lite = search_sql::search_page(&db.lite, actor, ty, query, offset, count)
        .unwrap_or_else(|e| panic!("SQLite {ty} {query:?}: {e}"));
    let pg = reads::search_page(&mut db.pg, actor, ty, query, offset, count)
        .unwrap_or_else(|e| panic!("PostgreSQL {ty} {query:?}: {e}"));
    assert_eq!(
        format!("{pg:?}"),
        format!("{lite:?}"),
        "{ty} {query:?} as {actor:?}"
    );
    pg
}

#[test]
fn searches_answer_as_on_sqlite() {
    let Some(mut db) = database() else { return };
    populate(&mut db);
    let searches: &[(&str, &[(&str, &str)])] = &[
        ("Patient", &[]),
        ("Patient", &[("name", "Ander")]),
        ("Patient", &[("name:contains", "berg")]),
        ("Patient", &[("name:exact", "Andersson")]),
        ("Patient", &[("family", "åke")]),
        (
            "Patient",
            &[(
                "identifier",
                "http://electronichealth.se/identifier/personnummer|195001021234",
            )],
        ),
        ("Patient", &[("identifier", "|195001021234")]),
        ("Patient", &[("gender", "female")]),
        ("Patient", &[("gender:not", "male")]),
        ("Patient", &[("birthdate:missing", "true")]),
        ("Patient", &[("birthdate:missing", "false")]),
        (
            "Patient",
            &[("birthdate", "ge1950-01-01"), ("birthdate", "lt1960-01-01")],
        ),
        ("Patient", &[("birthdate", "1962")]),
        ("Patient", &[("_id", "p1,P-2")]),
        ("Patient", &[("_lastUpdated", "ge2026-09-21")]),
        ("Patient", &[("_profile:below", "http://example.org/fhir")]),
        (
            "Patient",
            &[(
                "_profile:above",
                "http://example.org/fhir/StructureDefinition/patient/sub",
            )],
        ),
        (
            "Patient",
            &[(
                "_profile",
                "http://example.org/fhir/StructureDefinition/patient",
            )],
        ),
        ("Patient", &[("_sort", "name")]),
        ("Patient", &[("_sort", "-birthdate,_id")]),
        ("Patient", &[("_sort", "_id")]),
        ("Patient", &[("_revinclude", "Observation:subject")]),
        ("Patient", &[("_has:Observation:subject:code", "8480-6")]),
        ("Patient", &[("_total", "accurate"), ("name", "a")]),
        ("Observation", &[]),
        ("Observation", &[("subject", "p1")]),
        ("Observation", &[("subject", "Patient/p1")]),
        ("Observation", &[("subject", "P-2")]),
        ("Observation", &[("patient", "Patient/P-2")]),
        ("Observation", &[("subject:Patient", "p1")]),
        ("Observation", &[("subject:missing", "true")]),
        ("Observation", &[("code", "http://loinc.org|8867-4")]),
        ("Observation", &[("code", "8867-4,8480-6")]),
        ("Observation", &[("code:text", "heart")]),
        (
            "Observation",
            &[("date", "ge2026-01-01"), ("date", "lt2026-03-01")],
        ),
        ("Observation", &[("date", "2026-01")]),
        ("Observation", &[("date", "sa2026-01-15")]),
        ("Observation", &[("value-quantity", "gt100")]),
        ("Observation", &[("value-quantity", "65||u")]),
        ("Observation", &[("code-value-quantity", "8867-4$lt70")]),
        ("Observation", &[("subject:Patient.name", "Anderberg")]),
        (
            "Observation",
            &[("subject:Patient.gender", "female"), ("code", "8867-4")],
        ),
        (
            "Observation",
            &[("code", "8867-4"), ("_include", "Observation:subject")],
        ),
        (
            "Observation",
            &[
                ("_include", "Observation:performer"),
                ("_include", "Observation:subject:Patient"),
            ],
        ),
        ("Observation", &[("_sort", "date")]),
        ("Observation", &[("_sort", "-date")]),
        ("Observation", &[("_sort", "-code,-_lastUpdated")]),
        ("Observation", &[("_total", "accurate")]),
        (
            "Observation",
            &[
                ("_total", "accurate"),
                ("subject", "p1"),
                ("_sort", "-value-quantity"),
            ],
        ),
        (
            "Task",
            &[
                ("_include", "Task:patient"),
                ("_revinclude:iterate", "Observation:subject"),
            ],
        ),
        ("Organization", &[("name", "vård")]),
    ];
    for (_, actor) in actors() {
        for (ty, pairs) in searches {
            let query = db.query(ty, pairs);
            search_both(&mut db, &actor, ty, &query, 0, 50);
            // A page of one, and the count only.
            search_both(&mut db, &actor, ty, &query, 0, 1);
            search_both(&mut db, &actor, ty, &query, 0, 0);
        }
        // A compartment search (Patient/p1/Observation, Patient/p1/Patient).
        for ty in ["Observation", "Patient", "Task"] {
            let mut query = db.query(ty, &[]);
            query.compartment = Some("Patient/p1".into());
            search_both(&mut db, &actor, ty, &query, 0, 50);
        }
    }

    // What the answers are, not only that they agree.
    let system = Actor::system();
    let se_a = care(&["SE-A", "SE-A-unit"], false);
    let ask = |db: &mut Db, actor: &Actor, ty: &str, pairs: &[(&str, &str)]| {
        let query = db.query(ty, pairs);
        search_both(db, actor, ty, &query, 0, 50)
    };
    // Newest first; P-2 and p.3 were written at once, so by id ('P' < 'p' in byte order).
    assert_eq!(
        ids(&ask(&mut db, &system, "Patient", &[]).matches),
        ["P-2", "p.3", "p1"]
    );
    assert_eq!(
        ids(&ask(&mut db, &system, "Patient", &[("name", "Ander")]).matches),
        ["P-2", "p1"]
    );
    assert_eq!(
        ids(&ask(&mut db, &system, "Patient", &[("name:contains", "berg")]).matches),
        ["P-2"]
    );
    assert_eq!(
        ids(&ask(
            &mut db,
            &system,
            "Patient",
            &[("birthdate:missing", "true")]
        )
        .matches),
        ["p.3"]
    );
    assert_eq!(
        ids(&ask(
            &mut db,
            &system,
            "Patient",
            &[(
                "_profile:above",
                "http://example.org/fhir/StructureDefinition/patient/sub"
            )]
        )
        .matches),
        ["p1"]
    );
    assert_eq!(
        ids(&ask(&mut db, &system, "Observation", &[("subject", "p1")]).matches),
        ["obs-5", "Obs-4", "obs-2", "obs-1"]
    );
    // SE-A: its own, the one it takes part in, and p1's shared record, not the blocked owner's nor P-2's.
    assert_eq!(
        ids(&ask(&mut db, &se_a, "Observation", &[]).matches),
        ["Obs-4", "obs-2", "obs-1"]
    );
    assert_eq!(
        ids(&ask(
            &mut db,
            &care(&["SE-A"], true),
            "Observation",
            &[("subject", "p1")]
        )
        .matches),
        ["obs-5", "Obs-4", "obs-2", "obs-1"]
    );
    assert_eq!(
        ids(&ask(
            &mut db,
            &system,
            "Observation",
            &[("date", "ge2026-01-01"), ("date", "lt2026-03-01")]
        )
        .matches),
        ["obs-5", "Obs-4", "obs-1"]
    );
    assert_eq!(
        ids(&ask(
            &mut db,
            &system,
            "Observation",
            &[("subject:Patient.name", "Anderberg")]
        )
        .matches),
        ["obs-3"]
    );
    let included = ask(
        &mut db,
        &system,
        "Observation",
        &[("code", "8867-4"), ("_include", "Observation:subject")],
    );
    assert_eq!(ids(&included.matches), ["Obs-4", "obs-3", "obs-1"]);
    // The referenced resources in reference order ("Patient/P-2" < "Patient/p1").
    assert_eq!(ids(&included.included), ["P-2", "p1"]);
    let sorted = ask(&mut db, &system, "Observation", &[("_sort", "date")]);
    assert_eq!(
        ids(&sorted.matches),
        ["obs-2", "obs-1", "obs-5", "Obs-4", "obs-3"]
    );
    let total = ask(&mut db, &se_a, "Observation", &[("_total", "accurate")]);
    assert_eq!(total.total, Some(3));
    assert!(
        ask(&mut db, &actors()[4].1, "Observation", &[])
            .matches
            .is_empty()
    );
}

#[test]
fn pages_follow_on_as_on_sqlite() {
    let Some(mut db) = database() else { return };
    populate(&mut db);
    for (_, actor) in actors() {
        for ty in ["Observation", "Patient"] {
            // Keyset paging in the default order: each page starts after the last entry of the one before.
            let mut query = db.query(ty, &[]);
            let mut seen = Vec::new();
            loop {
                let page = search_both(&mut db, &actor, ty, &query, 0, 2);
                seen.extend(ids(&page.matches));
                let Some(last) = page.matches.last() else {
                    break;
                };
                if !page.has_more {
                    break;
                }
                query.after = Some(PageKey {
                    lu_ms: ms(&last.last_updated),
                    id: last.id.clone(),
                });
            }
            let everything = db.query(ty, &[]);
            let all = search_both(&mut db, &actor, ty, &everything, 0, 50);
            assert_eq!(seen, ids(&all.matches), "{ty} as {actor:?}");
            // Offset paging under _sort, over a snapshot.
            let mut sorted = db.query(ty, &[("_sort", "-_lastUpdated,_id")]);
            sorted.snapshot_ms = Some(T + 45);
            for offset in [0, 2, 4, 10] {
                search_both(&mut db, &actor, ty, &sorted, offset, 2);
            }
        }
    }
    let system = Actor::system();
    let mut query = db.query("Observation", &[]);
    let first = search_both(&mut db, &system, "Observation", &query, 0, 2);
    assert_eq!(ids(&first.matches), ["obs-5", "Obs-4"]);
    assert!(first.has_more);
    query.after = Some(PageKey {
        lu_ms: T + 60,
        id: "Obs-4".into(),
    });
    let second = search_both(&mut db, &system, "Observation", &query, 0, 2);
    assert_eq!(ids(&second.matches), ["obs-3", "obs-2"]);
}

#[test]
fn reads_and_history_answer_as_on_sqlite() {
    let Some(mut db) = database() else { return };
    populate(&mut db);
    let resources = [
        ("Patient", "p1"),
        ("Patient", "P-2"),
        ("Organization", "org1"),
        ("Observation", "obs-1"),
        ("Observation", "obs-2"),
        ("Observation", "obs-3"),
        ("Observation", "Obs-4"),
        ("Observation", "obs-5"),
        ("Observation", "obs-6"),
        ("Task", "task-1"),
        ("Task", "absent"),
    ];
    for (_, actor) in actors() {
        for (ty, id) in resources {
            let lite = read_sql::current(&db.lite, &actor, ty, id).expect("SQLite current");
            let pg = reads::read_current(&mut db.pg, &actor, ty, id).expect("PostgreSQL current");
            assert_eq!(format!("{pg:?}"), format!("{lite:?}"), "{ty}/{id}");
            let pg_read = reads::read(&mut db.pg, &actor, ty, id, None).expect("read");
            assert_eq!(
                format!("{pg_read:?}"),
                format!("{:?}", lite.map(|c| c.version))
            );
            for v in [1, 2, 3] {
                let lite = read_sql::version(&db.lite, &actor, ty, id, v).expect("SQLite version");
                let pg =
                    reads::read(&mut db.pg, &actor, ty, id, Some(v)).expect("PostgreSQL version");
                assert_eq!(
                    format!("{pg:?}"),
                    format!("{lite:?}"),
                    "{ty}/{id}/_history/{v}"
                );
            }
            let lite = search_sql::visible(&db.lite, &actor, ty, id).expect("SQLite visible");
            let pg = reads::visible(&mut db.pg, &actor, ty, id).expect("PostgreSQL visible");
            assert_eq!(pg, lite, "{ty}/{id} visible");
            let lite = read_sql::patients_of(&db.lite, ty, id).expect("SQLite patients");
            let pg = reads::patients_of(&mut db.pg, ty, id).expect("PostgreSQL patients");
            assert_eq!(pg, lite);
            let q = HistoryQuery {
                resource_type: Some(ty.into()),
                id: Some(id.into()),
                since_ms: None,
                offset: 0,
                count: 10,
            };
            let lite = read_sql::history(&db.lite, &actor, &q).expect("SQLite history");
            let pg = reads::history(&mut db.pg, &actor, &q).expect("PostgreSQL history");
            assert_eq!(format!("{pg:?}"), format!("{lite:?}"), "{ty}/{id}/_history");
        }
        for (ty, since) in [
            (None, None),
            (Some("Observation"), None),
            (None, Some(T + 20)),
        ] {
            for (offset, count) in [(0, 3), (3, 3), (0, 100), (100, 3)] {
                let q = HistoryQuery {
                    resource_type: ty.map(str::to_owned),
                    id: None,
                    since_ms: since,
                    offset,
                    count,
                };
                let lite = read_sql::history(&db.lite, &actor, &q).expect("SQLite history");
                let pg = reads::history(&mut db.pg, &actor, &q).expect("PostgreSQL history");
                assert_eq!(format!("{pg:?}"), format!("{lite:?}"), "{q:?}");
            }
        }
        for (ty, pairs) in [
            ("Observation", vec![("code", "8867-4")]),
            ("Patient", vec![("name", "and")]),
        ] {
            let query = db.query(ty, &pairs);
            for limit in [1, 2, 100] {
                let lite = search_sql::matching_ids(&db.lite, &actor, ty, &query, limit)
                    .expect("SQLite ids");
                let pg = reads::matching_ids(&mut db.pg, &actor, ty, &query, limit)
                    .expect("PostgreSQL ids");
                assert_eq!(pg, lite);
            }
        }
    }

    let system = Actor::system();
    let se_a = care(&["SE-A", "SE-A-unit"], false);
    let p1 = reads::read_current(&mut db.pg, &system, "Patient", "p1")
        .expect("read")
        .expect("p1");
    assert_eq!(
        (p1.version.version, p1.patients.clone()),
        (2, vec!["Patient/p1".to_owned()])
    );
    let task = reads::read_current(&mut db.pg, &se_a, "Task", "task-1")
        .expect("read")
        .expect("task");
    assert_eq!(task.patients, ["Patient/P-2", "Patient/p1"]);
    let deleted = reads::read(&mut db.pg, &system, "Observation", "obs-6", None)
        .expect("read")
        .expect("obs-6");
    assert!(deleted.deleted && deleted.json.is_none());
    let old = reads::read(&mut db.pg, &system, "Observation", "obs-6", Some(1))
        .expect("read")
        .expect("v1");
    assert!(!old.deleted && old.json.is_some());
    assert!(
        reads::read(&mut db.pg, &se_a, "Observation", "obs-3", None)
            .expect("read")
            .is_none()
    );
    assert!(
        reads::read(&mut db.pg, &se_a, "Observation", "obs-5", Some(1))
            .expect("read")
            .is_none()
    );
    assert!(
        reads::read(&mut db.pg, &se_a, "Observation", "Obs-4", None)
            .expect("read")
            .is_some()
    );
    assert!(reads::visible(&mut db.pg, &se_a, "Observation", "obs-2").expect("visible"));
    assert!(!reads::visible(&mut db.pg, &se_a, "Observation", "obs-5").expect("visible"));
    let (history, more) = reads::history(
        &mut db.pg,
        &system,
        &HistoryQuery {
            resource_type: Some("Patient".into()),
            id: Some("p1".into()),
            since_ms: None,
            offset: 0,
            count: 1,
        },
    )
    .expect("history");
    assert_eq!((history.len(), history[0].version, more), (1, 2, true));
}

#[test]
fn the_walk_over_current_resources_answers_as_on_sqlite() {
    let Some(mut db) = database() else { return };
    populate(&mut db);
    let (mut lite_all, mut pg_all) = (Vec::new(), Vec::new());
    let mut after: Option<(String, String)> = None;
    loop {
        let key = after.as_ref().map(|(t, i)| (t.as_str(), i.as_str()));
        let lite = read_sql::current_after(&db.lite, key, 3).expect("SQLite walk");
        let pg = reads::current_after(&mut db.pg, key, 3).expect("PostgreSQL walk");
        assert_eq!(format!("{pg:?}"), format!("{lite:?}"));
        let Some(last) = pg.last() else { break };
        after = Some((last.resource_type.clone(), last.id.clone()));
        lite_all.extend(lite);
        pg_all.extend(pg);
    }
    let walked: Vec<String> = pg_all
        .iter()
        .map(|v| format!("{}/{}", v.resource_type, v.id))
        .collect();
    assert_eq!(
        walked,
        [
            "Observation/Obs-4",
            "Observation/obs-1",
            "Observation/obs-2",
            "Observation/obs-3",
            "Observation/obs-5",
            "Organization/org1",
            "Patient/P-2",
            "Patient/p.3",
            "Patient/p1",
            "Task/task-1"
        ]
    );
    assert_eq!(lite_all.len(), pg_all.len());
}

#[test]
fn timelines_answer_as_on_sqlite() {
    let Some(mut db) = database() else { return };
    populate(&mut db);
    let base = TimelineQuery {
        patient: "Patient/p1".into(),
        types: None,
        start_ms: None,
        end_ms: None,
        since_ms: None,
        after: None,
        count: 2,
        total: true,
    };
    let variants = vec![
        base.clone(),
        TimelineQuery {
            count: 50,
            ..base.clone()
        },
        TimelineQuery {
            count: 0,
            ..base.clone()
        },
        TimelineQuery {
            types: Some(vec!["Observation".into()]),
            ..base.clone()
        },
        TimelineQuery {
            types: Some(vec![]),
            ..base.clone()
        },
        TimelineQuery {
            start_ms: Some(ms("2026-01-01T00:00:00Z")),
            end_ms: Some(ms("2026-02-01T00:00:00Z")),
            ..base.clone()
        },
        TimelineQuery {
            since_ms: Some(T + 40),
            total: false,
            ..base.clone()
        },
        TimelineQuery {
            patient: "Patient/P-2".into(),
            ..base.clone()
        },
    ];
    for (_, actor) in actors() {
        for q in &variants {
            // Every page of it, each after the last entry of the one before.
            let mut q = q.clone();
            loop {
                let lite =
                    search_sql::timeline_page(&db.lite, &actor, &q).expect("SQLite timeline");
                let pg = reads::timeline_page(&mut db.pg, &actor, &q).expect("PostgreSQL timeline");
                assert_eq!(format!("{pg:?}"), format!("{lite:?}"), "{q:?} as {actor:?}");
                let Some((t_ms, last)) = pg.entries.last() else {
                    break;
                };
                if !pg.has_more {
                    break;
                }
                q.after = Some(TimelineKey {
                    time_ms: *t_ms,
                    resource_type: last.resource_type.clone(),
                    id: last.id.clone(),
                });
            }
        }
    }
    let se_a = care(&["SE-A"], false);
    let page = reads::timeline_page(&mut db.pg, &se_a, &TimelineQuery { count: 50, ..base })
        .expect("timeline");
    let got: Vec<&str> = page.entries.iter().map(|(_, v)| v.id.as_str()).collect();
    // Newest first; not the deleted obs-6, nor obs-5 (its owner is blocked).
    assert_eq!(got, ["Obs-4", "obs-1", "task-1", "obs-2"]);
    assert_eq!(page.total, Some(4));
}

#[test]
fn extreme_counts_and_offsets_answer_as_on_sqlite() {
    let Some(mut db) = database() else { return };
    populate(&mut db);
    let system = Actor::system();
    let query = db.query("Observation", &[("_sort", "_id")]);
    for (offset, count) in [
        (usize::MAX, 5),
        (0, usize::MAX - 1),
        (usize::MAX, usize::MAX - 1),
    ] {
        search_both(&mut db, &system, "Observation", &query, offset, count);
    }
    let q = HistoryQuery {
        resource_type: None,
        id: None,
        since_ms: Some(i64::MIN),
        offset: usize::MAX,
        count: usize::MAX,
    };
    let lite = read_sql::history(&db.lite, &system, &q).expect("SQLite history");
    let pg = reads::history(&mut db.pg, &system, &q).expect("PostgreSQL history");
    assert_eq!(format!("{pg:?}"), format!("{lite:?}"));
    let q = HistoryQuery { offset: 0, ..q };
    let (all, more) = reads::history(&mut db.pg, &system, &q).expect("PostgreSQL history");
    assert_eq!((all.len(), more), (13, false));
    let lite = search_sql::matching_ids(&db.lite, &system, "Observation", &query, usize::MAX)
        .expect("SQLite ids");
    let pg = reads::matching_ids(&mut db.pg, &system, "Observation", &query, usize::MAX)
        .expect("PostgreSQL ids");
    assert_eq!((pg.len(), &pg), (5, &lite));
    let timeline = TimelineQuery {
        patient: "Patient/p1".into(),
        types: None,
        start_ms: Some(i64::MIN),
        end_ms: Some(i64::MAX),
        since_ms: None,
        after: None,
        count: usize::MAX,
        total: true,
    };
    let lite = search_sql::timeline_page(&db.lite, &system, &timeline).expect("SQLite timeline");
    let pg = reads::timeline_page(&mut db.pg, &system, &timeline).expect("PostgreSQL timeline");
    assert_eq!(format!("{pg:?}"), format!("{lite:?}"));
}
