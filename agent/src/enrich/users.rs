//! uid → user name and gid → group name, from the host's passwd and group databases
//! (cached; re-read when the file changes). Both files start `name:x:id:`.

use std::collections::HashMap;
use std::time::SystemTime;

#[derive(Default)]
pub struct Users {
    names: HashMap<u32, String>,
    loaded: Option<SystemTime>,
    path: std::path::PathBuf,
}

impl Users {
    pub fn new() -> Self {
        Self::with_path("/etc/passwd")
    }

    /// The group database: gid → group name.
    pub fn groups() -> Self {
        Self::with_path("/etc/group")
    }

    pub fn with_path(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The user name for `uid`, or the number as text when the database has none.
    pub fn name(&mut self, uid: u32) -> String {
        if let Some(n) = self.names.get(&uid) {
            return n.clone();
        }
        self.reload_if_changed();
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    fn reload_if_changed(&mut self) {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_some() && mtime == self.loaded {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            self.names = parse_passwd(&text);
            self.loaded = mtime;
        }
    }
}

/// `name:x:uid:gid:gecos:home:shell` lines; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse::<u32>() {
            out.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_garbage() {
        let m = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n#c\nbad\nalice:x:1000:1000::/home/a:/bin/sh\nx:y:notanumber\n",
        );
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn unknown_uid_is_its_number() {
        let dir = std::env::temp_dir().join(format!("shadowai-users-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("passwd");
        let _ = std::fs::write(&p, "bob:x:1001:1001::/:/bin/sh\n");
        let mut u = Users::with_path(&p);
        assert_eq!(u.name(1001), "bob");
        assert_eq!(u.name(4242), "4242");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
