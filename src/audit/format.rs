//! The stored form of one access-log record: [`Entry`], a flat, versioned struct, and its deterministic byte
//! encoding (`src/audit/FORMAT.md` is the specification; an external tool verifies the chain from it alone).
//!
//! Hand-written rather than a serialisation crate's format: the bytes are hashed into the chain and must stay
//! the same for as long as the log is kept (5 years or more), across crate versions, and be decodable by a
//! few lines of Python. A fixed field order with length prefixes gives exactly one encoding per record.

use super::record::{Action, AuditRecord, Outcome};

/// The format version this code writes (the first byte of every record).
pub const VERSION: u8 = 1;
/// Offset of the 8-byte time field: the appender sets it when the record gets its place in the chain.
pub const TIME_OFFSET: usize = 1;
/// Marks an absent optional string (a length no record can have).
const ABSENT: u32 = u32::MAX;

/// One delivery navet made (the outbox): navet sends, a principal receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    pub principal: String,
    pub name: String,
    pub address: String,
    pub message_id: String,
}

/// One access-log record as stored: who, whom, what, when, why, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// When the record took its place in the chain: microseconds since the Unix epoch, unique within a
    /// navet process and increasing along each chain.
    pub time_us: i64,
    /// `C R U D E`.
    pub action: u8,
    /// `0` success, `4` refused, `8` failed.
    pub outcome: u8,
    /// The HTTP status answered.
    pub status: u16,
    /// The request carried a valid token (the caller fields below are then set).
    pub authenticated: bool,
    /// The client is a system integration acting without a user.
    pub system_integration: bool,
    pub operation: String,
    pub client_id: Option<String>,
    pub token_id: Option<String>,
    pub principal: Option<String>,
    pub principal_name: Option<String>,
    pub user: Option<String>,
    pub user_name: Option<String>,
    pub role: Option<String>,
    pub care_unit: Option<String>,
    pub purpose: Option<String>,
    pub source_address: Option<String>,
    pub request_id: String,
    pub query: Option<String>,
    pub delivery: Option<Delivery>,
    /// `Patient/{id}` of every patient whose data was touched or returned.
    pub patients: Vec<String>,
    /// `Type/id/_history/version` (or `Type/id`, or `Type`) of every resource touched or returned.
    pub entities: Vec<String>,
}

/// Why stored bytes are not a record of this format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an access-log record: {0}")]
pub struct DecodeError(pub &'static str);

impl Entry {
    /// The record of what a request did (its time is set when it is appended).
    pub fn from_record(record: &AuditRecord) -> Entry {
        let caller = record.caller.as_ref();
        let user = caller.and_then(|c| c.user.as_ref());
        Entry {
            time_us: 0,
            action: record.action.code().as_bytes()[0],
            outcome: record.outcome.code().as_bytes()[0] - b'0',
            status: record.status,
            authenticated: caller.is_some(),
            system_integration: caller.is_some_and(|c| c.system_integration),
            operation: record.operation.clone(),
            client_id: caller.map(|c| c.client_id.to_string()),
            token_id: caller.map(|c| c.token_id.to_string()),
            principal: caller.map(|c| c.principal.hsa_id.as_str().to_owned()),
            principal_name: caller.map(|c| c.principal.name.clone()),
            user: user.map(|u| u.hsa_id.as_str().to_owned()),
            user_name: user.and_then(|u| u.name.clone()),
            role: user.map(|u| u.role.as_str().to_owned()),
            care_unit: user.map(|u| u.care_unit.as_str().to_owned()),
            purpose: user.map(|u| u.purpose.as_str().to_owned()),
            source_address: record.source_address.clone(),
            request_id: record.request_id.clone(),
            query: record.query.clone(),
            delivery: record.delivery.clone(),
            patients: record.patients.clone(),
            entities: record.entities.clone(),
        }
    }

    pub fn action(&self) -> Option<Action> {
        Action::from_code(self.action)
    }

    pub fn outcome(&self) -> Outcome {
        match self.outcome {
            0 => Outcome::Success,
            4 => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }

    /// The purpose column of the index: the user's purpose of use, or `SYSTEM-INTEGRATION`.
    pub fn purpose_code(&self) -> Option<&str> {
        match &self.purpose {
            Some(p) => Some(p),
            None if self.system_integration => Some(super::view::SYSTEM_PURPOSE),
            None => None,
        }
    }

    /// The auditor index keys of this record: `p|Patient/{id}` per patient, `h|{HSA-id}` per HSA-id that
    /// acted or received (user, care unit, principal, delivery recipient), `c|{client id}`.
    pub fn index_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.patients.iter().map(|p| format!("p|{p}")).collect();
        let hsa = [
            self.user.as_deref(),
            self.care_unit.as_deref(),
            self.principal.as_deref(),
            self.delivery.as_ref().map(|d| d.principal.as_str()),
        ];
        for id in hsa.into_iter().flatten() {
            keys.push(format!("h|{id}"));
        }
        if let Some(client) = &self.client_id {
            keys.push(format!("c|{client}"));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// The record's bytes (FORMAT.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(VERSION);
        out.extend_from_slice(&self.time_us.to_be_bytes());
        out.push(self.action);
        out.push(self.outcome);
        out.extend_from_slice(&self.status.to_be_bytes());
        let flags = u8::from(self.authenticated)
            | (u8::from(self.system_integration) << 1)
            | (u8::from(self.delivery.is_some()) << 2);
        out.push(flags);
        put(&mut out, Some(&self.operation));
        for field in [
            &self.client_id,
            &self.token_id,
            &self.principal,
            &self.principal_name,
            &self.user,
            &self.user_name,
            &self.role,
            &self.care_unit,
            &self.purpose,
            &self.source_address,
        ] {
            put(&mut out, field.as_deref());
        }
        put(&mut out, Some(&self.request_id));
        put(&mut out, self.query.as_deref());
        if let Some(d) = &self.delivery {
            for field in [&d.principal, &d.name, &d.address, &d.message_id] {
                put(&mut out, Some(field));
            }
        }
        for list in [&self.patients, &self.entities] {
            out.extend_from_slice(&len32(list.len()).to_be_bytes());
            for item in list {
                put(&mut out, Some(item));
            }
        }
        out
    }

    /// Reads a record's bytes; any byte that does not fit the format is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError("unknown format version"));
        }
        let time_us = i64::from_be_bytes(r.array()?);
        let action = r.u8()?;
        let outcome = r.u8()?;
        let status = u16::from_be_bytes(r.array()?);
        let flags = r.u8()?;
        if flags & !0b111 != 0 {
            return Err(DecodeError("unknown flags"));
        }
        let operation = r.string()?;
        let mut opt = || r.opt_string();
        let (client_id, token_id, principal, principal_name) = (opt()?, opt()?, opt()?, opt()?);
        let (user, user_name, role, care_unit) = (opt()?, opt()?, opt()?, opt()?);
        let (purpose, source_address) = (opt()?, opt()?);
        let request_id = r.string()?;
        let query = r.opt_string()?;
        let delivery = if flags & 0b100 != 0 {
            Some(Delivery {
                principal: r.string()?,
                name: r.string()?,
                address: r.string()?,
                message_id: r.string()?,
            })
        } else {
            None
        };
        let patients = r.list()?;
        let entities = r.list()?;
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Entry {
            time_us,
            action,
            outcome,
            status,
            authenticated: flags & 1 != 0,
            system_integration: flags & 0b10 != 0,
            operation,
            client_id,
            token_id,
            principal,
            principal_name,
            user,
            user_name,
            role,
            care_unit,
            purpose,
            source_address,
            request_id,
            query,
            delivery,
            patients,
            entities,
        })
    }
}

/// Sets the time of encoded record bytes (the appender does this when it places the record).
pub fn set_time(bytes: &mut [u8], time_us: i64) {
    if let Some(field) = bytes.get_mut(TIME_OFFSET..TIME_OFFSET + 8) {
        field.copy_from_slice(&time_us.to_be_bytes());
    }
}

/// A length as stored; a string or list longer than 4 GiB cannot reach here (request bodies are bounded).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(ABSENT - 1).min(ABSENT - 1)
}

fn put(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.extend_from_slice(&ABSENT.to_be_bytes()),
        Some(s) => {
            let n = len32(s.len());
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&s.as_bytes()[..n as usize]);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        let n = self.u32()?;
        if n == ABSENT {
            return Ok(None);
        }
        let bytes = self.take(n as usize)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| DecodeError("a text field is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.opt_string()?
            .ok_or(DecodeError("a required field is absent"))
    }

    fn list(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.u32()?;
        // Each item takes at least 4 bytes: a count beyond what is left is a lie, not an allocation.
        if n as usize > self.0.len() / 4 {
            return Err(DecodeError("a list is longer than the record"));
        }
        (0..n).map(|_| self.string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn sample() -> Entry {
        Entry {
            time_us: 1_795_000_000_123_456,
            action: b'R',
            outcome: 0,
            status: 200,
            authenticated: true,
            system_integration: false,
            operation: "read".into(),
            client_id: Some("demo-mtn".into()),
            token_id: Some("t1".into()),
            principal: Some("SE2321000255-MTN01".into()),
            principal_name: Some("MTN".into()),
            user: Some("SE2321000255-P0101".into()),
            user_name: None,
            role: Some("SSK".into()),
            care_unit: Some("SE2321000255-MTN01".into()),
            purpose: Some("TREAT".into()),
            source_address: Some("127.0.0.1".into()),
            request_id: "r1".into(),
            query: None,
            delivery: None,
            patients: vec!["Patient/p1".into()],
            entities: vec!["Patient/p1/_history/1".into()],
        }
    }

    #[test]
    fn a_record_round_trips_and_its_bytes_are_those_format_md_gives() {
        let e = sample();
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        // Version, time, action, outcome, status, flags (FORMAT.md "Record").
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..9], &1_795_000_000_123_456i64.to_be_bytes());
        assert_eq!(&bytes[9..14], &[b'R', 0, 0, 200, 1]);
        // Then `operation` as a length-prefixed string.
        assert_eq!(&bytes[14..22], b"\0\0\0\x04read");
        assert!(bytes.len() < 300, "{}", bytes.len());
        let mut with_delivery = e.clone();
        with_delivery.delivery = Some(Delivery {
            principal: "SE1".into(),
            name: "n".into(),
            address: "h".into(),
            message_id: "m".into(),
        });
        assert_eq!(
            Entry::decode(&with_delivery.encode()).unwrap(),
            with_delivery
        );
    }

    #[test]
    fn the_keys_name_patients_hsa_ids_and_the_client_once_each() {
        assert_eq!(
            sample().index_keys(),
            [
                "c|demo-mtn",
                "h|SE2321000255-MTN01",
                "h|SE2321000255-P0101",
                "p|Patient/p1"
            ]
        );
    }

    #[test]
    fn setting_the_time_changes_only_the_time() {
        let mut bytes = sample().encode();
        set_time(&mut bytes, 42);
        let e = Entry::decode(&bytes).unwrap();
        assert_eq!(e.time_us, 42);
        assert_eq!(
            Entry { time_us: 0, ..e },
            Entry {
                time_us: 0,
                ..sample()
            }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Entry::decode(&bytes);
            let mut valid = sample().encode();
            let cut = bytes.len() % valid.len();
            valid.truncate(cut);
            prop_assert!(Entry::decode(&valid).is_err());
        }

        #[test]
        fn every_record_round_trips(op in ".{0,20}", q in proptest::option::of(".{0,40}"),
                                    patients in proptest::collection::vec(".{0,12}", 0..4)) {
            let e = Entry { operation: op, query: q, patients, ..sample() };
            prop_assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }
    }
}
