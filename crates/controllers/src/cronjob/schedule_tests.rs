//! Unit tests of the cron parser and of `Schedule::next`.

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("timestamp {s}: {e}"))
}

fn utc(spec: &str) -> Schedule {
    parse_standard(&format!("TZ=UTC {spec}")).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// The next `n` activations after `from`, as RFC 3339 UTC.
fn next_n(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = ts(from);
    for _ in 0..n {
        match s.next(t) {
            Some(next) => {
                out.push(next.to_string());
                t = next;
            }
            None => break,
        }
    }
    out
}

#[test]
fn invalid_schedules_report_robfig_errors() {
    let cases = [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        (
            "* * * * * *",
            "expected exactly 5 fields, found 6: [* * * * * *]",
        ),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * 32 * *", "end of range (32) above maximum (31): 32"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 7", "end of range (7) above maximum (6): 7"),
        (
            "5-1 * * * *",
            "beginning of range (5) beyond end of range (1): 5-1",
        ),
        (
            "*/0 * * * *",
            "step of range should be a positive number: */0",
        ),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        (
            "a * * * *",
            "failed to parse int from a: strconv.Atoi: parsing \"a\": invalid syntax",
        ),
        (
            "* * * january *",
            "failed to parse int from january: strconv.Atoi: parsing \"january\": invalid syntax",
        ),
        (
            "*/x * * * *",
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("@Hourly", "unrecognized descriptor: @Hourly"),
        (
            "@every 1x",
            "failed to parse duration @every 1x: time: unknown unit \"x\" in duration \"1x\"",
        ),
        (
            "@every 5",
            "failed to parse duration @every 5: time: missing unit in duration \"5\"",
        ),
        (
            "TZ=Nowhere/Atlantis * * * * *",
            "provided bad location Nowhere/Atlantis: unknown time zone Nowhere/Atlantis",
        ),
    ];
    for (spec, want) in cases {
        match parse_standard(spec) {
            Ok(_) => panic!("{spec:?} parsed"),
            Err(e) => assert_eq!(e.to_string(), want, "{spec:?}"),
        }
    }
}

#[test]
fn valid_syntax_is_accepted() {
    for spec in [
        "* * * * *",
        "? * * * ?",
        "0 0 * * *",
        "*/5 * * * *",
        "0-59/10 0-23 1-31 1-12 0-6",
        "1,2,,3 * * * *",
        "0 0 1 JAN,jul *",
        "0 0 * * MON-FRI",
        "0 0 * * sun",
        "+5 * * * *",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every 1h30m",
        "@every 1.5h",
        "CRON_TZ=Europe/Berlin 0 9 * * *",
        "TZ=UTC @daily",
    ] {
        assert!(parse_standard(spec).is_ok(), "{spec}");
    }
}

#[test]
fn every_minute_is_strictly_after() {
    let s = utc("* * * * *");
    assert_eq!(
        next_n(&s, "2024-05-01T10:00:30Z", 2),
        ["2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"]
    );
    assert_eq!(
        next_n(&s, "2024-05-01T10:00:00Z", 1),
        ["2024-05-01T10:01:00Z"]
    );
    assert_eq!(
        next_n(&s, "2024-12-31T23:59:59.5Z", 1),
        ["2025-01-01T00:00:00Z"]
    );
}

#[test]
fn steps_ranges_and_lists() {
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "*/15 * * * *",
            "2024-05-01T10:01:00Z",
            &[
                "2024-05-01T10:15:00Z",
                "2024-05-01T10:30:00Z",
                "2024-05-01T10:45:00Z",
                "2024-05-01T11:00:00Z",
            ],
        ),
        (
            "5/20 * * * *",
            "2024-05-01T10:00:00Z",
            &[
                "2024-05-01T10:05:00Z",
                "2024-05-01T10:25:00Z",
                "2024-05-01T10:45:00Z",
                "2024-05-01T11:05:00Z",
            ],
        ),
        (
            "0 9-17/4 * * *",
            "2024-05-01T00:00:00Z",
            &[
                "2024-05-01T09:00:00Z",
                "2024-05-01T13:00:00Z",
                "2024-05-01T17:00:00Z",
                "2024-05-02T09:00:00Z",
            ],
        ),
        (
            // Friday 2024-05-03 17:00 → Monday 06:30.
            "30 6-16/4 * * 1-5",
            "2024-05-03T17:00:00Z",
            &[
                "2024-05-06T06:30:00Z",
                "2024-05-06T10:30:00Z",
                "2024-05-06T14:30:00Z",
                "2024-05-07T06:30:00Z",
            ],
        ),
        (
            "0 0 1,15 * *",
            "2024-05-02T00:00:00Z",
            &[
                "2024-05-15T00:00:00Z",
                "2024-06-01T00:00:00Z",
                "2024-06-15T00:00:00Z",
            ],
        ),
        (
            "15,45 2 * * *",
            "2024-05-01T02:20:00Z",
            &["2024-05-01T02:45:00Z", "2024-05-02T02:15:00Z"],
        ),
    ];
    for (spec, from, want) in cases {
        assert_eq!(next_n(&utc(spec), from, want.len()), want, "{spec}");
    }
}

#[test]
fn names_and_day_of_week_or_day_of_month() {
    // 2024-05-01 is a Wednesday.
    assert_eq!(
        next_n(&utc("0 0 * * mon"), "2024-05-01T00:00:00Z", 2),
        ["2024-05-06T00:00:00Z", "2024-05-13T00:00:00Z"]
    );
    assert_eq!(
        next_n(&utc("0 12 1 Jan,JUL *"), "2024-05-01T00:00:00Z", 2),
        ["2024-07-01T12:00:00Z", "2025-01-01T12:00:00Z"]
    );
    // Both day fields restricted: either matches (the 13th, or any Friday).
    assert_eq!(
        next_n(&utc("0 0 13 * 5"), "2024-05-01T00:00:00Z", 3),
        [
            "2024-05-03T00:00:00Z",
            "2024-05-10T00:00:00Z",
            "2024-05-13T00:00:00Z"
        ]
    );
    // One of them `*`: both must match.
    assert_eq!(
        next_n(&utc("0 0 * * 5"), "2024-05-01T00:00:00Z", 1),
        ["2024-05-03T00:00:00Z"]
    );
    // A stepped `*` is not a star: OR again (every other day of month, or Sunday).
    assert_eq!(
        next_n(&utc("0 0 */2 * 0"), "2024-05-10T00:00:00Z", 3),
        [
            "2024-05-11T00:00:00Z",
            "2024-05-12T00:00:00Z",
            "2024-05-13T00:00:00Z"
        ]
    );
}

#[test]
fn impossible_and_rare_days() {
    assert_eq!(
        next_n(&utc("0 0 31 * *"), "2024-04-01T00:00:00Z", 2),
        ["2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z"]
    );
    assert_eq!(
        next_n(&utc("0 0 29 2 *"), "2025-01-01T00:00:00Z", 1),
        ["2028-02-29T00:00:00Z"]
    );
    assert!(utc("0 0 30 2 *").next(ts("2024-01-01T00:00:00Z")).is_none());
}

#[test]
fn descriptors() {
    let from = "2024-05-15T10:20:30Z";
    let cases = [
        ("@hourly", "2024-05-15T11:00:00Z"),
        ("@daily", "2024-05-16T00:00:00Z"),
        ("@midnight", "2024-05-16T00:00:00Z"),
        ("@weekly", "2024-05-19T00:00:00Z"),
        ("@monthly", "2024-06-01T00:00:00Z"),
        ("@yearly", "2025-01-01T00:00:00Z"),
        ("@annually", "2025-01-01T00:00:00Z"),
    ];
    for (spec, want) in cases {
        assert_eq!(next_n(&utc(spec), from, 1), [want], "{spec}");
    }
}

#[test]
fn every_is_a_fixed_delay_in_whole_seconds() {
    assert_eq!(
        next_n(&utc("@every 90s"), "2024-05-01T10:00:00.5Z", 2),
        ["2024-05-01T10:01:30Z", "2024-05-01T10:03:00Z"]
    );
    assert_eq!(
        next_n(&utc("@every 100ms"), "2024-05-01T10:00:00Z", 1),
        ["2024-05-01T10:00:01Z"]
    );
    assert_eq!(
        next_n(&utc("@every 1h30m"), "2024-05-01T10:00:00Z", 1),
        ["2024-05-01T11:30:00Z"]
    );
    assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("2m3s"), Ok(Duration::from_secs(123)));
    assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    assert_eq!(
        parse_go_duration(""),
        Err("time: invalid duration \"\"".into())
    );
    assert_eq!(
        parse_go_duration("h"),
        Err("time: invalid duration \"h\"".into())
    );
}

#[test]
fn time_zones_shift_the_schedule() {
    let ny = parse_standard("TZ=America/New_York 0 9 * * *").expect("parse");
    // 09:00 EDT is 13:00Z in summer; 09:00 EST is 14:00Z in winter.
    assert_eq!(
        next_n(&ny, "2024-07-01T00:00:00Z", 1),
        ["2024-07-01T13:00:00Z"]
    );
    assert_eq!(
        next_n(&ny, "2024-12-01T00:00:00Z", 1),
        ["2024-12-01T14:00:00Z"]
    );
    let kolkata = parse_standard("CRON_TZ=Asia/Kolkata 0 9 * * *").expect("parse");
    assert_eq!(
        next_n(&kolkata, "2024-07-01T00:00:00Z", 1),
        ["2024-07-01T03:30:00Z"]
    );
}

#[test]
fn dst_gaps_skip_and_folds_repeat() {
    // 2024-03-10: New York jumps from 02:00 to 03:00; 02:30 does not exist that day.
    let gap = parse_standard("TZ=America/New_York 30 2 * * *").expect("parse");
    assert_eq!(
        next_n(&gap, "2024-03-09T12:00:00Z", 1),
        ["2024-03-11T06:30:00Z"]
    );
    // 2024-11-03: 01:00–02:00 happens twice; 01:30 fires in both.
    let fold = parse_standard("TZ=America/New_York 30 1 * * *").expect("parse");
    assert_eq!(
        next_n(&fold, "2024-11-03T04:00:00Z", 3),
        [
            "2024-11-03T05:30:00Z",
            "2024-11-03T06:30:00Z",
            "2024-11-04T06:30:00Z"
        ]
    );
    // Daily midnight across the spring change stays at local midnight.
    let midnight = parse_standard("TZ=America/New_York @daily").expect("parse");
    assert_eq!(
        next_n(&midnight, "2024-03-09T12:00:00Z", 2),
        ["2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z"]
    );
}
