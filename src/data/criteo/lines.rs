//! The physical lines of a Criteo file, plain or gzip (one or more members), LF or CRLF, with
//! their 1-based numbers, each classified as blank, a sample or malformed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::parse::{LineError, Parser, Sample, field_name};
use crate::data::DataError;

/// Read buffer size, for the file and for the decompressed stream.
const BUF_SIZE: usize = 1 << 20;
/// Longest line accepted (a Criteo line has a few hundred bytes); protects memory against a file
/// that is not text.
pub(super) const MAX_LINE: usize = 1 << 20;

/// What one physical line held.
enum LineKind {
    Eof,
    Blank,
    Sample,
    Bad(DataError),
}

/// The lines of a plain or gzip file, with their numbers.
pub(super) struct Lines {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    /// Physical lines read so far (the 1-based number of the last one).
    pub(super) line: u64,
    /// The file starts with the gzip magic bytes (and is read decompressed).
    pub(super) gzip: bool,
}

impl Lines {
    /// Opens `path`, decompressing it when it starts with the gzip magic bytes.
    pub(super) fn open(path: &Path) -> Result<Lines, DataError> {
        let io_err = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 2];
        let mut n = 0;
        while n < magic.len() {
            match file.read(&mut magic[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let gzip = n == 2 && magic == [0x1f, 0x8b];
        let raw = BufReader::with_capacity(BUF_SIZE, Cursor::new(magic[..n].to_vec()).chain(file));
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(BUF_SIZE, MultiGzDecoder::new(raw)))
        } else {
            Box::new(raw)
        };
        Ok(Lines {
            path: path.to_path_buf(),
            reader,
            buf: Vec::new(),
            line: 0,
            gzip,
        })
    }

    /// Reads the next physical line into `buf`, without its LF or CRLF. `Ok(None)` at the end
    /// of the file, `Ok(Some(false))` for a line over [`MAX_LINE`] (consumed and dropped).
    fn read_line(&mut self) -> Result<Option<bool>, DataError> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = self
            .reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut self.buf);
        if n.map_err(|e| self.io_error(e))? == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            loop {
                self.buf.clear();
                let n = self
                    .reader
                    .by_ref()
                    .take(limit)
                    .read_until(b'\n', &mut self.buf);
                if n.map_err(|e| self.io_error(e))? == 0 || self.buf.last() == Some(&b'\n') {
                    return Ok(Some(false));
                }
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(true))
    }

    fn io_error(&self, source: io::Error) -> DataError {
        DataError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads and classifies the next physical line, parsing a sample into `out`.
    fn read(&mut self, parser: &Parser, out: &mut Sample) -> Result<LineKind, DataError> {
        let error = match self.read_line()? {
            None => return Ok(LineKind::Eof),
            Some(false) => LineError {
                field: None,
                message: format!(
                    "expected a line of at most {MAX_LINE} bytes, found a longer one \
                     (is this a Criteo TSV file?)"
                ),
            },
            Some(true) if self.buf.iter().all(u8::is_ascii_whitespace) => {
                return Ok(LineKind::Blank);
            }
            Some(true) => match parser.parse(&self.buf, out) {
                Ok(()) => return Ok(LineKind::Sample),
                Err(e) => e,
            },
        };
        Ok(LineKind::Bad(DataError::Malformed {
            path: self.path.clone(),
            line: self.line,
            field: error.field.map(field_name),
            message: error.message,
        }))
    }

    /// Reads up to the next valid sample: `Ok(true)` with it in `out`, `Ok(false)` at the end of
    /// the file. Blank lines are skipped; malformed lines are handed to `on_skip` when `skip`,
    /// else returned as the error.
    pub(super) fn next_valid(
        &mut self,
        parser: &Parser,
        out: &mut Sample,
        skip: bool,
        mut on_skip: impl FnMut(DataError),
    ) -> Result<bool, DataError> {
        loop {
            match self.read(parser, out)? {
                LineKind::Eof => return Ok(false),
                LineKind::Blank => {}
                LineKind::Sample => return Ok(true),
                LineKind::Bad(e) if skip => on_skip(e),
                LineKind::Bad(e) => return Err(e),
            }
        }
    }

    /// Skips to the next non-blank line without parsing it: `Ok(false)` at the end of the file.
    pub(super) fn next_nonblank(&mut self) -> Result<bool, DataError> {
        while self.read_line()?.is_some() {
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
