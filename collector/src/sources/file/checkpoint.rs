//! File identity and the checkpoint file.
//!
//! A file is identified by device + inode plus a [`Fingerprint`] of its first bytes.
//! Device + inode alone is not enough: once a file is deleted and its last descriptor
//! closed the inode number is free, and the next file created may get it. The fingerprint
//! covers the first `min(size, 256)` bytes and is extended as a short file grows, so a
//! file is always compared over the bytes it had when it was last seen; an empty file
//! has an empty fingerprint and is identified by device + inode alone until it has
//! content. Two files with the same first bytes on the same recycled inode cannot be told
//! apart (a log that starts with a long fixed banner shrinks the useful part); that is the
//! documented limit of this scheme.
//!
//! Checkpoints live in `<data_dir>/checkpoints/<component>.json`, written atomically
//! (temporary file, `fsync`, `rename`, `fsync` of the directory), so a crash leaves
//! either the old or the new file, never a torn one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// How many leading bytes of a file its fingerprint covers at most.
pub const FINGERPRINT_BYTES: usize = 256;

/// A hash of a file's first `len` bytes (`len` ≤ [`FINGERPRINT_BYTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// How many leading bytes are covered.
    pub len: u32,
    /// The first 8 bytes of their SHA-256, big-endian (stable across versions and hosts).
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `head` (at most [`FINGERPRINT_BYTES`] are used).
    pub fn of(head: &[u8]) -> Fingerprint {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        let digest = Sha256::digest(head);
        let mut h = [0u8; 8];
        h.copy_from_slice(&digest[..8]);
        Fingerprint { len: head.len() as u32, hash: u64::from_be_bytes(h) }
    }

    /// The fingerprint of `file`'s first `min(size, 256)` bytes.
    pub fn read(file: &File, size: u64) -> io::Result<Fingerprint> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_head(file, &mut buf, size)?;
        Ok(Fingerprint::of(&buf[..n]))
    }

    /// Whether `file` (now `size` bytes long) still starts with the bytes this fingerprint
    /// covers; if it does and has grown, the fingerprint is extended to cover more.
    /// `false` means the content was replaced or the file shrank below the covered bytes.
    pub fn check(&mut self, file: &File, size: u64) -> io::Result<bool> {
        if self.len == 0 {
            if size > 0 {
                *self = Fingerprint::read(file, size)?;
            }
            return Ok(true);
        }
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_head(file, &mut buf, size)?;
        let covered = self.len as usize;
        if n < covered || Fingerprint::of(&buf[..covered]) != *self {
            return Ok(false);
        }
        if n > covered {
            *self = Fingerprint::of(&buf[..n]);
        }
        Ok(true)
    }

    /// Whether a file whose head (up to 256 bytes) is `head` matches this fingerprint.
    pub fn matches_head(&self, head: &[u8]) -> bool {
        head.len() >= self.len as usize && Fingerprint::of(&head[..self.len as usize]) == *self
    }

    fn to_hex(self) -> String {
        format!("{:016x}", self.hash)
    }
}

/// Reads up to `min(buf.len(), size)` bytes from the start of `file`; fewer if the file
/// is shorter now.
pub(crate) fn read_head(file: &File, buf: &mut [u8; FINGERPRINT_BYTES], size: u64) -> io::Result<usize> {
    let want = (size.min(FINGERPRINT_BYTES as u64)) as usize;
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..want], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One file's checkpoint: where to resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Device id (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`).
    pub inode: u64,
    /// Fingerprint of the file's first bytes when the offset was committed.
    pub fingerprint: Fingerprint,
    /// Byte offset up to which every line has been acknowledged downstream.
    pub offset: u64,
    /// The path the file was last seen at (for operators; identity does not use it).
    pub path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    files: Vec<OnDiskEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskEntry {
    dev: u64,
    inode: u64,
    fingerprint: String,
    fingerprint_len: u32,
    offset: u64,
    path: String,
}

const VERSION: u32 = 1;
/// A checkpoint file larger than this is refused rather than read into memory.
const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Why a checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading failed.
    #[error("cannot read checkpoint file {path}: {source}")]
    Read {
        /// The checkpoint file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a checkpoint file this version understands.
    #[error("invalid checkpoint file {path}: {reason}")]
    Invalid {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong (never file contents).
        reason: String,
    },
    /// Writing failed.
    #[error("cannot write checkpoint file {path}: {source}")]
    Write {
        /// The checkpoint file (or its temporary sibling).
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The checkpoint file of one source.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// `<data_dir>/checkpoints/<component>.json`; characters other than ASCII letters,
    /// digits, `.`, `_` and `-` in the component name become `_`.
    pub fn new(data_dir: &Path, component: &str) -> CheckpointFile {
        let mut name: String =
            component.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        if name.is_empty() || name.starts_with('.') {
            name.insert(0, '_');
        }
        CheckpointFile { path: data_dir.join("checkpoints").join(format!("{name}.json")) }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved entries; none if the file does not exist yet.
    pub fn load(&self) -> Result<Vec<Entry>, CheckpointError> {
        let path = &self.path;
        let read_err = |source| CheckpointError::Read { path: path.clone(), source };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let len = file.metadata().map_err(read_err)?.len();
        if len > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::Invalid { path: path.clone(), reason: format!("{len} bytes is too large") });
        }
        let mut text = Vec::with_capacity(len as usize);
        io::Read::read_to_end(&mut io::Read::take(file, MAX_CHECKPOINT_BYTES), &mut text).map_err(read_err)?;
        let disk: OnDisk = serde_json::from_slice(&text).map_err(|e| CheckpointError::Invalid {
            path: path.clone(),
            reason: format!("not valid JSON of the expected shape at line {} column {}", e.line(), e.column()),
        })?;
        if disk.version != VERSION {
            return Err(CheckpointError::Invalid {
                path: path.clone(),
                reason: format!("version {} is not supported (expected {VERSION})", disk.version),
            });
        }
        let mut out = Vec::with_capacity(disk.files.len());
        for (i, e) in disk.files.into_iter().enumerate() {
            let hash = u64::from_str_radix(&e.fingerprint, 16).ok().filter(|_| e.fingerprint.len() == 16);
            let (Some(hash), true) = (hash, e.fingerprint_len as usize <= FINGERPRINT_BYTES) else {
                return Err(CheckpointError::Invalid {
                    path: path.clone(),
                    reason: format!("files[{i}]: bad fingerprint"),
                });
            };
            out.push(Entry {
                dev: e.dev,
                inode: e.inode,
                fingerprint: Fingerprint { len: e.fingerprint_len, hash },
                offset: e.offset,
                path: PathBuf::from(e.path),
            });
        }
        Ok(out)
    }

    /// Replaces the file with `entries`, atomically and durably.
    pub fn save(&self, entries: &[Entry]) -> Result<(), CheckpointError> {
        let disk = OnDisk {
            version: VERSION,
            files: entries
                .iter()
                .map(|e| OnDiskEntry {
                    dev: e.dev,
                    inode: e.inode,
                    fingerprint: e.fingerprint.to_hex(),
                    fingerprint_len: e.fingerprint.len,
                    offset: e.offset,
                    path: e.path.to_string_lossy().into_owned(),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&disk)
            .map_err(|e| CheckpointError::Write { path: self.path.clone(), source: io::Error::other(e.to_string()) })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(werr(dir))?;
        let mut f = File::create(&tmp).map_err(werr(&tmp))?;
        f.write_all(&text).map_err(werr(&tmp))?;
        f.sync_all().map_err(werr(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(werr(&self.path))?;
        // The rename is durable only once the directory entry is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(werr(dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warden_ckpt_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn save_load_round_trip() {
        let dir = temp("rt");
        let cp = CheckpointFile::new(&dir, "file/app logs");
        assert!(cp.path().ends_with("checkpoints/file_app_logs.json"));
        assert_eq!(cp.load().unwrap(), Vec::new(), "missing file = no checkpoints");
        let entries = vec![Entry {
            dev: 2049,
            inode: u64::MAX,
            fingerprint: Fingerprint::of(b"hello"),
            offset: 12_345,
            path: "/var/log/a.log".into(),
        }];
        cp.save(&entries).unwrap();
        assert_eq!(cp.load().unwrap(), entries);
        assert!(!cp.path().with_extension("json.tmp").exists(), "temporary file renamed away");
        std::fs::write(cp.path(), b"{garbage").unwrap();
        let err = cp.load().unwrap_err().to_string();
        assert!(err.contains("invalid checkpoint file") && err.contains("line 1"), "{err}");
        std::fs::write(cp.path(), br#"{"version":9,"files":[]}"#).unwrap();
        assert!(cp.load().unwrap_err().to_string().contains("version 9"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fingerprint_grows_and_detects_replacement() {
        let dir = temp("fp");
        let p = dir.join("f");
        std::fs::write(&p, b"").unwrap();
        let f = File::open(&p).unwrap();
        let mut fp = Fingerprint::read(&f, 0).unwrap();
        assert_eq!(fp.len, 0);
        std::fs::write(&p, b"abc").unwrap();
        assert!(fp.check(&f, 3).unwrap());
        assert_eq!(fp, Fingerprint::of(b"abc"));
        let long: Vec<u8> = (0..1000u32).map(|i| b'a' + ((i + 3) % 26) as u8).collect();
        std::fs::write(&p, &long).unwrap();
        assert!(!fp.check(&f, 1000).unwrap(), "first bytes changed from abc");
        let mut fp = Fingerprint::of(&long[..10]);
        assert!(fp.check(&f, 1000).unwrap());
        assert_eq!(fp.len as usize, FINGERPRINT_BYTES, "extended to the full width");
        assert!(fp.matches_head(&long[..300]));
        assert!(!fp.matches_head(&long[..100]), "shorter head than covered");
        let mut changed = long.clone();
        changed[200] = b'!';
        std::fs::write(&p, &changed).unwrap();
        assert!(!fp.check(&f, 1000).unwrap());
        std::fs::write(&p, b"ab").unwrap();
        assert!(!Fingerprint::of(&long[..10]).check(&f, 2).unwrap(), "shrank below the covered bytes");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
