//! Invoice dates as they arrive: an ISO date, or an ISO date-time whose date part (as
//! written, local) is the invoice's day, read by hand on ingest's hot path.

use chrono::NaiveDate;

/// Parses an ISO date, or an ISO date-time whose (local, as written) date part is used.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() == 10 {
        return ymd(s.as_bytes());
    }
    if s.len() < 11 || !s.is_char_boundary(10) {
        return None;
    }
    let (d, rest) = s.split_at(10);
    let date = ymd(d.as_bytes())?;
    let sep = rest.as_bytes()[0];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return None;
    }
    iso_time(&rest.as_bytes()[1..]).then_some(date)
}

/// An ISO 8601 time of day, as a date-time writes it after its date: `hh`, `hh:mm` or
/// `hh:mm:ss` (or the same without colons), the last with a fraction after `.` or
/// `,`, then nothing (local time), `Z`, or an offset `±hh`, `±hh:mm` or `±hhmm`. With
/// colons a field may have one digit (`8:26:00`, as spreadsheets export it).
fn iso_time(t: &[u8]) -> bool {
    let number = |f: &[u8], max: u8, digits: std::ops::RangeInclusive<usize>| {
        digits.contains(&f.len())
            && f.iter().all(u8::is_ascii_digit)
            && f.iter().fold(0u8, |n, d| n * 10 + (d - b'0')) <= max
    };
    let two = |f: &[u8], max: u8| number(f, max, 2..=2);
    let (clock, zone) = match t
        .iter()
        .position(|c| matches!(c, b'Z' | b'z' | b'+' | b'-'))
    {
        Some(i) => t.split_at(i),
        None => (t, &[][..]),
    };
    let (main, fraction) = match clock.iter().position(|&c| c == b'.' || c == b',') {
        Some(i) => (&clock[..i], Some(&clock[i + 1..])),
        None => (clock, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.iter().all(u8::is_ascii_digit)) {
        return false;
    }
    let colons = main.contains(&b':');
    let fields: Vec<&[u8]> = match colons {
        true => main.split(|&c| c == b':').collect(),
        false => main.chunks(2).collect(),
    };
    let digits = if colons { 1..=2 } else { 2..=2 };
    let clock_ok = (1..=3).contains(&fields.len())
        && fields
            .iter()
            .zip([23, 59, 60])
            .all(|(f, max)| number(f, max, digits.clone()));
    let zone_ok = match zone {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', h @ ..] => match h {
            [a, b] => two(&[*a, *b], 23),
            [a, b, b':', c, d] | [a, b, c, d] => two(&[*a, *b], 23) && two(&[*c, *d], 59),
            _ => false,
        },
        _ => false,
    };
    clock_ok && zone_ok
}

/// `YYYY-MM-DD` read by hand: chrono's format-string parser was a tenth of the ingest
/// hot path. Invalid calendar dates (2026-02-30) are rejected by `from_ymd_opt`.
fn ymd(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}
