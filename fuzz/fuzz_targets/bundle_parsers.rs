//! Every parser a hostile bundle or PR body reaches, on arbitrary bytes: the
//! manifest, the DSSE envelope (and its verification), the in-toto statement,
//! the miner signature, the training log and the PR locator. None may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proof::bundle::BundleManifest;
use proof::dsse::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<BundleManifest>(data) {
        let _ = m.digest();
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let key = ed25519_key();
        let _ = env.verify(&key);
    }
    let _ = serde_json::from_slice::<proof::intoto::Statement>(data);
    if let Ok(sig) = serde_json::from_slice::<proof::hotkey::MinerSignature>(data) {
        let digest = proof::sha256_bytes(data);
        let _ = proof::hotkey::verify(&sig, &digest, &sig.hotkey, &sig.github_login);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = proof::log::parse_log(text);
        let _ = proof::locator::Locator::parse_from_body(text);
    }
});

fn ed25519_key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key()
}
