//! Finding (and mounting when absent) the filesystems the sensor needs.

use std::path::{Path, PathBuf};

use crate::error::AgentError;

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Parses /proc/self/mountinfo text. Lines that do not parse are skipped (the kernel
/// writes this file; a malformed line would be a kernel bug, not a reason to stop).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = pre.split(' ').nth(4) else {
            continue;
        };
        let Some(fs_type) = post.split(' ').next() else {
            continue;
        };
        out.push(Mount {
            mount_point: PathBuf::from(unescape_octal(mount_point)),
            fs_type: fs_type.to_string(),
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Result<Vec<Mount>, AgentError> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| AgentError::Io {
            what: "reading /proc/self/mountinfo".into(),
            source,
        })?;
    Ok(parse_mountinfo(&text))
}

/// The cgroup2 mount point (the unified hierarchy), wherever the distribution put it.
pub fn cgroup2_root() -> Result<PathBuf, AgentError> {
    let all = mounts()?;
    // Prefer the shortest path: the root of the unified hierarchy, not a nested bind mount.
    all.into_iter()
        .filter(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .min_by_key(|p| p.as_os_str().len())
        .ok_or(AgentError::NoCgroup2)
}

/// Makes sure tracefs is mounted (tracepoint attach looks events up there); returns where.
pub fn ensure_tracefs() -> Result<PathBuf, AgentError> {
    let all = mounts()?;
    if let Some(m) = all.iter().find(|m| m.fs_type == "tracefs") {
        return Ok(m.mount_point.clone());
    }
    let target = Path::new("/sys/kernel/tracing");
    mount_fs("tracefs", target)?;
    tracing::info!(path = %target.display(), "mounted tracefs");
    Ok(target.to_path_buf())
}

fn mount_fs(fs: &str, target: &Path) -> Result<(), AgentError> {
    use std::ffi::CString;
    let err = |what: &str| AgentError::Mount {
        fs: fs.to_string(),
        target: target.to_path_buf(),
        reason: what.to_string(),
    };
    std::fs::create_dir_all(target).map_err(|e| err(&e.to_string()))?;
    let src = CString::new(fs).map_err(|_| err("NUL in name"))?;
    let dst =
        CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| err("NUL in path"))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(&std::io::Error::last_os_error().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_and_unescapes() {
        let text = "\
22 28 0:20 / /sys rw,nosuid shared:7 - sysfs sysfs rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
garbage line without separator
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].fs_type, "cgroup2");
        assert_eq!(m[1].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn truncated_escape_is_kept_verbatim() {
        assert_eq!(unescape_octal("a\\04"), "a\\04");
        assert_eq!(unescape_octal("\\"), "\\");
    }
}
