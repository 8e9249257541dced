//! The inventory's process hints (`_agents.toml`) travel in signed bundles: an agent kind
//! added to the catalogue reaches the engine a verified bundle builds, which the agent's
//! inventory stage hands to its tracker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;

use shadowai_rules::bundle::{self, CompileOptions, VerifyOptions};
use shadowai_rules::{Catalogue, Engine, Policy};

const T0: i64 = 1_800_000_000;

#[test]
fn a_bundle_carries_the_agent_hints_to_the_engine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cat = Catalogue::load_dir(&root.join("catalogue")).unwrap();
    let mut extra = cat.inventory_hints.agent[0].clone();
    extra.kind = "new-agent".into();
    extra.name = "New Agent".into();
    extra.exe = vec!["new-agent".into()];
    extra.script = vec!["/@example/new-agent/".into()];
    extra.package = Some("@example/new-agent".into());
    extra.tenant = vec![];
    cat.inventory_hints.agent.push(extra);
    let policy = Policy::default();
    let opts = CompileOptions {
        version: "2.0.0".parse().unwrap(),
        issued_at: T0,
        expires_at: T0 + 86_400,
        min_agent_version: "0.1.0".parse().unwrap(),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let signed = bundle::sign_body(&bundle::compile(&cat, &policy, &opts).unwrap(), &key).unwrap();
    let vb = bundle::verify(
        &signed,
        &key.verifying_key(),
        &VerifyOptions {
            now: T0 + 60,
            in_use: None,
            agent_version: None,
        },
    )
    .unwrap();
    let e = Engine::from_bundle(&vb).unwrap();
    let hints = &e.catalogue().inventory_hints;
    assert_eq!(hints, &cat.inventory_hints);
    assert!(hints.agent.iter().any(|a| a.kind == "new-agent"));
}
