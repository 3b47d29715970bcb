//! The receiver's answer to an SVPL message navet sent (`super::outbound`): a `Kvittens` (spec "Transport").
//! The outbox worker (outbox/worker.rs) posts the message, hands the reply to [`judge`], and records the
//! outcome with [`record`] in the transaction that marks the row: the receipt is kept per receiver (by message
//! and receiver HSA-id), and [`receipts_index`] lists them for a message sent to several.
//!
//! | reply | outcome |
//! |---|---|
//! | a Kvittens `mottagen` for this message (any status below 500) | delivered; the receipt kept |
//! | a Kvittens `avvisad` for this message (any status below 500) | delivered but refused, final (the same bytes would be refused again); the receipt kept; a Task for the sender naming the `Fel` codes |
//! | 5xx, 408, 429, no connection, a timeout | retried with backoff (the receiver is idempotent by sender and message id) |
//! | 2xx without a Kvittens for this message | retried: navet cannot tell whether the receiver stored it, and a repeat is answered with the first receipt; after the retry budget an admin sees a dead letter |
//! | another 4xx without a Kvittens | dead letter: the receiver refuses the request itself (e.g. its credential) |

use serde_json::{Value, json};

use super::FORMAT;
use super::kvittens::{Kvittens, Status};
use super::mapping::Mapping;
use super::message;
use super::translate::{CS_TASK, hsa_ref, id_for, message_system};
use super::xml;
use crate::clients::{Reply, SendError};
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::ops;
use crate::store::WriteTx;
use crate::store::inbound::ReceiverReceipt;
use crate::store::outbox::OutboxMessage;

/// `Task.code` of the Task that tells a sender its message was refused.
pub const TASK_AVVISAD: &str = "svpl-avvisad";
/// `Task.input.type` system of the receiver's `Fel` codes (kept as the receiver wrote them).
pub const CS_FEL: &str = "urn:navet:svpl:fel";

/// A receiver's receipt for one message: the text as answered, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub text: String,
    pub kvittens: Kvittens,
    /// Each `Fel` as written: the receiver's code (navet's own or not), field and text.
    pub errors: Vec<(String, String, String)>,
}

/// The id of the SVPL message an outbox row carries (its outbox id is `{message id}~{receiver}`).
fn message_id(row: &OutboxMessage) -> &str {
    row.id.rsplit_once('~').map_or(row.id.as_str(), |(m, _)| m)
}

/// What the reply to `row` means (the table above). `Ok` is final: delivered, refused or not.
pub fn judge(map: &Mapping, row: &OutboxMessage, reply: &Reply) -> Result<Receipt, SendError> {
    let status = reply.status;
    let receipt = Kvittens::from_xml(&reply.body, map)
        .filter(|k| k.reference.as_deref() == Some(message_id(row)));
    match receipt {
        Some(kvittens) if status < 500 && status != 408 && status != 429 => Ok(Receipt {
            text: String::from_utf8_lossy(&reply.body).into_owned(),
            errors: raw_errors(&reply.body, map),
            kvittens,
        }),
        _ if status >= 500 || status == 408 || status == 429 => Err(SendError::Retryable(format!(
            "the receiver answered {status}"
        ))),
        _ if (200..300).contains(&status) => Err(SendError::Retryable(format!(
            "the receiver answered {status} without a Kvittens for this message"
        ))),
        _ => Err(SendError::Rejected(format!(
            "the receiver refused the request: {status}, without a Kvittens"
        ))),
    }
}

/// The `Fel`s of a receipt as the receiver wrote them (its codes may be its own, not navet's).
fn raw_errors(bytes: &[u8], map: &Mapping) -> Vec<(String, String, String)> {
    let Ok(root) = xml::parse(bytes, &map.namespace) else {
        return Vec::new();
    };
    root.all(map.path("kvittens.error"))
        .into_iter()
        .map(|el| {
            let v = |key: &str| el.value(map.path(key)).unwrap_or_default().to_owned();
            (
                v("kvittens.error.code"),
                v("kvittens.error.field"),
                v("kvittens.error.text"),
            )
        })
        .collect()
}

/// Records a receipt for `row`, delivered to `receiver`, in the worker's transaction: the receipt on the
/// kept message and as `receiver`'s, and for an `avvisad` the Task that tells the sender.
pub fn record(
    fhir: &FhirContext,
    map: &Mapping,
    tx: &mut dyn WriteTx,
    row: &OutboxMessage,
    receiver: &str,
    receipt: &Receipt,
) -> Result<(), ApiError> {
    // The row's payload is the message navet rendered and checked (outbound.rs): it reads.
    let Ok(sent) = message::read(row.payload.as_bytes(), map) else {
        tracing::warn!(message = %row.id, "an outbound SVPL row does not read; its receipt is not kept");
        return Ok(());
    };
    let e = &sent.envelope;
    let sender = e.sender.hsa.as_str();
    // The message's own receipt is the last one answered (a single receiver's, as it always was); each
    // receiver's is kept by its HSA-id beside it.
    tx.set_inbound_receipt(FORMAT, sender, &e.id, &receipt.text)?;
    let (_, now_ms) = tx.now();
    tx.put_receiver_receipt(
        FORMAT,
        sender,
        &e.id,
        &ReceiverReceipt {
            receiver: receiver.to_owned(),
            receipt: Some(receipt.text.clone()),
            answered_ms: Some(now_ms),
        },
    )?;
    if receipt.kvittens.status != Status::Avvisad {
        return Ok(());
    }
    let kept = tx.inbound_message(FORMAT, sender, &e.id)?;
    let about = kept.as_ref().and_then(|k| k.created.first().cloned());
    let (now, _) = tx.now();
    let task = refusal_task(
        e.kind.as_str(),
        &e.id,
        sender,
        receiver,
        row.patient.as_deref(),
        about.as_deref(),
        &receipt.errors,
        &now,
    );
    let id = id_for(sender, &e.id, &format!("avvisad:{receiver}"));
    let prepared = match ops::prepare(fhir, task.to_string().as_bytes(), Some("Task")) {
        Ok(p) => p,
        // The receiver's words did not make a valid Task (they are its text, not navet's): the codes alone.
        Err(_) => {
            let codes: Vec<(String, String, String)> = receipt
                .errors
                .iter()
                .map(|(c, _, _)| (clean(c, 64), String::new(), String::new()))
                .collect();
            let plain = refusal_task(
                e.kind.as_str(),
                &e.id,
                sender,
                receiver,
                row.patient.as_deref(),
                about.as_deref(),
                &codes,
                &now,
            );
            ops::prepare(fhir, plain.to_string().as_bytes(), Some("Task"))?
        }
    };
    ops::create_owned(fhir, tx, &prepared, &id, sender)?;
    Ok(())
}

/// The receiver's text, made a FHIR string: no control characters, at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    let s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// The Task that tells `sender` that `receiver` refused its message: owned by the sender and naming nobody
/// else (no requester, no focus: a participant there would let others read it), the patient as `for`, the
/// changed resource as the reason, one `input` per `Fel`.
#[allow(clippy::too_many_arguments)]
fn refusal_task(
    kind: &str,
    id: &str,
    sender: &str,
    receiver: &str,
    patient: Option<&str>,
    about: Option<&str>,
    errors: &[(String, String, String)],
    now: &str,
) -> Value {
    let codes: Vec<String> = errors.iter().map(|(c, _, _)| clean(c, 64)).collect();
    let description = format!(
        "SVPL {kind} {id} avvisades av {receiver}: {}",
        if codes.is_empty() {
            "inga Fel angivna".to_owned()
        } else {
            codes.join(", ")
        }
    );
    let inputs: Vec<Value> = errors
        .iter()
        .map(|(code, field, text)| {
            let detail = [field.as_str(), text.as_str()]
                .iter()
                .filter(|s| !s.trim().is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(": ");
            json!({
                "type": {"coding": [{"system": CS_FEL, "code": clean(code, 64)}]},
                "valueString": clean(&detail, 1000)
            })
        })
        .collect();
    let mut task = json!({
        "resourceType": "Task",
        "identifier": [{"system": message_system(sender), "value": id}],
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": CS_TASK, "code": TASK_AVVISAD,
                             "display": "SVPL-meddelande avvisat av mottagaren"}]},
        "description": description,
        "authoredOn": now,
        "owner": hsa_ref(sender)
    });
    if let Some(p) = patient {
        task["for"] = json!({"reference": p});
    }
    if let Some(a) = about {
        task["reasonReference"] = json!({"reference": a});
    }
    if !inputs.is_empty() {
        task["input"] = Value::Array(inputs);
    }
    task
}

/// The answer of `GET /svpl/messages/{sender}/{id}/kvittens` for a message navet sent to several receivers:
/// each receiver and what it answered (`mottagen`, `avvisad`, or `vantar` before it answers), in navet's
/// namespace. Each receipt itself, byte for byte, is at `…/kvittens?mottagare={HSA-id}`. Pure.
pub fn receipts_index(
    map: &Mapping,
    sender: &str,
    id: &str,
    receipts: &[ReceiverReceipt],
) -> String {
    let mut root = xml::Element::new("Kvittenser");
    root.attrs = vec![
        ("avsandare".into(), sender.to_owned()),
        ("referens".into(), id.to_owned()),
    ];
    for r in receipts {
        let status = match r
            .receipt
            .as_deref()
            .map(|t| Kvittens::from_xml(t.as_bytes(), map))
        {
            None => "vantar",
            Some(Some(k)) => k.status.as_str(),
            // Kept only after `judge` read it; should it no longer read (a changed mapping), say so.
            Some(None) => "olasbar",
        };
        let mut el = xml::Element::new("Mottagare");
        el.attrs = vec![
            ("hsaId".into(), r.receiver.clone()),
            ("status".into(), status.into()),
        ];
        if let Some(at) = r
            .answered_ms
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        {
            el.attrs.push(("besvarad".into(), at.to_string()));
        }
        root.children.push(el);
    }
    root.to_document(&map.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svpl::kvittens::{Fel, FelCode, NAVET_SENDER};

    fn row(id: &str) -> OutboxMessage {
        OutboxMessage {
            seq: 1,
            id: format!("{id}~SE2120000999-HSJ1290"),
            destination: "kommun".into(),
            patient: Some("Patient/p".into()),
            content_type: "application/xml".into(),
            payload: String::new(),
            headers: Vec::new(),
            attempts: 0,
            created_ms: 0,
            budget_start_ms: 0,
            next_attempt_ms: 0,
            status: crate::store::outbox::MessageStatus::Pending,
            last_error: None,
            done_ms: None,
        }
    }

    fn kvittens(reference: &str, status: Status) -> Vec<u8> {
        Kvittens {
            id: "k1".into(),
            created: "2026-11-23T09:15:01Z".into(),
            sender: NAVET_SENDER.into(),
            recipient: None,
            reference: Some(reference.into()),
            status,
            errors: vec![Fel {
                code: FelCode::ReferensOkand,
                field: "/Meddelande/Referens/@id".into(),
                text: "okänd".into(),
            }],
            resources: Vec::new(),
        }
        .to_xml(&Mapping::embedded())
        .into_bytes()
    }

    #[test]
    fn replies_are_judged_by_the_table() {
        let map = Mapping::embedded();
        let r = row("navet-1");
        let reply = |status: u16, body: Vec<u8>| Reply { status, body };
        let ok = judge(&map, &r, &reply(200, kvittens("navet-1", Status::Mottagen))).unwrap();
        assert_eq!(ok.kvittens.status, Status::Mottagen);
        let refused = judge(&map, &r, &reply(422, kvittens("navet-1", Status::Avvisad))).unwrap();
        assert_eq!(refused.kvittens.status, Status::Avvisad);
        assert_eq!(
            refused.errors,
            vec![(
                "REFERENS_OKAND".into(),
                "/Meddelande/Referens/@id".into(),
                "okänd".into()
            )]
        );
        for (status, body) in [
            (500, kvittens("navet-1", Status::Mottagen)),
            (503, Vec::new()),
            (429, Vec::new()),
            (200, b"OK".to_vec()),
            // A receipt for another message is no receipt for this one.
            (200, kvittens("navet-2", Status::Mottagen)),
        ] {
            assert!(
                matches!(
                    judge(&map, &r, &reply(status, body)),
                    Err(SendError::Retryable(_))
                ),
                "{status}"
            );
        }
        assert!(matches!(
            judge(&map, &r, &reply(401, b"no".to_vec())),
            Err(SendError::Rejected(_))
        ));
    }

    proptest::proptest! {
        /// A receiver's reply is network input: any bytes, any status, and mutated receipts are judged
        /// without a panic, and only a receipt naming this message is final.
        #[test]
        fn any_reply_is_judged_without_a_panic(
            status in 100u16..600,
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            insert in "[<>&/=\" a-zA-Z0-9;#x-]{0,12}",
        ) {
            let map = Mapping::embedded();
            let r = row("navet-1");
            let _ = judge(&map, &r, &Reply { status, body: bytes });
            let valid = kvittens("navet-1", Status::Avvisad);
            let i = at.index(valid.len());
            let mutated = [&valid[..i], insert.as_bytes(), &valid[i..]].concat();
            if let Ok(receipt) = judge(&map, &r, &Reply { status, body: mutated }) {
                proptest::prop_assert_eq!(receipt.kvittens.reference.as_deref(), Some("navet-1"));
                proptest::prop_assert!(status < 500);
            }
        }
    }

    #[test]
    fn the_refusal_task_names_the_codes_and_nobody_but_the_sender() {
        let errors = vec![("X_EGEN\u{7}".into(), "/a".into(), "t\nu".into())];
        let t = refusal_task(
            "SipPlan",
            "navet-1",
            "S",
            "R",
            Some("Patient/p"),
            Some("CarePlan/c"),
            &errors,
            "now",
        );
        assert_eq!(t["owner"]["identifier"]["value"], "S");
        assert_eq!(t["input"][0]["type"]["coding"][0]["code"], "X_EGEN");
        assert_eq!(t["input"][0]["valueString"], "/a: t u");
        assert!(t["description"].as_str().unwrap().contains("X_EGEN"));
        assert!(t.get("requester").is_none() && t.get("focus").is_none());
    }

    #[test]
    fn the_receipts_index_lists_every_receiver_and_what_it_answered() {
        let map = Mapping::embedded();
        let answered = String::from_utf8(kvittens("navet-1", Status::Avvisad)).unwrap();
        let index = receipts_index(
            &map,
            "SE2321000255-CSK01",
            "navet-1",
            &[
                ReceiverReceipt {
                    receiver: "SE2120000999-HSJ1290".into(),
                    receipt: Some(answered),
                    answered_ms: Some(1_764_000_000_000),
                },
                ReceiverReceipt {
                    receiver: "SE2321000255-VC101".into(),
                    receipt: None,
                    answered_ms: None,
                },
            ],
        );
        let root = xml::parse(index.as_bytes(), &map.namespace).unwrap();
        let rows: Vec<(Option<&str>, Option<&str>, bool)> = root
            .children
            .iter()
            .map(|c| {
                (
                    c.attr("hsaId"),
                    c.attr("status"),
                    c.attr("besvarad").is_some(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (Some("SE2120000999-HSJ1290"), Some("avvisad"), true),
                (Some("SE2321000255-VC101"), Some("vantar"), false)
            ]
        );
        assert_eq!(root.attr("referens"), Some("navet-1"));
    }
}
