//! POST /webhook: verify the signature over the raw body (any of the configured
//! secrets, so they can be rotated), then dedupe on (app, delivery GUID), then
//! record the delivery and enqueue its job in one transaction, and answer 202.
//! Anything wrong is a 4xx with a JSON error, and nothing is written. Events
//! the App does not handle are 202 "ignored", recorded nowhere (a 4xx would show
//! in GitHub as a failed delivery). Text GitHub sends may hold NUL, which
//! PostgreSQL cannot store: it is stored as U+FFFD. With the database away the
//! answer is a 503 within [`PERSIST_DEADLINE`], well before GitHub's 10 s.

use super::events::{classify, BadDelivery, Intake, Removal};
use super::{AppState, Reply};
use crate::db::{deliveries, jobs};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long the webhook waits for PostgreSQL before answering 503.
pub const PERSIST_DEADLINE: Duration = Duration::from_secs(2);

/// True when `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under one of
/// `secrets`. Compared in constant time by the hmac crate.
pub fn signature_valid(secrets: &[Vec<u8>], header: Option<&str>, body: &[u8]) -> bool {
    let Some(sig) = header.and_then(|h| h.strip_prefix("sha256=")).and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    secrets.iter().any(|secret| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

/// The header `X-Hub-Signature-256` for `body` under `secret` (tests, benches).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Reply {
    let started = Instant::now();
    let reply = handle(&state, &headers, body).await;
    state.metrics.observe(reply.0, started.elapsed());
    reply
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Reply {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Reply::error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {} bytes", state.max_body))
        }
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, format!("unreadable body: {e}")),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !signature_valid(&state.secrets, header("x-hub-signature-256"), &body) {
        return Reply::error(StatusCode::UNAUTHORIZED, "missing or invalid X-Hub-Signature-256");
    }
    let (Some(event), Some(guid)) = (header("x-github-event"), header("x-github-delivery")) else {
        return Reply::error(StatusCode::BAD_REQUEST, "X-GitHub-Event and X-GitHub-Delivery are required");
    };
    if guid.is_empty() || guid.len() > 100 {
        return Reply::error(StatusCode::BAD_REQUEST, "X-GitHub-Delivery is not a delivery id");
    }
    let classified = match classify(event, &body, state.app_id) {
        Ok(c) => c,
        Err(BadDelivery::UnknownEvent(event)) => {
            let reason = format!("the App does not handle {event:?} events");
            return Reply(StatusCode::ACCEPTED, json!({"status": "ignored", "reason": reason}));
        }
        Err(e @ BadDelivery::Malformed { .. }) => return Reply::error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let persisted = tokio::time::timeout(PERSIST_DEADLINE, persist(state, event, guid, storable(classified))).await;
    match persisted {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            tracing::error!(guid, event, "cannot persist a delivery: {e:#}");
            Reply::error(StatusCode::SERVICE_UNAVAILABLE, "the delivery could not be stored; redeliver it")
        }
        Err(_) => {
            tracing::error!(guid, event, "the database did not answer within {PERSIST_DEADLINE:?}");
            Reply::error(StatusCode::SERVICE_UNAVAILABLE, "the database did not answer in time; redeliver it")
        }
    }
}

/// The delivery with every NUL (which PostgreSQL's text and jsonb refuse) as
/// U+FFFD, so a comment, login or name holding one is stored, not refused forever.
fn storable(mut c: super::events::Classified) -> super::events::Classified {
    fn clean(s: &mut String) {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{FFFD}");
        }
    }
    fn clean_json(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => clean(s),
            serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
            serde_json::Value::Object(o) => {
                let keys: Vec<String> = o.keys().filter(|k| k.contains('\0')).cloned().collect();
                for k in keys {
                    let v = o.remove(&k).expect("the key is there");
                    o.insert(k.replace('\0', "\u{FFFD}"), v);
                }
                o.values_mut().for_each(clean_json);
            }
            _ => {}
        }
    }
    c.action.iter_mut().chain(c.repo.iter_mut()).for_each(clean);
    match &mut c.intake {
        Intake::Job(job) => {
            clean(&mut job.kind);
            clean(&mut job.dedupe_key);
            clean_json(&mut job.payload);
        }
        Intake::Install { add, remove, .. } => {
            add.iter_mut().for_each(clean);
            if let Removal::Some(repos) = remove {
                repos.iter_mut().for_each(clean);
            }
        }
        Intake::Ignore(_) => {}
    }
    c
}

async fn persist(state: &AppState, event: &str, guid: &str, c: super::events::Classified) -> anyhow::Result<Reply> {
    let mut tx = state.pool.begin().await?;
    if c.needs_installed_repo {
        let repo = c.repo.as_deref().unwrap_or_default();
        if !deliveries::is_installed(&mut *tx, repo).await? {
            return Ok(Reply::error(StatusCode::NOT_FOUND, format!("the App is not installed on {repo}")));
        }
    }
    // The effect first, then the delivery with what became of it: one statement
    // fewer than recording and updating. A GUID seen before rolls it all back.
    let (reply, outcome) = match c.intake {
        Intake::Job(job) => match jobs::enqueue(&mut *tx, &job).await? {
            Some(id) => (json!({"status": "queued", "job": id, "kind": job.kind}), format!("job {}", id.0)),
            None => (json!({"status": "duplicate", "key": job.dedupe_key}), format!("duplicate of {}", job.dedupe_key)),
        },
        Intake::Install { installation, add, remove } => {
            match remove {
                Removal::None => {}
                Removal::All => deliveries::uninstall(&mut tx, installation, None).await?,
                Removal::Some(repos) => deliveries::uninstall(&mut tx, installation, Some(&repos)).await?,
            }
            deliveries::install(&mut tx, installation, &add).await?;
            (json!({"status": "installation updated"}), "installation updated".to_string())
        }
        Intake::Ignore(why) => (json!({"status": "ignored", "reason": why}), format!("ignored: {why}")),
    };
    let recorded =
        deliveries::record(&mut tx, state.app_id, guid, event, c.action.as_deref(), c.repo.as_deref(), &outcome)
            .await?;
    if !recorded {
        tx.rollback().await?;
        return Ok(Reply(StatusCode::ACCEPTED, json!({"status": "duplicate", "delivery": guid})));
    }
    tx.commit().await?;
    Ok(Reply(StatusCode::ACCEPTED, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_rotate_and_fail_closed() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let (old, new) = (b"old secret".to_vec(), b"new secret".to_vec());
        let sig = sign(&old, body);
        assert!(signature_valid(&[new.clone(), old.clone()], Some(&sig), body));
        assert!(!signature_valid(&[new.clone()], Some(&sig), body));
        assert!(!signature_valid(&[old.clone()], Some(&sig), b"{}"), "another body");
        assert!(!signature_valid(&[old.clone()], None, body));
        assert!(!signature_valid(&[old.clone()], Some(sig.trim_start_matches("sha256=")), body), "no prefix");
        assert!(!signature_valid(&[old.clone()], Some("sha256=zz"), body));
        assert!(!signature_valid(&[], Some(&sig), body), "no secrets, no entry");
    }
}
