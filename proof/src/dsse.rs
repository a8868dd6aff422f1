//! DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1) signed
//! with ed25519. The signature covers PAE(payloadType, payload), never the JSON
//! encoding of the envelope, so re-serialising an envelope cannot change what was signed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// base64 of the payload bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// base64 of the raw 64-byte ed25519 signature.
    pub sig: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DsseError {
    #[error("payload is not valid base64")]
    PayloadEncoding,
    #[error("the envelope has no signature by key {0}")]
    NoSignatureForKey(String),
    #[error("signature by key {0} is malformed")]
    MalformedSignature(String),
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
}

/// Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body,
/// lengths as ASCII decimal byte counts.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The key id Karpa uses: lowercase hex sha256 of the raw public key.
pub fn key_id(key: &VerifyingKey) -> String {
    crate::sha256_bytes(key.as_bytes()).to_string()
}

pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: B64.encode(payload),
        payload_type: payload_type.to_string(),
        signatures: vec![EnvelopeSignature { keyid: key_id(&key.verifying_key()), sig: B64.encode(sig.to_bytes()) }],
    }
}

impl Envelope {
    /// Verifies the signature by `key` and returns the payload bytes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>, DsseError> {
        let payload = B64.decode(&self.payload).map_err(|_| DsseError::PayloadEncoding)?;
        let id = key_id(key);
        let entry =
            self.signatures.iter().find(|s| s.keyid == id).ok_or_else(|| DsseError::NoSignatureForKey(id.clone()))?;
        let raw = B64.decode(&entry.sig).map_err(|_| DsseError::MalformedSignature(id.clone()))?;
        let sig = Signature::from_slice(&raw).map_err(|_| DsseError::MalformedSignature(id.clone()))?;
        key.verify(&pae(&self.payload_type, &payload), &sig).map_err(|_| DsseError::BadSignature(id))?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE v1 protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn ed25519_matches_rfc8032_test_1() {
        // RFC 8032 §7.1 TEST 1: the empty message.
        let sk: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_bytes(&sk);
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn sign_verify_and_tamper() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let env = sign("application/vnd.in-toto+json", b"{\"a\":1}", &key);
        assert_eq!(env.verify(&key.verifying_key()).unwrap(), b"{\"a\":1}");
        // Another payload under the same signature.
        let mut forged = env.clone();
        forged.payload = B64.encode(b"{\"a\":2}");
        assert!(matches!(forged.verify(&key.verifying_key()), Err(DsseError::BadSignature(_))));
        // Another payload type: PAE binds the type too.
        let mut retyped = env.clone();
        retyped.payload_type = "text/plain".into();
        assert!(matches!(retyped.verify(&key.verifying_key()), Err(DsseError::BadSignature(_))));
        // Someone else's key.
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(matches!(env.verify(&other.verifying_key()), Err(DsseError::NoSignatureForKey(_))));
    }
}

/// A fresh ed25519 key from the operating system's generator (one per training run).
pub fn generate_key() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}
