//! Zone files written by tests into a temporary directory, removed on drop.

use std::path::{Path, PathBuf};

pub struct ZoneDir {
    pub path: PathBuf,
}

impl ZoneDir {
    /// An empty directory unique to this process and `tag`.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cdb-zones-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("zone dir");
        Self { path }
    }

    /// Writes `<origin>.zone` with an SOA and NS for `origin` followed by `records`.
    pub fn write(&self, origin: &str, records: &str) -> PathBuf {
        let text = format!(
            "$ORIGIN {origin}.\n$TTL 60\n\
             @ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 30\n\
             @ IN NS ns.{origin}.\nns IN A 127.0.0.1\n{records}"
        );
        let path = self.path.join(format!("{origin}.zone"));
        std::fs::write(&path, text).expect("write zone");
        path
    }

    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ZoneDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
