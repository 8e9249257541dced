//! Lists with a length cap enforced *while* parsing: a hostile body cannot make the parser
//! build a million-element list before validation sees it.

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
}
