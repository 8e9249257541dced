use super::*;

/// A BTF blob: the string section from `names`, the type records from `types` (words).
fn blob(names: &[&str], types: &[u32]) -> Vec<u8> {
    let mut strings = vec![0u8];
    for n in names {
        strings.extend_from_slice(n.as_bytes());
        strings.push(0);
    }
    let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    for w in [
        HEADER_LEN as u32,
        0,
        type_bytes.len() as u32,
        type_bytes.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&type_bytes);
    out.extend_from_slice(&strings);
    out
}

/// Offset of `name` in the string section `blob` builds from `names`.
fn s(names: &[&str], name: &str) -> u32 {
    let mut off = 1;
    for n in names {
        if *n == name {
            return off;
        }
        off += n.len() as u32 + 1;
    }
    panic!("{name} not in {names:?}")
}

fn info(kind: u32, vlen: u32, kind_flag: bool) -> u32 {
    (u32::from(kind_flag) << 31) | (kind << 24) | vlen
}

const NAMES: [&str; 8] = [
    "long",
    "task_struct",
    "pid",
    "mm",
    "mm_struct",
    "arg_start",
    "arg_end",
    "flags",
];

/// A forward `task_struct`, then the real one; `mm_struct`'s fields inside an anonymous
/// struct behind a typedef, in a struct whose members use the bit-field encoding.
fn kernel_like() -> Vec<u8> {
    let n = |x| s(&NAMES, x);
    #[rustfmt::skip]
    let types = [
        // 1: int long, 8 bytes (+ encoding word)
        n("long"), info(1, 0, false), 8, 0x40,
        // 2: fwd task_struct
        n("task_struct"), info(7, 0, false), 0,
        // 3: struct task_struct { long pid @0; mm_struct *mm @128 bits }
        n("task_struct"), info(4, 2, false), 64,
        n("pid"), 1, 0,
        n("mm"), 4, 128,
        // 4: ptr → 5
        0, info(2, 0, false), 5,
        // 5: struct mm_struct (kind_flag) { anon @64 bits; long flags:3 @1024+bit-size 3 }
        n("mm_struct"), info(4, 2, true), 256,
        0, 6, 64,
        n("flags"), 1, (3 << 24) | 1027,
        // 6: typedef → 7
        0, info(8, 0, false), 7,
        // 7: anonymous struct { long arg_start @256 bits; long arg_end @320 bits }
        0, info(4, 2, false), 16,
        n("arg_start"), 1, 256,
        n("arg_end"), 1, 320,
    ];
    blob(&NAMES, &types)
}

#[test]
fn finds_fields_through_forward_declarations_anonymous_members_and_typedefs() {
    let data = kernel_like();
    let btf = Btf::parse(&data).unwrap();
    assert_eq!(
        ArgvOffsets::of(&btf).unwrap(),
        ArgvOffsets {
            task_mm: 16,
            arg_start: 40,
            arg_end: 48,
        }
    );
    assert!(matches!(
        btf.field_offset("mm_struct", "flags"),
        Err(BtfError::BitField { bits: 1027, .. })
    ));
    assert!(matches!(
        btf.field_offset("mm_struct", "env_start"),
        Err(BtfError::NoField { .. })
    ));
    assert!(matches!(
        btf.field_offset("files_struct", "fd"),
        Err(BtfError::NoStruct(_))
    ));
}

#[test]
fn bad_input_is_an_error_that_says_where_never_a_panic() {
    let data = kernel_like();
    for cut in 0..data.len() {
        // Every prefix either fails to parse or lacks something; none panics.
        if let Ok(btf) = Btf::parse(&data[..cut]) {
            let _ = ArgvOffsets::of(&btf);
        }
    }
    let mut bad = data.clone();
    bad[0] = 0;
    assert!(matches!(Btf::parse(&bad), Err(BtfError::Magic(_))));
    let e = Btf::parse(&data[..HEADER_LEN + 10])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("the type section"), "{e}");
    // An unknown kind (31) in the first record.
    let mut unknown = data.clone();
    unknown[HEADER_LEN + 7] = 31;
    let e = Btf::parse(&unknown).err().unwrap().to_string();
    assert!(e.contains("type 1 at byte 24: unknown kind 31"), "{e}");
}

#[test]
fn the_running_kernels_argv_fields_are_adjacent_words() {
    let path = Path::new(VMLINUX);
    if !path.exists() {
        // Kernels without BTF: the agent says so at start-up instead (sensor/exec_args.rs).
        return;
    }
    let o = ArgvOffsets::of_kernel(path).unwrap();
    // `unsigned long arg_start, arg_end` are declared together in every kernel since 2.6.
    assert_eq!(o.arg_end, o.arg_start + 8, "{o:?}");
    assert!(o.task_mm > 0 && o.task_mm.is_multiple_of(8), "{o:?}");
}
