//! Who a person is, for the two-person rule: the name on their token, reduced to a key that
//! two spellings of one name cannot tell apart — Unicode compatibility forms folded (NFKC),
//! case folded, invisible and default-ignorable characters (zero-width space, joiners, soft
//! hyphen, BOM) dropped, whitespace trimmed and collapsed, and look-alike characters mapped
//! to one prototype (UTS #39 confusable skeleton, so Cyrillic `а` and Latin `a` are one
//! person). `Alice`, `alice `, `a\u{200b}lice` and `аlice` all give one key.

use unicode_normalization::UnicodeNormalization;

/// The comparison key of a person's name; empty when the name has no visible character.
pub fn person_key(name: &str) -> String {
    let folded: String = name.nfkc().flat_map(char::to_lowercase).collect();
    let skeleton: String = unicode_security::skeleton(&folded)
        .flat_map(char::to_lowercase)
        .collect();
    // The skeleton is in NFD; compose again so the key is stable text.
    let composed: String = skeleton.nfkc().collect();
    composed
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when two names are the same person.
pub fn same_person(a: &str, b: &str) -> bool {
    person_key(a) == person_key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_are_one_person() {
        for other in [
            "Alice",
            "alice ",
            " ALICE",
            "a\u{200b}lice",
            "al\u{00ad}ice",
            "\u{feff}alice",
            "al\u{200d}ice",
            "\u{0430}lice",  // Cyrillic a
            "\u{ff41}lice",  // fullwidth a
            "a\u{2060}lice", // word joiner
        ] {
            assert!(same_person("alice", other), "{other:?}");
        }
        assert!(same_person("Mary  Ann", "mary ann"));
        assert!(!same_person("alice", "bob"));
        assert!(!same_person("alice", "alicia"));
    }

    #[test]
    fn invisible_names_are_empty() {
        assert_eq!(person_key("\u{200b}\u{200c} \u{feff}"), "");
    }
}
