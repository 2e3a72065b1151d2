//! The file-tail source: follows log files matched by globs and emits one [`LogRecord`](crate::signal::LogRecord)
//! per line (or per multi-line record), at least once, surviving rotation, truncation
//! and restarts.
//!
//! # How it works
//!
//! * **Discovery**: the include globs are expanded every `poll_interval`
//!   and whenever the directory watcher (`notify`, non-recursive, on the patterns' fixed
//!   directories and the tailed files' directories) reports a create, remove or rename.
//!   Data events only wake the reader of that file. The poll is the source of truth: a
//!   lost event or a platform without `notify` only delays tailing (files reached
//!   through symbolic links get their data events from polling, as the link's target
//!   directory is not watched). At most
//!   `max_open_files` descriptors are held; when more files match, the least recently
//!   active idle file (at its end, everything acknowledged) is closed and reopened when
//!   the poll sees it grow. A file that cannot get a descriptor waits for the next pass
//!   (`files_deferred`).
//! * **Identity** ([`checkpoint`]): device + inode plus a fingerprint of the first
//!   `min(size, 256)` bytes, extended as a short file grows. An empty file is known by
//!   device + inode alone until it has content. A checkpoint whose inode now holds
//!   different first bytes is a reused inode: the file is read from the start.
//! * **Rotation by rename and create**: the renamed file's descriptor stays open and is
//!   read to its end; it is closed once it has been idle at its end for `rotate_wait`
//!   and every batch from it is acknowledged (an incomplete last line is then emitted as
//!   it is). The new file at the path is read from its start. A renamed file that still
//!   matches the globs simply keeps being tailed under its new name.
//! * **copytruncate and truncation**: before each read the reader compares the file size
//!   with its position and the first bytes with the fingerprint; a shorter file or a
//!   changed head means "truncated": the lines already read are sent, and reading
//!   restarts at offset 0 (`files_truncated`). The fingerprint check catches a file that
//!   was truncated and grew past the old position between two reads. Inherent race:
//!   lines the writer appends after the tailer's last read of the old content and
//!   before the truncation exist only in the copy, so they are lost to this file (the
//!   copy is a new inode: if the globs match it, it is read from its start as a new
//!   file, duplicating everything, so exclude rotated copies); logrotate's own documentation warns of the same window. A writer that does
//!   not use `O_APPEND` keeps writing at its old offset after a truncation and leaves a
//!   hole of NUL bytes, which is read as (truncated) binary lines.
//! * **Acknowledgement and checkpoints**: every batch holds the records of one file and
//!   an [`AckToken`](crate::ack::AckToken). A file's committed offset advances to the end
//!   of a batch only when that batch and every earlier one from the file were
//!   delivered; a failed batch makes the reader go back to its start offset (later
//!   batches already sent may then be delivered twice). At most `max_unacked_batches`
//!   per file are unacknowledged; the reader waits for acknowledgements beyond that. The
//!   committed offsets are written to `<data_dir>/checkpoints/<component>.json` at most
//!   once a second and on shutdown (after waiting up to 2 s for outstanding
//!   acknowledgements). On start, a file whose identity matches a checkpoint resumes
//!   at its offset; other files first seen at startup start at `start_at`; files that
//!   appear later are read from the start. Delivery is at least once: lines sent but
//!   not acknowledged before a crash are sent again after the restart.
//! * **Lines** ([`parse`], [`multiline`]): 256 KiB positioned reads, `memchr`
//!   for newlines, `\r\n` accepted. A line longer than `max_line_bytes` is cut at a
//!   character boundary, counted (`lines_truncated`), and the rest of it is skipped as
//!   it streams past without being buffered. Invalid UTF-8 is replaced with U+FFFD and
//!   the line counted (`invalid_utf8`). An incomplete last line (no newline yet) is not
//!   emitted until its newline arrives, however long that takes, because a writer may be
//!   mid-line; it is emitted as it is only when its file is closed after rotation or
//!   deletion, or before the file is re-read after a truncation. Every record carries
//!   `log.file.path` and `log.file.name` and shares one `Arc` of the configured
//!   resource.
//!
//! # Counters
//!
//! `received` (lines read, including lines read again after a failed delivery),
//! `emitted` (records sent), `dropped` (records of a failed batch whose file was
//! truncated meanwhile, which cannot be re-read), `errors` (I/O errors: open, read,
//! checkpoint), and `lines_truncated`, `invalid_utf8`, `json_parse_errors`,
//! `files_rotated`, `files_deleted`, `files_truncated`, `files_deferred`,
//! `batches_failed`. Logs and errors name paths and offsets, never line contents.

pub mod checkpoint;
mod discover;
pub mod multiline;
pub mod parse;
mod reader;
mod tailer;

pub use multiline::MultilineConfig;
pub use parse::Format;

use crate::pipeline::SourceContext;
use crate::signal::{KeyValue, Resource, Scope};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The largest accepted `max_line_bytes` / `multiline.max_bytes` (64 MiB).
pub const MAX_LINE_BYTES_LIMIT: usize = 64 << 20;

/// Where to start reading a file first seen at startup that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// From its first byte (the default).
    #[default]
    Beginning,
    /// After its last complete line (the last newline in its final 64 KiB; at its end if
    /// there is none).
    End,
}

/// Configuration of one file-tail source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of the files to tail (required; absolute paths; `*`, `?`, `[..]`
    /// within a path component, `**` for any number of directories).
    pub include: Vec<String>,
    /// Glob patterns of files to leave alone; a pattern without `/` matches file names
    /// (`*.gz`), one with `/` matches whole paths.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where files first seen at startup without a checkpoint start (default
    /// `beginning`); files created later are always read from the start.
    #[serde(default)]
    pub start_at: StartAt,
    /// How often the globs are expanded and every file is checked for growth, as a
    /// fallback for missed change notifications (default 1s).
    #[serde(default = "default_poll_interval", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub poll_interval: Duration,
    /// Longest line kept, in bytes (default 256 KiB); longer lines are cut to this and
    /// counted in `lines_truncated`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Multi-line records (stack traces); off by default.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// How lines are parsed (default `auto`).
    #[serde(default)]
    pub format: Format,
    /// Most records per batch (default 1000).
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// A partly filled batch is sent after this long (default 200ms).
    #[serde(default = "default_batch_timeout", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub batch_timeout: Duration,
    /// Static resource attributes stamped on every record (e.g. `service.name`).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Most file descriptors held at once (default 512).
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// How long a rotated-away or deleted file must sit idle at its end before it is
    /// closed (default 5s): writers keep writing to the old file until they reopen.
    #[serde(default = "default_rotate_wait", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub rotate_wait: Duration,
    /// Most batches per file sent but not yet acknowledged (default 32); raise it when
    /// the acknowledgement latency of the sinks limits throughput.
    #[serde(default = "default_max_unacked_batches")]
    pub max_unacked_batches: usize,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_line_bytes() -> usize {
    256 << 10
}

fn default_batch_max_records() -> usize {
    1000
}

fn default_batch_timeout() -> Duration {
    Duration::from_millis(200)
}

fn default_max_open_files() -> usize {
    512
}

fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_max_unacked_batches() -> usize {
    32
}

impl Config {
    /// A config tailing `include` with every other field at its documented default.
    pub fn new(include: impl IntoIterator<Item = impl Into<String>>) -> Config {
        Config {
            include: include.into_iter().map(Into::into).collect(),
            exclude: Vec::new(),
            start_at: StartAt::default(),
            poll_interval: default_poll_interval(),
            max_line_bytes: default_max_line_bytes(),
            multiline: None,
            format: Format::default(),
            batch_max_records: default_batch_max_records(),
            batch_timeout: default_batch_timeout(),
            resource: BTreeMap::new(),
            max_open_files: default_max_open_files(),
            rotate_wait: default_rotate_wait(),
            max_unacked_batches: default_max_unacked_batches(),
        }
    }

    /// Every problem with this config, each message starting with the field at fault.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.include.is_empty() {
            errors.push("include: must list at least one glob pattern".to_string());
        }
        for (i, p) in self.include.iter().enumerate() {
            if !p.starts_with('/') {
                errors.push(format!("include[{i}]: must be an absolute path"));
            } else if let Err(e) = glob::Pattern::new(p) {
                errors.push(format!("include[{i}]: invalid glob pattern: {e}"));
            }
        }
        for (i, p) in self.exclude.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(p) {
                errors.push(format!("exclude[{i}]: invalid glob pattern: {e}"));
            }
        }
        let between = |field: &str, d: Duration, lo: Duration, hi: Duration, errors: &mut Vec<String>| {
            if d < lo || d > hi {
                errors.push(format!(
                    "{field}: must be between {} and {}",
                    humantime::format_duration(lo),
                    humantime::format_duration(hi)
                ));
            }
        };
        between("poll_interval", self.poll_interval, Duration::from_millis(10), Duration::from_secs(3600), &mut errors);
        between("batch_timeout", self.batch_timeout, Duration::from_millis(1), Duration::from_secs(60), &mut errors);
        between("rotate_wait", self.rotate_wait, Duration::ZERO, Duration::from_secs(3600), &mut errors);
        if !(1..=MAX_LINE_BYTES_LIMIT).contains(&self.max_line_bytes) {
            errors.push(format!("max_line_bytes: must be between 1 and {MAX_LINE_BYTES_LIMIT}"));
        }
        if let Some(m) = &self.multiline {
            m.validate("multiline", &mut errors);
        }
        if !(1..=100_000).contains(&self.batch_max_records) {
            errors.push("batch_max_records: must be between 1 and 100000".to_string());
        }
        if !(1..=65_536).contains(&self.max_open_files) {
            errors.push("max_open_files: must be between 1 and 65536".to_string());
        }
        if !(1..=1024).contains(&self.max_unacked_batches) {
            errors.push("max_unacked_batches: must be between 1 and 1024".to_string());
        }
        if self.resource.keys().any(String::is_empty) {
            errors.push("resource: attribute names must not be empty".to_string());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Tails until `ctx.shutdown` fires, then waits briefly for outstanding
    /// acknowledgements, saves the checkpoints and returns. A config that does not
    /// validate is logged and counted as an error, and the source idles until shutdown.
    pub async fn run(self, ctx: SourceContext) {
        let component = ctx.stats.name().to_string();
        if let Err(errors) = self.validate() {
            ctx.stats.errors.inc();
            tracing::error!(component, errors = ?errors, "file source: invalid config; not tailing");
            ctx.shutdown.cancelled().await;
            return;
        }
        match tailer::Tailer::new(self, ctx.clone()) {
            Ok(t) => t.run().await,
            Err(error) => {
                ctx.stats.errors.inc();
                tracing::error!(component, %error, "file source: cannot start; not tailing");
                ctx.shutdown.cancelled().await;
            }
        }
    }

    /// The resource every record of this source carries.
    fn build_resource(&self) -> Arc<Resource> {
        Arc::new(Resource {
            attributes: self.resource.iter().map(|(k, v)| KeyValue::string(k.clone(), v.clone())).collect(),
            schema_url: String::new(),
        })
    }
}

/// The instrumentation scope of records from this source.
fn scope() -> Arc<Scope> {
    Arc::new(Scope { name: "warden.source.file".to_string(), ..Scope::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_yaml_like_json() {
        let c: Config = serde_json::from_value(serde_json::json!({"include": ["/var/log/*.log"]})).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert_eq!(c.max_line_bytes, 256 << 10);
        assert_eq!(c.batch_max_records, 1000);
        assert_eq!(c.batch_timeout, Duration::from_millis(200));
        assert_eq!(c.max_open_files, 512);
        assert_eq!(c.start_at, StartAt::Beginning);
        assert_eq!(c.format, Format::Auto);
        assert!(c.validate().is_ok());
        let c: Config = serde_json::from_value(serde_json::json!({
            "include": ["/a/*.log"], "start_at": "end", "poll_interval": "250ms", "format": "json",
            "multiline": {"start_pattern": "^\\S", "timeout": "2s"}, "resource": {"service.name": "api"}
        }))
        .unwrap();
        assert_eq!(c.start_at, StartAt::End);
        assert_eq!(c.multiline.as_ref().unwrap().timeout, Duration::from_secs(2));
        assert_eq!(c.multiline.as_ref().unwrap().max_lines, 500);
        assert_eq!(c.build_resource().get_str("service.name"), Some("api"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let err = serde_json::from_value::<Config>(serde_json::json!({"include": ["/a"], "paths": []})).unwrap_err();
        assert!(err.to_string().contains("unknown field `paths`"), "{err}");
        let err = serde_json::from_value::<Config>(serde_json::json!({"include": ["/a"], "poll_interval": "soon"}))
            .unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
        let mut c = Config::new(["relative/*.log", "/ok/[.log"]);
        c.exclude = vec!["[".into()];
        c.poll_interval = Duration::ZERO;
        c.max_line_bytes = 0;
        c.batch_max_records = 0;
        c.max_open_files = 0;
        c.max_unacked_batches = 0;
        c.multiline = Some(MultilineConfig::new("("));
        c.resource.insert(String::new(), "x".into());
        let errors = c.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "include[0]",
                "include[1]",
                "exclude[0]",
                "poll_interval",
                "max_line_bytes",
                "multiline.start_pattern",
                "batch_max_records",
                "max_open_files",
                "max_unacked_batches",
                "resource"
            ],
            "{errors:#?}"
        );
        assert!(Config::new(Vec::<String>::new()).validate().unwrap_err()[0].starts_with("include: must list"));
    }
}
