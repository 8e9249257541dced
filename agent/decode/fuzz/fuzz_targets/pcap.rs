//! The capture reader and the whole replay pipeline (frames → layers → classification →
//! stateful decoding) on arbitrary files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowai_decode::{Limits, replay};

fuzz_target!(|data: &[u8]| {
    let _ = replay::decode_reader(data, Limits::default());
});
