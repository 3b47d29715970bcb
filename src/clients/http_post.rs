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
        let status = self.request(message).await?.status();
        // The body is not read into the error: it may hold anything, and the error is stored and shown.
        if status.is_success() {
            Ok(())
        } else if is_retryable(status) {
            Err(SendError::Retryable(format!(
                "the receiver answered {status}"
            )))
        } else {
            Err(SendError::Rejected(format!(
                "the receiver refused the message: {status}"
            )))
        }
    }

    /// One attempt that answers the receiver's reply, whatever its status, with its body (at most
    /// [`MAX_REPLY_BYTES`]): SVPL receivers answer a `Kvittens` also when they refuse (`crate::svpl::delivery`).
    /// `Err` only when there was no reply: no connection, a timeout, a body too large or cut off (retryable).
    pub async fn post(&self, message: &OutboxMessage) -> Result<Reply, SendError> {
        let response = self.request(message).await?;
        let status = response.status().as_u16();
        let body = read_capped(response).await.map_err(SendError::Retryable)?;
        Ok(Reply { status, body })
    }

    async fn request(&self, message: &OutboxMessage) -> Result<reqwest::Response, SendError> {
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
        Ok(response)
    }
}

/// The largest reply body read (a Kvittens is a few kilobytes).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A receiver's answer: its HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// 5xx, 408 and 429: the receiver may take the same message later.
pub fn is_retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the reply was cut off: {e}"))?
    {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(format!("the reply is larger than {MAX_REPLY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
