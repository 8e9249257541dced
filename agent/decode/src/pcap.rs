//! A streaming reader for pcap (µs and ns, both byte orders) and pcapng (SHB/IDB/EPB/SPB and
//! the obsolete Packet Block, several sections and interfaces, `if_tsresol`) capture files.
//! Every length is checked before it is used; a bad file gives a `PcapFormat` error naming
//! the structure and its file offset.

use std::io::{ErrorKind as IoKind, Read};

use crate::error::DecodeError;

/// Largest record or block accepted (pcapng blocks are bounded by 32-bit lengths; real
/// captures use snaplens up to 256 KiB).
pub const MAX_RECORD: usize = 1 << 20;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub linktype: u32,
    /// Frame length on the wire (>= `data.len()` when the snaplen cut it).
    pub orig_len: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg,
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
}

/// Reads frames from a capture; an `Iterator` over `Result<Frame, DecodeError>` that stops
/// after the first error.
pub struct Reader<R> {
    r: R,
    offset: u64,
    format: Format,
    big: bool,
    ifaces: Vec<Iface>,
    failed: bool,
}

impl<R: Read> Reader<R> {
    /// Read the file header and detect the format.
    pub fn new(mut r: R) -> Result<Self, DecodeError> {
        let mut magic = [0u8; 4];
        read_exact(&mut r, &mut magic, 0)?;
        let m_le = u32::from_le_bytes(magic);
        let m_be = u32::from_be_bytes(magic);
        let pcap = |big: bool, nanos: bool| (big, nanos);
        let detected = match (m_le, m_be) {
            (0xa1b2_c3d4, _) => Some(pcap(false, false)),
            (0xa1b2_3c4d, _) => Some(pcap(false, true)),
            (_, 0xa1b2_c3d4) => Some(pcap(true, false)),
            (_, 0xa1b2_3c4d) => Some(pcap(true, true)),
            _ => None,
        };
        if let Some((big, nanos)) = detected {
            let mut h = [0u8; 20];
            read_exact(&mut r, &mut h, 4)?;
            let linktype = u32_at(&h, 16, big) & 0x0fff_ffff;
            return Ok(Reader {
                r,
                offset: 24,
                format: Format::Pcap {
                    big,
                    nanos,
                    linktype,
                },
                big,
                ifaces: Vec::new(),
                failed: false,
            });
        }
        if m_le == 0x0a0d_0d0a {
            let mut reader = Reader {
                r,
                offset: 4,
                format: Format::PcapNg,
                big: false,
                ifaces: Vec::new(),
                failed: false,
            };
            reader.section_header(magic)?;
            return Ok(reader);
        }
        Err(DecodeError::PcapFormat {
            what: "file magic (neither pcap nor pcapng)",
            offset: 0,
        })
    }

    /// Read an SHB whose 4-byte type was already consumed.
    fn section_header(&mut self, _ty: [u8; 4]) -> Result<(), DecodeError> {
        let start = self.offset - 4;
        let mut h = [0u8; 8];
        read_exact(&mut self.r, &mut h, self.offset)?;
        self.offset += 8;
        let bom = [h[4], h[5], h[6], h[7]];
        self.big = match u32::from_le_bytes(bom) {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            _ => {
                return Err(DecodeError::PcapFormat {
                    what: "pcapng byte-order magic",
                    offset: start + 8,
                });
            }
        };
        let total = u32_at(&h, 0, self.big) as usize;
        if total < 28 || !total.is_multiple_of(4) || total > MAX_RECORD {
            return Err(DecodeError::PcapFormat {
                what: "pcapng section header length",
                offset: start + 4,
            });
        }
        self.skip(total - 12)?;
        self.ifaces.clear();
        Ok(())
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        let mut buf = vec![0u8; n];
        read_exact(&mut self.r, &mut buf, self.offset)?;
        self.offset += n as u64;
        Ok(())
    }

    fn next_pcap(
        &mut self,
        big: bool,
        nanos: bool,
        linktype: u32,
    ) -> Result<Option<Frame>, DecodeError> {
        let mut h = [0u8; 16];
        if !read_or_eof(&mut self.r, &mut h, self.offset)? {
            return Ok(None);
        }
        let at = self.offset;
        self.offset += 16;
        let sec = u64::from(u32_at(&h, 0, big));
        let frac = u64::from(u32_at(&h, 4, big));
        let incl = u32_at(&h, 8, big) as usize;
        let orig = u32_at(&h, 12, big);
        if incl > MAX_RECORD {
            return Err(DecodeError::PcapFormat {
                what: "pcap record length",
                offset: at + 8,
            });
        }
        let mut data = vec![0u8; incl];
        read_exact(&mut self.r, &mut data, self.offset)?;
        self.offset += incl as u64;
        let ts_ns = sec.saturating_mul(1_000_000_000).saturating_add(if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        });
        Ok(Some(Frame {
            ts_ns,
            linktype,
            orig_len: orig.max(incl as u32),
            data,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame>, DecodeError> {
        loop {
            let mut h = [0u8; 8];
            if !read_or_eof(&mut self.r, &mut h, self.offset)? {
                return Ok(None);
            }
            let at = self.offset;
            self.offset += 8;
            let ty_raw = [h[0], h[1], h[2], h[3]];
            if u32::from_le_bytes(ty_raw) == 0x0a0d_0d0a {
                // A new section: its own byte order, its own interfaces.
                let mut bom = [0u8; 4];
                read_exact(&mut self.r, &mut bom, self.offset)?;
                self.offset += 4;
                self.big = match u32::from_le_bytes(bom) {
                    0x1a2b_3c4d => false,
                    0x4d3c_2b1a => true,
                    _ => {
                        return Err(DecodeError::PcapFormat {
                            what: "pcapng byte-order magic",
                            offset: at + 8,
                        });
                    }
                };
                let total = u32_at(&h, 4, self.big) as usize;
                if total < 28 || !total.is_multiple_of(4) || total > MAX_RECORD {
                    return Err(DecodeError::PcapFormat {
                        what: "pcapng section header length",
                        offset: at + 4,
                    });
                }
                self.skip(total - 12)?;
                self.ifaces.clear();
                continue;
            }
            let ty = u32_at(&h, 0, self.big);
            let total = u32_at(&h, 4, self.big) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_RECORD {
                return Err(DecodeError::PcapFormat {
                    what: "pcapng block length",
                    offset: at + 4,
                });
            }
            let mut body = vec![0u8; total - 8];
            read_exact(&mut self.r, &mut body, self.offset)?;
            self.offset += body.len() as u64;
            let body = &body[..body.len() - 4];
            match ty {
                1 => self.interface(body, at)?,
                6 | 2 => {
                    // EPB: if_id u32, ts_hi, ts_lo, cap, orig; obsolete PB: if_id u16, drops u16, ...
                    if body.len() < 20 {
                        return Err(DecodeError::PcapFormat {
                            what: "pcapng packet block",
                            offset: at,
                        });
                    }
                    let if_id = if ty == 6 {
                        u32_at(body, 0, self.big) as usize
                    } else {
                        usize::from(u16_at(body, 0, self.big))
                    };
                    let ts = (u64::from(u32_at(body, 4, self.big)) << 32)
                        | u64::from(u32_at(body, 8, self.big));
                    let cap = u32_at(body, 12, self.big) as usize;
                    let orig = u32_at(body, 16, self.big);
                    let data = body.get(20..20 + cap).ok_or(DecodeError::PcapFormat {
                        what: "pcapng packet block captured length",
                        offset: at + 20,
                    })?;
                    let iface = self.iface(if_id, at)?;
                    return Ok(Some(Frame {
                        ts_ns: to_ns(ts, iface.units_per_sec),
                        linktype: iface.linktype,
                        orig_len: orig.max(cap as u32),
                        data: data.to_vec(),
                    }));
                }
                3 => {
                    if body.len() < 4 {
                        return Err(DecodeError::PcapFormat {
                            what: "pcapng simple packet block",
                            offset: at,
                        });
                    }
                    let iface = self.iface(0, at)?;
                    let orig = u32_at(body, 0, self.big);
                    let avail = body.len().saturating_sub(4);
                    let cap = (orig as usize).min(avail);
                    return Ok(Some(Frame {
                        ts_ns: 0,
                        linktype: iface.linktype,
                        orig_len: orig,
                        data: body.get(4..4 + cap).unwrap_or(&[]).to_vec(),
                    }));
                }
                _ => {}
            }
        }
    }

    fn iface(&self, id: usize, at: u64) -> Result<Iface, DecodeError> {
        self.ifaces.get(id).copied().ok_or(DecodeError::PcapFormat {
            what: "pcapng packet for an undeclared interface",
            offset: at,
        })
    }

    fn interface(&mut self, body: &[u8], at: u64) -> Result<(), DecodeError> {
        if body.len() < 8 {
            return Err(DecodeError::PcapFormat {
                what: "pcapng interface description block",
                offset: at,
            });
        }
        let linktype = u32::from(u16_at(body, 0, self.big));
        let mut units = 1_000_000u64;
        let mut pos = 8;
        while pos + 4 <= body.len() {
            let code = u16_at(body, pos, self.big);
            let len = usize::from(u16_at(body, pos + 2, self.big));
            let val = body
                .get(pos + 4..pos + 4 + len)
                .ok_or(DecodeError::PcapFormat {
                    what: "pcapng interface option",
                    offset: at + 8 + pos as u64,
                })?;
            if code == 0 {
                break;
            }
            if code == 9 && len == 1 {
                let r = val[0];
                let exp = u32::from(r & 0x7f);
                units = if r & 0x80 == 0 {
                    10u64.checked_pow(exp)
                } else {
                    2u64.checked_pow(exp)
                }
                .filter(|u| *u > 0)
                .ok_or(DecodeError::PcapFormat {
                    what: "pcapng if_tsresol",
                    offset: at + 8 + pos as u64,
                })?;
            }
            pos += 4 + len.div_ceil(4) * 4;
        }
        if self.ifaces.len() >= 4096 {
            return Err(DecodeError::PcapFormat {
                what: "pcapng interface count",
                offset: at,
            });
        }
        self.ifaces.push(Iface {
            linktype,
            units_per_sec: units,
        });
        Ok(())
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = match self.format {
            Format::Pcap {
                big,
                nanos,
                linktype,
            } => self.next_pcap(big, nanos, linktype),
            Format::PcapNg => self.next_pcapng(),
        };
        match r {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn to_ns(ts: u64, units_per_sec: u64) -> u64 {
    let secs = ts / units_per_sec;
    let frac = ts % units_per_sec;
    let frac_ns = (u128::from(frac) * 1_000_000_000 / u128::from(units_per_sec)) as u64;
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let x = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let x = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(x)
    } else {
        u16::from_le_bytes(x)
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], offset: u64) -> Result<(), DecodeError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == IoKind::UnexpectedEof {
            DecodeError::PcapFormat {
                what: "file ends inside a record",
                offset,
            }
        } else {
            DecodeError::Io { offset, source: e }
        }
    })
}

/// Fill `buf`, or return `false` on a clean end of file before its first byte.
fn read_or_eof<R: Read>(r: &mut R, buf: &mut [u8], offset: u64) -> Result<bool, DecodeError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(DecodeError::PcapFormat {
                    what: "file ends inside a record header",
                    offset,
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(DecodeError::Io { offset, source: e }),
        }
    }
    Ok(true)
}
