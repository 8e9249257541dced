//! The mixed capture for the replay benchmark, made once and cached under
//! `target/bench/capture/`: real clients (glibc's resolver through Python's `getaddrinfo`,
//! Python's `ssl` handshakes, `curl`, `openssl s_client`) in a network namespace against a
//! DNS server and a TLS server in another, recorded with tcpdump; then tiled to the wanted
//! packet count, each tile with its own client address (header checksum fixed) and later
//! timestamps, so the flows stay distinct.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::demo::ip;

const CLIENT_NS: &str = "sabench-c";
const REMOTE_NS: &str = "sabench-r";
const CLIENT_IP: [u8; 4] = [10, 252, 0, 2];
const SERVER_IP: &str = "10.252.0.1";

/// Names the clients look up and connect to: AI services and ordinary sites.
const NAMES: [&str; 12] = [
    "api.openai.com",
    "chatgpt.com",
    "api.anthropic.com",
    "claude.ai",
    "api.mistral.ai",
    "api.deepseek.com",
    "generativelanguage.googleapis.com",
    "huggingface.co",
    "www.example.com",
    "registry.npmjs.org",
    "en.wikipedia.org",
    "github.com",
];

const CLIENTS: &str = r#"
import socket, ssl, sys, time
mode, secs, names = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
end = time.time() + secs
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
i = 0
while time.time() < end:
    name = names[i % len(names)]
    i += 1
    try:
        if mode == "dns":
            socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)
        else:
            with socket.create_connection((sys.argv[4], 443), timeout=2) as s:
                with ctx.wrap_socket(s, server_hostname=name) as t:
                    pass
    except OSError:
        pass
"#;

fn teardown() {
    for ns in [CLIENT_NS, REMOTE_NS] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(CLIENT_NS));
}

/// Kills the children and removes the namespaces when dropped.
struct Lab(Vec<std::process::Child>);

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        teardown();
    }
}

/// Records `secs` of real client traffic into `out`.
fn record(root: &Path, dir: &Path, out: &Path, secs: u32) -> Result<()> {
    teardown();
    ip(&["netns", "add", CLIENT_NS])?;
    ip(&["netns", "add", REMOTE_NS])?;
    let mut lab = Lab(Vec::new());
    ip(&[
        "link",
        "add",
        "sabench-c",
        "type",
        "veth",
        "peer",
        "name",
        "sabench-r",
    ])?;
    ip(&["link", "set", "sabench-c", "netns", CLIENT_NS])?;
    ip(&["link", "set", "sabench-r", "netns", REMOTE_NS])?;
    for (ns, dev, addr) in [
        (CLIENT_NS, "sabench-c", "10.252.0.2/24"),
        (REMOTE_NS, "sabench-r", "10.252.0.1/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    let etc = Path::new("/etc/netns").join(CLIENT_NS);
    std::fs::create_dir_all(&etc)?;
    std::fs::write(etc.join("resolv.conf"), format!("nameserver {SERVER_IP}\n"))?;
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n")?;
    let zone = dir.join("zone.txt");
    std::fs::write(
        &zone,
        NAMES
            .iter()
            .map(|n| format!("{n} A {SERVER_IP}\n"))
            .collect::<String>(),
    )?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=shadowai-bench",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("openssl could not make the bench certificate");
    }
    let fx = root.join("tests/fixtures");
    let netns = |ns: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    lab.0.push(
        netns(REMOTE_NS)
            .arg("python3")
            .arg(fx.join("dns_server.py"))
            .arg(&zone)
            .arg(SERVER_IP)
            .spawn()?,
    );
    lab.0.push(
        netns(REMOTE_NS)
            .arg("python3")
            .arg(fx.join("tls_server.py"))
            .arg(&cert)
            .arg(&key)
            .arg(SERVER_IP)
            .spawn()?,
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut tcpdump = netns(REMOTE_NS)
        .args(["tcpdump", "-i", "sabench-r", "-s", "0", "-U", "-w"])
        .arg(out)
        .spawn()
        .context("starting tcpdump")?;
    std::thread::sleep(Duration::from_secs(2));
    let script = dir.join("clients.py");
    std::fs::write(&script, CLIENTS)?;
    let names = NAMES.join(",");
    let mut clients = Vec::new();
    for mode in ["dns", "dns", "tls", "tls"] {
        clients.push(
            netns(CLIENT_NS)
                .arg("python3")
                .arg(&script)
                .args([mode, &secs.to_string(), &names, SERVER_IP])
                .spawn()?,
        );
    }
    let curl_loop = format!(
        "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do \
         for n in {names}; do curl -sk -o /dev/null --max-time 2 https://$n/; \
         echo | openssl s_client -connect {SERVER_IP}:443 -servername $n >/dev/null 2>&1; done; done",
        names = NAMES.join(" ")
    );
    clients.push(netns(CLIENT_NS).args(["sh", "-c", &curl_loop]).spawn()?);
    for mut c in clients {
        let _ = c.wait();
    }
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on our own child's pid; tcpdump flushes and exits on SIGINT.
    unsafe {
        libc::kill(tcpdump.id() as libc::pid_t, libc::SIGINT);
    }
    let _ = tcpdump.wait();
    drop(lab);
    Ok(())
}

/// Number of packets in a classic pcap file.
fn count(pcap: &[u8]) -> Result<usize> {
    Ok(records(pcap)?.count())
}

/// (header bytes, record iterator) of a classic little-endian pcap (µs or ns timestamps).
fn records(pcap: &[u8]) -> Result<impl Iterator<Item = (&[u8], &[u8])>> {
    let magic = pcap.get(..4).context("capture shorter than its header")?;
    if magic != [0xd4, 0xc3, 0xb2, 0xa1] && magic != [0x4d, 0x3c, 0xb2, 0xa1] {
        bail!("not a little-endian pcap file (magic {magic:02x?})");
    }
    let mut at = 24;
    Ok(std::iter::from_fn(move || {
        let hdr = pcap.get(at..at + 16)?;
        let len = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
        let data = pcap.get(at + 16..at + 16 + len)?;
        at += 16 + len;
        Some((hdr, data))
    }))
}

/// IPv4 header checksum over `h` (its checksum field zeroed first).
fn ipv4_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let mut sum = 0u32;
    for w in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes `tiles` copies of `base` into one capture: copy k's client address becomes
/// 172.(16 + k / 256).(k % 256).2 and its timestamps move k × (span + 1 s) later.
fn tile(base: &[u8], tiles: u32, out: &Path) -> Result<usize> {
    let first = records(base)?.next().context("empty base capture")?.0;
    let last = records(base)?.last().context("empty base capture")?.0;
    let sec = |h: &[u8]| u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let span = sec(last).saturating_sub(sec(first)) + 1;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    use std::io::Write;
    w.write_all(&base[..24])?;
    let mut n = 0;
    for k in 0..tiles {
        let addr = [172, 16 + (k / 256) as u8, (k % 256) as u8, 2];
        for (hdr, data) in records(base)? {
            let mut h = hdr.to_vec();
            h[..4].copy_from_slice(&(sec(hdr) + k * span).to_le_bytes());
            let mut d = data.to_vec();
            // Ethernet + IPv4: rewrite the client address wherever it appears.
            if d.len() >= 34 && d[12..14] == [0x08, 0x00] {
                let ihl = usize::from(d[14] & 0x0f) * 4;
                for off in [26, 30] {
                    if d[off..off + 4] == CLIENT_IP {
                        d[off..off + 4].copy_from_slice(&addr);
                    }
                }
                if d.len() >= 14 + ihl && ihl >= 20 {
                    ipv4_checksum(&mut d[14..14 + ihl]);
                }
            }
            w.write_all(&h)?;
            w.write_all(&d)?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// The cached capture of at least `packets` packets (made on first use).
pub fn mixed(root: &Path, target: &Path, packets: usize) -> Result<(PathBuf, usize, String)> {
    let dir = target.join("bench/capture");
    std::fs::create_dir_all(&dir)?;
    let base = dir.join("base.pcap");
    if !base.exists() {
        eprintln!("[bench] recording the base capture from real clients (once)");
        let tmp = dir.join("base.pcap.tmp");
        record(root, &dir, &tmp, 20)?;
        std::fs::rename(&tmp, &base)?;
    }
    let bytes = std::fs::read(&base)?;
    let per = count(&bytes)?;
    if per < 1000 {
        bail!("the base capture has only {per} packets: the clients did not run");
    }
    let tiles = packets.div_ceil(per) as u32;
    let big = dir.join(format!("mixed-{packets}.pcap"));
    let n = if big.exists() {
        count(&std::fs::read(&big)?)?
    } else {
        let tmp = dir.join("mixed.pcap.tmp");
        let n = tile(&bytes, tiles, &tmp)?;
        std::fs::rename(&tmp, &big)?;
        n
    };
    let how = format!(
        "base capture: {per} packets recorded once from real clients (20 s: glibc `getaddrinfo` \
         from two Python processes, Python `ssl` handshakes from two, a `curl` + `openssl \
         s_client` loop) against a Python DNS server and TLS server in a second network \
         namespace; tiled {tiles}× (client address 172.16.x.y per tile, IPv4 checksums fixed, \
         timestamps shifted) into `{}`",
        big.strip_prefix(root).unwrap_or(&big).display()
    );
    Ok((big, n, how))
}

#[cfg(test)]
mod tests {
    use super::ipv4_checksum;

    #[test]
    fn header_checksum_matches_a_known_header() {
        // RFC 1071 style example: a header whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        ipv4_checksum(&mut h);
        assert_eq!([h[10], h[11]], [0xb8, 0x61]);
    }
}
