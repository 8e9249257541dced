static EBPF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shadowai"));
fn main() {
    println!("{}", EBPF.len());
}
