//! How far a copy has come, as `pg_basebackup --progress` and
//! `pg_rewind --progress` print it: the operator's answer to "how long will
//! this reinit take", shown in the API and by `raftgresctl`.

use tokio::sync::watch;

/// Bytes copied so far of the bytes the tool expects to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Where a copy reports its progress; `None` before its first report.
pub type ProgressSink = watch::Sender<Option<CopyProgress>>;

/// The first `DONE/TOTAL kB` of a progress line: pg_basebackup's
/// `  1234/56789 kB (2%), 0/1 tablespace` and pg_rewind's
/// `1234/56789 kB (2%) copied`. Any other line is `None`.
pub(crate) fn parse(line: &str) -> Option<CopyProgress> {
    let end = line.find(" kB")?;
    let figures = line[..end].trim().rsplit(' ').next()?;
    let (done, total) = figures.split_once('/')?;
    let kib = |text: &str| text.parse::<u64>().ok()?.checked_mul(1024);
    Some(CopyProgress {
        done_bytes: kib(done)?,
        total_bytes: kib(total)?,
    })
}

/// For [`crate::tools::Tool::output_reporting`]: reports each progress line
/// into `sink`, if any, and tells the tool it was one.
pub(crate) fn reporter(sink: Option<&ProgressSink>) -> impl FnMut(&str) -> bool + '_ {
    move |line| {
        let Some(progress) = parse(line) else {
            return false;
        };
        if let Some(sink) = sink {
            sink.send_replace(Some(progress));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_of_both_tools_are_read() {
        let p = |done: u64, total: u64| {
            Some(CopyProgress {
                done_bytes: done * 1024,
                total_bytes: total * 1024,
            })
        };
        #[rustfmt::skip]
        let cases = [
            ("    0/22577 kB (0%), 0/1 tablespace", p(0, 22577)),
            ("22577/22577 kB (100%), 1/1 tablespace", p(22577, 22577)),
            ("   12/22577 kB (0%), 0/1 tablespace (...pgdata/base/1/1259)", p(12, 22577)),
            ("1234/56789 kB (2%) copied", p(1234, 56789)),
            ("pg_basebackup: initiating base backup, waiting for checkpoint to complete", None),
            ("pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1", None),
            ("22577 kB (100%), 1/1 tablespace", None),
            ("x/y kB", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), want, "{line:?}");
        }
    }
}
