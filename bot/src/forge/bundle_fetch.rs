//! Intake's download: the bundle file a PR's locator names, streamed to disk
//! under a size cap, following a few HTTPS redirects (GitHub release assets
//! redirect), and checked against the locator's sha256 before anything opens it.
//! Operators may rewrite URL prefixes to a mirror or cache they run.

use crate::judge::Finding;
use anyhow::{Context, Result};
use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proof::locator::Locator;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAX_REDIRECTS: usize = 5;

pub type HttpsClient =
    Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Empty<Bytes>>;

/// An HTTP/1 client for https:// (native roots) and plain http:// (loopback, tests).
pub fn https_client() -> Result<HttpsClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("no TLS root certificates on this machine")?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

pub struct Fetcher {
    client: HttpsClient,
    pub max_bytes: u64,
    /// (from, to) URL prefixes, e.g. a validator's bundle cache.
    pub rewrites: Vec<(String, String)>,
}

impl Fetcher {
    pub fn new(max_bytes: u64, rewrites: Vec<(String, String)>) -> Result<Self> {
        Ok(Fetcher { client: https_client()?, max_bytes, rewrites })
    }

    fn rewrite(&self, url: &str) -> String {
        for (from, to) in &self.rewrites {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        url.to_string()
    }

    /// Downloads the bundle into `dir` (named by its sha256). Ok(Err(finding))
    /// when the miner's side is wrong: unreachable, too big, or not the file
    /// the locator promised.
    pub async fn fetch(&self, loc: &Locator, dir: &Path) -> Result<std::result::Result<PathBuf, Finding>> {
        let reject = |code, msg: String| Ok(Err(Finding::reject(code, "bundle", None, msg)));
        std::fs::create_dir_all(dir)?;
        let dest = dir.join(format!("{}.tar", loc.sha256.as_str()));
        if dest.exists() {
            return Ok(Ok(dest)); // named by its digest, checked when it was written
        }
        let mut url = self.rewrite(&loc.url);
        let mut resp = None;
        for _ in 0..=MAX_REDIRECTS {
            let uri: axum::http::Uri = match url.parse() {
                Ok(u) => u,
                Err(e) => return reject("intake.url", format!("{url:?} is not a URL: {e}")),
            };
            let r = match self.client.get(uri).await {
                Ok(r) => r,
                Err(e) => return reject("intake.download", format!("cannot download {url}: {e}")),
            };
            if r.status().is_redirection() {
                let next = r.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default();
                if !next.starts_with("https://") {
                    return reject("intake.download", format!("{url} redirects to a non-HTTPS location {next:?}"));
                }
                url = self.rewrite(next);
                continue;
            }
            resp = Some(r);
            break;
        }
        let Some(resp) = resp else { return reject("intake.download", format!("more than {MAX_REDIRECTS} redirects")) };
        if !resp.status().is_success() {
            return reject("intake.download", format!("{url} answered {}", resp.status()));
        }
        let partial = dest.with_extension("partial");
        let mut file = std::fs::File::create(&partial)?;
        let (mut hasher, mut size, mut body) = (Sha256::new(), 0u64, resp.into_body());
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return reject("intake.download", format!("the download of {url} broke off: {e}")),
            };
            if let Some(chunk) = frame.data_ref() {
                size += chunk.len() as u64;
                if size > self.max_bytes {
                    drop(file);
                    let _ = std::fs::remove_file(&partial);
                    return reject("intake.size", format!("the bundle exceeds {} bytes", self.max_bytes));
                }
                hasher.update(chunk);
                file.write_all(chunk)?;
            }
        }
        file.sync_all()?;
        let got = hex::encode(hasher.finalize());
        if got != loc.sha256.as_str() {
            let _ = std::fs::remove_file(&partial);
            return reject(
                "intake.digest",
                format!("the file at {url} has sha256 {got}, the locator says {}", loc.sha256.as_str()),
            );
        }
        std::fs::rename(&partial, &dest)?;
        Ok(Ok(dest))
    }
}
