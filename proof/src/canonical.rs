//! Canonical JSON for digests and signatures: RFC 8785 (JCS) through
//! `serde_json_canonicalizer` — sorted keys, no whitespace, ECMAScript number
//! form — so any implementation in any language computes the same bytes.

use serde::Serialize;

pub fn to_canonical_bytes<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8785_ordering_and_numbers() {
        let v = serde_json::json!({"b": [1.0, 1e21, 0.000001], "a": "é", "A": {"z": null, "y": true}});
        let s = String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(s, r#"{"A":{"y":true,"z":null},"a":"é","b":[1,1e+21,0.000001]}"#);
    }
}
