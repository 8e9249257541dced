//! Checks on uploaded rules bundles: well-formed and signed (verified when the collector
//! knows the public key), and every fleet-wide or group-wide block in the bundle's policy
//! backed by an approved proposal (two-person rule).

use ed25519_dalek::VerifyingKey;
use shadowai_api::{PolicyEntry, PolicyScope, Verdict};
use shadowai_rules::bundle::{self, VerifyOptions};
use shadowai_rules::{BundleBody, Policy};

use crate::server::error::{ApiError, bad};

/// Parses (and verifies, with `key`) a signed bundle.
pub fn check_bundle(
    bytes: &[u8],
    key: Option<&VerifyingKey>,
    now_s: i64,
) -> Result<BundleBody, ApiError> {
    match key {
        Some(k) => {
            let opts = VerifyOptions {
                now: now_s,
                in_use: None,
                agent_version: None,
            };
            bundle::verify(bytes, k, &opts)
                .map(|v| v.body)
                .map_err(|e| bad(format!("bundle: {e}")))
        }
        None => {
            let env: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| bad(format!("bundle: not JSON: {e}")))?;
            if !env.get("signature").is_some_and(|s| s.is_string()) {
                return Err(bad(
                    "bundle: unsigned (sign it with `shadowai-rules sign` first)",
                ));
            }
            bundle::read_unverified(bytes).map_err(|e| bad(format!("bundle: {e}")))
        }
    }
}

fn category_name(c: &shadowai_rules::Category) -> String {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{c:?}"),
    }
}

fn approved(entries: &[PolicyEntry], target: &str, scope: &PolicyScope) -> bool {
    entries.iter().any(|e| {
        e.verdict == Verdict::Blocked
            && e.service_id == target
            && (e.scope == *scope || e.scope == PolicyScope::Fleet)
    })
}

/// Refuses a bundle that blocks a service for the fleet or a host group without an
/// approved proposal for it (`service_id` = service id, `category:<name>` or `*`).
pub fn check_blocks_approved(policy: &Policy, entries: &[PolicyEntry]) -> Result<(), ApiError> {
    let refuse = |target: &str, scope: &PolicyScope| ApiError::Forbidden {
        message: format!(
            "bundle blocks {target:?} for {} without an approved proposal; propose it and have a different person with the approver role approve it",
            match scope {
                PolicyScope::Fleet => "the whole fleet".to_owned(),
                PolicyScope::Group { group } => format!("group {group:?}"),
            }
        ),
    };
    if policy.default_verdict == Verdict::Blocked && !approved(entries, "*", &PolicyScope::Fleet) {
        return Err(refuse("*", &PolicyScope::Fleet));
    }
    for rule in &policy.rules {
        let per_person =
            !(rule.users.is_empty() && rule.unix_groups.is_empty() && rule.tenants.is_empty());
        if rule.verdict != Verdict::Blocked || per_person {
            continue;
        }
        let scopes: Vec<PolicyScope> = if rule.host_groups.is_empty() && rule.host_tags.is_empty() {
            vec![PolicyScope::Fleet]
        } else {
            rule.host_groups
                .iter()
                .map(|g| PolicyScope::Group { group: g.clone() })
                .chain(rule.host_tags.iter().map(|t| PolicyScope::Group {
                    group: format!("tag:{t}"),
                }))
                .collect()
        };
        let mut targets: Vec<String> = rule.services.clone();
        targets.extend(
            rule.categories
                .iter()
                .map(|c| format!("category:{}", category_name(c))),
        );
        if targets.is_empty() {
            targets.push("*".to_owned());
        }
        for t in &targets {
            for s in &scopes {
                if !approved(entries, t, s) {
                    return Err(refuse(t, s));
                }
            }
        }
    }
    Ok(())
}
