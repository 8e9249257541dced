//! Byte offsets of kernel struct fields, read from the kernel's own type information
//! (`/sys/kernel/btf/vmlinux`, the BTF format of `include/uapi/linux/btf.h`). The exec
//! program reads a new process's argv from its memory map (`task_struct.mm`,
//! `mm_struct.arg_start` / `arg_end`), whose layout differs between kernel builds; the
//! offsets are found here, once at start-up, and handed to the program in a map.
//!
//! Only what that needs is parsed: the header, the type records (every kind is sized, so
//! that the walk can step over it) and the string section. Fields inside anonymous structs
//! and unions (as `mm_struct`'s are) are found through them. Every read is bounds-checked:
//! a truncated or foreign file is an error that says what and where, never a panic.

use std::path::Path;

/// The kernel's BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Nested anonymous members followed at most (the kernel's deepest is a handful).
const MAX_DEPTH: usize = 8;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// Why an offset could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} at byte {at}: the BTF data ends at {len}")]
    Truncated {
        what: &'static str,
        at: usize,
        len: usize,
    },
    #[error("not BTF: magic {0:#06x} (want 0xeb9f, little-endian)")]
    Magic(u16),
    #[error("type {id} at byte {at}: unknown kind {kind}")]
    Kind { id: usize, at: usize, kind: u32 },
    #[error("no struct `{0}` with members")]
    NoStruct(String),
    #[error("struct `{strukt}` has no field `{field}`")]
    NoField { strukt: String, field: String },
    #[error("field `{strukt}.{field}` is a bit-field (bit offset {bits})")]
    BitField {
        strukt: String,
        field: String,
        bits: u32,
    },
}

/// One type record: its kind, name, `size_or_type` word and where its members start.
#[derive(Clone, Copy)]
struct TypeRec {
    kind: u32,
    name: u32,
    kind_flag: bool,
    size_or_type: u32,
    vlen: usize,
    members_at: usize,
}

/// A parsed BTF blob (the type records indexed by id; the data borrowed).
pub struct Btf<'a> {
    data: &'a [u8],
    strings: (usize, usize),
    /// Index = type id - 1.
    types: Vec<TypeRec>,
}

fn u32_at(data: &[u8], at: usize, what: &'static str) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(BtfError::Truncated {
            what,
            at,
            len: data.len(),
        })
}

/// Bytes that follow a type record of `kind` with `vlen` entries.
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // int, var, decl_tag: one word.
        1 | 14 | 17 => 4,
        // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag.
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // array: type, index type, count.
        3 => 12,
        // struct, union, datasec, enum64: three words per entry.
        4 | 5 | 15 | 19 => 12 * vlen,
        // enum, func_proto: two words per entry.
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

impl<'a> Btf<'a> {
    /// Parses the header and indexes every type record.
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let head = data.get(..HEADER_LEN).ok_or(BtfError::Truncated {
            what: "the header",
            at: 0,
            len: data.len(),
        })?;
        let magic = u16::from_le_bytes([head[0], head[1]]);
        if magic != MAGIC {
            return Err(BtfError::Magic(magic));
        }
        let hdr_len = u32_at(data, 4, "hdr_len")? as usize;
        let type_off = u32_at(data, 8, "type_off")? as usize;
        let type_len = u32_at(data, 12, "type_len")? as usize;
        let str_off = u32_at(data, 16, "str_off")? as usize;
        let str_len = u32_at(data, 20, "str_len")? as usize;
        let types_start = hdr_len.saturating_add(type_off);
        let types_end = types_start.saturating_add(type_len);
        let strings = (hdr_len.saturating_add(str_off), str_len);
        for (what, end) in [
            ("the type section", types_end),
            ("the string section", strings.0.saturating_add(str_len)),
        ] {
            if end > data.len() {
                return Err(BtfError::Truncated {
                    what,
                    at: end,
                    len: data.len(),
                });
            }
        }
        let mut types = Vec::new();
        let mut at = types_start;
        while at < types_end {
            let name = u32_at(data, at, "a type's name")?;
            let info = u32_at(data, at + 4, "a type's info")?;
            let size_or_type = u32_at(data, at + 8, "a type's size")?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = extra_len(kind, vlen).ok_or(BtfError::Kind {
                id: types.len() + 1,
                at,
                kind,
            })?;
            types.push(TypeRec {
                kind,
                name,
                kind_flag: info >> 31 == 1,
                size_or_type,
                vlen,
                members_at: at + 12,
            });
            at += 12 + extra;
        }
        if at > types_end {
            return Err(BtfError::Truncated {
                what: "the last type record",
                at,
                len: types_end,
            });
        }
        Ok(Self {
            data,
            strings,
            types,
        })
    }

    /// The string at `off` of the string section ("" when out of range).
    fn name(&self, off: u32) -> &'a [u8] {
        let (start, len) = self.strings;
        let Some(s) = self.data.get(start..start + len) else {
            return b"";
        };
        let tail = s.get(off as usize..).unwrap_or(b"");
        tail.split(|&b| b == 0).next().unwrap_or(b"")
    }

    fn get(&self, id: u32) -> Option<&TypeRec> {
        (id as usize).checked_sub(1).and_then(|i| self.types.get(i))
    }

    /// The struct or union `id` refers to, through typedefs and qualifiers.
    fn aggregate(&self, mut id: u32) -> Option<&TypeRec> {
        for _ in 0..MAX_DEPTH {
            let t = self.get(id)?;
            match t.kind {
                KIND_STRUCT | KIND_UNION => return Some(t),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return None,
            }
        }
        None
    }

    /// Bit offset of `field` in the aggregate `t`, looking through anonymous members.
    fn find_bits(&self, t: &TypeRec, field: &[u8], depth: usize) -> Option<u32> {
        if depth > MAX_DEPTH {
            return None;
        }
        for i in 0..t.vlen {
            let at = t.members_at + 12 * i;
            let name = u32_at(self.data, at, "a member").ok()?;
            let ty = u32_at(self.data, at + 4, "a member").ok()?;
            let raw = u32_at(self.data, at + 8, "a member").ok()?;
            // With kind_flag set the low 24 bits are the offset, the high 8 a bit-field size.
            let bits = if t.kind_flag { raw & 0x00ff_ffff } else { raw };
            if name == 0 {
                if let Some(b) = self
                    .aggregate(ty)
                    .and_then(|inner| self.find_bits(inner, field, depth + 1))
                {
                    return bits.checked_add(b);
                }
            } else if self.name(name) == field {
                return Some(bits);
            }
        }
        None
    }

    /// Byte offset of `strukt.field` (a named struct with members: not a forward
    /// declaration).
    pub fn field_offset(&self, strukt: &str, field: &str) -> Result<u32, BtfError> {
        let t = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name) == strukt.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let bits = self
            .find_bits(t, field.as_bytes(), 0)
            .ok_or_else(|| BtfError::NoField {
                strukt: strukt.to_owned(),
                field: field.to_owned(),
            })?;
        if !bits.is_multiple_of(8) {
            return Err(BtfError::BitField {
                strukt: strukt.to_owned(),
                field: field.to_owned(),
                bits,
            });
        }
        Ok(bits / 8)
    }
}

/// Where a process's argv lives: `task_struct.mm`, `mm_struct.arg_start`, `.arg_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgvOffsets {
    pub task_mm: u32,
    pub arg_start: u32,
    pub arg_end: u32,
}

impl ArgvOffsets {
    /// From a parsed BTF.
    pub fn of(btf: &Btf<'_>) -> Result<Self, BtfError> {
        Ok(Self {
            task_mm: btf.field_offset("task_struct", "mm")?,
            arg_start: btf.field_offset("mm_struct", "arg_start")?,
            arg_end: btf.field_offset("mm_struct", "arg_end")?,
        })
    }

    /// From the running kernel's BTF.
    pub fn of_kernel(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::of(&Btf::parse(&data)?)
    }
}

#[cfg(test)]
#[path = "btf_fields_tests.rs"]
mod tests;
