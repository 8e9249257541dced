//! Key sets: keys rotate with overlap — a verifier trusting {old, new} takes bundles signed
//! by either, picks the key the bundle names, and refuses any other key by id.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use shadowai_rules::bundle::{self, CompileOptions, VerifyOptions};
use shadowai_rules::keyset::KeySet;
use shadowai_rules::{Catalogue, Policy, RulesError};

const T0: i64 = 1_795_000_000;

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn signed(seed: u8) -> Vec<u8> {
    let opts = CompileOptions {
        version: "1.0.0".parse().unwrap(),
        issued_at: T0,
        expires_at: T0 + 86_400,
        min_agent_version: "0.1.0".parse().unwrap(),
    };
    let body = bundle::compile(&Catalogue::default(), &Policy::default(), &opts).unwrap();
    bundle::sign_body(&body, &key(seed)).unwrap()
}

fn at() -> VerifyOptions<'static> {
    VerifyOptions {
        now: T0 + 10,
        in_use: None,
        agent_version: None,
    }
}

fn file(lines: &[String]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("keys.pub");
    std::fs::write(&p, format!("# trusted bundle keys\n{}\n", lines.join("\n"))).unwrap();
    (d, p)
}

fn hex_pub(seed: u8) -> String {
    hex::encode(key(seed).verifying_key().as_bytes())
}

#[test]
fn rotation_with_overlap() {
    let (_d, p) = file(&[hex_pub(1), hex_pub(2)]);
    let set = KeySet::read(&p).unwrap();
    assert_eq!(set.ids().len(), 2);
    for seed in [1, 2] {
        let v = set.verify(&signed(seed), &at()).unwrap();
        assert_eq!(v.key_id, bundle::key_id(&key(seed).verifying_key()));
    }
    let e = set.verify(&signed(3), &at()).unwrap_err();
    let RulesError::WrongKey { found, expected } = &e else {
        panic!("{e}")
    };
    assert_eq!(*found, bundle::key_id(&key(3).verifying_key()));
    assert!(
        expected.contains(&bundle::key_id(&key(1).verifying_key())),
        "{e}"
    );
    // after the overlap, only the new key
    let (_d, p) = file(&[hex_pub(2)]);
    let set = KeySet::read(&p).unwrap();
    assert!(set.verify(&signed(1), &at()).is_err());
    assert!(set.verify(&signed(2), &at()).is_ok());
}

#[test]
fn a_tampered_bundle_still_fails_under_its_named_key() {
    let (_d, p) = file(&[hex_pub(1), hex_pub(2)]);
    let set = KeySet::read(&p).unwrap();
    let mut b = signed(1);
    let i = b.windows(5).position(|w| w == b"1.0.0").unwrap();
    b[i] = b'9';
    assert!(matches!(
        set.verify(&b, &at()),
        Err(RulesError::BadSignature { .. })
    ));
}

#[test]
fn bad_key_set_files_say_what_is_wrong() {
    for (lines, needle) in [
        (vec![], "no key line"),
        (vec!["zz".to_owned()], "not hex"),
        (vec!["abcd".to_owned()], "not 32 bytes"),
        ((0..17u8).map(hex_pub).collect(), "more than 16"),
    ] {
        let (_d, p) = file(&lines);
        let e = KeySet::read(&p).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}
