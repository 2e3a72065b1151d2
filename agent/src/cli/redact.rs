//! `warden redact [--config FILE] [FILE...]`: the PHI redactor as a filter.
//!
//! Reads lines from the files in order (or standard input when none is given, or for
//! `-`) and writes exactly one line per input line, in order, to standard output. A line
//! that is a JSON object is redacted structurally (keys kept, values scanned, key rules
//! applied) and written back as compact JSON; any other line is redacted as text. A line
//! whose record is dropped (`drop_record`, or `drop_field` on a text line) comes out
//! empty, so line numbers still match.
//!
//! Streaming with bounded memory: one line at a time; a line longer than
//! [`MAX_LINE_BYTES`] is replaced by an empty line (and counted on stderr by line number,
//! never by content). Invalid UTF-8 is replaced with U+FFFD; `\r\n` endings become `\n`.
//! A closed pipe ends the run quietly. With `--stats` the redaction counters are printed
//! to stderr at the end.
//!
//! Exit codes: 0 at EOF; 1 if a file could not be read or the output failed; 64 for bad
//! usage or an invalid config.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use warden_collector::redact::{BuildError, Config, Line, Redactor};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, write_or_ignore};

/// Lines longer than this are replaced by an empty line.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Arguments of `redact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Redaction config (YAML, the schema of the agent config's `redaction` section).
    /// Default: every detector on, action `mask`, the built-in key rules.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the redaction counters (Prometheus text) to stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// Input files, read in order; none or `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Loads and builds the redactor from `--config` (or the default).
pub fn load_redactor(path: Option<&Path>) -> Result<Redactor, String> {
    let config = match path {
        None => Config::default(),
        Some(p) => {
            let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if meta.len() > MAX_CONFIG_BYTES {
                return Err(format!("{}: config is larger than {MAX_CONFIG_BYTES} bytes", p.display()));
            }
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut o = serde_saphyr::Options::default();
            o.with_snippet = false;
            let parsed: Option<Config> = serde_saphyr::from_str_with_options(&text, o)
                .map_err(|e| format!("{}: {}", p.display(), e.without_snippet()))?;
            parsed.unwrap_or_default()
        }
    };
    Redactor::new(&config).map_err(|e| match e {
        BuildError::Invalid(errs) => {
            let mut s = String::from("invalid redaction config:");
            for e in errs {
                s.push_str("\n  ");
                s.push_str(&e);
            }
            s
        }
        other => other.to_string(),
    })
}

/// Reads the next line into `buf` (without its `\n` or `\r\n`): `None` at EOF,
/// `Some(true)` if the line was longer than `cap` (then `buf` is empty and the rest of the
/// line was skipped without being stored).
fn next_line(r: &mut dyn BufRead, buf: &mut Vec<u8>, cap: usize) -> io::Result<Option<bool>> {
    buf.clear();
    let mut over = false;
    let mut any = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        any = true;
        let nl = memchr::memchr(b'\n', avail);
        let chunk = &avail[..nl.unwrap_or(avail.len())];
        if !over {
            if buf.len() + chunk.len() > cap {
                over = true;
                buf.clear();
                buf.shrink_to(1 << 16);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = nl.map_or(avail.len(), |i| i + 1);
        r.consume(used);
        if nl.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(over))
}

enum Stop {
    /// The output is gone (closed pipe): stop quietly.
    Closed,
    /// Writing failed otherwise.
    Failed(io::Error),
}

/// Redacts one input stream into `w`; `Err` stops the whole run. Read errors are
/// reported to `err` and end this input only (returns `Ok(false)`).
fn filter(
    r: &Redactor,
    name: &str,
    input: &mut dyn BufRead,
    w: &mut dyn Write,
    err: &mut dyn Write,
    max_line: usize,
) -> Result<bool, Stop> {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut lineno = 0u64;
    loop {
        let over = match next_line(input, &mut buf, max_line) {
            Ok(None) => return Ok(true),
            Ok(Some(over)) => over,
            Err(e) => {
                write_or_ignore(err, &format!("redact: {name}: read error after line {lineno}: {e}\n"));
                return Ok(false);
            }
        };
        lineno += 1;
        let res = if over {
            write_or_ignore(
                err,
                &format!("redact: {name}:{lineno}: line longer than {max_line} bytes replaced by an empty line\n"),
            );
            w.write_all(b"\n")
        } else {
            let text = match std::str::from_utf8(&buf) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(&buf),
            };
            let res = match r.redact_line(&text) {
                Line::Text(t) => w.write_all(t.as_bytes()),
                Line::Json(j) => w.write_all(j.as_bytes()),
                Line::Dropped => Ok(()),
            };
            res.and_then(|()| w.write_all(b"\n"))
        };
        if let Err(e) = res {
            return Err(if e.kind() == io::ErrorKind::BrokenPipe { Stop::Closed } else { Stop::Failed(e) });
        }
    }
}

/// Runs the filter; returns the exit code.
pub fn run(args: &Args, stdin: &mut dyn BufRead, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    run_with_limit(args, stdin, out, err, MAX_LINE_BYTES)
}

/// [`run`] with a chosen line-length limit (tests use a small one).
pub fn run_with_limit(
    args: &Args,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
    max_line: usize,
) -> u8 {
    let redactor = match load_redactor(args.config.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            write_or_ignore(err, &format!("redact: {e}\n"));
            return EXIT_USAGE;
        }
    };
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut failed = false;
    let stdin_only = [PathBuf::from("-")];
    let files: &[PathBuf] = if args.files.is_empty() { &stdin_only } else { &args.files };
    for path in files {
        let res = if path.as_os_str() == "-" {
            filter(&redactor, "<stdin>", stdin, &mut w, err, max_line)
        } else {
            match std::fs::File::open(path) {
                Ok(f) => {
                    let mut input = BufReader::with_capacity(1 << 16, f);
                    filter(&redactor, &path.display().to_string(), &mut input, &mut w, err, max_line)
                }
                Err(e) => {
                    write_or_ignore(err, &format!("redact: {}: {e}\n", path.display()));
                    Ok(false)
                }
            }
        };
        match res {
            Ok(true) => {}
            Ok(false) => failed = true,
            Err(Stop::Closed) => return EXIT_OK,
            Err(Stop::Failed(e)) => {
                write_or_ignore(err, &format!("redact: writing output: {e}\n"));
                return EXIT_FAILURE;
            }
        }
    }
    match w.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return EXIT_OK,
        Err(e) => {
            write_or_ignore(err, &format!("redact: writing output: {e}\n"));
            return EXIT_FAILURE;
        }
    }
    if args.stats {
        write_or_ignore(err, &redactor.encode_metrics());
    }
    if failed { EXIT_FAILURE } else { EXIT_OK }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(files: &[&str]) -> Args {
        Args { config: None, stats: false, files: files.iter().map(PathBuf::from).collect() }
    }

    fn run_str(input: &[u8], max_line: usize) -> (u8, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run_with_limit(&args(&[]), &mut &input[..], &mut out, &mut err, max_line);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn one_line_out_per_line_in() {
        let input = b"ssn 123-45-6789\r\n{\"email\":\"a@b.co\", \"n\": 1}\n\nplain\n\xff\xfe bad utf8\nlast no newline";
        let (code, out, err) = run_str(input, MAX_LINE_BYTES);
        assert_eq!(code, EXIT_OK, "{err}");
        let lines: Vec<&str> = out.split_terminator('\n').collect();
        assert_eq!(
            lines,
            [
                "ssn [REDACTED:SSN]",
                "{\"email\":\"[REDACTED:EMAIL]\",\"n\":1}",
                "",
                "plain",
                "\u{fffd}\u{fffd} bad utf8",
                "last no newline"
            ]
        );
    }

    #[test]
    fn oversize_lines_are_replaced_and_reported_without_content() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend_from_slice(b" secret-ish\nafter\n");
        let (code, out, err) = run_str(&input, 1000);
        assert_eq!(code, EXIT_OK);
        assert_eq!(out, "short\n\nafter\n");
        assert!(err.contains("<stdin>:2: line longer than 1000 bytes") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn missing_file_fails_but_others_are_processed() {
        let dir = std::env::temp_dir().join(format!("warden_redact_cli_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("in.log");
        std::fs::write(&f, "mail jane@example.com\n").unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let a = args(&["/nonexistent/x.log", f.to_str().unwrap()]);
        let code = run(&a, &mut &b""[..], &mut out, &mut err);
        assert_eq!(code, EXIT_FAILURE);
        assert_eq!(String::from_utf8(out).unwrap(), "mail [REDACTED:EMAIL]\n");
        assert!(String::from_utf8(err).unwrap().contains("/nonexistent/x.log"));
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "detectors:\n  ssnn: {}\n").unwrap();
        let a = Args { config: Some(bad), stats: false, files: vec![] };
        let mut err = Vec::new();
        assert_eq!(run(&a, &mut &b""[..], &mut Vec::new(), &mut err), EXIT_USAGE);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn broken_pipe_exits_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let input = "x\n".repeat(100_000);
        let mut err = Vec::new();
        assert_eq!(run(&args(&[]), &mut input.as_bytes(), &mut Closed, &mut err), EXIT_OK);
        assert!(err.is_empty());
    }
}
