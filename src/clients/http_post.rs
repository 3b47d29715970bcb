//! A generic POST of a message's payload (JSON or XML, as its content type says) to a destination.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::{MESSAGE_ID_HEADER, SendError};
use crate::outbox::config::{Destination, Secret, is_public};
use crate::store::outbox::OutboxMessage;

#[derive(Clone)]
pub struct HttpPostClient {
    http: reqwest::Client,
    url: reqwest::Url,
    bearer: Option<Secret>,
}

/// Headers a message may not set: the client sets them (credentials come from configuration only).
const RESERVED: [&str; 5] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "x-navet-message-id",
];

impl HttpPostClient {
    pub fn new(destination: &Destination) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(destination.connect_timeout)
            .timeout(destination.request_timeout)
            // SSRF: no redirects (a public endpoint could point navet at an internal one) and no proxy from
            // the environment (it would bypass the address check below).
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("navet/", env!("CARGO_PKG_VERSION")));
        if !destination.private_allowed {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let http = builder
            .build()
            .map_err(|e| format!("destination {}: {e}", destination.name))?;
        Ok(HttpPostClient {
            http,
            url: destination.url.clone(),
            bearer: destination.bearer.clone(),
        })
    }

    /// One attempt. `Ok` on any 2xx.
    pub async fn send(&self, message: &OutboxMessage) -> Result<(), SendError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &message.headers {
            let lower = name.to_ascii_lowercase();
            // A subscription's own `Authorization` (channel.header, set by the subscriber for its receiver) is
            // sent to a destination that has no configured credential of its own; never over one.
            let subscriber_credential = lower == "authorization" && self.bearer.is_none();
            if RESERVED.contains(&lower.as_str()) && !subscriber_credential {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                let mut v = v;
                v.set_sensitive(lower == "authorization");
                headers.insert(n, v);
            }
        }
        let bad =
            |what: &str| SendError::Rejected(format!("the message's {what} is not a valid header"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&message.content_type).map_err(|_| bad("content type"))?,
        );
        headers.insert(
            HeaderName::from_static("x-navet-message-id"),
            HeaderValue::from_str(&message.id).map_err(|_| bad(MESSAGE_ID_HEADER))?,
        );
        if let Some(token) = &self.bearer {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    SendError::Rejected("the bearer credential is not a valid header".into())
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let answer = self
            .http
            .post(self.url.clone())
            .headers(headers)
            .body(message.payload.clone())
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            // The error's text names the URL and the cause, never the body or the credential.
            Err(e) if e.is_timeout() => {
                return Err(SendError::Retryable(format!("timed out: {e}")));
            }
            Err(e) if e.is_connect() => {
                return Err(SendError::Retryable(format!("could not connect: {e}")));
            }
            Err(e) => return Err(SendError::Retryable(e.to_string())),
        };
        let status = response.status();
        // The body is not read into the error: it may hold anything, and the error is stored and shown.
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(SendError::Retryable(format!(
                "the receiver answered {status}"
            )))
        } else {
            Err(SendError::Rejected(format!(
                "the receiver refused the message: {status}"
            )))
        }
    }
}

/// Resolves names to public addresses only: a name that points into navet's own network (DNS rebinding, or
/// simply a wrong entry) is refused at connect time, not just at start-up.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
