//! Bundles: canonical bytes, ed25519 signatures, and every refusal (tamper, wrong key,
//! rollback, expiry, not-yet-valid, agent too old, non-canonical body).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;
use std::sync::OnceLock;

use shadowai_rules::bundle::{self, CompileOptions, InUse, VerifyOptions};
use shadowai_rules::{Catalogue, Engine, Policy, Query, RulesError, Verdict};

const T0: i64 = 1_795_000_000; // 2026-11-17

fn pair() -> &'static (Catalogue, Policy) {
    static P: OnceLock<(Catalogue, Policy)> = OnceLock::new();
    P.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cat = Catalogue::load_dir(&root.join("catalogue")).unwrap();
        let pol = Policy::load(&root.join("policy.example.toml"), &cat).unwrap();
        (cat, pol)
    })
}

fn opts(version: &str) -> CompileOptions {
    CompileOptions {
        version: version.parse().unwrap(),
        issued_at: T0,
        expires_at: T0 + 30 * 86_400,
        min_agent_version: "0.1.0".parse().unwrap(),
    }
}

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn signed(version: &str) -> Vec<u8> {
    let (c, p) = pair();
    bundle::sign_body(&bundle::compile(c, p, &opts(version)).unwrap(), &key(7)).unwrap()
}

fn at(now: i64) -> VerifyOptions<'static> {
    VerifyOptions {
        now,
        in_use: None,
        agent_version: None,
    }
}

#[test]
fn compile_is_deterministic_and_round_trips() {
    let (c, p) = pair();
    let a = bundle::unsigned_bytes(&bundle::compile(c, p, &opts("1.0.0")).unwrap()).unwrap();
    let b = bundle::unsigned_bytes(&bundle::compile(c, p, &opts("1.0.0")).unwrap()).unwrap();
    assert_eq!(a, b, "same input, same bytes");
    let body = bundle::read_unverified(&a).unwrap();
    assert_eq!(&body.catalogue, c);
    assert_eq!(&body.policy, p);
    assert_eq!(
        signed("1.0.0"),
        signed("1.0.0"),
        "ed25519 signatures are deterministic too"
    );
}

#[test]
fn verified_bundle_drives_an_engine() {
    let vb = bundle::verify(&signed("1.2.3"), &key(7).verifying_key(), &at(T0 + 60)).unwrap();
    assert_eq!(vb.version.to_string(), "1.2.3");
    assert_eq!(vb.key_id, bundle::key_id(&key(7).verifying_key()));
    let e = Engine::from_bundle(&vb).unwrap();
    let d = e
        .classify_at(
            &Query {
                name: Some("kimi.com"),
                ..Query::default()
            },
            T0,
        )
        .unwrap();
    assert_eq!(d.verdict, Verdict::Blocked);
}

#[test]
fn tampered_body_is_refused() {
    let good = signed("1.0.0");
    let text = String::from_utf8(good).unwrap();
    // Flip one verdict in the signed body.
    let tampered = text.replacen(
        "\"default_verdict\":\"unsanctioned\"",
        "\"default_verdict\":\"sanctioned\"",
        1,
    );
    assert_ne!(tampered, text);
    let err = bundle::verify(tampered.as_bytes(), &key(7).verifying_key(), &at(T0)).unwrap_err();
    assert!(matches!(err, RulesError::BadSignature { .. }), "{err}");
    // A flipped bit in the signature.
    let sig_pos = text.rfind("\"signature\":\"").unwrap() + 13;
    let mut bytes = text.clone().into_bytes();
    bytes[sig_pos] = if bytes[sig_pos] == b'0' { b'1' } else { b'0' };
    assert!(matches!(
        bundle::verify(&bytes, &key(7).verifying_key(), &at(T0)),
        Err(RulesError::BadSignature { .. })
    ));
}

#[test]
fn wrong_key_and_unsigned_are_refused() {
    let b = signed("1.0.0");
    let err = bundle::verify(&b, &key(8).verifying_key(), &at(T0)).unwrap_err();
    assert!(matches!(err, RulesError::WrongKey { .. }), "{err}");
    // Same bundle with the key id removed: the signature check itself fails.
    let text = String::from_utf8(b).unwrap();
    let start = text.find(",\"key_id\"").unwrap();
    let end = text[start + 1..].find(',').unwrap() + start + 1;
    let no_kid = format!("{}{}", &text[..start], &text[end..]);
    assert!(matches!(
        bundle::verify(no_kid.as_bytes(), &key(8).verifying_key(), &at(T0)),
        Err(RulesError::BadSignature { .. })
    ));
    let (c, p) = pair();
    let unsigned = bundle::unsigned_bytes(&bundle::compile(c, p, &opts("1.0.0")).unwrap()).unwrap();
    assert!(matches!(
        bundle::verify(&unsigned, &key(7).verifying_key(), &at(T0)),
        Err(RulesError::Unsigned)
    ));
}

#[test]
fn rollback_is_refused() {
    let k = key(7).verifying_key();
    let v2 = bundle::verify(&signed("2.0.0"), &k, &at(T0)).unwrap();
    let in_use = v2.in_use();
    let older = bundle::verify(
        &signed("1.9.9"),
        &k,
        &VerifyOptions {
            now: T0,
            in_use: Some(&in_use),
            agent_version: None,
        },
    );
    assert!(
        matches!(older, Err(RulesError::Rollback { .. })),
        "{older:?}"
    );
    // The same bundle again is fine (restart); the same version with other content is not.
    assert!(
        bundle::verify(
            &signed("2.0.0"),
            &k,
            &VerifyOptions {
                now: T0,
                in_use: Some(&in_use),
                agent_version: None
            }
        )
        .is_ok()
    );
    let other = InUse {
        version: in_use.version.clone(),
        sha256: [0; 32],
    };
    assert!(matches!(
        bundle::verify(
            &signed("2.0.0"),
            &k,
            &VerifyOptions {
                now: T0,
                in_use: Some(&other),
                agent_version: None
            }
        ),
        Err(RulesError::Rollback { .. })
    ));
    assert!(
        bundle::verify(
            &signed("2.0.1"),
            &k,
            &VerifyOptions {
                now: T0,
                in_use: Some(&in_use),
                agent_version: None
            }
        )
        .is_ok()
    );
    // Pre-releases sort before the release.
    assert!(
        bundle::verify(
            &signed("2.0.0-rc.1"),
            &k,
            &VerifyOptions {
                now: T0,
                in_use: Some(&in_use),
                agent_version: None
            }
        )
        .is_err()
    );
}

#[test]
fn expiry_clock_skew_and_agent_version() {
    let k = key(7).verifying_key();
    let b = signed("1.0.0");
    let err = bundle::verify(&b, &k, &at(T0 + 30 * 86_400)).unwrap_err();
    assert!(matches!(err, RulesError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");
    assert!(bundle::verify(&b, &k, &at(T0 + 30 * 86_400 - 1)).is_ok());
    assert!(
        bundle::verify(&b, &k, &at(T0 - 299)).is_ok(),
        "small clock skew tolerated"
    );
    assert!(matches!(
        bundle::verify(&b, &k, &at(T0 - 3600)),
        Err(RulesError::NotYetValid { .. })
    ));
    let (c, p) = pair();
    let mut o = opts("1.0.0");
    o.min_agent_version = "0.3.0".parse().unwrap();
    let needs_new = bundle::sign_body(&bundle::compile(c, p, &o).unwrap(), &key(7)).unwrap();
    let old_agent: semver::Version = "0.2.9".parse().unwrap();
    let err = bundle::verify(
        &needs_new,
        &k,
        &VerifyOptions {
            now: T0,
            in_use: None,
            agent_version: Some(&old_agent),
        },
    )
    .unwrap_err();
    assert!(matches!(err, RulesError::AgentTooOld { .. }), "{err}");
    let mut bad = opts("1.0.0");
    bad.expires_at = bad.issued_at;
    assert!(matches!(
        bundle::compile(c, p, &bad),
        Err(RulesError::BadValidity { .. })
    ));
}

#[test]
fn non_canonical_or_malformed_bodies_are_refused() {
    let k = key(7);
    let (c, p) = pair();
    let body = bundle::compile(c, p, &opts("1.0.0")).unwrap();
    // Sign a pretty-printed (non-canonical) body by hand: the signature is valid, the form not.
    let pretty = serde_json::to_string_pretty(&body).unwrap();
    use ed25519_dalek::Signer;
    let sig = k.sign(&[b"shadowai-rules-bundle-v1\0".as_slice(), pretty.as_bytes()].concat());
    let env = format!(
        "{{\"body\":{pretty},\"key_id\":\"{}\",\"signature\":\"{}\"}}",
        bundle::key_id(&k.verifying_key()),
        hex::encode(sig.to_bytes())
    );
    let err = bundle::verify(env.as_bytes(), &k.verifying_key(), &at(T0)).unwrap_err();
    assert!(matches!(err, RulesError::NotCanonical), "{err}");
    for junk in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"body\":1}",
        b"{\"body\":{},\"signature\":\"00\",\"extra\":1}",
        b"\xff\xfe",
    ] {
        assert!(bundle::verify(junk, &k.verifying_key(), &at(T0)).is_err());
        assert!(bundle::read_unverified(junk).is_err());
    }
}

#[test]
fn key_files_round_trip_and_bad_ones_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let k = bundle::generate_key().unwrap();
    let (s, p) = (d.path().join("k.sec"), d.path().join("k.pub"));
    bundle::write_signing_key(&s, &k).unwrap();
    bundle::write_verifying_key(&p, &k.verifying_key()).unwrap();
    assert_eq!(
        bundle::read_signing_key(&s).unwrap().to_bytes(),
        k.to_bytes()
    );
    assert_eq!(bundle::read_verifying_key(&p).unwrap(), k.verifying_key());
    assert!(
        bundle::write_signing_key(&s, &k).is_err(),
        "never overwrite a key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    for (name, text, reason) in [
        ("empty", "# nothing\n", "no key line"),
        ("short", "abcd\n", "32 bytes"),
        ("nothex", &"zz".repeat(32), "not hex"),
        (
            "two",
            &format!("{}\n{}\n", "00".repeat(32), "11".repeat(32)),
            "more than one",
        ),
    ] {
        let f = d.path().join(name);
        std::fs::write(&f, text).unwrap();
        let err = bundle::read_signing_key(&f).unwrap_err();
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
}
