//! The admission → utskrivningsklar → utskrivning chain through the FHIR API, sent to the SVPL endpoints of
//! Kristianstads kommun (down at first, then one 500) and Näsby vårdcentral: each message arrives exactly once
//! at each, in order, following the admission notice (`Referens`), and each receiver's Kvittens is kept and
//! read by receiver (`GET /svpl/messages/{sender}/{id}/kvittens[?mottagare=]`) by exactly the sender, admins
//! and auditors.

use super::*;
use navet::auth::PurposeOfUse;

/// The app with the kommun's SVPL endpoint at `kommun_port` and one for Näsby vårdcentral at `vc_port`.
async fn app_with_two_endpoints(kommun_port: u16, vc_port: u16) -> (TestApp, OutboxSettings) {
    let mut outbox = None;
    let app = spawn_with(false, |s| {
        let d = s
            .outbox
            .destinations
            .iter_mut()
            .find(|d| d.svpl && d.principal == KOMMUN_HSA)
            .expect("the demo configures Kristianstads kommun's SVPL endpoint");
        d.url = reqwest::Url::parse(&format!("http://127.0.0.1:{kommun_port}/svpl")).expect("url");
        d.connect_timeout = Duration::from_millis(200);
        d.request_timeout = Duration::from_millis(500);
        d.initial_backoff = Duration::from_millis(20);
        d.max_backoff = Duration::from_millis(100);
        d.breaker_pause = Duration::from_millis(100);
        let mut vc = d.clone();
        vc.name = "nasby-svpl".into();
        vc.principal = VC_HSA.into();
        vc.url = reqwest::Url::parse(&format!("http://127.0.0.1:{vc_port}/svpl")).expect("url");
        assert!(
            !s.outbox
                .destinations
                .iter()
                .any(|d| d.principal == VC_HSA && d.svpl),
            "the demo has no SVPL endpoint for the vårdcentral yet"
        );
        s.outbox.destinations.push(vc);
        s.outbox.poll_interval = Duration::from_millis(20);
        outbox = Some(s.outbox.clone());
    })
    .await;
    (app, outbox.expect("settings"))
}

fn informing(mut encounter: Value, who: &[&str]) -> Value {
    encounter["participant"] = Value::Array(
        who.iter()
            .map(|h| {
                json!({"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                             "code": "IRCP"}]}],
                       "individual": hsa(h)})
            })
            .collect(),
    );
    encounter
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_chain_arrives_once_in_order_at_each_receiver_and_each_receipt_is_kept() {
    let (kommun_port, vc_port) = (closed_port(), closed_port());
    let (app, settings) = app_with_two_endpoints(kommun_port, vc_port).await;
    let csk = as_(&app, "demo-csk", "SE2321000255-P0001").await;
    let patient = format!(
        "Patient/{}",
        create(&app, &csk, patient(PNR, "Tolvansson")).await["id"]
            .as_str()
            .expect("id")
    );

    // The hospital admits, marks ready for discharge, discharges; a change in between sends nothing.
    let admitted = create(
        &app,
        &csk,
        informing(admission(&patient), &[KOMMUN_HSA, VC_HSA]),
    )
    .await;
    let encounter_id = admitted["id"].as_str().expect("id").to_owned();
    let mut ready = admitted.clone();
    ready["extension"] = json!([{"url": "http://navet.example/StructureDefinition/discharge-ready",
                                 "valueDateTime": "2026-11-25T10:30:00+01:00"}]);
    let (s, body) = put(&app, &csk, &ready).await;
    assert_eq!(s, 200, "{body}");
    let mut still_ready = body.clone();
    still_ready["period"]["start"] = json!("2026-11-22T21:45:00+01:00");
    let (s, body) = put(&app, &csk, &still_ready).await;
    assert_eq!(s, 200, "{body}");
    let mut finished = body.clone();
    finished["status"] = json!("finished");
    finished["period"]["end"] = json!("2026-11-26T14:00:00+01:00");
    let (s, body) = put(&app, &csk, &finished).await;
    assert_eq!(s, 200, "{body}");

    // Exactly three messages, each to both receivers: six rows.
    let rows = outbox_rows(&app).await;
    let mut per_destination: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *per_destination.entry(r.destination.clone()).or_insert(0) += 1;
        assert_eq!(r.patient.as_deref(), Some(patient.as_str()));
    }
    assert_eq!(
        per_destination,
        BTreeMap::from([("kristianstad-svpl".into(), 3), ("nasby-svpl".into(), 3)]),
        "{rows:?}"
    );

    // The kept copies of the case: exactly the three messages the hospital sent.
    let case = format!("Encounter/{encounter_id}");
    let kept = app
        .state
        .store
        .transact(&Actor::system(), move |tx| {
            Ok(tx.inbound_by_case("svpl", &case)?)
        })
        .await
        .expect("kept");
    let kept_kinds: Vec<(String, String)> = kept
        .iter()
        .map(|m| (m.sender.clone(), m.kind.clone()))
        .collect();
    assert_eq!(
        kept_kinds,
        [
            (CSK_HSA.to_owned(), "Inskrivningsmeddelande".to_owned()),
            (CSK_HSA.to_owned(), "Utskrivningsklar".to_owned()),
            (CSK_HSA.to_owned(), "Utskrivningsmeddelande".to_owned())
        ]
    );
    let ids: Vec<String> = kept.iter().map(|m| m.message_id.clone()).collect();

    // The kommun is down, then answers 500 once; the vårdcentral accepts at once.
    let workers = navet::outbox::worker::start_with(
        app.state.store.clone(),
        &settings,
        Some(app.state.fhir.clone()),
    )
    .await
    .expect("workers");
    let vc_endpoint = Municipality::new(Vec::new(), Behaviour::Accept).receiving_as(VC_HSA);
    serve(vc_port, vc_endpoint.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kommun = Municipality::new(vec![Behaviour::Fail500], Behaviour::Accept);
    serve(kommun_port, kommun.clone()).await;
    wait_until("both receivers answered all three", || {
        kommun.answered().len() == 3 && vc_endpoint.answered().len() == 3
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox_rows(&app)
        .await
        .iter()
        .any(|r| r.status != MessageStatus::Delivered)
    {
        assert!(Instant::now() < deadline, "rows not recorded as delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    workers.stop().await;

    // Each receiver: each message once, in the order of the changes, each following the admission notice.
    let map = Mapping::embedded();
    for endpoint in [&kommun, &vc_endpoint] {
        let accepted: Vec<(String, String)> = endpoint
            .log()
            .into_iter()
            .filter(|(_, _, b)| *b == Behaviour::Accept)
            .map(|(id, kind, _)| (id, kind))
            .collect();
        assert_eq!(
            accepted,
            [
                (ids[0].clone(), "Inskrivningsmeddelande".to_owned()),
                (ids[1].clone(), "Utskrivningsklar".to_owned()),
                (ids[2].clone(), "Utskrivningsmeddelande".to_owned())
            ],
            "{:?}",
            endpoint.log()
        );
        let bodies = endpoint.bodies.lock().expect("bodies").clone();
        for (id, expected_body) in [
            (&ids[1], "Tidpunkt>2026-11-25T10:30:00+01:00<"),
            (&ids[2], "tid=\"2026-11-26T14:00:00+01:00\""),
        ] {
            let m = message::read(bodies[id].as_bytes(), &map).expect("reads");
            assert_eq!(m.envelope.reference.as_deref(), Some(ids[0].as_str()));
            assert_eq!(
                m.envelope
                    .recipients
                    .iter()
                    .map(|r| r.hsa.to_string())
                    .collect::<BTreeSet<_>>(),
                BTreeSet::from([KOMMUN_HSA.to_owned(), VC_HSA.to_owned()])
            );
            assert!(bodies[id].contains(expected_body), "{}", bodies[id]);
        }
    }
    assert_eq!(kommun.log()[0].2, Behaviour::Fail500);

    // Each receiver's receipt, by receiver; the list names both; an unknown receiver or a bad HSA-id is said.
    let base = format!("{}/svpl/messages/{CSK_HSA}/{}/kvittens", app.base, ids[2]);
    for (receiver, endpoint_hsa) in [(KOMMUN_HSA, KOMMUN_HSA), (VC_HSA, VC_HSA)] {
        let (s, text) = get(&csk, &format!("{base}?mottagare={receiver}")).await;
        assert_eq!(s, 200, "{text}");
        let k = Kvittens::from_xml(text.as_bytes(), &map).expect("a Kvittens");
        assert_eq!(
            (k.sender.as_str(), k.status, k.reference.as_deref()),
            (endpoint_hsa, Status::Mottagen, Some(ids[2].as_str()))
        );
    }
    let (s, list) = get(&csk, &base).await;
    assert_eq!(s, 200, "{list}");
    let root = navet::svpl::xml::parse(list.as_bytes(), &map.namespace).expect("xml");
    let listed: BTreeSet<(String, String)> = root
        .children
        .iter()
        .map(|c| {
            (
                c.attr("hsaId").unwrap_or_default().to_owned(),
                c.attr("status").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([
            (KOMMUN_HSA.to_owned(), "mottagen".to_owned()),
            (VC_HSA.to_owned(), "mottagen".to_owned())
        ])
    );
    let (s, _) = get(&csk, &format!("{base}?mottagare=SE2321000255-MTN01")).await;
    assert_eq!(s, 404);
    let (s, _) = get(&csk, &format!("{base}?mottagare=inte-ett-hsa-id")).await;
    assert_eq!(s, 400);
    let (s, _) = get(&csk, &format!("{base}?vem={KOMMUN_HSA}")).await;
    assert_eq!(s, 400);

    // Who reads the receipts: exactly the sender, the admin and the auditor.
    let mut readers = BTreeSet::new();
    for (client, user, _) in PRINCIPALS {
        let c = as_(&app, client, user).await;
        if get(&c, &base).await.0 == 200 {
            readers.insert(client.to_owned());
        }
    }
    let key = navet::auth::cli::demo_private_key("demo-admin").expect("key");
    let token =
        navet::auth::cli::fetch_token(&app.base, "demo-admin", key, "system/Organization.rs", None)
            .await
            .expect("admin token");
    let admin = authorized_client(&token);
    let (s, admin_list) = get(&admin, &base).await;
    if s == 200 {
        assert_eq!(admin_list, list);
        readers.insert("demo-admin".into());
    }
    let auditor = user_client(
        &app,
        "demo-auditor",
        "SE2321000255-P0900",
        PurposeOfUse::Hoperat,
        "system/AuditEvent.rs",
    )
    .await;
    if get(&auditor, &base).await.0 == 200 {
        readers.insert("demo-auditor".into());
    }
    assert_eq!(
        readers,
        BTreeSet::from([
            "demo-admin".into(),
            "demo-auditor".into(),
            "demo-csk".into()
        ])
    );
    // The admin reads receipts, not the messages (they carry the patient block).
    let (s, _) = get(
        &admin,
        &format!("{}/svpl/messages/{CSK_HSA}/{}", app.base, ids[2]),
    )
    .await;
    assert_eq!(s, 404);

    // The admin's read of the receipts is one access-log record naming the message and the patient.
    let admin_reads: Vec<Value> = app
        .state
        .store
        .audit_page(&Actor::system(), 0, i64::MAX, 0, 100_000)
        .await
        .expect("log")
        .into_iter()
        .filter_map(|(_, j)| serde_json::from_str::<Value>(&j).ok())
        .filter(|e| {
            e["agent"].to_string().contains("SE2321000255-ADM01")
                && e["entity"]
                    .to_string()
                    .contains(&format!("svpl-message/{CSK_HSA}/{}", ids[2]))
        })
        .collect();
    assert_eq!(admin_reads.len(), 1, "{admin_reads:?}");
    assert!(
        admin_reads[0]["entity"].to_string().contains(&patient),
        "{}",
        admin_reads[0]
    );
}

/// The kinds of the messages in the outbox, oldest first.
async fn sent_kinds(app: &TestApp) -> Vec<String> {
    let map = Mapping::embedded();
    outbox_rows(app)
        .await
        .iter()
        .map(|r| {
            message::read(r.payload.as_bytes(), &map)
                .expect("reads")
                .envelope
                .kind
                .as_str()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_plan_its_overall_responsible_principal_completes_sends_one_sip_avslut() {
    let (app, _) = app_with_endpoint(closed_port()).await;
    let vc = as_(&app, "demo-vc-nasby", "SE2321000255-P0301").await;
    let patient = format!(
        "Patient/{}",
        create(&app, &vc, patient(PNR, "Tolvansson")).await["id"]
            .as_str()
            .expect("id")
    );
    let mut plan = sip_case(&app, &vc, &patient).await;
    plan["status"] = json!("active");
    plan["activity"] = json!([
        insats("kommun", KOMMUN_HSA, "Hemtjänst morgon och kväll"),
        insats("region", VC_HSA, "Läkemedelsgenomgång")
    ]);
    let (s, active) = put(&app, &vc, &plan).await;
    assert_eq!(s, 200, "{active}");
    assert_eq!(sent_kinds(&app).await, ["SipKallelse", "SipPlan"]);

    // Completed without a reason: the SipAvslut would be refused, so the change is, and nothing is stored.
    let mut completed = active.clone();
    completed["status"] = json!("completed");
    let (s, outcome) = put(&app, &vc, &completed).await;
    assert_eq!(s, 422, "{outcome}");
    assert!(outcome.to_string().contains("SipAvslut"), "{outcome}");
    let (s, stored) = get(
        &vc,
        &format!("{}/CarePlan/{}", app.fhir, plan["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&stored).expect("json")["status"],
        "active"
    );

    // With the reason as a note: one SipAvslut to the kommun; completing it again sends nothing more.
    completed["note"] =
        json!([{"authorReference": hsa(VC_HSA), "text": "Målen i planen är uppnådda"}]);
    let (s, body) = put(&app, &vc, &completed).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = put(&app, &vc, &body).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        sent_kinds(&app).await,
        ["SipKallelse", "SipPlan", "SipAvslut"]
    );
    let rows = outbox_rows(&app).await;
    let avslut = message::read(rows[2].payload.as_bytes(), &Mapping::embedded()).expect("reads");
    assert_eq!(
        avslut.envelope.reference.as_deref(),
        Some(format!("CarePlan/{}", plan["id"].as_str().expect("id")).as_str())
    );
    assert_eq!(
        avslut
            .envelope
            .recipients
            .iter()
            .map(|r| r.hsa.to_string())
            .collect::<Vec<_>>(),
        [KOMMUN_HSA]
    );
    assert!(
        rows[2]
            .payload
            .contains("<Orsak>Målen i planen är uppnådda</Orsak>")
    );
}
