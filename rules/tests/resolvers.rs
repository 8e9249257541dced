//! Local resolvers as data: which processes are DNS resolvers/caches answering for clients
//! (their upstream lookups are not their own AI use), recognised by executable path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::Path;

use shadowai_rules::bundle::{self, CompileOptions};
use shadowai_rules::catalogue::{ResolverEvidence, load_dir_report};
use shadowai_rules::{Catalogue, Policy, validate_dir};

fn shipped() -> Catalogue {
    Catalogue::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue")).unwrap()
}

#[test]
fn the_common_resolvers_are_listed() {
    let cat = shipped();
    for name in [
        "systemd-resolved",
        "dnsmasq",
        "unbound",
        "nscd",
        "dnscrypt-proxy",
        "stubby",
        "pdns-recursor",
        "knot-resolver",
        "bind9",
    ] {
        assert!(
            cat.local_resolvers.iter().any(|r| r.name == name),
            "{name} missing"
        );
    }
}

#[test]
fn recognised_by_executable_path_including_merged_usr_and_deleted() {
    let cat = shipped();
    for exe in [
        "/usr/lib/systemd/systemd-resolved",
        "/lib/systemd/systemd-resolved",
        "/usr/lib/systemd/systemd-resolved (deleted)",
    ] {
        let m = cat.is_local_resolver(exe, "systemd-resolve").unwrap();
        assert_eq!(m.resolver.name, "systemd-resolved");
        assert_eq!(m.evidence, ResolverEvidence::Exe);
    }
    // The thread's comm may differ (worker threads rename themselves): the path decides.
    let m = cat
        .is_local_resolver("/usr/sbin/pdns_recursor", "rec/worker")
        .unwrap();
    assert_eq!(m.resolver.name, "pdns-recursor");
    assert_eq!(
        cat.is_local_resolver("/usr/sbin/dnsmasq", "")
            .unwrap()
            .resolver
            .name,
        "dnsmasq"
    );
}

#[test]
fn a_name_alone_never_makes_a_resolver() {
    let cat = shipped();
    // An employee's own program named like a resolver: exe is known and is not listed.
    for (exe, comm) in [
        ("/home/alice/bin/dnsmasq", "dnsmasq"),
        ("/tmp/systemd-resolved", "systemd-resolve"),
        ("/usr/sbin/dnsmasq.evil", "dnsmasq"),
        ("usr/sbin/dnsmasq", "dnsmasq"),
        ("/usr/sbin/../sbin/dnsmasq", "dnsmasq"),
        ("/usr/bin/python3", "unbound"),
        ("/USR/SBIN/DNSMASQ", "dnsmasq"),
    ] {
        assert!(cat.is_local_resolver(exe, comm).is_none(), "{exe} {comm}");
    }
    // Unknown exe (the process was gone before it was read): the comm is a weak hint only.
    let m = cat.is_local_resolver("", "unbound").unwrap();
    assert_eq!(m.evidence, ResolverEvidence::CommOnly);
    assert!(cat.is_local_resolver("", "").is_none());
    assert!(cat.is_local_resolver("", "curl").is_none());
}

#[test]
fn resolvers_travel_in_bundles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cat = shipped();
    let pol = Policy::load(&root.join("policy.example.toml"), &cat).unwrap();
    let opts = CompileOptions {
        version: "1.0.0".parse().unwrap(),
        issued_at: 1_795_000_000,
        expires_at: 1_795_000_000 + 86_400,
        min_agent_version: "0.1.0".parse().unwrap(),
    };
    let bytes = bundle::unsigned_bytes(&bundle::compile(&cat, &pol, &opts).unwrap()).unwrap();
    let body = bundle::read_unverified(&bytes).unwrap();
    assert_eq!(body.catalogue.local_resolvers, cat.local_resolvers);
    assert!(
        body.catalogue
            .is_local_resolver("/usr/sbin/unbound", "unbound")
            .is_some()
    );
    // A bundle's catalogue is re-checked: a relative path is refused.
    let mut bad = cat.clone();
    bad.local_resolvers[0].exe.push("sbin/dnsmasq".into());
    let errs = bad.check().unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("must be an absolute path")),
        "{errs:?}"
    );
}

const GOOD: &str = r#"id = "acme-chat"
name = "Acme Chat"
vendor = "Acme"
category = "chat_assistant"
domains = ["acmechat.example"]

[risk]
trains_on_user_data = "unknown"
retention = "unknown"
jurisdiction = "ZZ"

[[provenance.sources]]
url = "https://acmechat.example/"
checked = 2026-11-22

[examples]
match = ["acmechat.example"]
"#;

#[test]
fn bad_resolver_entries_are_reported_at_their_line() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("acme-chat.toml"), GOOD).unwrap();
    let text = r#"[[resolver]]
name = "a"
exe = ["sbin/a"]
comm = ["a"]
source = "x"
[[resolver]]
name = "b"
exe = ["/usr/sbin/b"]
comm = ["a-very-long-comm-name"]
source = "x"
[[resolver]]
name = "c"
exe = ["/usr/sbin/c"]
comm = ["c"]
source = " "
[[resolver]]
name = "d"
exe = ["/usr/sbin/d"]
comm = ["d"]
source = "x"
[[resolver]]
name = "e"
exe = ["/usr/sbin/d"]
comm = ["e"]
source = "x"
"#;
    std::fs::write(d.path().join("_local-resolvers.toml"), text).unwrap();
    let r = validate_dir(d.path()).unwrap();
    let find = |needle: &str| {
        r.diagnostics
            .iter()
            .find(|x| x.message.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{r}"))
    };
    assert_eq!(find("exe `sbin/a` must be an absolute path").line, 1);
    assert_eq!(
        find("comm `a-very-long-comm-name` must be 1 to 15 bytes").line,
        6
    );
    assert_eq!(find("resolver `c`: cite a `source`").line, 11);
    assert_eq!(find("exe `/usr/sbin/d` is listed twice").line, 21);
    assert!(find("a-very-long").file.ends_with("_local-resolvers.toml"));
    // An unknown field refuses the file, at its line.
    std::fs::write(
        d.path().join("_local-resolvers.toml"),
        "[[resolver]]\nname = \"a\"\nexe = [\"/a\"]\nport = 53\nsource = \"x\"\n",
    )
    .unwrap();
    let (cat, r) = load_dir_report(d.path()).unwrap();
    let diag = r
        .diagnostics
        .iter()
        .find(|x| x.message.contains("port"))
        .unwrap();
    assert_eq!(diag.line, 4);
    assert!(cat.local_resolvers.is_empty());
}

#[test]
fn the_built_in_list_is_the_shipped_file() {
    let built_in = shadowai_rules::catalogue::builtin_local_resolvers().unwrap();
    assert_eq!(built_in, shipped().local_resolvers);
    assert!(built_in.iter().any(|r| r.name == "dnsmasq"));
}
