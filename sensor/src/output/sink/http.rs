//! `http:`, `splunk-hec:` and `elastic:`: batches of records POSTed to an
//! HTTP(S) endpoint, optionally gzip-compressed, each request at most the
//! output's `batch_size` (a larger batch is sent as several requests, in
//! order). A record counts as written only once the endpoint acknowledged
//! its request.
//!
//! Responses: 2xx is delivered. 408, 429, 5xx, and 401/403/404 (a token
//! or URL the operator can fix) keep the records for a retry. 413 splits
//! the request in two until one record is left, which is then refused.
//! Any other 4xx refuses the request's records for good (counted lost,
//! logged with the endpoint's reason). Elastic answers `_bulk` per record:
//! 409 (already indexed, by the `_id` the framer set: a replay) counts as
//! delivered, 429 and 5xx retry the request, other errors refuse that
//! record.

use std::{io::Write, time::Duration};

use flate2::{Compression, write::GzEncoder};
use ureq::tls::{RootCerts, TlsConfig};

use super::{Batch, Sink, SinkError, WriteError, Written, tls};
use crate::config::{HttpApi, HttpSpec, Secret, SinkSpec, TlsOptions};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A request (sent and answered) that takes longer than this failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refusal's body is kept for the log.
const REASON_BYTES: usize = 300;

pub struct HttpSink {
    name: String,
    api: HttpApi,
    endpoint: String,
    authorization: Option<String>,
    gzip: bool,
    max_body: usize,
    agent: ureq::Agent,
}

/// What one request came to.
enum Answer {
    Delivered(Written),
    /// Keep every record of the request for later.
    Retry(std::io::Error),
    TooLarge,
}

impl HttpSink {
    pub fn open(spec: &HttpSpec, options: &TlsOptions) -> Result<Self, SinkError> {
        let name = SinkSpec::Http(spec.clone()).to_string();
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &options.ca {
            let certs = tls::load_ca(&name, ca)?
                .into_iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned());
            tls = tls.root_certs(RootCerts::from(certs));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(format!("weightwarden/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .new_agent();
        let secret = match &spec.token {
            None => None,
            Some(Secret::Inline(token)) => Some(token.clone()),
            Some(Secret::File(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| SinkError::SecretFile {
                        output: name.clone(),
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
        };
        let scheme = match spec.api {
            HttpApi::Ndjson => "Bearer",
            HttpApi::SplunkHec => "Splunk",
            HttpApi::Elastic => "ApiKey",
        };
        let endpoint = match spec.api {
            HttpApi::Ndjson => spec.url.clone(),
            HttpApi::SplunkHec if !has_path(&spec.url) => {
                format!("{}/services/collector/event", spec.url)
            }
            HttpApi::SplunkHec => spec.url.clone(),
            HttpApi::Elastic => format!("{}/_bulk", spec.url),
        };
        Ok(Self {
            name,
            api: spec.api,
            endpoint,
            authorization: secret.map(|s| format!("{scheme} {s}")),
            gzip: spec.gzip,
            max_body: spec.batch_bytes,
            agent,
        })
    }

    /// Sends the records `first..end` of `batch` as one request.
    fn send(&self, batch: &Batch, first: usize, end: usize) -> Answer {
        let start = if first == 0 { 0 } else { batch.ends[first - 1] };
        let body = &batch.bytes[start..batch.ends[end - 1]];
        let content_type = match self.api {
            HttpApi::Ndjson | HttpApi::Elastic => "application/x-ndjson",
            HttpApi::SplunkHec => "application/json",
        };
        let mut request = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", content_type);
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let sent = if self.gzip {
            let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            let compressed = gz.write_all(body).and_then(|()| gz.finish());
            match compressed {
                Ok(compressed) => request
                    .header("Content-Encoding", "gzip")
                    .send(&compressed[..]),
                Err(err) => return Answer::Retry(err),
            }
        } else {
            request.send(body)
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => return Answer::Retry(std::io::Error::other(err)),
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let records = end - first;
        match status {
            200..=299 if self.api == HttpApi::Elastic => bulk_answer(&text, records),
            200..=299 => Answer::Delivered(Written::default()),
            413 => Answer::TooLarge,
            401 | 403 | 404 | 408 | 429 | 500..=599 => Answer::Retry(std::io::Error::other(
                format!("HTTP {status} from {}: {}", self.endpoint, excerpt(&text)),
            )),
            _ => Answer::Delivered(Written {
                rejected: records,
                reason: Some(format!("HTTP {status}: {}", excerpt(&text))),
            }),
        }
    }

    /// Sends `first..end`, halving on 413; the written count or why not.
    fn send_split(
        &self,
        batch: &Batch,
        first: usize,
        end: usize,
    ) -> Result<Written, std::io::Error> {
        match self.send(batch, first, end) {
            Answer::Delivered(w) => Ok(w),
            Answer::Retry(err) => Err(err),
            Answer::TooLarge if end - first == 1 => Ok(Written {
                rejected: 1,
                reason: Some("HTTP 413: one record is larger than the endpoint takes".into()),
            }),
            Answer::TooLarge => {
                let middle = first + (end - first) / 2;
                let a = self.send_split(batch, first, middle)?;
                let b = self.send_split(batch, middle, end)?;
                Ok(Written {
                    rejected: a.rejected + b.rejected,
                    reason: a.reason.or(b.reason),
                })
            }
        }
    }
}

/// `https://host:8088` has no path; `https://host/x` has.
fn has_path(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.contains('/')
}

fn excerpt(text: &str) -> String {
    let mut end = text.len().min(REASON_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// Elastic's per-record results of a `_bulk` request.
fn bulk_answer(text: &str, records: usize) -> Answer {
    let Ok(body) = serde_json::from_str::<serde_json::Value>(text) else {
        return Answer::Retry(std::io::Error::other(format!(
            "the _bulk answer is not JSON: {}",
            excerpt(text)
        )));
    };
    if body["errors"] != true {
        return Answer::Delivered(Written::default());
    }
    let items = body["items"].as_array().map_or(&[][..], Vec::as_slice);
    if items.len() != records {
        return Answer::Retry(std::io::Error::other(format!(
            "the _bulk answer has {} results for {records} records",
            items.len()
        )));
    }
    let mut written = Written::default();
    for item in items {
        let result = item.as_object().and_then(|o| o.values().next());
        let status = result.and_then(|r| r["status"].as_u64()).unwrap_or(0);
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 => {
                return Answer::Retry(std::io::Error::other(format!(
                    "Elastic answered {status} for a record: retrying the request"
                )));
            }
            _ => {
                written.rejected += 1;
                written.reason.get_or_insert_with(|| {
                    let error = result.map(|r| r["error"].to_string()).unwrap_or_default();
                    format!("Elastic {status}: {}", excerpt(&error))
                });
            }
        }
    }
    Answer::Delivered(written)
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, batch: &Batch) -> Result<Written, WriteError> {
        let mut total = Written::default();
        let mut first = 0;
        while first < batch.records() {
            // As many records as fit the request size (one at least).
            let start = if first == 0 { 0 } else { batch.ends[first - 1] };
            let mut end = first + 1;
            while end < batch.records() && batch.ends[end] - start <= self.max_body {
                end += 1;
            }
            match self.send_split(batch, first, end) {
                Ok(w) => {
                    total.rejected += w.rejected;
                    total.reason = total.reason.or(w.reason);
                }
                Err(err) => {
                    let mut err = WriteError::retry(first, err);
                    err.rejected = total.rejected;
                    return Err(err);
                }
            }
            first = end;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elastic_bulk_answers_count_conflicts_as_delivered() {
        let ok = r#"{"errors":false,"items":[{"create":{"status":201}}]}"#;
        assert!(matches!(bulk_answer(ok, 1), Answer::Delivered(w) if w.rejected == 0));
        let mixed = r#"{"errors":true,"items":[{"create":{"status":409}},
            {"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#;
        match bulk_answer(mixed, 2) {
            Answer::Delivered(w) => {
                assert_eq!(w.rejected, 1);
                assert!(w.reason.is_some_and(|r| r.contains("mapper_parsing")));
            }
            _ => panic!("delivered with one refusal"),
        }
        let busy = r#"{"errors":true,"items":[{"create":{"status":429}}]}"#;
        assert!(matches!(bulk_answer(busy, 1), Answer::Retry(_)));
        assert!(matches!(bulk_answer("<html>", 1), Answer::Retry(_)));
    }

    #[test]
    fn splunk_gets_its_collector_path_unless_given_one() {
        assert!(!has_path("https://splunk:8088"));
        assert!(has_path("https://splunk:8088/services/collector/event"));
    }
}
