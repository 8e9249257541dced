//! The two-person rule on effective verdicts: each bypass of the old rule-pattern check
//! (exceptions, jurisdictions, categories, host-group redefinition, catalogue redefinition,
//! unix groups, an exception that hides a block until it expires) is refused, and a
//! property test over generated policy pairs: whenever `check` accepts, a brute-force walk
//! over hosts, people and moments (including values no rule names) finds no `blocked`
//! change without an approval covering it — and whenever it refuses, the walk finds one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use shadowai_rules::catalogue::{
    Category, Examples, Provenance, Retention, Risk, Source, Training,
};
use shadowai_rules::effective::Audience;
use shadowai_rules::policy::Rule;
use shadowai_rules::twoperson::{Approval, Refusal, Scope, Target, check};
use shadowai_rules::{Catalogue, Engine, Policy, Query, Service, Verdict};

const NOW: i64 = 1_800_000_000;

fn svc(id: &str, category: Category, jurisdiction: &str) -> Service {
    Service {
        id: id.into(),
        name: id.into(),
        vendor: "v".into(),
        category,
        description: String::new(),
        domains: vec![format!("{id}.example")],
        hosts: vec![],
        sni: vec![],
        cidrs: vec![],
        ports: vec![],
        port_alone: false,
        process_hints: vec![],
        api_key_env: vec![],
        risk: Risk {
            plan: None,
            certifications: vec![],
            tiers: vec![],
            evidence: vec![],
            trains_on_user_data: Training::Unknown,
            retention: Retention::Unknown,
            jurisdiction: jurisdiction.into(),
            enterprise_controls: vec![],
            score: 0,
        },
        tenant_hints: vec![],
        provenance: Provenance {
            sources: vec![Source::Legacy("x".into())],
            checked: "2026-01-01".into(),
            note: String::new(),
        },
        examples: Examples {
            matches: vec![],
            no_match: vec![],
        },
    }
}

fn catalogue() -> Catalogue {
    Catalogue {
        services: vec![
            svc("sa", Category::ChatAssistant, "US"),
            svc("sb", Category::ModelApi, "CN"),
            svc("sc", Category::CodingAssistant, "CN"),
            svc("sd", Category::ChatAssistant, "FR"),
        ],
        ..Catalogue::default()
    }
}

fn rule(json: serde_json::Value) -> Rule {
    serde_json::from_value(json).unwrap()
}

fn policy(rules: Vec<Rule>, exceptions: Vec<Rule>, groups: &[(&str, &[&str])]) -> Policy {
    Policy {
        rules,
        exceptions,
        host_groups: groups
            .iter()
            .map(|(g, t)| (g.to_string(), t.iter().map(|x| x.to_string()).collect()))
            .collect(),
        ..Policy::default()
    }
}

fn approval(target: &str, verdict: Verdict, scope: Scope) -> Approval {
    Approval {
        proposal: 1,
        target: Target::parse(target).unwrap(),
        verdict,
        scope,
    }
}

fn block_sa_fleet() -> Approval {
    approval("sa", Verdict::Blocked, Scope::Fleet)
}

fn refused(prev: Option<&Policy>, new: &Policy, approvals: &[Approval]) -> Refusal {
    let cat = catalogue();
    check(&cat, prev.map(|p| (&cat, p)), (&cat, new), approvals, NOW).unwrap_err()
}

fn accepted(prev: Option<&Policy>, new: &Policy, approvals: &[Approval]) -> usize {
    let cat = catalogue();
    check(&cat, prev.map(|p| (&cat, p)), (&cat, new), approvals, NOW)
        .unwrap()
        .len()
}

/// Switching monitor ⇄ enforce decides whether `blocked` verdicts block anything at all: it
/// needs an approval of the new mode (fleet-wide), whatever the verdicts, in both directions,
/// and from "nothing rolled out yet" (monitor) too. Approvals of verdicts do not cover it,
/// nor does an approval of the other mode or one scoped to a group.
#[test]
fn a_mode_change_needs_an_approval_of_the_new_mode() {
    use shadowai_rules::policy::Mode;
    let block = rule(serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"]}));
    let monitor = policy(vec![block.clone()], vec![], &[]);
    let enforce = Policy {
        mode: Mode::Enforce,
        ..monitor.clone()
    };
    let to_enforce = approval("mode:enforce", Verdict::Blocked, Scope::Fleet);
    let to_monitor = approval("mode:monitor", Verdict::Blocked, Scope::Fleet);
    let lab_enforce = approval(
        "mode:enforce",
        Verdict::Blocked,
        Scope::HostTag("lab".into()),
    );
    for (prev, approvals) in [
        (Some(&monitor), vec![block_sa_fleet()]),
        (Some(&monitor), vec![block_sa_fleet(), to_monitor.clone()]),
        (Some(&monitor), vec![block_sa_fleet(), lab_enforce]),
        (
            None,
            vec![
                block_sa_fleet(),
                approval("*", Verdict::Blocked, Scope::Fleet),
            ],
        ),
    ] {
        let e = refused(prev, &enforce, &approvals);
        assert!(
            matches!(
                e,
                Refusal::ModeUnapproved {
                    from: Mode::Monitor,
                    to: Mode::Enforce
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("propose `mode:enforce`"), "{e}");
    }
    assert_eq!(
        accepted(Some(&monitor), &enforce, std::slice::from_ref(&to_enforce)),
        0
    );
    assert_eq!(
        accepted(None, &enforce, &[block_sa_fleet(), to_enforce.clone()]),
        1
    );
    // back to monitor: lifting every block at once is a decision too
    let e = refused(Some(&enforce), &monitor, &[to_enforce]);
    assert!(
        matches!(
            e,
            Refusal::ModeUnapproved {
                from: Mode::Enforce,
                to: Mode::Monitor
            }
        ),
        "{e}"
    );
    assert_eq!(accepted(Some(&enforce), &monitor, &[to_monitor]), 0);
    // the same mode again needs nothing
    assert_eq!(accepted(Some(&enforce), &enforce, &[]), 0);
    assert_eq!(Target::parse("mode:off"), None);
}

#[test]
fn an_approved_block_is_accepted_and_nothing_else_rides_along() {
    let p = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"]}),
        )],
        vec![],
        &[],
    );
    assert_eq!(accepted(None, &p, &[block_sa_fleet()]), 1);
    // the same policy again changes nothing and needs nothing
    assert_eq!(accepted(Some(&p), &p, &[]), 0);
    // without the approval it is refused, and the message says what and for whom
    let e = refused(None, &p, &[]).to_string();
    assert!(e.contains("`sa` becomes blocked for everyone"), "{e}");
    // an approval for another service, another verdict or a group does not cover it
    for a in [
        approval("sb", Verdict::Blocked, Scope::Fleet),
        approval("sa", Verdict::Unsanctioned, Scope::Fleet),
        approval("sa", Verdict::Blocked, Scope::HostTag("lab".into())),
    ] {
        assert!(matches!(refused(None, &p, &[a]), Refusal::Uncovered { .. }));
    }
}

#[test]
fn a_block_through_an_exception_is_refused() {
    let p = policy(
        vec![],
        vec![rule(
            serde_json::json!({"id": "e", "verdict": "blocked", "services": ["sb"],
            "reason": "x", "approver": "x", "expires_at": NOW + 86_400}),
        )],
        &[],
    );
    let e = refused(None, &p, &[block_sa_fleet()]).to_string();
    assert!(e.contains("`sb` becomes blocked"), "{e}");
}

#[test]
fn a_block_through_a_jurisdiction_riding_along_an_approved_service_is_refused() {
    let p = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"], "jurisdictions": ["CN"]}),
        )],
        vec![],
        &[],
    );
    let Refusal::Uncovered { count, first } = refused(None, &p, &[block_sa_fleet()]) else {
        panic!()
    };
    assert_eq!(count, 2);
    let svcs: Vec<&str> = first.iter().map(|c| c.service.as_str()).collect();
    assert_eq!(svcs, ["sb", "sc"]);
    // an approval of the jurisdiction covers it
    let j = approval("jurisdiction:CN", Verdict::Blocked, Scope::Fleet);
    assert_eq!(accepted(None, &p, &[block_sa_fleet(), j]), 3);
}

#[test]
fn a_category_block_needs_the_category_or_each_service_approved() {
    let p = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "categories": ["chat_assistant"]}),
        )],
        vec![],
        &[],
    );
    let Refusal::Uncovered { count, .. } = refused(None, &p, &[block_sa_fleet()]) else {
        panic!()
    };
    assert_eq!(count, 1, "sd is not approved");
    let cat = approval("category:chat_assistant", Verdict::Blocked, Scope::Fleet);
    assert_eq!(accepted(None, &p, &[cat]), 2);
}

#[test]
fn redefining_a_host_group_to_take_in_more_hosts_is_refused() {
    let rules = || {
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"], "host_groups": ["lab"]}),
        )]
    };
    let lab = approval("sa", Verdict::Blocked, Scope::HostTag("lab".into()));
    let honest = policy(rules(), vec![], &[("lab", &["lab"])]);
    assert_eq!(accepted(None, &honest, std::slice::from_ref(&lab)), 1);
    let wider = policy(rules(), vec![], &[("lab", &["lab", "laptop"])]);
    let e = refused(Some(&honest), &wider, &[lab]).to_string();
    assert!(e.contains("hosts tagged laptop"), "{e}");
}

#[test]
fn a_unix_group_everyone_is_in_counts_like_the_fleet() {
    let p = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"], "unix_groups": ["users"]}),
        )],
        vec![],
        &[],
    );
    let lab = approval("sa", Verdict::Blocked, Scope::HostTag("lab".into()));
    let e = refused(None, &p, &[lab]).to_string();
    assert!(e.contains("unix groups users"), "{e}");
    assert_eq!(accepted(None, &p, &[block_sa_fleet()]), 1);
}

#[test]
fn a_block_hidden_behind_an_expiring_exception_is_found() {
    let p = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sb"]}),
        )],
        vec![rule(
            serde_json::json!({"id": "e", "verdict": "sanctioned", "services": ["sb"],
            "reason": "x", "approver": "x", "expires_at": NOW + 3600}),
        )],
        &[],
    );
    let Refusal::Uncovered { first, .. } = refused(None, &p, &[]) else {
        panic!()
    };
    assert_eq!(first[0].at, NOW + 3600);
}

#[test]
fn lifting_a_block_needs_an_approval_of_the_new_verdict() {
    let blocked = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"]}),
        )],
        vec![],
        &[],
    );
    let lifted = policy(vec![], vec![], &[]);
    let e = refused(Some(&blocked), &lifted, &[block_sa_fleet()]).to_string();
    assert!(e.contains("`sa` stops being blocked"), "{e}");
    let ok = approval("sa", Verdict::Unsanctioned, Scope::Fleet);
    assert_eq!(accepted(Some(&blocked), &lifted, &[ok]), 1);
}

#[test]
fn a_catalogue_redefined_inside_the_bundle_is_refused() {
    let cat = catalogue();
    let mut evil = cat.clone();
    evil.services[0].domains.push("google.example".into());
    let p = policy(
        vec![rule(
            serde_json::json!({"id": "r", "verdict": "blocked", "services": ["sa"]}),
        )],
        vec![],
        &[],
    );
    let e = check(&cat, None, (&evil, &p), &[block_sa_fleet()], NOW).unwrap_err();
    assert!(matches!(e, Refusal::CatalogueDiffers { .. }), "{e}");
    assert!(e.to_string().contains("service `sa`"), "{e}");
    // moving a service to a blocked category is the same refusal
    let mut moved = cat.clone();
    moved.services[3].category = Category::ModelApi;
    let e = check(&cat, None, (&moved, &p), &[block_sa_fleet()], NOW).unwrap_err();
    assert!(e.to_string().contains("service `sd`"), "{e}");
}

#[test]
fn too_many_combinations_are_refused_not_guessed() {
    // 15 host tags, each its own rule: 2^15 subsets.
    let rules = (0..15)
        .map(|i| {
            rule(serde_json::json!({"id": format!("r{i}"),
                "verdict": if i % 2 == 0 { "blocked" } else { "sanctioned" },
                "services": ["sa"], "host_tags": [format!("t{i}")]}))
        })
        .collect();
    let p = policy(rules, vec![], &[]);
    let e = refused(None, &p, &[block_sa_fleet()]);
    assert!(matches!(e, Refusal::TooComplex { .. }), "{e}");
}

// ---- property test ----

const TAGS: [&str; 3] = ["t1", "t2", "t3"];
const GROUPS: [&str; 2] = ["u1", "u2"];
const USERS: [&str; 2] = ["alice", "bob"];

fn verdict() -> impl Strategy<Value = Verdict> {
    prop::sample::select(Verdict::ALL.to_vec())
}

fn some_of(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(pool, 0..=max.min(pool.len()))
        .prop_map(|v| v.iter().map(|s| s.to_string()).collect())
}

/// Mostly unscoped, sometimes narrow.
fn maybe(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop_oneof![3 => Just(Vec::new()), 1 => some_of(pool, 2)]
}

fn gen_rule(id: String, exception: bool) -> impl Strategy<Value = Rule> {
    (
        verdict(),
        some_of(&["sa", "sb", "sc", "sd"], 2),
        some_of(&["chat_assistant", "model_api"], 1),
        some_of(&["CN", "FR"], 1),
        maybe(&["g1", "g2"]),
        maybe(&TAGS),
        maybe(&GROUPS),
        maybe(&USERS),
        maybe(&["contoso"]),
        0i64..4,
        prop::bool::weighted(0.7),
    )
        .prop_map(
            move |(v, mut services, cats, juris, hg, tags, groups, users, tenants, k, enforce)| {
                if services.is_empty() && cats.is_empty() && juris.is_empty() {
                    services.push("sa".into());
                }
                rule(serde_json::json!({
                    "id": id, "verdict": v, "services": services, "categories": cats,
                    "jurisdictions": juris, "host_groups": hg, "host_tags": tags,
                    "unix_groups": groups, "users": users, "tenants": tenants,
                    "reason": if exception { "r" } else { "" },
                    "approver": if exception { "a" } else { "" },
                    "expires_at": if exception { Some(NOW + (k - 1) * 100) } else { None },
                    "enforce": enforce,
                }))
            },
        )
}

fn gen_policy() -> impl Strategy<Value = Policy> {
    (
        verdict(),
        some_of(&TAGS, 2),
        some_of(&TAGS, 2),
        0usize..4,
        0usize..3,
    )
        .prop_flat_map(|(default_verdict, g1, g2, nr, ne)| {
            let rules: Vec<_> = (0..nr).map(|i| gen_rule(format!("r{i}"), false)).collect();
            let exc: Vec<_> = (0..ne).map(|i| gen_rule(format!("e{i}"), true)).collect();
            (rules, exc).prop_map(move |(rules, exceptions)| Policy {
                default_verdict,
                host_groups: BTreeMap::from([("g1".into(), g1.clone()), ("g2".into(), g2.clone())]),
                rules,
                exceptions,
                ..Policy::default()
            })
        })
}

fn gen_approval() -> impl Strategy<Value = Approval> {
    (
        prop::sample::select(vec![
            "sa",
            "sb",
            "sd",
            "category:chat_assistant",
            "jurisdiction:CN",
            "*",
        ]),
        verdict(),
        prop::option::of(prop::sample::select(TAGS.to_vec())),
    )
        .prop_map(|(t, v, tag)| {
            approval(
                t,
                v,
                tag.map_or(Scope::Fleet, |t| Scope::HostTag(t.to_owned())),
            )
        })
}

/// Every host and person the brute force tries: each subset of the named tags and groups
/// plus one unnamed value, users and tenants named or not.
fn universe() -> Vec<Audience> {
    let subsets = |pool: &[&str]| -> Vec<Vec<String>> {
        (0..1u32 << pool.len())
            .map(|m| {
                pool.iter()
                    .enumerate()
                    .filter(|(i, _)| m & (1 << i) != 0)
                    .map(|(_, s)| s.to_string())
                    .collect()
            })
            .collect()
    };
    let mut out = Vec::new();
    for t in subsets(&["t1", "t2", "t3", "tx"]) {
        for g in subsets(&["u1", "u2", "ux"]) {
            for u in [None, Some("alice"), Some("bob"), Some("carol")] {
                for n in [None, Some("contoso"), Some("fabrikam")] {
                    out.push(Audience {
                        host_tags: t.clone(),
                        unix_groups: g.clone(),
                        user: u.map(str::to_owned),
                        tenant: n.map(str::to_owned),
                        flags: vec![],
                    });
                }
            }
        }
    }
    out
}

/// The verdict, and whether the rule deciding it enforces it (`false`: observe-only).
fn blocked(e: &Engine, id: &str, a: &Audience, at: i64) -> Option<(Verdict, bool)> {
    let tags: Vec<&str> = a.host_tags.iter().map(String::as_str).collect();
    let groups: Vec<&str> = a.unix_groups.iter().map(String::as_str).collect();
    let q = Query {
        user: a.user.as_deref(),
        unix_groups: &groups,
        host_tags: &tags,
        ..Query::default()
    };
    e.verdict_for(id, &q, a.tenant.as_deref(), at)
        .map(|(v, by)| (v, by.enforces()))
}

/// The oracle's own reading of "covered", written independently of `Approval::covers`:
/// a new (enforced) block needs an approved `blocked`; a lifted one an approval of the new
/// verdict, or of anything but `blocked` when the new `blocked` is observe-only.
fn oracle_covered(
    ap: &[Approval],
    svc: &Service,
    a: &Audience,
    new: Verdict,
    now_blocks: bool,
) -> bool {
    ap.iter().any(|x| {
        let target = match &x.target {
            Target::Service(s) => *s == svc.id,
            Target::Category(c) => *c == svc.category,
            Target::Jurisdiction(j) => *j == svc.risk.jurisdiction,
            Target::Any => true,
            Target::Mode(_) => false,
        };
        let scope = match &x.scope {
            Scope::Fleet => true,
            Scope::HostTag(t) => a.host_tags.iter().any(|h| h == t),
        };
        let verdict = if !now_blocks && new == Verdict::Blocked {
            x.verdict != Verdict::Blocked
        } else {
            x.verdict == new
        };
        target && scope && verdict
    })
}

/// (service, audience, moment) uses whose enforced-`blocked` status changes without cover.
fn brute_force_uncovered(old: &Policy, new: &Policy, ap: &[Approval]) -> usize {
    let cat = catalogue();
    let eo = Engine::new(cat.clone(), old.clone()).unwrap();
    let en = Engine::new(cat.clone(), new.clone()).unwrap();
    let times = [
        NOW,
        NOW + 50,
        NOW + 100,
        NOW + 150,
        NOW + 200,
        NOW + 250,
        NOW + 10_000,
    ];
    let mut n = 0;
    for s in &cat.services {
        for a in universe() {
            for &t in &times {
                let (o, v) = (blocked(&eo, &s.id, &a, t), blocked(&en, &s.id, &a, t));
                let enforced = |x: Option<(Verdict, bool)>| x == Some((Verdict::Blocked, true));
                let (ob, nb) = (enforced(o), enforced(v));
                if ob != nb && !oracle_covered(ap, s, &a, v.unwrap().0, nb) {
                    n += 1;
                }
            }
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// No policy that changes any `blocked` status is accepted without an approval that
    /// covers that very use; and a refusal always names a use the brute force also finds.
    #[test]
    fn no_block_changes_without_a_second_person(
        old in gen_policy(),
        new in gen_policy(),
        ap in prop::collection::vec(gen_approval(), 0..4),
    ) {
        let cat = catalogue();
        let uncovered = brute_force_uncovered(&old, &new, &ap);
        match check(&cat, Some((&cat, &old)), (&cat, &new), &ap, NOW) {
            Ok(_) => prop_assert_eq!(uncovered, 0, "accepted, but the brute force finds uncovered changes"),
            Err(Refusal::Uncovered { .. }) => prop_assert!(uncovered > 0, "refused, but nothing is uncovered"),
            Err(e) => prop_assert!(false, "unexpected refusal: {e}"),
        }
    }
}

fn observe(mut r: Rule) -> Rule {
    r.enforce = false;
    r
}

fn block_sa() -> Rule {
    rule(serde_json::json!({"id": "no-sa", "verdict": "blocked", "services": ["sa"]}))
}

/// An observe-only rule (`enforce = false`) refuses nothing: adding one needs no approval;
/// switching it to enforce is a new block (an approved `blocked` needed); switching an
/// enforced block back to observe lifts it, which an approved `blocked` does not cover but
/// an approval of a lifted verdict does.
#[test]
fn the_observe_flag_is_part_of_what_is_compared() {
    let observed = policy(vec![observe(block_sa())], vec![], &[]);
    let enforced = policy(vec![block_sa()], vec![], &[]);
    assert_eq!(
        accepted(None, &observed, &[]),
        0,
        "observe-only blocks nothing"
    );

    let r = refused(Some(&observed), &enforced, &[]);
    assert!(
        matches!(&r, Refusal::Uncovered { first, .. } if first[0].service == "sa"),
        "{r}"
    );
    assert!(
        r.to_string().contains("blocked (observe-only) -> blocked"),
        "{r}"
    );
    assert!(accepted(Some(&observed), &enforced, &[block_sa_fleet()]) > 0);

    let r = refused(Some(&enforced), &observed, &[block_sa_fleet()]);
    assert!(matches!(r, Refusal::Uncovered { .. }), "{r}");
    assert!(r.to_string().contains("-> blocked (observe-only)"), "{r}");
    let lift = approval("sa", Verdict::Unsanctioned, Scope::Fleet);
    assert!(accepted(Some(&enforced), &observed, &[lift]) > 0);

    // The same through an exception: a block for one user's host group, observe-only.
    let exc = |enforce: bool| {
        let mut e = rule(serde_json::json!({
            "id": "e", "verdict": "blocked", "services": ["sa"], "users": ["alice"],
            "reason": "r", "approver": "a", "expires_at": NOW + 1000,
        }));
        e.enforce = enforce;
        policy(vec![], vec![e], &[])
    };
    assert_eq!(accepted(None, &exc(false), &[]), 0);
    assert!(matches!(
        refused(Some(&exc(false)), &exc(true), &[]),
        Refusal::Uncovered { .. }
    ));
}

#[test]
fn enforce_false_parses_and_leaves_other_bundles_unchanged() {
    let cat = catalogue();
    let text = "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n\
        [[rules]]\nid = \"watch-sa\"\nverdict = \"blocked\"\nservices = [\"sa\"]\nenforce = false\n\n\
        [[rules]]\nid = \"no-sb\"\nverdict = \"blocked\"\nservices = [\"sb\"]\n";
    let (p, report) = Policy::parse(std::path::Path::new("p.toml"), text, &cat, NOW);
    let p = p.unwrap_or_else(|| panic!("{report:?}"));
    assert!(!p.rules[0].enforce && p.rules[1].enforce);
    let e = Engine::new(cat, p.clone()).unwrap();
    let d = |name: &'static str| {
        let d = e
            .classify(&Query {
                name: Some(name),
                ..Query::default()
            })
            .unwrap();
        (d.verdict, d.enforce(), d.explain())
    };
    let (sa, sb) = (d("sa.example"), d("sb.example"));
    assert_eq!((sa.0, sa.1), (Verdict::Blocked, false));
    assert!(sa.2.contains("observe-only"), "{}", sa.2);
    assert_eq!((sb.0, sb.1), (Verdict::Blocked, true));
    // Serialised only when false: a bundle without observe-only rules is byte-identical.
    let json = serde_json::to_string(&p.rules[1]).unwrap();
    assert!(!json.contains("enforce"), "{json}");
    let json = serde_json::to_string(&p.rules[0]).unwrap();
    assert!(json.contains("\"enforce\":false"), "{json}");
    let back: Rule = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p.rules[0]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// No bundle that turns an observed block into an enforced one is accepted unless a
    /// second person approved `blocked` for it: with approvals of any other verdict only
    /// (or none), a bundle that only switches rules from observe to enforce is refused
    /// whenever the brute force finds one use it newly refuses.
    #[test]
    fn an_observed_block_is_never_enforced_without_a_second_person(
        old in gen_policy(),
        flips in prop::collection::vec(any::<bool>(), 8),
        ap in prop::collection::vec(
            gen_approval().prop_filter("not an approved block", |a| a.verdict != Verdict::Blocked),
            0..4,
        ),
    ) {
        let mut new = old.clone();
        for (r, f) in new.rules.iter_mut().chain(new.exceptions.iter_mut()).zip(&flips) {
            r.enforce |= *f;
        }
        let cat = catalogue();
        let (eo, en) = (
            Engine::new(cat.clone(), old.clone()).unwrap(),
            Engine::new(cat.clone(), new.clone()).unwrap(),
        );
        let newly_enforced = cat.services.iter().any(|s| {
            universe().iter().any(|a| {
                [NOW, NOW + 50, NOW + 150, NOW + 250, NOW + 10_000].iter().any(|&t| {
                    blocked(&eo, &s.id, a, t) == Some((Verdict::Blocked, false))
                        && blocked(&en, &s.id, a, t) == Some((Verdict::Blocked, true))
                })
            })
        });
        let verdict = check(&cat, Some((&cat, &old)), (&cat, &new), &ap, NOW);
        if newly_enforced {
            prop_assert!(
                matches!(verdict, Err(Refusal::Uncovered { .. })),
                "an observed block became enforced without an approved block: {:?}",
                verdict.map(|c| c.len())
            );
        }
    }
}
