//! Precision of the shipped catalogue against independent data:
//! - a benign corpus of real names — Chromium's HSTS preload list (PyPI `hstspreload`
//!   2025.1.1, BSD-3-Clause, ~161,000 names) and the top 500 sites (npm `top-sites` 1.1.222,
//!   MIT) — installed by `.ci/deps/catalogue.sh`: every name matches nothing, except the AI
//!   services listed (and checked) in `tests/data/corpus-ai.txt`;
//! - a wrong-service table (`tests/data/wrong-service.tsv`): hosts that are easy to attribute
//!   to the wrong entry of the right vendor (API vs consumer vs console vs tenant).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use shadowai_rules::{Catalogue, Engine, Policy};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn engine() -> Engine {
    let cat = Catalogue::load_dir(&manifest().join("catalogue")).unwrap();
    Engine::new(cat, Policy::default()).unwrap()
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("SHADOWAI_CORPUS_DIR")
        .map_or_else(|| PathBuf::from("/opt/shadowai-test-corpus"), PathBuf::from)
}

fn read_corpus_file(rel: &str) -> Vec<u8> {
    let path = corpus_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "benign corpus file {} is missing ({e}): run `bash .ci/deps/catalogue.sh` \
             (CI runs it before the tests)",
            path.display()
        )
    })
}

/// The names of Chromium's HSTS preload list, as packaged by `hstspreload`: the file is a
/// sequence of entries `flags: u8, len: u8, label: [u8; len]`; leaf entries (flag 0x80) hold
/// a full host name. The package's jump table only speeds up lookups, so a straight walk
/// yields every name.
fn hsts_names() -> Vec<String> {
    let bin = read_corpus_file("hstspreload-2025.1.1/hstspreload/hstspreload.bin");
    let mut names = Vec::new();
    let mut rest = bin.as_slice();
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len);
        assert!(tail.len() >= len, "hstspreload.bin is truncated");
        let (label, next) = tail.split_at(len);
        if flags & 0x80 != 0 {
            names.push(String::from_utf8(label.to_vec()).expect("ASCII host name"));
        }
        rest = next;
    }
    names
}

fn top_site_names() -> Vec<String> {
    let text = read_corpus_file("top-sites-1.1.222/node_modules/top-sites/top-sites.json");
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["rootDomain"].as_str().unwrap().to_string())
        .collect()
}

/// `name -> service id` of the corpus names that are AI services.
fn known_ai() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(manifest().join("tests/data/corpus-ai.txt")).unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, id) = l.split_once(' ').expect("`name service-id`");
            (n.to_string(), id.trim().to_string())
        })
        .collect()
}

#[test]
fn benign_corpus_matches_nothing_but_the_listed_ai_services() {
    let e = engine();
    let hsts = hsts_names();
    assert!(
        hsts.len() >= 150_000,
        "HSTS preload list has only {} names: parser or package changed",
        hsts.len()
    );
    let top = top_site_names();
    assert_eq!(top.len(), 500, "top-sites has {} names", top.len());
    let mut corpus: BTreeSet<String> = hsts.into_iter().collect();
    for t in top {
        // Moz lists some sites with `www.`: check both forms.
        corpus.insert(t.strip_prefix("www.").unwrap_or(&t).to_string());
        corpus.insert(t);
    }
    let ai = known_ai();
    for (name, id) in &ai {
        assert!(
            corpus.contains(name),
            "corpus-ai.txt lists {name}, which is not in the corpus"
        );
        assert_eq!(
            e.match_name(name).map(|s| s.id.as_str()),
            Some(id.as_str()),
            "corpus-ai.txt: {name} should match {id}"
        );
    }
    let mut checked = 0usize;
    let mut hits = Vec::new();
    for name in corpus.iter().filter(|n| !ai.contains_key(*n)) {
        checked += 1;
        for n in [name.clone(), format!("www.{name}")] {
            if let Some(s) = e.match_name(&n) {
                hits.push(format!("{n} -> {}", s.id));
            }
        }
    }
    assert!(checked >= 10_000, "only {checked} benign names checked");
    assert!(
        hits.is_empty(),
        "{} of {checked} benign corpus names match AI services (fix the entry, or list a \
         checked AI name in tests/data/corpus-ai.txt):\n{}",
        hits.len(),
        hits.join("\n")
    );
}

#[test]
fn hosts_go_to_the_right_service_of_their_vendor() {
    let e = engine();
    let text = std::fs::read_to_string(manifest().join("tests/data/wrong-service.tsv")).unwrap();
    let mut wrong = Vec::new();
    let mut rows = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split('\t');
        let (host, want) = (f.next().unwrap(), f.next().expect("host<TAB>service"));
        rows += 1;
        if e.catalogue().service(want).is_none() {
            wrong.push(format!(
                "wrong-service.tsv:{}: unknown service `{want}`",
                i + 1
            ));
            continue;
        }
        let got = e.match_name(host).map(|s| s.id.as_str());
        if got != Some(want) {
            wrong.push(format!(
                "wrong-service.tsv:{}: {host}: want {want}, got {}",
                i + 1,
                got.unwrap_or("nothing")
            ));
        }
    }
    assert!(rows >= 40, "only {rows} rows");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
