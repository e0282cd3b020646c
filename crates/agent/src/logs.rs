//! Container logs as the CRI runtime writes them (one line per record:
//! `<RFC 3339 time> <stdout|stderr> <P|F> <text>`, `P` marking a partial line), read back
//! for `kubectl logs` with tail, since, timestamps and follow.

/// One decoded record.
#[derive(Debug, PartialEq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

pub fn parse(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Record {
        time,
        stream,
        partial: tag.starts_with('P'),
        text,
    })
}

/// Options of a log request (the kubelet's `/containerLogs` query).
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<k8s_openapi::jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

/// Renders complete records of `data` as kubectl shows them.
pub fn render(data: &str, opts: &LogOptions, out: &mut Vec<u8>) {
    for line in data.lines() {
        let Some(r) = parse(line) else { continue };
        if let Some(since) = &opts.since {
            if let Ok(t) = r.time.parse::<k8s_openapi::jiff::Timestamp>() {
                if t < *since {
                    continue;
                }
            }
        }
        if opts.timestamps {
            out.extend_from_slice(r.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.text.as_bytes());
        if !r.partial {
            out.push(b'\n');
        }
    }
}

/// The last `n` records of `data` (whole lines of the file).
pub fn tail(data: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let trimmed = data.strip_suffix('\n').unwrap_or(data);
    let mut count = 0;
    for (i, b) in trimmed.bytes().enumerate().rev() {
        if b == b'\n' {
            count += 1;
            if count == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:00.1Z stdout F one\n2024-01-01T00:00:01.2Z stderr P tw\n2024-01-01T00:00:01.3Z stderr F o\n2024-01-01T00:00:02Z stdout F three\n";

    #[test]
    fn renders_and_joins_partial_lines() {
        let mut out = Vec::new();
        render(LOG, &LogOptions::default(), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn timestamps_and_tail() {
        let mut out = Vec::new();
        render(
            tail(LOG, 1),
            &LogOptions {
                timestamps: true,
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-01-01T00:00:02Z three\n"
        );
        assert_eq!(tail(LOG, 10), LOG);
    }

    #[test]
    fn since_filters_older_records() {
        let mut out = Vec::new();
        let since = "2024-01-01T00:00:01.5Z".parse().ok();
        render(
            LOG,
            &LogOptions {
                since,
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(String::from_utf8(out).unwrap(), "three\n");
    }
}
