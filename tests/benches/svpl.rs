//! The pure SVPL translation (read XML + translate to FHIR), per message, on one core: `cargo bench --bench
//! svpl -- --warm-up-time 1 --measurement-time 4`. No store, no HTTP (tests/load/svpl.sh measures POST /svpl).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use navet::svpl::mapping::Mapping;
use navet::svpl::message;
use navet::svpl::translate::{self, Case, Context, Current};
use serde_json::json;
use std::hint::black_box;

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/golden/svpl/{name}.in.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn context(case: Case) -> Context {
    Context {
        patient: "Patient/bench".into(),
        received: "2026-11-23T09:20:00Z".parse().unwrap(),
        case,
    }
}

fn bench(c: &mut Criterion) {
    let map = Mapping::embedded();
    let begaran = golden("sip-01-begaran");
    let plan = golden("sip-03-plan");
    // The case the plan follows: what the request made.
    let first = message::read(&begaran, &map).unwrap();
    let t = translate::translate(&first, &context(Case::default()), &map).unwrap();
    let case = Case {
        case_ref: Some(t.case_ref.clone()),
        opened_by: Some(first.envelope.sender.hsa.to_string()),
        resources: t
            .writes
            .iter()
            .map(|w| {
                let mut v = w.value.clone();
                v["id"] = json!(w.id);
                Current {
                    resource_type: w.resource_type.clone(),
                    id: w.id.clone(),
                    value: v,
                }
            })
            .collect(),
        referenced: Vec::new(),
        referenced_parties: t.parties.clone(),
    };
    let mut group = c.benchmark_group("svpl_translate");
    group.throughput(Throughput::Elements(1));
    // The Context (what the store read) is made and dropped outside the timed part: cloning the case's
    // resources is not translation, and it was a quarter of the SipPlan figure. The Translation is dropped
    // inside it, as before.
    group.bench_function("SipBegaran", |b| {
        b.iter_batched_ref(
            || context(Case::default()),
            |cx| {
                let m = message::read(&begaran, &map).unwrap();
                drop(black_box(translate::translate(&m, cx, &map).unwrap()));
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("SipPlan", |b| {
        b.iter_batched_ref(
            || context(case.clone()),
            |cx| {
                let m = message::read(&plan, &map).unwrap();
                drop(black_box(translate::translate(&m, cx, &map).unwrap()));
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
