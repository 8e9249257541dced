//! Property tests on matching (label boundary, case, trailing dot, glob, CIDR longest
//! prefix) and on parsing arbitrary input (never panics).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use proptest::prelude::*;
use shadowai_rules::catalogue::{
    Category, Examples, Provenance, Retention, Risk, Source, Training,
};
use shadowai_rules::matcher::Matcher;
use shadowai_rules::{Catalogue, Policy, Service};

fn svc(id: &str) -> Service {
    Service {
        id: id.into(),
        name: id.into(),
        vendor: "v".into(),
        category: Category::ChatAssistant,
        description: String::new(),
        domains: vec![],
        hosts: vec![],
        sni: vec![],
        cidrs: vec![],
        ports: vec![],
        port_alone: false,
        process_hints: vec![],
        api_key_env: vec![],
        risk: Risk {
            plan: None,
            trains_on_user_data: Training::Unknown,
            retention: Retention::Unknown,
            jurisdiction: "ZZ".into(),
            enterprise_controls: vec![],
            certifications: vec![],
            tiers: vec![],
            evidence: vec![],
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

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..3), "[a-z]{2,6}")
        .prop_map(|(ls, tld)| format!("{}.{tld}", ls.join(".")))
}

fn random_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A suffix pattern matches itself and every name below it, in any case, with or
    /// without a trailing dot; never a name that merely ends with the same characters.
    #[test]
    fn suffix_matches_only_at_label_boundaries(d in domain(), sub in prop::collection::vec(label(), 0..3), glue in "[a-z0-9-]{1,6}", mask in any::<u64>(), dot in any::<bool>()) {
        let mut s = svc("a");
        s.domains = vec![d.clone()];
        let m = Matcher::build(&[s]).unwrap();
        let mut name = sub.iter().map(|l| format!("{l}.")).collect::<String>() + &d;
        name = random_case(&name, mask);
        if dot { name.push('.'); }
        prop_assert!(m.match_name(&name).is_some(), "{name} should match {d}");
        // Glued onto the first label (no dot): must not match.
        let glued = format!("{glue}{d}");
        prop_assert!(m.match_name(&glued).is_none(), "{glued} must not match {d}");
        // The pattern followed by more labels is another name.
        // The last label has a digit, so it can never be d's (letters-only) TLD again.
        let longer = format!("{d}.{glue}0x9");
        prop_assert!(m.match_name(&longer).is_none(), "{longer} must not match {d}");
    }

    /// Exact hosts match only themselves; the most specific pattern wins.
    #[test]
    fn exact_and_most_specific(d in domain(), l in label(), l2 in label()) {
        let host = format!("{l}.{d}");
        let mut a = svc("a");
        a.domains = vec![d.clone()];
        let mut b = svc("b");
        b.hosts = vec![host.clone()];
        let m = Matcher::build(&[a, b]).unwrap();
        prop_assert_eq!(m.match_name(&host.to_uppercase()).map(|h| h.service), Some(1));
        let below = format!("{l2}.{host}");
        prop_assert_eq!(m.match_name(&below).map(|h| h.service), Some(0), "below an exact host, the suffix applies");
        prop_assert_eq!(m.match_name(&d).map(|h| h.service), Some(0));
    }

    /// Globs match exactly their label count; `*` is one non-empty label.
    #[test]
    fn glob_label_count(region in label(), extra in label(), d in domain()) {
        let mut a = svc("a");
        a.sni = vec![format!("svc-rt.*.{d}")];
        let m = Matcher::build(&[a]).unwrap();
        let name = format!("svc-rt.{region}.{d}");
        prop_assert!(m.match_name(&name).is_some());
        let deeper = format!("{extra}.{name}");
        prop_assert!(m.match_name(&deeper).is_none());
        let no_region = format!("svc-rt.{d}");
        prop_assert!(m.match_name(&no_region).is_none());
    }

    /// IPv4 longest prefix: with nested networks the narrower one wins; outside both, none.
    #[test]
    fn cidr_v4_longest_prefix(base in any::<u32>(), outer in 8u8..24, inner_extra in 1u8..8, host in any::<u32>()) {
        let inner = outer + inner_extra;
        let mask = |l: u8| if l == 0 { 0 } else { u32::MAX << (32 - u32::from(l)) };
        let outer_net = base & mask(outer);
        let inner_net = base & mask(inner);
        let mut a = svc("a");
        a.cidrs = vec![format!("{}/{outer}", Ipv4Addr::from(outer_net))];
        let mut b = svc("b");
        b.cidrs = vec![format!("{}/{inner}", Ipv4Addr::from(inner_net))];
        let m = Matcher::build(&[a, b]).unwrap();
        let ip = Ipv4Addr::from(host);
        let expect = if host & mask(inner) == inner_net { Some(1) } else if host & mask(outer) == outer_net { Some(0) } else { None };
        prop_assert_eq!(m.match_ip(IpAddr::V4(ip)).map(|h| h.service), expect);
        let in_inner = Ipv4Addr::from(inner_net | (host & !mask(inner)));
        prop_assert_eq!(m.match_ip(IpAddr::V4(in_inner)).map(|h| h.service), Some(1));
        let mapped = IpAddr::V6(in_inner.to_ipv6_mapped());
        prop_assert_eq!(m.match_ip(mapped).map(|h| h.service), Some(1));
    }

    /// IPv6 longest prefix.
    #[test]
    fn cidr_v6_longest_prefix(base in any::<u128>(), outer in 16u8..64, inner_extra in 1u8..48, host in any::<u128>()) {
        let inner = outer + inner_extra;
        let mask = |l: u8| if l == 0 { 0 } else { u128::MAX << (128 - u32::from(l)) };
        let (outer_net, inner_net) = (base & mask(outer), base & mask(inner));
        let mut a = svc("a");
        a.cidrs = vec![format!("{}/{outer}", Ipv6Addr::from(outer_net))];
        let mut b = svc("b");
        b.cidrs = vec![format!("{}/{inner}", Ipv6Addr::from(inner_net))];
        let m = Matcher::build(&[a, b]).unwrap();
        let expect = if host & mask(inner) == inner_net { Some(1) } else if host & mask(outer) == outer_net { Some(0) } else { None };
        let ip = IpAddr::V6(Ipv6Addr::from(host));
        // Skip the IPv4-mapped range, looked up as IPv4 by design.
        prop_assume!(Ipv6Addr::from(host).to_ipv4_mapped().is_none());
        prop_assert_eq!(m.match_ip(ip).map(|h| h.service), expect);
    }

    /// Any string as a name: no panic; over-long names never match.
    #[test]
    fn arbitrary_names_never_panic(name in ".{0,300}") {
        let mut a = svc("a");
        a.domains = vec!["example.com".into()];
        let m = Matcher::build(&[a]).unwrap();
        let _ = m.match_name(&name);
        let _ = m.match_process(&name);
    }

    /// Arbitrary bytes, and mutations of a real signed bundle, never verify and never panic.
    #[test]
    fn arbitrary_bundles_never_panic(junk in prop::collection::vec(any::<u8>(), 0..200), pos in any::<usize>(), byte in any::<u8>()) {
        use shadowai_rules::bundle;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let opts = bundle::VerifyOptions { now: 10, in_use: None, agent_version: None };
        prop_assert!(bundle::verify(&junk, &key.verifying_key(), &opts).is_err());
        let body = bundle::BundleBody {
            format: bundle::FORMAT.into(),
            version: "1.0.0".into(),
            issued_at: 0,
            expires_at: 100,
            min_agent_version: "0.1.0".into(),
            catalogue: Catalogue::default(),
            policy: Policy::default(),
        };
        let mut signed = bundle::sign_body(&body, &key).unwrap();
        prop_assert!(bundle::verify(&signed, &key.verifying_key(), &opts).is_ok());
        let i = pos % signed.len();
        prop_assume!(signed[i] != byte && i + 1 != signed.len());
        signed[i] = byte;
        prop_assert!(bundle::verify(&signed, &key.verifying_key(), &opts).is_err(), "mutated byte {i} accepted");
    }

    /// Arbitrary text as a service file or a policy: diagnostics, never a panic.
    #[test]
    fn arbitrary_files_never_panic(text in "(?s).{0,400}", cut in 0usize..900) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.toml"), &text).unwrap();
        let _ = shadowai_rules::validate_dir(d.path()).unwrap();
        // Truncations of a real file.
        let real = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue/openai-chatgpt.toml")).unwrap();
        let mut end = cut.min(real.len());
        while !real.is_char_boundary(end) { end -= 1; }
        std::fs::write(d.path().join("openai-chatgpt.toml"), &real[..end]).unwrap();
        let _ = shadowai_rules::validate_dir(d.path()).unwrap();
        let _ = Policy::parse(Path::new("p.toml"), &text, &Catalogue::default(), 0);
    }
}

fn shipped_engine() -> &'static shadowai_rules::Engine {
    static E: std::sync::OnceLock<shadowai_rules::Engine> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let cat =
            Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue")).unwrap();
        shadowai_rules::Engine::new(cat, Policy::default()).unwrap()
    })
}

fn id_of(name: &str) -> Option<&'static str> {
    shipped_engine().match_name(name).map(|s| s.id.as_str())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The shipped region and tenant shapes (partial-label globs) hold at label boundaries:
    /// any region or tenant label matches; a glued prefix/suffix, an extra or missing label,
    /// or the name as a prefix of another domain never does.
    #[test]
    fn shipped_region_and_tenant_shapes(region in label(), svc_tail in "[a-z]{1,12}(-fips)?", glue in "[a-z0-9]{1,4}", d in domain()) {
        let bedrock = format!("bedrock-{svc_tail}.{region}.amazonaws.com");
        prop_assert_eq!(id_of(&bedrock), Some("aws-bedrock"));
        prop_assert_eq!(id_of(&format!("bedrock.{region}.amazonaws.com")), Some("aws-bedrock"));
        // Glued in front (`xbedrock-…`), one label deeper, no region, or under another domain.
        let glued = format!("{glue}bedrock-{svc_tail}.{region}.amazonaws.com");
        prop_assert_ne!(id_of(&glued), Some("aws-bedrock"));
        prop_assert_ne!(id_of(&format!("{glue}.{bedrock}")), Some("aws-bedrock"));
        prop_assert_ne!(id_of(&format!("bedrock-{svc_tail}.amazonaws.com")), Some("aws-bedrock"));
        prop_assert_eq!(id_of(&format!("{bedrock}.{d}")), None);

        let vertex = format!("{region}-aiplatform.googleapis.com");
        prop_assert_eq!(id_of(&vertex), Some("gcp-vertex-ai"));
        prop_assert_ne!(id_of(&format!("{region}-aiplatform{glue}.googleapis.com")), Some("gcp-vertex-ai"));
        prop_assert_ne!(id_of(&format!("{glue}.{vertex}")), Some("gcp-vertex-ai"));

        let azure = format!("{region}.openai.azure.com");
        prop_assert_eq!(id_of(&azure), Some("azure-openai"));
        prop_assert_ne!(id_of(&format!("{region}.{glue}openai.azure.com")), Some("azure-openai"));

        let q = format!("q.{region}.amazonaws.com");
        prop_assert_eq!(id_of(&q), Some("amazon-q-developer"));
        prop_assert_ne!(id_of(&format!("{glue}q.{region}.amazonaws.com")), Some("amazon-q-developer"));

        let openai_region = format!("{region}.api.openai.com");
        prop_assert_eq!(id_of(&openai_region), Some("openai-api"));
        prop_assert_ne!(id_of(&format!("{region}.api.openai.com.{d}")), Some("openai-api"));
    }
}
