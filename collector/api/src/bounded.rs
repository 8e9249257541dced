//! Lists and strings with a length cap enforced *while* parsing: a hostile body cannot make
//! the parser build a million-element list, or copy a megabyte string, before validation
//! sees it. A string visitor sees the parser's borrowed text first and refuses it by its
//! length before any `String` is allocated; the error names the limit, and the server's
//! decoder (`serde_path_to_error`) prefixes the field's path.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

/// `#[serde(deserialize_with = "bounded::vec::<_, _, 64>")]`: at most `N` elements.
pub fn vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const N: usize>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Bounded<T, N> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {N} entries")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N).min(1024));
            while let Some(v) = seq.next_element()? {
                if out.len() == N {
                    return Err(serde::de::Error::custom(format!(
                        "more than {N} entries in a list that allows at most {N}"
                    )));
                }
                out.push(v);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(Bounded::<T, N>(PhantomData))
}

/// Refuses strings longer than `N` bytes before allocating them.
struct Text<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for Text<N> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string of at most {N} bytes")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        if v.len() > N {
            return Err(E::custom(format!(
                "string of {} bytes; at most {N} allowed",
                v.len()
            )));
        }
        Ok(v.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        if v.len() > N {
            return Err(E::custom(format!(
                "string of {} bytes; at most {N} allowed",
                v.len()
            )));
        }
        Ok(v)
    }
}

/// `#[serde(deserialize_with = "bounded::string::<_, 256>")]`: at most `N` bytes.
pub fn string<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<String, D::Error> {
    d.deserialize_string(Text::<N>)
}

/// A string of at most `N` bytes, as a map/list element.
pub struct Str<const N: usize>(pub String);

impl<'de, const N: usize> Deserialize<'de> for Str<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string::<D, N>(d).map(Str)
    }
}

/// `Option<String>` of at most `N` bytes (use with `#[serde(default)]`).
pub fn opt_string<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<Str<N>>::deserialize(d)?.map(|s| s.0))
}

/// At most `L` strings of at most `N` bytes each.
pub fn strings<'de, D: Deserializer<'de>, const L: usize, const N: usize>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    Ok(vec::<D, Str<N>, L>(d)?.into_iter().map(|s| s.0).collect())
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct L {
        #[serde(deserialize_with = "super::vec::<_, _, 3>")]
        v: Vec<u8>,
    }

    #[test]
    fn caps_while_parsing() {
        let ok: L = serde_json::from_str(r#"{"v":[1,2,3]}"#).unwrap();
        assert_eq!(ok.v, vec![1, 2, 3]);
        let e = serde_json::from_str::<L>(r#"{"v":[1,2,3,4]}"#).unwrap_err();
        assert!(e.to_string().contains("more than 3 entries"), "{e}");
    }

    #[derive(serde::Deserialize, Debug)]
    struct S {
        #[serde(deserialize_with = "super::string::<_, 4>")]
        s: String,
        #[serde(default, deserialize_with = "super::opt_string::<_, 2>")]
        o: Option<String>,
        #[serde(default, deserialize_with = "super::strings::<_, 2, 3>")]
        l: Vec<String>,
    }

    #[test]
    fn strings_are_capped_while_parsing() {
        let ok: S = serde_json::from_str(r#"{"s":"abcd","o":"ab","l":["abc","d\u00e9"]}"#).unwrap();
        assert_eq!((ok.s.as_str(), ok.o.as_deref()), ("abcd", Some("ab")));
        assert_eq!(ok.l, vec!["abc", "dé"]);
        let none: S = serde_json::from_str(r#"{"s":"","o":null}"#).unwrap();
        assert_eq!(none.o, None);
        for (body, want) in [
            (r#"{"s":"abcde"}"#, "string of 5 bytes; at most 4 allowed"),
            (
                r#"{"s":"a\u00e9cd"}"#,
                "string of 5 bytes; at most 4 allowed",
            ),
            (r#"{"s":"","o":"abc"}"#, "at most 2 allowed"),
            (r#"{"s":"","l":["abcd"]}"#, "at most 3 allowed"),
            (r#"{"s":"","l":["a","b","c"]}"#, "more than 2 entries"),
            (r#"{"s":1}"#, "a string of at most 4 bytes"),
        ] {
            let e = serde_json::from_str::<S>(body).unwrap_err();
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
        // From a reader too (the gzip path).
        let e = serde_json::from_reader::<_, S>(&br#"{"s":"abcdef"}"#[..]).unwrap_err();
        assert!(e.to_string().contains("at most 4 allowed"), "{e}");
    }
}
