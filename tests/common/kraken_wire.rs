//! Kraken wire helpers shared by the tests that run a fake Kraken: the test credentials, form
//! decoding, an independent re-implementation of the API-Sign check, and response envelopes.
#![allow(dead_code, reason = "each test file uses its own subset")]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;

pub const KEY: &str = "test-api-key";
pub const SECRET: &str = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

pub fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Independent re-implementation of Kraken's signature check.
pub fn expected_signature(path: &str, nonce: &str, body: &[u8]) -> String {
    let mut sha = Sha256::new();
    sha.update(nonce.as_bytes());
    sha.update(body);
    let mut mac = Hmac::<Sha512>::new_from_slice(&B64.decode(SECRET).unwrap()).unwrap();
    mac.update(path.as_bytes());
    mac.update(&sha.finalize());
    B64.encode(mac.finalize().into_bytes())
}

pub fn err(e: &str) -> Value {
    json!({"error": [e]})
}

pub fn ok(result: Value) -> Value {
    json!({"error": [], "result": result})
}
